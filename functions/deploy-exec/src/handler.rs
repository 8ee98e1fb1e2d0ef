//! The Lambda handler: one function, two event shapes.
//!
//! - An SNS event: each record is a deploy request; every record is
//!   processed, and any record that fails fails the invocation, naming the
//!   record, so Lambda retries it (safely: the idempotency token keeps one
//!   task per delivery) and it ends in the dead-letter queue if it keeps
//!   failing.
//! - An EventBridge "ECS Task State Change" for a stopped kiln task: the
//!   deployment's end is reported to GitHub.
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
use crate::runner::{DescribeError, RunTaskError, StartedTask, TaskRunner};
use crate::task_request::{self, TaskRequestError};

/// The metric names this function emits.
pub mod metric {
    pub const DEPLOYS_STARTED: &str = "DeploysStarted";
    pub const DEPLOYS_ALREADY_STARTED: &str = "DeploysAlreadyStarted";
    pub const START_FAILURES: &str = "DeployStartFailures";
    pub const DEPLOYS_SUCCEEDED: &str = "DeploysSucceeded";
    pub const DEPLOYS_FAILED: &str = "DeploysFailed";
    pub const GITHUB_REPORT_FAILURES: &str = "GitHubReportFailures";
    pub const UNRECOGNISED_TASKS: &str = "UnrecognisedTasks";
}

/// What the handler works with, built once per process.
pub struct Deps<R, G> {
    pub config: Config,
    pub runner: R,
    pub reporter: G,
    pub metrics: Metrics,
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
}

impl StartError {
    fn error_type(&self) -> &'static str {
        match self {
            StartError::InvalidRequest(_) => "InvalidDeployRequest",
            StartError::Request(TaskRequestError::OverridesTooLarge { .. }) => "OverridesTooLarge",
            StartError::RunTask(_) => "RunTaskFailed",
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
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        kiln::error::diagnostic(&err)
    }
}

/// Handles one invocation.
pub async fn handle<R: TaskRunner, G: DeploymentReporter>(
    deps: &Deps<R, G>,
    event: Value,
) -> Result<Value, HandlerError> {
    match Inbound::from_value(event).map_err(|e| HandlerError::UnsupportedEvent(e.to_string()))? {
        Inbound::Sns(event) => start_deployments(deps, &event).await,
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
            finish_deployment(deps, &task, &task_arn)
                .instrument(span)
                .await
        }
        Inbound::EventBridge(event) => Err(HandlerError::UnsupportedEvent(format!(
            "an EventBridge event from {:?} of type {:?}; deploy-exec takes SNS deploy requests and \"{ECS_TASK_STATE_CHANGE}\" events",
            event.source, event.detail_type
        ))),
    }
}

async fn start_deployments<R: TaskRunner, G: DeploymentReporter>(
    deps: &Deps<R, G>,
    event: &sns::SnsEvent,
) -> Result<Value, HandlerError> {
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
        match start_one(deps, record).instrument(span).await {
            Ok(value) => started.push(value),
            Err(error) => {
                deps.metrics.count(metric::START_FAILURES, 1);
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

async fn start_one<R: TaskRunner, G: DeploymentReporter>(
    deps: &Deps<R, G>,
    record: &sns::SnsRecord,
) -> Result<Value, StartError> {
    let request =
        DeployRequest::from_json(&record.sns.message).map_err(StartError::InvalidRequest)?;
    tracing::Span::current().record("delivery_id", request.delivery_id.as_str());
    let task_request = task_request::build(&request, &deps.config)?;
    let started = deps.runner.run_task(&task_request).await?;
    if started.already_started {
        deps.metrics.count(metric::DEPLOYS_ALREADY_STARTED, 1);
        tracing::info!(task_arn = %started.task_arn, "the task of this delivery was already started");
    } else {
        deps.metrics.count(metric::DEPLOYS_STARTED, 1);
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
    report_start(deps, &request, &started).await;
    Ok(json!({
        "delivery_id": request.delivery_id,
        "task_arn": started.task_arn,
        "already_started": started.already_started,
    }))
}

/// Tells GitHub the deployment is under way. A failure here is logged and
/// counted, never returned: the task is running, and failing the
/// invocation would only retry a start that worked.
async fn report_start<R: TaskRunner, G: DeploymentReporter>(
    deps: &Deps<R, G>,
    request: &DeployRequest,
    started: &StartedTask,
) {
    let task_url = crate::console::task_url(&started.task_arn, &deps.config.cluster);
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
    log_report(deps, &deps.reporter.report(&update).await);
}

fn log_report<R, G>(deps: &Deps<R, G>, result: &Result<ReportOutcome, ReportError>) {
    match result {
        Ok(ReportOutcome::Posted) => tracing::info!("GitHub status posted"),
        Ok(ReportOutcome::AlreadyFinal) => {
            tracing::info!("GitHub already has a final status for this task; nothing posted")
        }
        Ok(ReportOutcome::Disabled) => {
            tracing::debug!("no GitHub token configured; nothing posted")
        }
        Err(err) => {
            deps.metrics.count(metric::GITHUB_REPORT_FAILURES, 1);
            tracing::warn!(error = %err, "GitHub status not posted");
        }
    }
}

async fn finish_deployment<R: TaskRunner, G: DeploymentReporter>(
    deps: &Deps<R, G>,
    task: &ecs::TaskStateChange,
    task_arn: &str,
) -> Result<Value, HandlerError> {
    let container = deps.config.container_name.as_str();
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
        .unwrap_or_else(|| deps.config.cluster.clone());
    let identity = match TaskIdentity::from_environment(|name| task.override_env(container, name)) {
        Some(identity) => Some(identity),
        None => {
            // The event normally carries the overrides; when it doesn't,
            // ask ECS for the task's overrides and tags.
            let details = deps
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
        deps.metrics.count(metric::UNRECOGNISED_TASKS, 1);
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
    let update = StatusUpdate {
        description: identity.describe(state, &detail),
        repository: identity.repository,
        sha: identity.sha,
        environment: identity.environment,
        deployment_id: identity.deployment_id,
        state,
        task_url: crate::console::task_url(task_arn, &cluster),
    };
    // Unlike at the start, reporting is all there is left to do: a failure
    // fails the invocation so Lambda retries it. A retry cannot post twice,
    // because a final status for this task is left alone.
    let result = deps.reporter.report(&update).await;
    log_report(deps, &result);
    let outcome = result.map_err(HandlerError::Report)?;
    // A duplicate event finds the status already final: count each
    // deployment once.
    if outcome != ReportOutcome::AlreadyFinal {
        deps.metrics.count(
            match state {
                DeployState::Success => metric::DEPLOYS_SUCCEEDED,
                _ => metric::DEPLOYS_FAILED,
            },
            1,
        );
    }
    Ok(json!({
        "reported": match outcome {
            ReportOutcome::Posted => "posted",
            ReportOutcome::AlreadyFinal => "already_final",
            ReportOutcome::Disabled => "disabled",
        },
        "success": state == DeployState::Success,
        "description": update.description,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::fake::FakeReporter;
    use crate::runner::TaskDetails;
    use crate::runner::fake::FakeRunner;
    use crate::task_request::tests::{config, request};

    fn deps() -> Deps<FakeRunner, FakeReporter> {
        Deps {
            config: config(),
            runner: FakeRunner::new(),
            reporter: FakeReporter::default(),
            metrics: Metrics::in_memory("deploy-exec"),
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

    fn fixture(path: &str) -> Value {
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
}
