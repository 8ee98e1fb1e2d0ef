//! The Lambda handler: one function, two event shapes.
//!
//! - An SNS event: each record is a deploy request; every record is
//!   processed, and any record that fails fails the invocation, naming the
//!   record, so Lambda retries it (safely: the idempotency token keeps one
//!   task per delivery) and it ends in the dead-letter queue if it keeps
//!   failing.
//! - An EventBridge "ECS Task State Change" for a stopped kiln task: the
//!   deployment's end is reported to GitHub, then announced on the alert
//!   topic as `NOTIFY_DEPLOYS` says ([`crate::notifier`]).
//!
//! With deploy lanes (`LANES_TABLE`), a request starts its task only when
//! its lane is free, and a stopped task frees its lane and starts the
//! lane's next request ([`lane_flow`](crate::lane_flow)). Each step's
//! [`LaneOutcome`] lists what happened, and [`report_lane`] reports every
//! part of it.
//!
//! Anything else fails with `UnsupportedEvent`.

use kiln::events::eventbridge::ECS_TASK_STATE_CHANGE;
use kiln::events::{Inbound, ecs, sns};
use kiln::messages::MessageError;
use kiln::{DeployRequest, KilnError, Metrics};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::completion::{Completion, TaskIdentity, completion, short_sha};
use crate::config::Config;
use crate::github::{DeployState, DeploymentReporter, ReportError, ReportOutcome, StatusUpdate};
use crate::lane_flow::{Lane, LaneError, LaneOutcome, StartFailure};
use crate::lane_store::{DynamoLaneStore, LaneStore};
use crate::lanes::{Queued, Superseded};
use crate::notifier::{self, NotifyError, StoppedTask};
use crate::runner::{DescribeError, RunTaskError, StartedTask, TaskRunner};
use crate::task_log::LogTail;
use crate::task_request::{self, TaskRequestError};
use kiln::messages::DeployOutcome;
use kiln::sns::Publisher;

/// The metric names this function emits.
pub mod metric {
    pub const DEPLOYS_STARTED: &str = "DeploysStarted";
    pub const DEPLOYS_ALREADY_STARTED: &str = "DeploysAlreadyStarted";
    pub const START_FAILURES: &str = "DeployStartFailures";
    pub const DEPLOYS_SUCCEEDED: &str = "DeploysSucceeded";
    pub const DEPLOYS_FAILED: &str = "DeploysFailed";
    pub const GITHUB_REPORT_FAILURES: &str = "GitHubReportFailures";
    pub const UNRECOGNISED_TASKS: &str = "UnrecognisedTasks";
    /// Requests that wait behind their lane's running deployment.
    pub const DEPLOYS_QUEUED: &str = "DeploysQueued";
    /// Requests that will never deploy: a newer one on their lane won.
    pub const DEPLOYS_SUPERSEDED: &str = "DeploysSuperseded";
}

/// What the handler works with, built once per process.
pub struct Deps<R, G, P, L, S = DynamoLaneStore> {
    pub config: Config,
    pub runner: R,
    pub reporter: G,
    /// Deployment notifications go out through it.
    pub publisher: P,
    /// Reads the end of a failed deployment's log.
    pub logs: L,
    pub metrics: Metrics,
    /// The deploy lanes; `None` (no `LANES_TABLE`) starts every request
    /// at once.
    pub lanes: Option<S>,
}

impl<R: TaskRunner, G, P, L, S: LaneStore> Deps<R, G, P, L, S> {
    fn lane<'a>(&'a self, store: &'a S) -> Lane<'a, S, R> {
        Lane {
            store,
            runner: &self.runner,
            config: &self.config,
            now: time::OffsetDateTime::now_utc,
        }
    }
}

/// Why one SNS record could not start its deployment.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("not a valid deploy request: {0}")]
    InvalidRequest(#[source] MessageError),
    #[error(transparent)]
    Request(#[from] TaskRequestError),
    #[error(transparent)]
    RunTask(#[from] RunTaskError),
    #[error(transparent)]
    Lane(#[from] LaneError),
    #[error("posting the superseded status of {delivery_id}: {error}")]
    SupersededReport {
        delivery_id: String,
        #[source]
        error: ReportError,
    },
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl From<StartFailure> for StartError {
    fn from(failure: StartFailure) -> Self {
        match failure {
            StartFailure::Request(err) => StartError::Request(err),
            StartFailure::RunTask(err) => StartError::RunTask(err),
        }
    }
}

impl StartError {
    fn error_type(&self) -> &'static str {
        match self {
            StartError::InvalidRequest(_) => "InvalidDeployRequest",
            StartError::Request(TaskRequestError::OverridesTooLarge { .. }) => "OverridesTooLarge",
            StartError::RunTask(_) => "RunTaskFailed",
            StartError::Lane(LaneError::Liveness(_)) => "TaskLookupFailed",
            StartError::Lane(_) => "LaneStoreFailed",
            StartError::SupersededReport { .. } => "GitHubReportFailed",
            StartError::Notify(_) => "NotificationPublishFailed",
        }
    }
}

/// One failed record: its label (position and SNS message id) and why.
#[derive(Debug, thiserror::Error)]
#[error("{label}: {error}")]
pub struct RecordFailure {
    pub label: String,
    #[source]
    pub error: StartError,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    UnsupportedEvent(String),
    #[error("{} of {total} records failed: {}", failures.len(), kiln::error::name_failures(failures))]
    Records {
        total: usize,
        failures: Vec<RecordFailure>,
    },
    #[error(transparent)]
    TaskLookup(#[from] DescribeError),
    #[error("reporting the end of the deployment failed: {0}")]
    Report(#[source] ReportError),
    #[error("the deployment's end is reported, but its lane is not settled: {0}")]
    Lane(#[source] StartError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl KilnError for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            HandlerError::UnsupportedEvent(_) => "UnsupportedEvent",
            HandlerError::Records { failures, .. } => failures
                .first()
                .map_or("RecordFailed", |f| f.error.error_type()),
            HandlerError::TaskLookup(_) => "TaskLookupFailed",
            HandlerError::Report(_) => "GitHubReportFailed",
            HandlerError::Lane(err) => err.error_type(),
            HandlerError::Notify(_) => "NotificationPublishFailed",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        kiln::error::diagnostic(&err)
    }
}

/// Handles one invocation.
pub async fn handle<
    R: TaskRunner,
    G: DeploymentReporter,
    P: Publisher,
    L: LogTail,
    S: LaneStore,
>(
    deps: &Deps<R, G, P, L, S>,
    event: Value,
) -> Result<Value, HandlerError> {
    match Inbound::from_value(event).map_err(|e| HandlerError::UnsupportedEvent(e.to_string()))? {
        Inbound::Sns(event) => deps.start_deployments(&event).await,
        Inbound::EventBridge(event) if event.is(ecs::SOURCE, ECS_TASK_STATE_CHANGE) => {
            let task: ecs::TaskStateChange = event.detail_as().map_err(|e| {
                HandlerError::UnsupportedEvent(format!(
                    "an ECS Task State Change whose detail does not decode: {e}"
                ))
            })?;
            let task_arn = task
                .task_arn
                .clone()
                .or_else(|| event.resources.first().cloned())
                .unwrap_or_default();
            let span = tracing::info_span!("task_stopped", task_arn = %task_arn);
            deps.finish_deployment(&task, &task_arn)
                .instrument(span)
                .await
        }
        Inbound::EventBridge(event) => Err(HandlerError::UnsupportedEvent(format!(
            "an EventBridge event from {:?} of type {:?}; deploy-exec takes SNS deploy requests and \"{ECS_TASK_STATE_CHANGE}\" events",
            event.source, event.detail_type
        ))),
    }
}

/// An invocation's steps, written as methods so that the ports' bounds are
/// written once.
impl<R: TaskRunner, G: DeploymentReporter, P: Publisher, L: LogTail, S: LaneStore>
    Deps<R, G, P, L, S>
{
    async fn start_deployments(&self, event: &sns::SnsEvent) -> Result<Value, HandlerError> {
        if event.records.is_empty() {
            return Err(HandlerError::UnsupportedEvent(
                "an SNS event with no records".into(),
            ));
        }
        let mut started = Vec::new();
        let mut failures = Vec::new();
        for (index, record) in event.records.iter().enumerate() {
            let label = record.label(index);
            let span = tracing::info_span!("deploy_request", record = %label, delivery_id = tracing::field::Empty);
            match self.start_one(record).instrument(span).await {
                Ok(value) => started.push(value),
                Err(error) => {
                    self.metrics.count(metric::START_FAILURES, 1);
                    tracing::error!(record = %label, error = %kiln::aws::error_chain(&error), "deploy request failed");
                    failures.push(RecordFailure { label, error });
                }
            }
        }
        if failures.is_empty() {
            Ok(json!({ "started": started }))
        } else {
            Err(HandlerError::Records {
                total: event.records.len(),
                failures,
            })
        }
    }

    async fn start_one(&self, record: &sns::SnsRecord) -> Result<Value, StartError> {
        let request =
            DeployRequest::from_json(&record.sns.message).map_err(StartError::InvalidRequest)?;
        tracing::Span::current().record("delivery_id", request.delivery_id.as_str());
        let task_request = task_request::build(&request, &self.config)?;
        if let Some(store) = &self.lanes {
            // Boxed: the lane's steps are a deep future, kept off the stack of
            // every invocation's future.
            let outcome = Box::pin(self.lane(store).request(&request)).await?;
            Box::pin(self.report_lane(store, &outcome)).await?;
            return Ok(outcome.to_json());
        }
        let started = self.runner.run_task(&task_request).await?;
        self.log_start(&request, &started);
        self.report_start(&request, &started).await;
        let notified =
            notifier::started(self, &request, &self.config.cluster, &started.task_arn).await?;
        Ok(json!({
            "delivery_id": request.delivery_id,
            "task_arn": started.task_arn,
            "already_started": started.already_started,
            "notification": notified.as_str(),
        }))
    }

    fn log_start(&self, request: &DeployRequest, started: &StartedTask) {
        if started.already_started {
            self.metrics.count(metric::DEPLOYS_ALREADY_STARTED, 1);
            tracing::info!(task_arn = %started.task_arn, "the task of this delivery was already started");
        } else {
            self.metrics.count(metric::DEPLOYS_STARTED, 1);
            tracing::info!(
                task_arn = %started.task_arn,
                repository = %request.repository,
                environment = %request.environment,
                sha = %request.sha,
                event = request.event.as_str(),
                last_status = started.last_status.as_deref().unwrap_or_default(),
                "deploy task started"
            );
        }
    }

    /// Tells GitHub the deployment is under way. A failure here is logged and
    /// counted, never returned: the task is running, and failing the
    /// invocation would only retry a start that worked.
    async fn report_start(&self, request: &DeployRequest, started: &StartedTask) {
        let task_url = crate::console::task_url(&started.task_arn, &self.config.cluster);
        let task_id = started.task_arn.rsplit('/').next().unwrap_or_default();
        let update = StatusUpdate {
            repository: request.repository.clone(),
            sha: request.sha.clone(),
            environment: request.environment.clone(),
            deployment_id: request.deployment_id,
            state: DeployState::InProgress,
            description: format!(
                "Deploying {} to {} (ECS task {})",
                short_sha(&request.sha),
                request.environment,
                task_id.get(..8).unwrap_or(task_id)
            ),
            task_url,
        };
        self.log_report(&self.reporter.report(&update).await);
    }

    fn log_report(&self, result: &Result<ReportOutcome, ReportError>) {
        match result {
            Ok(ReportOutcome::Posted) => tracing::info!("GitHub status posted"),
            Ok(ReportOutcome::AlreadyFinal) => {
                tracing::info!("GitHub already has a final status for this task; nothing posted")
            }
            Ok(ReportOutcome::Disabled) => {
                tracing::debug!("no GitHub token configured; nothing posted")
            }
            Err(err) => {
                self.metrics.count(metric::GITHUB_REPORT_FAILURES, 1);
                tracing::warn!(error = %err, "GitHub status not posted");
            }
        }
    }

    /// Reports everything a lane step did: the started task, the queued
    /// request, and each superseded request (newly, or still unreported from
    /// an earlier invocation). A superseded status that cannot be posted, or a
    /// start that failed, fails the invocation, so Lambda retries it.
    async fn report_lane(&self, store: &S, outcome: &LaneOutcome) -> Result<(), StartError> {
        let lane = outcome.lane.as_str();
        if let Some(reason) = outcome.unchanged {
            tracing::info!(lane, reason, "the lane is unchanged");
        }
        if let Some((request, started)) = &outcome.started {
            let span = tracing::info_span!("lane_start", lane, delivery_id = %request.delivery_id);
            async {
                self.log_start(request, started);
                self.report_start(request, started).await;
            }
            .instrument(span)
            .await;
            notifier::started(self, request, &self.config.cluster, &started.task_arn).await?;
        }
        if let Some(queued) = &outcome.queued {
            self.report_queued(lane, queued).await;
        }
        let mut posted = Vec::new();
        let mut failure = None;
        for (superseded, new) in outcome
            .superseded
            .iter()
            .map(|s| (s, true))
            .chain(outcome.unreported.iter().map(|s| (s, false)))
        {
            if new {
                self.metrics.count(metric::DEPLOYS_SUPERSEDED, 1);
            }
            match self.report_superseded(lane, superseded).await {
                Ok(()) => posted.push(superseded.request.delivery_id.clone()),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        self.lane(store).reported(lane, &posted).await?;
        if let Some((request, start_failure)) = &outcome.failed_start {
            tracing::error!(lane, delivery_id = %request.delivery_id, error = %start_failure, "the lane's next deployment did not start; the lane is back as it was");
            return Err(start_failure.clone().into());
        }
        failure.map_or(Ok(()), Err)
    }

    /// The request waits behind its lane's running deployment: GitHub shows it
    /// pending (queued, for a deployment).
    async fn report_queued(&self, lane: &str, queued: &Queued) {
        self.metrics.count(metric::DEPLOYS_QUEUED, 1);
        let request = &queued.request;
        tracing::info!(
            lane,
            delivery_id = %request.delivery_id,
            sha = %request.sha,
            behind_sha = %queued.behind_sha,
            behind_task = queued.behind_task.as_deref().unwrap_or_default(),
            "deploy request queued behind the lane's running deployment"
        );
        let update = lane_status(request, DeployState::Queued, queued.description());
        self.log_report(&self.reporter.report(&update).await);
    }

    /// One superseded request: it will never deploy. This is where each
    /// superseded delivery is told (GitHub: a commit status `error`, or a
    /// deployment status `inactive`).
    async fn report_superseded(
        &self,
        lane: &str,
        superseded: &Superseded,
    ) -> Result<(), StartError> {
        let request = &superseded.request;
        tracing::info!(
            lane,
            delivery_id = %request.delivery_id,
            sha = %request.sha,
            by_delivery = %superseded.by_delivery,
            by_sha = %superseded.by_sha,
            "deploy request superseded by a newer one on its lane"
        );
        let update = lane_status(request, DeployState::Superseded, superseded.description());
        let result = self.reporter.report(&update).await;
        self.log_report(&result);
        result.map_err(|error| StartError::SupersededReport {
            delivery_id: request.delivery_id.clone(),
            error,
        })?;
        // Then the alert topic (NOTIFY_DEPLOYS=all). A superseded request never
        // had a task: a publish that fails leaves the request unreported, and
        // the retry posts both again (GitHub's status is the same one again).
        let identity = TaskIdentity::of_request(request);
        notifier::superseded(
            self,
            &identity,
            &self.config.cluster,
            None,
            &superseded.by_sha,
        )
        .await?;
        Ok(())
    }

    async fn finish_deployment(
        &self,
        task: &ecs::TaskStateChange,
        task_arn: &str,
    ) -> Result<Value, HandlerError> {
        let container = self.config.container_name.as_str();
        let (state, detail) = match completion(task, container) {
            Completion::Ignore(reason) => {
                tracing::info!(reason, "task state change ignored");
                return Ok(json!({ "ignored": reason }));
            }
            Completion::Finished { state, detail } => (state, detail),
        };
        let cluster = task
            .cluster_arn
            .clone()
            .unwrap_or_else(|| self.config.cluster.clone());
        let identity =
            match TaskIdentity::from_environment(|name| task.override_env(container, name)) {
                Some(identity) => Some(identity),
                None => {
                    // The event normally carries the overrides; when it doesn't,
                    // ask ECS for the task's overrides and tags.
                    let details = self
                        .runner
                        .describe_task(&cluster, task_arn, container)
                        .await?;
                    details.and_then(|d| {
                        TaskIdentity::from_environment(|name| {
                            d.environment
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.as_str())
                        })
                        .or_else(|| TaskIdentity::from_tags(&d.tags))
                    })
                }
            };
        let Some(identity) = identity else {
            self.metrics.count(metric::UNRECOGNISED_TASKS, 1);
            tracing::warn!(
                "stopped task carries no kiln deployment (no overrides or tags); nothing to report"
            );
            return Ok(json!({ "ignored": "the task carries no kiln deployment" }));
        };
        tracing::info!(
            repository = %identity.repository,
            environment = %identity.environment,
            sha = %identity.sha,
            delivery_id = identity.delivery_id.as_deref().unwrap_or_default(),
            success = state == DeployState::Success,
            detail = %detail,
            "deployment finished"
        );
        // The lane first: its next deployment must not wait on GitHub.
        let lane = match &self.lanes {
            Some(store) => Some(Box::pin(self.free_lane(store, &identity, task_arn)).await),
            None => None,
        };
        let update = StatusUpdate {
            description: identity.describe(state, &detail),
            repository: identity.repository.clone(),
            sha: identity.sha.clone(),
            environment: identity.environment.clone(),
            deployment_id: identity.deployment_id,
            state,
            task_url: crate::console::task_url(task_arn, &cluster),
        };
        // Unlike at the start, reporting is all there is left to do: a failure
        // fails the invocation so Lambda retries it. A retry cannot post twice,
        // because a final status for this task is left alone.
        let result = self.reporter.report(&update).await;
        self.log_report(&result);
        let outcome = result.map_err(HandlerError::Report)?;
        // A duplicate event finds the status already final: count each
        // deployment once.
        if outcome != ReportOutcome::AlreadyFinal {
            self.metrics.count(
                match state {
                    DeployState::Success => metric::DEPLOYS_SUCCEEDED,
                    _ => metric::DEPLOYS_FAILED,
                },
                1,
            );
        }
        // Then the alert topic. GitHub's status stays as it is whatever
        // happens here; a failed publish fails the invocation, and the retry
        // finds the status already final and publishes again.
        let notified = notifier::stopped(
            self,
            StoppedTask {
                task,
                task_arn,
                cluster: &cluster,
                identity: &identity,
                outcome: match state {
                    DeployState::Success => DeployOutcome::Succeeded,
                    _ => DeployOutcome::Failed,
                },
                detail: &detail,
            },
        )
        .await?;
        let lane = lane.transpose().map_err(HandlerError::Lane)?;
        Ok(json!({
            "lane": lane,
            "reported": match outcome {
                ReportOutcome::Posted => "posted",
                ReportOutcome::AlreadyFinal => "already_final",
                ReportOutcome::Disabled => "disabled",
            },
            "success": state == DeployState::Success,
            "description": update.description,
            "notification": notified.as_str(),
        }))
    }

    /// Frees the stopped task's lane and starts the lane's next deployment.
    async fn free_lane(
        &self,
        store: &S,
        identity: &TaskIdentity,
        task_arn: &str,
    ) -> Result<Value, StartError> {
        let outcome = self
            .lane(store)
            .stop(
                &identity.repository,
                &identity.environment,
                task_arn,
                identity.delivery_id.as_deref(),
            )
            .await?;
        self.report_lane(store, &outcome).await?;
        Ok(outcome.to_json())
    }
}
fn lane_status(request: &DeployRequest, state: DeployState, description: String) -> StatusUpdate {
    StatusUpdate {
        repository: request.repository.clone(),
        sha: request.sha.clone(),
        environment: request.environment.clone(),
        deployment_id: request.deployment_id,
        state,
        description,
        task_url: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::task_log::fake::FakeLogTail;
    use kiln::sns::fake::RecordingPublisher;

    pub(crate) type TestDeps = Deps<FakeRunner, FakeReporter, RecordingPublisher, FakeLogTail>;
    use crate::github::fake::FakeReporter;
    use crate::runner::TaskDetails;
    use crate::runner::fake::FakeRunner;
    use crate::task_request::tests::{config, request};

    pub(crate) fn deps() -> TestDeps {
        Deps {
            config: config(),
            runner: FakeRunner::new(),
            reporter: FakeReporter::default(),
            metrics: Metrics::in_memory("deploy-exec"),
            publisher: RecordingPublisher::new(),
            logs: FakeLogTail::new(),
            lanes: None,
        }
    }

    fn sns(messages: &[&str]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                json!({
                    "EventSource": "aws:sns",
                    "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:kiln-deploy:sub",
                    "Sns": { "Type": "Notification", "MessageId": format!("msg-{i}"), "Message": m, "Subject": null }
                })
            })
            .collect();
        json!({ "Records": records })
    }

    pub(crate) fn fixture(path: &str) -> Value {
        let full = format!("{}/../../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn every_record_starts_a_task_and_reports_in_progress() {
        let deps = deps();
        let mut second = request();
        second.delivery_id = "d-2".into();
        second.deployment_id = None;
        second.event = kiln::DeployEvent::Push;
        let event = sns(&[&request().to_json(), &second.to_json()]);
        let out = handle(&deps, event).await.unwrap();
        assert_eq!(out["started"].as_array().unwrap().len(), 2);
        let requests = deps.runner.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].started_by, "kiln/d-2");
        let updates = deps.reporter.updates();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].state, DeployState::InProgress);
        assert_eq!(updates[0].deployment_id, Some(145988746));
        assert_eq!(updates[1].deployment_id, None);
        assert_eq!(
            updates[0].description,
            "Deploying 6113728 to production (ECS task task1)"
        );
        assert_eq!(deps.metrics.total(metric::DEPLOYS_STARTED), 2.0);
    }

    #[tokio::test]
    async fn a_bad_record_fails_the_invocation_by_name_but_the_others_start() {
        let deps = deps();
        let event = sns(&[&request().to_json(), "Hello\r\nworld!"]);
        let err = handle(&deps, event).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidDeployRequest");
        let message = err.to_string();
        assert!(
            message.starts_with(
                "1 of 2 records failed: record 2 (SNS message msg-1): not a valid deploy request"
            ),
            "{message}"
        );
        assert_eq!(deps.runner.requests().len(), 1);
        assert_eq!(deps.metrics.total(metric::START_FAILURES), 1.0);
    }

    #[tokio::test]
    async fn run_task_failures_fail_the_invocation() {
        let deps = deps();
        deps.runner.answer(Err(RunTaskError::Failures {
            reasons: vec!["RESOURCE:MEMORY".into()],
        }));
        let err = handle(&deps, sns(&[&request().to_json()]))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "RunTaskFailed");
        assert!(
            err.to_string()
                .contains("RunTask started no task: RESOURCE:MEMORY"),
            "{err}"
        );
        assert!(deps.reporter.updates().is_empty());
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "RunTaskFailed");
    }

    #[tokio::test]
    async fn github_failure_does_not_fail_a_start_that_worked() {
        let deps = deps();
        deps.reporter.answer(Err(ReportError {
            method: "POST",
            path: "/x".into(),
            message: "answered 502".into(),
        }));
        let out = handle(&deps, sns(&[&request().to_json()])).await.unwrap();
        assert_eq!(out["started"][0]["already_started"], false);
        assert_eq!(deps.metrics.total(metric::GITHUB_REPORT_FAILURES), 1.0);
    }

    #[tokio::test]
    async fn unsupported_events_fail_clearly() {
        let deps = deps();
        let err = handle(&deps, json!({"hello": 1})).await.unwrap_err();
        assert_eq!(err.error_type(), "UnsupportedEvent");
        let alarm = fixture("aws/cloudwatch-docs/alarm-state-change-single-metric.json");
        let err = handle(&deps, alarm).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("\"CloudWatch Alarm State Change\""),
            "{err}"
        );
        let err = handle(&deps, json!({"Records": []})).await.unwrap_err();
        assert_eq!(err.to_string(), "an SNS event with no records");
    }

    #[tokio::test]
    async fn stopped_deploy_task_reports_success_from_its_overrides() {
        let deps = deps();
        let out = handle(&deps, fixture("synthetic/deploy-task-stopped-exit0.json"))
            .await
            .unwrap();
        assert_eq!(out["reported"], "posted");
        let updates = deps.reporter.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, DeployState::Success);
        assert_eq!(updates[0].deployment_id, Some(145988746));
        assert_eq!(updates[0].repository, "Codertocat/Hello-World");
        assert_eq!(updates[0].description, "Deployed f95f852 to production");
        assert_eq!(deps.runner.describes(), 0);
        assert_eq!(deps.metrics.total(metric::DEPLOYS_SUCCEEDED), 1.0);
    }

    #[tokio::test]
    async fn running_fixture_is_ignored() {
        let deps = deps();
        let out = handle(
            &deps,
            fixture("aws/lambda-dotnet/ecs-task-state-change-event.json"),
        )
        .await
        .unwrap();
        assert_eq!(out["ignored"], "the task has not stopped yet");
        assert!(deps.reporter.updates().is_empty());
    }

    #[tokio::test]
    async fn identity_falls_back_to_describe_tasks_tags() {
        let deps = deps();
        let mut event = fixture("synthetic/deploy-task-stopped-exit1.json");
        event["detail"]["overrides"] = Value::Null;
        deps.runner.set_details(Ok(Some(TaskDetails {
            last_status: Some("STOPPED".into()),
            environment: vec![],
            tags: vec![
                ("kiln:repository".into(), "o/r".into()),
                (
                    "kiln:sha".into(),
                    "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
                ),
                ("kiln:environment".into(), "staging".into()),
            ],
        })));
        handle(&deps, event.clone()).await.unwrap();
        let updates = deps.reporter.updates();
        assert_eq!(updates[0].repository, "o/r");
        assert_eq!(updates[0].state, DeployState::Failure);
        assert_eq!(
            updates[0].description,
            "Deploy of f95f852 to staging failed: exit code 1 (EssentialContainerExited: Essential container in task exited)"
        );
        // A task ECS no longer knows, with nothing on the event: nothing to report.
        deps.runner.set_details(Ok(None));
        let out = handle(&deps, event.clone()).await.unwrap();
        assert_eq!(out["ignored"], "the task carries no kiln deployment");
        assert_eq!(deps.metrics.total(metric::UNRECOGNISED_TASKS), 1.0);
        // DescribeTasks failing is retryable: the invocation fails.
        deps.runner.set_details(Err(DescribeError {
            task_arn: "t".into(),
            message: "ThrottlingException".into(),
        }));
        let err = handle(&deps, event).await.unwrap_err();
        assert_eq!(err.error_type(), "TaskLookupFailed");
    }

    #[tokio::test]
    async fn failing_to_report_the_end_fails_the_invocation() {
        let deps = deps();
        deps.reporter.answer(Err(ReportError {
            method: "POST",
            path: "/repos/o/r/statuses/x".into(),
            message: "answered 503".into(),
        }));
        let err = handle(&deps, fixture("synthetic/deploy-task-failed-to-start.json"))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "GitHubReportFailed");
        assert_eq!(deps.metrics.total(metric::GITHUB_REPORT_FAILURES), 1.0);
        let update = &deps.reporter.updates()[0];
        assert_eq!(update.state, DeployState::Failure);
        assert!(
            update
                .description
                .starts_with("Deploy of f95f852 to production failed: the task failed to start (TaskFailedToStart: CannotPullContainerError"),
            "{}",
            update.description
        );
    }

    // --- deploy lanes ---------------------------------------------------------

    use crate::lane_store::fake::InMemoryLaneStore;
    use crate::lanes::lane_key;

    const LANE: &str = "Codertocat/Hello-World#production";

    type LaneDeps =
        Deps<FakeRunner, FakeReporter, RecordingPublisher, FakeLogTail, InMemoryLaneStore>;

    fn lane_deps() -> LaneDeps {
        let deps = Deps {
            config: config(),
            runner: FakeRunner::new(),
            reporter: FakeReporter::default(),
            metrics: Metrics::in_memory("deploy-exec"),
            publisher: RecordingPublisher::new(),
            logs: FakeLogTail::new(),
            lanes: Some(InMemoryLaneStore::new()),
        };
        deps.runner.set_details(Ok(Some(TaskDetails {
            last_status: Some("RUNNING".into()),
            ..TaskDetails::default()
        })));
        deps
    }

    /// A push to the lane, `second` seconds after the first one.
    /// One deploy request in its own SNS event, handled successfully.
    async fn deliver(deps: &LaneDeps, request: &DeployRequest) -> Value {
        match handle(deps, sns(&[&request.to_json()])).await {
            Ok(out) => out,
            Err(err) => panic!("{} failed: {err}", request.delivery_id),
        }
    }

    fn push(delivery: &str, second: i64, digit: char) -> DeployRequest {
        let mut r = request();
        r.delivery_id = delivery.into();
        r.event = kiln::DeployEvent::Push;
        r.deployment_id = None;
        r.sha = digit.to_string().repeat(40);
        r.event_at = Some(r.requested_at + time::Duration::seconds(second));
        r
    }

    fn store(deps: &LaneDeps) -> &InMemoryLaneStore {
        deps.lanes.as_ref().unwrap()
    }

    /// A stop event for the Nth task the fake runner started.
    fn stopped(task: usize, delivery: &str) -> Value {
        let mut event = fixture("synthetic/deploy-task-stopped-exit0.json");
        let arn = format!("arn:aws:ecs:us-east-1:123456789012:task/kiln/task{task}");
        event["detail"]["taskArn"] = arn.clone().into();
        event["resources"] = json!([arn]);
        for var in event["detail"]["overrides"]["containerOverrides"][0]["environment"]
            .as_array_mut()
            .unwrap()
        {
            if var["name"] == "DELIVERY_ID" {
                var["value"] = delivery.into();
            }
        }
        event
    }

    #[tokio::test]
    async fn lanes_run_one_deployment_at_a_time_and_the_newest_waits() {
        let deps = lane_deps();
        assert_eq!(lane_key("Codertocat/Hello-World", "production"), LANE);
        // The first push starts; the second waits, pending on GitHub.
        deliver(&deps, &push("d1", 0, '1')).await;
        let out = deliver(&deps, &push("d2", 1, '2')).await;
        assert_eq!(out["started"][0]["queued"], "d2");
        assert_eq!(deps.runner.requests().len(), 1);
        let updates = deps.reporter.updates();
        assert_eq!(updates[1].state, DeployState::Queued);
        assert_eq!(updates[1].sha, "2".repeat(40));
        assert_eq!(
            updates[1].description,
            "Queued behind 1111111, which is deploying to production"
        );
        // A third: the second is superseded, the third waits.
        let out = deliver(&deps, &push("d3", 2, '3')).await;
        assert_eq!(out["started"][0]["superseded"], json!(["d2"]));
        let updates = deps.reporter.updates();
        let superseded = updates
            .iter()
            .find(|u| u.state == DeployState::Superseded)
            .unwrap();
        assert_eq!(superseded.sha, "2".repeat(40));
        assert!(superseded.description.starts_with("Superseded by 3333333"));
        assert!(store(&deps).lane(LANE).unreported.is_empty());
        // The first task stops: the lane starts the third.
        let out = handle(&deps, stopped(1, "d1")).await.unwrap();
        assert_eq!(out["lane"]["started"]["delivery_id"], "d3");
        let requests = deps.runner.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].started_by, "kiln/d3");
        let lane = store(&deps).lane(LANE);
        let running = lane.running.unwrap();
        assert_eq!(running.request.delivery_id, "d3");
        assert_eq!(
            running.task_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:task/kiln/task2")
        );
        assert_eq!(lane.next, None);
        assert_eq!(deps.metrics.total(metric::DEPLOYS_QUEUED), 2.0);
        assert_eq!(deps.metrics.total(metric::DEPLOYS_SUPERSEDED), 1.0);
        assert_eq!(deps.metrics.total(metric::DEPLOYS_STARTED), 2.0);
        // An older request, even on a free lane, never deploys.
        handle(&deps, stopped(2, "d3")).await.unwrap();
        let out = handle(&deps, sns(&[&push("d0", -5, '0').to_json()]))
            .await
            .unwrap();
        assert_eq!(out["started"][0]["superseded"], json!(["d0"]));
        assert_eq!(deps.runner.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_deployment_is_queued_and_made_inactive() {
        let deps = lane_deps();
        deliver(&deps, &push("d1", 0, '1')).await;
        let mut deployment = push("d2", 1, '2');
        deployment.event = kiln::DeployEvent::Deployment;
        deployment.deployment_id = Some(7);
        deliver(&deps, &deployment).await;
        deliver(&deps, &push("d3", 2, '3')).await;
        let updates = deps.reporter.updates();
        let for_deployment: Vec<_> = updates
            .iter()
            .filter(|u| u.deployment_id == Some(7))
            .collect();
        assert_eq!(for_deployment[0].body()["state"], "queued");
        assert_eq!(for_deployment[1].body()["state"], "inactive");
    }

    #[tokio::test]
    async fn redeliveries_post_nothing_twice() {
        let deps = lane_deps();
        deliver(&deps, &push("d1", 0, '1')).await;
        deliver(&deps, &push("d2", 1, '2')).await;
        let posted = deps.reporter.updates().len();
        for delivery in [push("d1", 0, '1'), push("d2", 1, '2')] {
            let out = deliver(&deps, &delivery).await;
            assert!(out["started"][0]["unchanged"].is_string(), "{out}");
        }
        assert_eq!(deps.reporter.updates().len(), posted);
        assert_eq!(deps.runner.requests().len(), 1);
    }

    #[tokio::test]
    async fn lost_writes_are_retried_inside_the_invocation() {
        let deps = lane_deps();
        store(&deps).lose_next_writes(5);
        deliver(&deps, &push("d1", 0, '1')).await;
        assert_eq!(deps.runner.requests().len(), 1);
        assert!(store(&deps).lane(LANE).running.is_some());
    }

    #[tokio::test]
    async fn a_write_whose_reply_was_lost_is_recognised_as_ours() {
        let deps = lane_deps();
        store(&deps).lose_next_replies(1);
        deliver(&deps, &push("d1", 0, '1')).await;
        deliver(&deps, &push("d2", 1, '2')).await;
        // The stop's claim of d2 is applied, its reply lost: d2 still starts.
        store(&deps).lose_next_replies(1);
        let out = handle(&deps, stopped(1, "d1")).await.unwrap();
        assert_eq!(out["lane"]["started"]["delivery_id"], "d2");
        let running = store(&deps).lane(LANE).running.unwrap();
        assert_eq!(running.request.delivery_id, "d2");
        assert!(running.task_arn.is_some());
    }

    #[tokio::test]
    async fn a_failed_run_task_leaves_the_lane_as_it_was() {
        let deps = lane_deps();
        deps.runner
            .answer(Err(RunTaskError::Api("ThrottlingException".into())));
        let err = handle(&deps, sns(&[&push("d1", 0, '1').to_json()]))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "RunTaskFailed");
        let lane = store(&deps).lane(LANE);
        assert_eq!((lane.running, lane.next, lane.latest), (None, None, None));
        // Lambda's retry starts it.
        deliver(&deps, &push("d1", 0, '1')).await;
        assert_eq!(
            store(&deps).lane(LANE).running.unwrap().request.delivery_id,
            "d1"
        );
        // On the stop path, the next one waits again, and the stop fails.
        deliver(&deps, &push("d2", 1, '2')).await;
        deps.runner
            .answer(Err(RunTaskError::Api("ServerException".into())));
        let err = handle(&deps, stopped(2, "d1")).await.unwrap_err();
        assert_eq!(err.error_type(), "RunTaskFailed");
        let lane = store(&deps).lane(LANE);
        assert_eq!(lane.running, None);
        assert_eq!(lane.next.unwrap().delivery_id, "d2");
        // The retried stop starts it.
        let out = handle(&deps, stopped(2, "d1")).await.unwrap();
        assert_eq!(out["lane"]["started"]["delivery_id"], "d2");
    }

    #[tokio::test]
    async fn a_stopped_or_unknown_task_does_not_hold_the_lane() {
        let deps = lane_deps();
        deliver(&deps, &push("d1", 0, '1')).await;
        // The stop event is lost; ECS says the task is STOPPED.
        deps.runner.set_details(Ok(Some(TaskDetails {
            last_status: Some("STOPPED".into()),
            ..TaskDetails::default()
        })));
        let out = deliver(&deps, &push("d2", 1, '2')).await;
        assert_eq!(out["started"][0]["started"]["delivery_id"], "d2");
        // ECS no longer knows the task.
        deps.runner.set_details(Ok(None));
        let out = deliver(&deps, &push("d3", 2, '3')).await;
        assert_eq!(out["started"][0]["started"]["delivery_id"], "d3");
        // ECS cannot answer: the invocation fails, the lane is unchanged.
        deps.runner.set_details(Err(DescribeError {
            task_arn: "t".into(),
            message: "ThrottlingException".into(),
        }));
        let before = store(&deps).lane(LANE);
        let err = handle(&deps, sns(&[&push("d4", 3, '4').to_json()]))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "TaskLookupFailed");
        assert_eq!(store(&deps).lane(LANE), before);
    }

    #[tokio::test]
    async fn a_superseded_status_that_fails_is_posted_by_the_next_invocation() {
        let deps = lane_deps();
        deliver(&deps, &push("d1", 0, '1')).await;
        deliver(&deps, &push("d2", 1, '2')).await;
        // d3's queued status is posted; d2's superseded status is not.
        deps.reporter.answer(Ok(ReportOutcome::Posted));
        deps.reporter.answer(Err(ReportError {
            method: "POST",
            path: "/x".into(),
            message: "answered 502".into(),
        }));
        let err = handle(&deps, sns(&[&push("d3", 2, '3').to_json()]))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "GitHubReportFailed");
        assert_eq!(store(&deps).lane(LANE).unreported.len(), 1);
        // Lambda's retry: d3 already waits, and d2's status is posted.
        deliver(&deps, &push("d3", 2, '3')).await;
        let updates = deps.reporter.updates();
        let d2: Vec<_> = updates.iter().filter(|u| u.sha == "2".repeat(40)).collect();
        assert_eq!(d2.last().unwrap().state, DeployState::Superseded);
        assert!(store(&deps).lane(LANE).unreported.is_empty());
        assert_eq!(deps.metrics.total(metric::DEPLOYS_SUPERSEDED), 1.0);
    }

    #[tokio::test]
    async fn lanes_are_independent() {
        let deps = lane_deps();
        deliver(&deps, &push("d1", 0, '1')).await;
        let mut staging = push("d2", 1, '2');
        staging.environment = "staging".into();
        let out = deliver(&deps, &staging).await;
        assert_eq!(out["started"][0]["lane"], "Codertocat/Hello-World#staging");
        assert_eq!(out["started"][0]["started"]["delivery_id"], "d2");
        assert_eq!(deps.runner.requests().len(), 2);
    }
}
