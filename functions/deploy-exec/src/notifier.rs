//! Publishing deployment notifications: once per task and outcome.
//!
//! The order, for a stopped task:
//!
//! 1. GitHub is told first (by the handler). A final status already there
//!    is left alone, so a retry never posts twice.
//! 2. The task's tags are read: a `kiln:notified:<outcome>` tag means this
//!    notification was published before (a duplicate stop event, or a
//!    retry after something later failed), and nothing is published.
//! 3. For a failure, the last lines of the deploy container's log are read
//!    (a log that can't be read only changes what the notice says).
//! 4. The notice is published. A failure fails the invocation, so Lambda
//!    retries it: GitHub's status is then already final (no second post),
//!    and the missing tag lets the retry publish.
//! 5. The task is tagged. If tagging fails, a later duplicate event could
//!    publish a second notice: a duplicate is better than a loss, so this
//!    is logged and counted, not failed.
//!
//! Between steps 2 and 5 two copies of one event processed at the very same
//! moment could both publish; ECS's duplicates are normally seconds apart.

use kiln::DeployRequest;
use kiln::events::ecs::TaskStateChange;
use kiln::messages::deployment::{DeployOutcome, DeploymentLog, DeploymentNotice, LOG_LINES_MAX};
use kiln::sns::{PublishError, Publisher};
use time::OffsetDateTime;

use crate::completion::TaskIdentity;
use crate::github::DeploymentReporter;
use crate::handler::Deps;
use crate::notification::{self, Stopped};
use crate::runner::TaskRunner;
use crate::task_log::{LogTail, arn_region, last_lines};
use crate::task_request::TAG_SENDER;

/// The metric names of notifications.
pub mod metric {
    pub const PUBLISHED: &str = "DeployNotificationsPublished";
    pub const ALREADY_PUBLISHED: &str = "DeployNotificationsAlreadyPublished";
    pub const PUBLISH_FAILURES: &str = "DeployNotificationPublishFailures";
    pub const MARK_FAILURES: &str = "DeployNotificationMarkFailures";
    pub const LOGS_UNAVAILABLE: &str = "DeployLogsUnavailable";
}

/// What became of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    Published {
        message_id: String,
    },
    /// The task carries the mark of an earlier publish.
    AlreadyPublished,
    /// `NOTIFY_DEPLOYS` leaves this outcome out, or there is no topic.
    Off,
}

impl Notified {
    pub fn as_str(&self) -> &'static str {
        match self {
            Notified::Published { .. } => "published",
            Notified::AlreadyPublished => "already_published",
            Notified::Off => "off",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("publishing the deployment notification failed: {0}")]
pub struct NotifyError(#[source] pub PublishError);

/// The end of a deployment task.
pub struct StoppedTask<'a> {
    pub task: &'a TaskStateChange,
    pub task_arn: &'a str,
    pub cluster: &'a str,
    pub identity: &'a TaskIdentity,
    pub outcome: DeployOutcome,
    pub detail: &'a str,
}

pub async fn stopped<R: TaskRunner, G: DeploymentReporter, P: Publisher, L: LogTail, S>(
    deps: &Deps<R, G, P, L, S>,
    stop: StoppedTask<'_>,
) -> Result<Notified, NotifyError> {
    let container = deps.config.container_name.as_str();
    once(
        deps,
        stop.cluster,
        stop.task_arn,
        stop.outcome,
        |tags| async move {
            let mut identity = stop.identity.clone();
            if identity.sender.is_none() {
                identity.sender = tags
                    .iter()
                    .find(|(k, _)| k == TAG_SENDER)
                    .map(|(_, v)| v.clone());
            }
            let log = match stop.outcome {
                DeployOutcome::Failed => failure_log(deps, stop.task, stop.task_arn).await,
                _ => DeploymentLog::NotIncluded,
            };
            notification::stopped(Stopped {
                task: stop.task,
                task_arn: stop.task_arn,
                container_name: container,
                identity: &identity,
                outcome: stop.outcome,
                detail: stop.detail,
                log,
                now: OffsetDateTime::now_utc(),
            })
        },
    )
    .await
}

/// `NOTIFY_DEPLOYS=all`: the deployment's task was started.
pub async fn started<R: TaskRunner, G: DeploymentReporter, P: Publisher, L: LogTail, S>(
    deps: &Deps<R, G, P, L, S>,
    request: &DeployRequest,
    cluster: &str,
    task_arn: &str,
) -> Result<Notified, NotifyError> {
    once(deps, cluster, task_arn, DeployOutcome::Started, |_| async {
        notification::started(request, task_arn, OffsetDateTime::now_utc())
    })
    .await
}

/// `NOTIFY_DEPLOYS=all`: a newer deployment of the same environment took
/// this one's place. `task_arn` is the superseded deployment's task, when
/// it had one (it carries the mark).
pub async fn superseded<R: TaskRunner, G: DeploymentReporter, P: Publisher, L: LogTail, S>(
    deps: &Deps<R, G, P, L, S>,
    identity: &TaskIdentity,
    cluster: &str,
    task_arn: Option<&str>,
    newer_sha: &str,
) -> Result<Notified, NotifyError> {
    let build = |_| async {
        notification::superseded(identity, task_arn, newer_sha, OffsetDateTime::now_utc())
    };
    match task_arn {
        Some(task_arn) => once(deps, cluster, task_arn, DeployOutcome::Superseded, build).await,
        // A deployment superseded before its task started: there is no
        // task to mark, and no other path announces it.
        None if notification::wanted(
            deps.config.notifications.deploys,
            DeployOutcome::Superseded,
        ) =>
        {
            publish(deps, build(Vec::new()).await).await
        }
        None => Ok(Notified::Off),
    }
}

/// Publishes the notice `build` makes, unless `NOTIFY_DEPLOYS` leaves it
/// out or the task already carries its mark; then marks the task. `build`
/// gets the task's tags.
async fn once<R, G, P, L, S, F, Fut>(
    deps: &Deps<R, G, P, L, S>,
    cluster: &str,
    task_arn: &str,
    outcome: DeployOutcome,
    build: F,
) -> Result<Notified, NotifyError>
where
    R: TaskRunner,
    G: DeploymentReporter,
    P: Publisher,
    L: LogTail,
    F: FnOnce(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = DeploymentNotice>,
{
    let settings = &deps.config.notifications;
    if settings.topic_arn.is_none() || !notification::wanted(settings.deploys, outcome) {
        return Ok(Notified::Off);
    }
    let mark = notification::notified_tag(outcome);
    let tags = match deps
        .runner
        .describe_task(cluster, task_arn, &deps.config.container_name)
        .await
    {
        Ok(details) => details.map(|d| d.tags).unwrap_or_default(),
        Err(err) => {
            // Publishing twice beats not publishing.
            tracing::warn!(error = %err, "could not read the task's tags; publishing without checking for an earlier notification");
            Vec::new()
        }
    };
    if tags.iter().any(|(key, _)| *key == mark) {
        deps.metrics.count(metric::ALREADY_PUBLISHED, 1);
        tracing::info!(
            outcome = outcome.as_str(),
            "deployment notification already published for this task; nothing published"
        );
        return Ok(Notified::AlreadyPublished);
    }
    let notified = publish(deps, build(tags).await).await?;
    if let Err(err) = deps.runner.tag_task(task_arn, &mark, "true").await {
        deps.metrics.count(metric::MARK_FAILURES, 1);
        tracing::warn!(error = %err, tag = %mark, "notification published, but the task could not be marked: a duplicate stop event could publish it again");
    }
    Ok(notified)
}

async fn publish<R, G, P: Publisher, L, S>(
    deps: &Deps<R, G, P, L, S>,
    notice: DeploymentNotice,
) -> Result<Notified, NotifyError> {
    let Some(topic_arn) = deps.config.notifications.topic_arn.as_deref() else {
        return Ok(Notified::Off);
    };
    match deps
        .publisher
        .publish(topic_arn, notification::outbound(&notice))
        .await
    {
        Ok(message_id) => {
            deps.metrics.count(metric::PUBLISHED, 1);
            tracing::info!(outcome = notice.outcome.as_str(), message_id = %message_id, "deployment notification published");
            Ok(Notified::Published { message_id })
        }
        Err(err) => {
            deps.metrics.count(metric::PUBLISH_FAILURES, 1);
            tracing::error!(error = %err, retryable = err.retryable, "deployment notification not published");
            Err(NotifyError(err))
        }
    }
}

/// The last lines of the failed task's deploy container, or why there are
/// none.
async fn failure_log<R: TaskRunner, G, P, L: LogTail, S>(
    deps: &Deps<R, G, P, L, S>,
    task: &TaskStateChange,
    task_arn: &str,
) -> DeploymentLog {
    let unavailable = |location, reason: String| {
        deps.metrics.count(metric::LOGS_UNAVAILABLE, 1);
        tracing::warn!(reason = %reason, "the deployment's log lines are not included");
        DeploymentLog::Unavailable { location, reason }
    };
    if let Err(reason) = notification::log_expected(task) {
        return DeploymentLog::Unavailable {
            location: None,
            reason,
        };
    }
    let container = deps.config.container_name.as_str();
    let Some(task_definition) = task.task_definition_arn.as_deref() else {
        return unavailable(
            None,
            "The stop event names no task definition, so the log's location is unknown.".into(),
        );
    };
    let config = match deps
        .runner
        .log_configuration(task_definition, container)
        .await
    {
        Ok(Some(config)) => config,
        Ok(None) => {
            return unavailable(
                None,
                format!(
                    "Container {container} of {task_definition} does not log to CloudWatch Logs (no awslogs log configuration)."
                ),
            );
        }
        Err(err) => return unavailable(None, format!("The log's location is unknown: {err}.")),
    };
    let location = match config.location(container, task_arn, arn_region(task_arn)) {
        Ok(location) => location,
        Err(reason) => return unavailable(None, format!("{reason}.")),
    };
    match deps.logs.last_events(&location, LOG_LINES_MAX).await {
        Ok(events) if events.is_empty() => {
            unavailable(Some(location), "The log stream holds no lines.".to_string())
        }
        Ok(events) => DeploymentLog::Lines {
            location,
            lines: last_lines(&events),
        },
        Err(err) => unavailable(Some(location), err.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NotifyDeploys;
    use crate::github::{ReportError, ReportOutcome};
    use crate::handler::handle;
    use crate::handler::tests::{TestDeps, deps, fixture};
    use crate::task_log::{AwsLogsConfig, LogUnavailable};
    use kiln::Alert;
    use kiln::messages::deployment::field;

    fn with_policy(deploys: NotifyDeploys) -> TestDeps {
        let mut deps = deps();
        deps.config.notifications.deploys = deploys;
        deps.runner.set_log_configuration(Ok(Some(AwsLogsConfig {
            group: "/ecs/kiln-stack-updater".into(),
            region: None,
            stream_prefix: Some("deploy".into()),
        })));
        deps
    }

    fn alerts(deps: &TestDeps) -> Vec<Alert> {
        deps.publisher
            .published()
            .iter()
            .map(|(topic, m)| {
                assert_eq!(topic, "arn:aws:sns:us-east-1:123456789012:kiln-alerts");
                Alert::from_json(&m.body).unwrap()
            })
            .collect()
    }

    fn publish_error() -> PublishError {
        PublishError {
            topic_arn: "arn:aws:sns:us-east-1:123456789012:kiln-alerts".into(),
            message: "InternalError: try again".into(),
            retryable: true,
        }
    }

    #[tokio::test]
    async fn a_failure_is_published_with_the_last_log_lines_once() {
        let deps = with_policy(NotifyDeploys::Failures);
        deps.logs
            .answer(Ok((1..=100).map(|i| format!("line {i}")).collect()));
        let event = fixture("synthetic/deploy-task-stopped-exit1.json");
        let out = handle(&deps, event.clone()).await.unwrap();
        assert_eq!(out["notification"], "published");
        let alerts = alerts(&deps);
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(alert.source, "deploy-exec");
        assert_eq!(
            alert.title,
            "Deploy failed: Codertocat/Hello-World f95f852 to production"
        );
        let lines: Vec<&str> = alert
            .field_value(field::LOG_LINES)
            .unwrap()
            .split('\n')
            .collect();
        assert_eq!(lines.len(), 30);
        assert_eq!((lines[0], lines[29]), ("line 71", "line 100"));
        assert_eq!(alert.field_value(field::DURATION), Some("3 min 54 s"));
        assert_eq!(alert.field_value(field::EXIT_CODE), Some("1"));
        assert_eq!(
            alert.field_value(field::LOG_STREAM),
            Some("deploy/stack-updater/0f9a1c2b3d4e5f60718293a4b5c6d7e8")
        );
        assert_eq!(alert.field_value(field::LOG_REGION), Some("us-west-2"));
        let task_arn =
            "arn:aws:ecs:us-west-2:111122223333:task/kiln/0f9a1c2b3d4e5f60718293a4b5c6d7e8";
        assert_eq!(
            deps.runner.tagged(),
            [(
                task_arn.into(),
                "kiln:notified:failed".into(),
                "true".into()
            )]
        );

        // The same event again: GitHub's status is final, the task marked.
        deps.reporter.answer(Ok(ReportOutcome::AlreadyFinal));
        let out = handle(&deps, event).await.unwrap();
        assert_eq!(out["notification"], "already_published");
        assert_eq!(deps.publisher.published().len(), 1);
        assert_eq!(deps.logs.reads().len(), 1, "no second log read");
        assert_eq!(deps.metrics.total(metric::ALREADY_PUBLISHED), 1.0);
    }

    #[tokio::test]
    async fn a_failed_publish_fails_the_invocation_and_the_retry_publishes() {
        let deps = with_policy(NotifyDeploys::Failures);
        deps.publisher.fail_with(publish_error());
        let event = fixture("synthetic/deploy-task-stopped-exit1.json");
        let err = handle(&deps, event.clone()).await.unwrap_err();
        assert_eq!(
            kiln::KilnError::error_type(&err),
            "NotificationPublishFailed"
        );
        assert!(
            err.to_string().contains("InternalError: try again"),
            "{err}"
        );
        assert_eq!(deps.reporter.updates().len(), 1);
        assert!(deps.runner.tagged().is_empty());

        // Lambda's retry: GitHub already final (nothing posted), published.
        deps.publisher.succeed();
        deps.reporter.answer(Ok(ReportOutcome::AlreadyFinal));
        let out = handle(&deps, event).await.unwrap();
        assert_eq!(out["reported"], "already_final");
        assert_eq!(out["notification"], "published");
        assert_eq!(alerts(&deps).len(), 1);
    }

    #[tokio::test]
    async fn a_github_failure_comes_first_and_nothing_is_published_until_it_is_told() {
        let deps = with_policy(NotifyDeploys::Failures);
        deps.reporter.answer(Err(ReportError {
            method: "POST",
            path: "/x".into(),
            message: "answered 502".into(),
        }));
        let event = fixture("synthetic/deploy-task-stopped-exit1.json");
        assert!(handle(&deps, event.clone()).await.is_err());
        assert!(deps.publisher.published().is_empty());
        handle(&deps, event).await.unwrap();
        assert_eq!(alerts(&deps).len(), 1);
    }

    #[tokio::test]
    async fn a_task_that_never_started_has_no_log_lookup() {
        let deps = with_policy(NotifyDeploys::Failures);
        handle(&deps, fixture("synthetic/deploy-task-failed-to-start.json"))
            .await
            .unwrap();
        let alert = &alerts(&deps)[0];
        assert_eq!(
            alert.field_value(field::LOG_UNAVAILABLE),
            Some("The task never started, so it wrote no log.")
        );
        assert_eq!(
            alert.field_value(field::STOP_CODE),
            Some("TaskFailedToStart")
        );
        assert!(
            alert
                .field_value(field::STOPPED_REASON)
                .unwrap()
                .starts_with("CannotPullContainerError"),
        );
        assert_eq!(deps.runner.log_lookups(), 0);
        assert!(deps.logs.reads().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_log_still_sends_the_notification_and_says_why() {
        let deps = with_policy(NotifyDeploys::Failures);
        deps.logs.answer(Err(LogUnavailable(
            "Reading the log stream failed after retries: ThrottlingException: Rate exceeded"
                .into(),
        )));
        handle(&deps, fixture("synthetic/deploy-task-stopped-exit1.json"))
            .await
            .unwrap();
        let alert = &alerts(&deps)[0];
        assert!(
            alert
                .field_value(field::LOG_UNAVAILABLE)
                .unwrap()
                .contains("ThrottlingException")
        );
        assert_eq!(alert.field_value(field::LOG_LINES), None);
        assert_eq!(
            alert.field_value(field::LOG_GROUP),
            Some("/ecs/kiln-stack-updater")
        );
        // No awslogs at all.
        let deps = with_policy(NotifyDeploys::Failures);
        deps.runner.set_log_configuration(Ok(None));
        handle(&deps, fixture("synthetic/deploy-task-stopped-exit1.json"))
            .await
            .unwrap();
        assert!(
            alerts(&deps)[0]
                .field_value(field::LOG_UNAVAILABLE)
                .unwrap()
                .contains("no awslogs log configuration")
        );
        assert!(deps.logs.reads().is_empty());
    }

    #[tokio::test]
    async fn notify_deploys_decides_what_is_published() {
        let success = fixture("synthetic/deploy-task-stopped-exit0.json");
        let failure = fixture("synthetic/deploy-task-stopped-exit1.json");
        let start = || json_sns(&crate::task_request::tests::request().to_json());
        for (deploys, expected) in [
            (NotifyDeploys::Failures, vec!["failed"]),
            (NotifyDeploys::All, vec!["started", "succeeded", "failed"]),
            (NotifyDeploys::None, vec![]),
        ] {
            let deps = with_policy(deploys);
            handle(&deps, start()).await.unwrap();
            handle(&deps, success.clone()).await.unwrap();
            handle(&deps, failure.clone()).await.unwrap();
            let outcomes: Vec<String> = alerts(&deps)
                .iter()
                .map(|a| a.field_value(field::OUTCOME).unwrap().to_string())
                .collect();
            assert_eq!(outcomes, expected, "{deploys:?}");
        }
        // No topic: nothing, whatever the policy.
        let mut deps = with_policy(NotifyDeploys::All);
        deps.config.notifications.topic_arn = None;
        handle(&deps, failure).await.unwrap();
        assert!(deps.publisher.published().is_empty());
        assert!(deps.runner.tagged().is_empty());
    }

    #[tokio::test]
    async fn a_started_notification_that_fails_fails_the_record_and_the_retry_publishes_once() {
        let deps = with_policy(NotifyDeploys::All);
        deps.publisher.fail_with(publish_error());
        let event = json_sns(&crate::task_request::tests::request().to_json());
        let err = handle(&deps, event.clone()).await.unwrap_err();
        assert_eq!(
            kiln::KilnError::error_type(&err),
            "NotificationPublishFailed"
        );
        deps.publisher.succeed();
        // ECS answers the retry with the task it already started.
        deps.runner.answer(Ok(crate::runner::StartedTask {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/kiln/task1".into(),
            last_status: None,
            already_started: true,
        }));
        handle(&deps, event.clone()).await.unwrap();
        deps.runner.answer(Ok(crate::runner::StartedTask {
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/kiln/task1".into(),
            last_status: None,
            already_started: true,
        }));
        let out = handle(&deps, event).await.unwrap();
        assert_eq!(out["started"][0]["notification"], "already_published");
        assert_eq!(alerts(&deps).len(), 1);
    }

    #[tokio::test]
    async fn superseded_is_published_under_all_once_per_task() {
        let identity = TaskIdentity {
            repository: "o/r".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            environment: "production".into(),
            deployment_id: None,
            delivery_id: None,
            sender: Some("octocat".into()),
        };
        let newer = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        let task = Some("arn:aws:ecs:us-east-1:123456789012:task/kiln/t1");
        let deps = with_policy(NotifyDeploys::Failures);
        let out = superseded(&deps, &identity, "kiln", task, newer)
            .await
            .unwrap();
        assert_eq!(out, Notified::Off);
        let deps = with_policy(NotifyDeploys::All);
        superseded(&deps, &identity, "kiln", task, newer)
            .await
            .unwrap();
        let again = superseded(&deps, &identity, "kiln", task, newer)
            .await
            .unwrap();
        assert_eq!(again, Notified::AlreadyPublished);
        let alerts = alerts(&deps);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].field_value(field::SUPERSEDED_BY), Some(newer));
    }

    fn json_sns(message: &str) -> serde_json::Value {
        serde_json::json!({"Records": [{
            "EventSource": "aws:sns",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:kiln-deploy:sub",
            "Sns": { "Type": "Notification", "MessageId": "m-0", "Message": message, "Subject": null }
        }]})
    }
}
