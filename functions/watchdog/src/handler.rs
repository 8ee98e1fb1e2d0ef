//! One invocation: classify the event, count crashes if the threshold asks
//! for it, scale the group to zero, and raise one alert.

use std::collections::BTreeMap;

use kiln::sns::{OutboundMessage, PublishError, Publisher};
use kiln::{KilnError, Metrics};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::alert::{self, Cause, ScaledGroup};
use crate::config::Config;
use crate::crash_history::{self, EcsError, TaskHistory};
use crate::retry::{Backoff, Deadline, Exhausted, retry};
use crate::scaling::{AutoScaling, ScaleDown, ScaleDownError, ScalingError, scale_to_zero};
use crate::trigger::{self, ContainerExit, Rules, StoppedTask, Trigger, Verdict};

/// What an invocation did; the Lambda response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Outcome {
    /// Not a crash, another cluster, an alarm not listed or not in ALARM.
    Ignored { reason: String },
    /// A crash, but fewer than the threshold within the window.
    BelowThreshold {
        crashes: u32,
        threshold: u32,
        window_minutes: u64,
    },
    /// The group was already at zero: no change, no alert.
    AlreadyZero { asg: String },
    ScaledDown {
        asg: String,
        desired_before: i32,
        min_size_before: i32,
        alert_message_id: String,
    },
    /// The group was at zero with its alert still pending: an earlier
    /// invocation scaled it and failed before publishing. The alert was sent
    /// now.
    PendingAlertSent {
        asg: String,
        desired_before: i32,
        min_size_before: i32,
        alert_message_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Unrecognised(#[from] kiln::events::UnrecognisedEvent),
    #[error("counting recent crashes failed: {0}")]
    CrashHistory(#[from] EcsError),
    #[error(transparent)]
    Scaling(#[from] ScaleDownError),
    /// The group is already at zero; only the alert is missing.
    #[error(
        "{asg} was scaled to zero but the alert could not be sent: {error} (after {attempts} attempt{plural})",
        plural = if *attempts == 1 { "" } else { "s" }
    )]
    Alert {
        asg: String,
        error: PublishError,
        attempts: u32,
    },
}

impl KilnError for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            HandlerError::Unrecognised(_) => "UnrecognisedEvent",
            HandlerError::CrashHistory(_) => "CrashHistoryFailed",
            HandlerError::Scaling(ScaleDownError::NotFound(_)) => "AutoScalingGroupNotFound",
            HandlerError::Scaling(ScaleDownError::Failed { .. }) => "ScalingFailed",
            HandlerError::Alert { .. } => "AlertPublishFailed",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        kiln::error::diagnostic(&e)
    }
}

/// The function, with its configuration and ports.
pub struct Watchdog<A, H, P> {
    pub config: Config,
    pub autoscaling: A,
    pub history: H,
    pub publisher: P,
    pub metrics: Metrics,
    pub backoff: Backoff,
    /// The region, for the restore command in the alert.
    pub region: Option<String>,
}

impl<A: AutoScaling, H: TaskHistory, P: Publisher> Watchdog<A, H, P> {
    /// Handles one event. `now` places crashes in the window; `deadline`
    /// bounds the retries.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        deadline: Deadline,
        now: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        let config = &self.config;
        let rules = Rules {
            cluster_arn: config.cluster_arn.as_deref(),
            scale_down_alarms: &config.scale_down_alarms,
        };
        let trigger = match trigger::classify(event, &rules) {
            Ok(trigger) => trigger,
            Err(err) => {
                self.metrics.count("UnrecognisedEvent", 1);
                tracing::error!(error = %err, "unrecognised event");
                return Err(err.into());
            }
        };

        let (task, container) = match trigger {
            Trigger::Ignore { reason } => return Ok(self.ignored(reason)),
            Trigger::ScaleDownAlarm(alarm) => {
                let span = tracing::info_span!("alarm", alarm = alarm.name.as_str());
                return self
                    .scale_down_and_alert(&Cause::Alarm(&alarm), deadline, now)
                    .instrument(span)
                    .await;
            }
            Trigger::Crash { task, container } => (task, container),
            Trigger::PossibleCrash { task } => {
                let mut cache = BTreeMap::new();
                match crash_history::resolve(&self.history, &task, &mut cache).await? {
                    Verdict::Crash(container) => (task, container),
                    Verdict::NotCrash(reason) => return Ok(self.ignored(reason)),
                    // `resolve` answers once it has the task definition.
                    Verdict::NeedsEssentialContainers => (task, None),
                }
            }
        };

        let span = tracing::info_span!(
            "crash",
            task_arn = task.task_arn.as_deref().unwrap_or(""),
            group = task.group.as_deref().unwrap_or("")
        );
        self.crash(task, container, deadline, now)
            .instrument(span)
            .await
    }

    async fn crash(
        &self,
        task: StoppedTask,
        container: Option<ContainerExit>,
        deadline: Deadline,
        now: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        let config = &self.config;
        self.metrics.count("Crash", 1);
        let crashes = if config.crash_loop_threshold > 1 {
            crash_history::recent_crashes(
                &self.history,
                &task,
                config.cluster_arn.as_deref(),
                config.crash_loop_window,
                now,
            )
            .await?
            .crashes
        } else {
            1
        };
        if crashes < config.crash_loop_threshold {
            tracing::info!(
                crashes,
                threshold = config.crash_loop_threshold,
                "crash below the threshold"
            );
            self.metrics.count("BelowThreshold", 1);
            return Ok(Outcome::BelowThreshold {
                crashes,
                threshold: config.crash_loop_threshold,
                window_minutes: config.window_minutes(),
            });
        }
        let cause = Cause::Crash {
            task: &task,
            container: container.as_ref(),
            crashes,
            threshold: config.crash_loop_threshold,
            window_minutes: config.window_minutes(),
        };
        self.scale_down_and_alert(&cause, deadline, now).await
    }

    fn ignored(&self, reason: String) -> Outcome {
        tracing::info!(%reason, "ignored");
        self.metrics.count("Ignored", 1);
        Outcome::Ignored { reason }
    }

    async fn scale_down_and_alert(
        &self,
        cause: &Cause<'_>,
        deadline: Deadline,
        now: OffsetDateTime,
    ) -> Result<Outcome, HandlerError> {
        let asg = self.config.asg_name.as_str();
        let (before, after, tagged, resumed) =
            match scale_to_zero(&self.autoscaling, asg, &self.backoff, deadline).await {
                Ok(ScaleDown::AlreadyZero(_)) => {
                    tracing::info!(asg, "desired capacity already 0: nothing to do");
                    self.metrics.count("AlreadyZero", 1);
                    return Ok(Outcome::AlreadyZero {
                        asg: asg.to_string(),
                    });
                }
                Ok(ScaleDown::AlertPending { before, now }) => {
                    tracing::warn!(
                        asg,
                        desired_before = before.desired,
                        min_size_before = before.min_size,
                        "desired capacity already 0, but the alert of that scale-down was never \
                         published: publishing it now"
                    );
                    (before, now, true, true)
                }
                Ok(ScaleDown::ScaledDown {
                    before,
                    after,
                    marked,
                }) => {
                    tracing::warn!(
                        asg,
                        desired_before = before.desired,
                        min_size_before = before.min_size,
                        "scaled to zero"
                    );
                    self.metrics.count("ScaleDowns", 1);
                    (before, after, marked, false)
                }
                Err(err) => {
                    tracing::error!(asg, error = %err, "scaling down failed");
                    self.metrics.count("ScaleDownFailed", 1);
                    return Err(err.into());
                }
            };

        let group = ScaledGroup {
            name: asg,
            before,
            after,
            region: self.region.as_deref(),
        };
        let alert = alert::build(&group, cause, now);
        let message = OutboundMessage {
            body: alert.to_json(),
            subject: Some(alert.subject()),
            attributes: vec![
                ("kind".into(), kiln::messages::alert::KIND.into()),
                ("source".into(), alert::SOURCE.into()),
            ],
            ..OutboundMessage::default()
        };
        let topic = self.config.alert_topic_arn.as_str();
        // Try hard here: a failure leaves the pending-alert tag for Lambda's
        // retry to find, but each retry is minutes away.
        let published = retry(
            &self.backoff,
            deadline,
            |e: &PublishError| e.retryable,
            || self.publisher.publish(topic, message.clone()),
        )
        .await;
        match published {
            Ok(message_id) => {
                self.metrics.count("AlertPublished", 1);
                if tagged {
                    self.clear_alert_pending(asg, deadline).await;
                }
                let (asg, desired_before, min_size_before) =
                    (asg.to_string(), before.desired, before.min_size);
                Ok(if resumed {
                    Outcome::PendingAlertSent {
                        asg,
                        desired_before,
                        min_size_before,
                        alert_message_id: message_id,
                    }
                } else {
                    Outcome::ScaledDown {
                        asg,
                        desired_before,
                        min_size_before,
                        alert_message_id: message_id,
                    }
                })
            }
            Err(Exhausted { error, attempts }) => {
                // The alert still reaches the logs, and the tag makes the
                // retry send it.
                tracing::error!(alert = %message.body, error = %error, "alert not sent");
                self.metrics.count("AlertPublishFailed", 1);
                Err(HandlerError::Alert {
                    asg: asg.to_string(),
                    error,
                    attempts,
                })
            }
        }
    }

    /// Removes the pending-alert tag once the alert is out. A failure is
    /// logged, not returned: the alert was sent, and the worst a stale tag
    /// does is send it once more when the next event finds the group at zero.
    async fn clear_alert_pending(&self, asg: &str, deadline: Deadline) {
        let cleared = retry(
            &self.backoff,
            deadline,
            |e: &ScalingError| e.retryable,
            || self.autoscaling.clear_alert_pending(asg),
        )
        .await;
        if let Err(Exhausted { error, attempts }) = cleared {
            tracing::warn!(
                asg,
                error = %error,
                attempts,
                tag = crate::scaling::ALERT_PENDING_TAG,
                "alert sent, but the pending-alert tag could not be removed: the next event \
                 that finds the group at zero sends the alert again"
            );
            self.metrics.count("AlertTagNotCleared", 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash_history::EcsError;
    use crate::scaling::fake::FakeAsg;
    use crate::trigger::StoppedTask;
    use kiln::Env;
    use kiln::sns::fake::RecordingPublisher;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use time::macros::datetime;

    const TOPIC: &str = "arn:aws:sns:us-west-2:111122223333:kiln-alerts";
    const NOW: OffsetDateTime = datetime!(2020-01-23 18:00:00 UTC);

    /// ECS as a list of stopped tasks and one task definition.
    #[derive(Default)]
    struct FakeHistory {
        stopped: Vec<StoppedTask>,
        essential: BTreeSet<String>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl TaskHistory for FakeHistory {
        async fn stopped_tasks(
            &self,
            _cluster: Option<&str>,
            _group: &str,
        ) -> Result<Vec<StoppedTask>, EcsError> {
            self.calls.lock().unwrap().push("stopped_tasks");
            Ok(self.stopped.clone())
        }
        async fn essential_containers(&self, _arn: &str) -> Result<BTreeSet<String>, EcsError> {
            self.calls.lock().unwrap().push("essential_containers");
            Ok(self.essential.clone())
        }
    }

    fn watchdog(
        extra: &[(&str, &str)],
        asg: FakeAsg,
        history: FakeHistory,
    ) -> Watchdog<FakeAsg, FakeHistory, RecordingPublisher> {
        let mut pairs = vec![("ASG_NAME", "kiln-app"), ("ALERT_TOPIC_ARN", TOPIC)];
        pairs.extend_from_slice(extra);
        Watchdog {
            config: Config::from_env(&Env::from_pairs(pairs)).unwrap(),
            autoscaling: asg,
            history,
            publisher: RecordingPublisher::new(),
            metrics: Metrics::in_memory("watchdog"),
            backoff: Backoff::immediate(3),
            region: Some("us-west-2".into()),
        }
    }

    fn fixture(path: &str) -> serde_json::Value {
        let full = format!("{}/../../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    fn crash_event() -> serde_json::Value {
        fixture("synthetic/ecs-task-stopped-essential-exit1.json")
    }

    #[tokio::test]
    async fn crash_scales_down_once_and_alerts_once() {
        let w = watchdog(&[], FakeAsg::new(0, 1), FakeHistory::default());
        let outcome = w.handle(crash_event(), Deadline::NONE, NOW).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::ScaledDown {
                asg: "kiln-app".into(),
                desired_before: 1,
                min_size_before: 0,
                alert_message_id: "fake-message-1".into(),
            }
        );
        let published = w.publisher.published();
        assert_eq!(published.len(), 1);
        let (topic, message) = &published[0];
        assert_eq!(topic, TOPIC);
        let alert = kiln::Alert::from_json(&message.body).unwrap();
        assert_eq!(message.subject.as_deref(), Some(alert.subject().as_str()));
        assert_eq!(alert.source, "watchdog");
        assert_eq!(alert.field_value("Container"), Some("FargateApp"));
        assert_eq!(alert.field_value("Exit code"), Some("1"));
        assert_eq!(alert.raised_at, NOW);

        // The same event again (EventBridge delivers one crash several
        // times): nothing to do, no second alert.
        let again = w.handle(crash_event(), Deadline::NONE, NOW).await.unwrap();
        assert_eq!(
            again,
            Outcome::AlreadyZero {
                asg: "kiln-app".into()
            }
        );
        assert_eq!(w.publisher.published().len(), 1);
        assert_eq!(w.metrics.total("ScaleDowns"), 1.0);
        assert_eq!(w.metrics.total("AlreadyZero"), 1.0);
        // Threshold 1: ECS is never asked.
        assert!(w.history.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn below_the_threshold_nothing_changes() {
        let mut earlier = StoppedTask::from_event(
            &serde_json::from_value(crash_event()["detail"].clone()).unwrap(),
            &[],
        );
        earlier.task_arn =
            Some("arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/earlier".into());
        earlier.stopped_at = Some(NOW - time::Duration::minutes(5));
        let history = FakeHistory {
            stopped: vec![earlier],
            ..FakeHistory::default()
        };
        let w = watchdog(
            &[("CRASH_LOOP_THRESHOLD", "3")],
            FakeAsg::new(0, 1),
            history,
        );
        let outcome = w.handle(crash_event(), Deadline::NONE, NOW).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::BelowThreshold {
                crashes: 2,
                threshold: 3,
                window_minutes: 10
            }
        );
        assert_eq!(w.autoscaling.calls(), Vec::<&str>::new());
        assert!(w.publisher.published().is_empty());
    }

    #[tokio::test]
    async fn sidecar_failures_are_settled_by_the_task_definition() {
        let mut event = crash_event();
        event["detail"]["containers"][0]["exitCode"] = 0.into();
        let sidecar =
            serde_json::json!({"name": "log-router", "lastStatus": "STOPPED", "exitCode": 137});
        event["detail"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(sidecar);
        let history = FakeHistory {
            essential: ["FargateApp".to_string()].into(),
            ..FakeHistory::default()
        };
        let w = watchdog(&[], FakeAsg::new(0, 1), history);
        let outcome = w.handle(event, Deadline::NONE, NOW).await.unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
        assert_eq!(
            *w.history.calls.lock().unwrap(),
            vec!["essential_containers"]
        );
        assert_eq!(w.autoscaling.capacity().unwrap().desired, 1);
    }

    #[tokio::test]
    async fn unrecognised_events_fail_with_a_meaningful_type() {
        let w = watchdog(&[], FakeAsg::new(0, 1), FakeHistory::default());
        let err = w
            .handle(
                fixture("aws/rust-runtime/example-sns-event.json"),
                Deadline::NONE,
                NOW,
            )
            .await
            .unwrap_err();
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "UnrecognisedEvent");
        assert!(
            diagnostic
                .error_message
                .contains("not a CloudWatch alarm notification")
        );
        assert_eq!(w.autoscaling.calls(), Vec::<&str>::new());
    }

    #[tokio::test]
    async fn a_lost_alert_fails_the_invocation_and_is_logged() {
        let w = watchdog(&[], FakeAsg::new(0, 1), FakeHistory::default());
        w.publisher.fail_with(PublishError {
            topic_arn: TOPIC.into(),
            message: "AuthorizationError: not allowed".into(),
            retryable: false,
        });
        let err = w
            .handle(crash_event(), Deadline::NONE, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "AlertPublishFailed");
        assert_eq!(
            err.to_string(),
            format!(
                "kiln-app was scaled to zero but the alert could not be sent: publishing to \
                 {TOPIC} failed: AuthorizationError: not allowed (after 1 attempt)"
            )
        );
        assert_eq!(w.autoscaling.capacity().unwrap().desired, 0);

        // Lambda's retry, SNS working again: the group is at zero, but the
        // tag says its alert is missing, so it is sent now; once.
        w.publisher.succeed();
        let retried = w.handle(crash_event(), Deadline::NONE, NOW).await.unwrap();
        assert_eq!(
            retried,
            Outcome::PendingAlertSent {
                asg: "kiln-app".into(),
                desired_before: 1,
                min_size_before: 0,
                alert_message_id: "fake-message-1".into(),
            }
        );
        let published = w.publisher.published();
        assert_eq!(published.len(), 1);
        let alert = kiln::Alert::from_json(&published[0].1.body).unwrap();
        assert_eq!(alert.field_value("Desired capacity"), Some("1 → 0"));
        assert_eq!(w.autoscaling.alert_pending(), None);
        let again = w.handle(crash_event(), Deadline::NONE, NOW).await.unwrap();
        assert!(matches!(again, Outcome::AlreadyZero { .. }), "{again:?}");
        assert_eq!(w.publisher.published().len(), 1);
        assert_eq!(w.metrics.total("ScaleDowns"), 1.0);
    }

    #[tokio::test]
    async fn scaling_errors_fail_the_invocation() {
        let asg = FakeAsg::new(0, 1);
        asg.failures
            .lock()
            .unwrap()
            .push_back(crate::scaling::ScalingError {
                operation: "SetDesiredCapacity",
                code: Some("AccessDenied".into()),
                message: "AccessDenied: not authorized".into(),
                retryable: false,
            });
        let w = watchdog(&[], asg, FakeHistory::default());
        let err = w
            .handle(crash_event(), Deadline::NONE, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ScalingFailed");
        assert_eq!(
            err.to_string(),
            "SetDesiredCapacity failed: AccessDenied: not authorized (after 1 attempt)"
        );
        assert!(w.publisher.published().is_empty());
    }
}
