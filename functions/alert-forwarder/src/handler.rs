//! The flow of one invocation.
//!
//! - SNS: every record is classified, rendered and posted, one post per
//!   record. A record that fails does not stop the others; the invocation
//!   then fails, naming each failed record, so Lambda retries the event and
//!   it can end in the dead-letter queue. (SNS delivers one record per
//!   invocation, so a retry does not repeat other records' posts.)
//! - Scheduled Event: the re-post check ([`crate::refire`]).
//! - Anything else (an EventBridge rule or an alarm action targeting the
//!   function directly): rendered and posted like a record.
//!
//! The webhook URL is read from Secrets Manager on first use and cached; a
//! Slack answer that says the webhook is gone empties the cache, so a
//! rotated secret is picked up on the next invocation.

use std::time::Duration;

use kiln::secrets::{SecretError, SecretFetcher};
use kiln::{KilnError, Metrics, SecretCache, SecretString};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use time::OffsetDateTime;

use crate::classify::{self, Invocation, Message};
use crate::clock::Clock;
use crate::config::Config;
use crate::refire::{self, AlarmSource, AlarmSourceError};
use crate::render::{self, Options, Origin, Payload, Rendered};
use crate::slack::{self, DeliveryError, RetryPolicy, SlackWebhook, WebhookSecretMalformed};

/// The time an invocation may take when the context has no deadline.
const DEFAULT_BUDGET: Duration = Duration::from_secs(60);

/// What an invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Messages posted to Slack.
    pub posted: usize,
    /// Messages not posted by configuration (`NOTIFY_OK`).
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the Slack webhook URL could not be read: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    SecretMalformed(#[from] WebhookSecretMalformed),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    AlarmSource(#[from] AlarmSourceError),
    /// Some items of a batch failed; each is named with its error.
    #[error("{} of {total} {noun} failed: {}", failures.len(), describe(failures))]
    Batch {
        noun: &'static str,
        total: usize,
        failures: Vec<(String, HandlerError)>,
    },
}

fn describe(failures: &[(String, HandlerError)]) -> String {
    kiln::error::name_failures(
        failures
            .iter()
            .map(|(label, err)| format!("{label}: {err}")),
    )
}

impl KilnError for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Secret(_) => "WebhookSecretUnavailable",
            HandlerError::SecretMalformed(_) => "WebhookSecretMalformed",
            HandlerError::Delivery(err) => err.error_type(),
            HandlerError::AlarmSource(_) => "DescribeAlarmsFailed",
            // The first failure's type: for the usual one-record batch,
            // exactly what went wrong.
            HandlerError::Batch { failures, .. } => failures
                .first()
                .map_or("RecordsFailed", |(_, err)| err.error_type()),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        kiln::error::diagnostic(&err)
    }
}

/// The function, with its dependencies.
pub struct Forwarder<W, F, A, C> {
    pub config: Config,
    pub secrets: SecretCache<F>,
    pub webhook: W,
    pub alarms: A,
    pub clock: C,
    pub metrics: Metrics,
    pub policy: RetryPolicy,
}

impl<W, F, A, C> Forwarder<W, F, A, C>
where
    W: SlackWebhook,
    F: SecretFetcher,
    A: AlarmSource,
    C: Clock,
{
    pub fn new(
        config: Config,
        secrets: SecretCache<F>,
        webhook: W,
        alarms: A,
        clock: C,
        metrics: Metrics,
    ) -> Self {
        Forwarder {
            config,
            secrets,
            webhook,
            alarms,
            clock,
            metrics,
            policy: RetryPolicy::default(),
        }
    }

    pub async fn handle(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<Outcome, HandlerError> {
        let deadline = match event.context.deadline {
            0 => self.clock.now() + DEFAULT_BUDGET,
            ms => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or_else(|_| self.clock.now() + DEFAULT_BUDGET),
        };
        match classify::invocation(event.payload) {
            Invocation::Sns(sns) => {
                let mut outcome = Outcome::default();
                let mut failures = Vec::new();
                for (index, record) in sns.records.iter().enumerate() {
                    let message = classify::message(&record.sns.message);
                    let origin = Origin {
                        topic_arn: record.sns.topic_arn.as_deref(),
                        subject: record.sns.subject.as_deref(),
                        timestamp: record.sns.timestamp.as_deref(),
                    };
                    let span = tracing::info_span!(
                        "record",
                        index,
                        message_id = record.sns.message_id.as_deref().unwrap_or(""),
                        kind = message.kind()
                    );
                    // Boxed: the nested futures are otherwise too deep for
                    // the compiler's layout computation of the runtime's.
                    let result = tracing::Instrument::instrument(
                        Box::pin(self.forward(&message, &origin, deadline)),
                        span,
                    )
                    .await;
                    match result {
                        Ok(posted) => outcome.add(posted),
                        Err(err) => failures.push((record.label(index), err)),
                    }
                }
                finish(outcome, failures, sns.records.len(), "record(s)")
            }
            Invocation::Schedule(event) => {
                Box::pin(self.refire(event.time.as_deref(), deadline)).await
            }
            Invocation::Direct(message) => {
                let span = tracing::info_span!("event", kind = message.kind());
                let posted = tracing::Instrument::instrument(
                    Box::pin(self.forward(&message, &Origin::default(), deadline)),
                    span,
                )
                .await?;
                let mut outcome = Outcome::default();
                outcome.add(posted);
                Ok(outcome)
            }
        }
    }

    fn options(&self) -> Options<'_> {
        Options {
            mention: self.config.mention.as_deref(),
            notify_ok: self.config.notify_ok,
        }
    }

    /// Renders and posts one message. `Ok(false)`: skipped by configuration.
    async fn forward(
        &self,
        message: &Message,
        origin: &Origin<'_>,
        deadline: OffsetDateTime,
    ) -> Result<bool, HandlerError> {
        match render::render(message, origin, &self.options()) {
            Rendered::Skip { reason } => {
                tracing::info!(%reason, "not posted");
                self.metrics.count("MessagesSkipped", 1);
                Ok(false)
            }
            Rendered::Post(payload) => {
                self.post(&payload, deadline).await?;
                Ok(true)
            }
        }
    }

    async fn webhook_url(&self) -> Result<SecretString, HandlerError> {
        let secret_id = &self.config.webhook_secret_arn;
        let value = self.secrets.current(secret_id).await?;
        Ok(slack::webhook_url(&value, secret_id)?)
    }

    async fn post(&self, payload: &Payload, deadline: OffsetDateTime) -> Result<(), HandlerError> {
        let url = self.webhook_url().await?;
        let body = payload.to_body();
        match slack::deliver(
            &self.webhook,
            &self.clock,
            &url,
            &body,
            &self.policy,
            deadline,
        )
        .await
        {
            Ok(delivered) => {
                tracing::info!(
                    attempts = delivered.attempts,
                    bytes = body.len(),
                    "posted to Slack"
                );
                self.metrics.count("SlackDeliveries", 1);
                if delivered.attempts > 1 {
                    self.metrics
                        .count("SlackRetries", u64::from(delivered.attempts - 1));
                }
                Ok(())
            }
            Err(err) => {
                tracing::error!(error = %err, error_type = err.error_type(), "Slack delivery failed");
                self.metrics.count("DeliveryFailures", 1);
                if err.webhook_may_have_changed() {
                    self.secrets.invalidate().await;
                }
                Err(err.into())
            }
        }
    }

    /// The re-post check, for the schedule tick at `tick` (the scheduled
    /// event's time).
    async fn refire(
        &self,
        tick: Option<&str>,
        deadline: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        let settings = &self.config.refire;
        let Some(every) = settings.after else {
            tracing::info!("re-posting is off (REFIRE_AFTER_MINUTES=0)");
            return Ok(Outcome::default());
        };
        let now = tick
            .and_then(kiln::events::parse_aws_time)
            .unwrap_or_else(|| self.clock.now());
        let alarms = self
            .alarms
            .alarms_in_alarm(settings.alarm_prefix.as_deref())
            .await?;
        let due = refire::select(&alarms, now, every, settings.schedule);
        tracing::info!(in_alarm = alarms.len(), due = due.len(), "re-post check");
        let mut outcome = Outcome::default();
        let mut failures = Vec::new();
        for view in &due {
            let span = tracing::info_span!("refire", alarm = %view.name);
            let result = tracing::Instrument::instrument(
                async {
                    match render::alarm::render(view, &self.options()) {
                        Rendered::Post(payload) => {
                            self.post(&payload, deadline).await.map(|()| true)
                        }
                        Rendered::Skip { .. } => Ok(false),
                    }
                },
                span,
            )
            .await;
            match result {
                Ok(posted) => {
                    if posted {
                        self.metrics.count("AlarmsReposted", 1);
                    }
                    outcome.add(posted);
                }
                Err(err) => failures.push((format!("alarm {}", view.name), err)),
            }
        }
        finish(outcome, failures, due.len(), "re-post(s)")
    }
}

impl Outcome {
    fn add(&mut self, posted: bool) {
        if posted {
            self.posted += 1;
        } else {
            self.skipped += 1;
        }
    }
}

fn finish(
    outcome: Outcome,
    failures: Vec<(String, HandlerError)>,
    total: usize,
    noun: &'static str,
) -> Result<Outcome, HandlerError> {
    if failures.is_empty() {
        Ok(outcome)
    } else {
        Err(HandlerError::Batch {
            noun,
            total,
            failures,
        })
    }
}
