//! Deployment notifications: which outcomes `NOTIFY_DEPLOYS` publishes,
//! and the notice for each (pure). The notice is a `kiln.alert` v1 (see
//! [`kiln::messages::deployment`]); the flow that reads the log, publishes
//! and marks the task is [`crate::notifier`].

use kiln::DeployRequest;
use kiln::events::ecs::TaskStateChange;
use kiln::events::parse_aws_time;
use kiln::messages::deployment::{
    DeployOutcome, DeploymentLog, DeploymentNotice, format_duration, short_sha,
};
use kiln::sns::OutboundMessage;
use time::OffsetDateTime;

use crate::completion::TaskIdentity;
use crate::config::NotifyDeploys;

/// The stop code of a task that never started: it has no log.
pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
/// A task carries a tag with this prefix and the outcome
/// (`kiln:notified:failed`) once its notification is published.
pub const NOTIFIED_TAG_PREFIX: &str = "kiln:notified:";

/// Whether `NOTIFY_DEPLOYS` publishes this outcome.
pub fn wanted(deploys: NotifyDeploys, outcome: DeployOutcome) -> bool {
    match deploys {
        NotifyDeploys::None => false,
        NotifyDeploys::Failures => outcome == DeployOutcome::Failed,
        NotifyDeploys::All => true,
    }
}

/// The tag that marks a task's notification of `outcome` as published.
pub fn notified_tag(outcome: DeployOutcome) -> String {
    format!("{NOTIFIED_TAG_PREFIX}{}", outcome.as_str())
}

/// The SNS message: the alert's JSON, its title as the Subject, and
/// attributes for subscription filter policies.
pub fn outbound(notice: &DeploymentNotice) -> OutboundMessage {
    let alert = notice.to_alert();
    OutboundMessage {
        body: alert.to_json(),
        subject: Some(alert.subject()),
        attributes: vec![
            ("kind".into(), kiln::messages::alert::KIND.into()),
            ("source".into(), alert.source.clone()),
            ("outcome".into(), notice.outcome.as_str().into()),
            ("environment".into(), notice.environment.clone()),
        ],
        group_id: Some(format!("{}/{}", notice.repository, notice.environment)),
        deduplication_id: None,
    }
}

/// From the task's start (or, for a task that never started, its creation)
/// to its stop.
pub fn duration(task: &TaskStateChange) -> Option<String> {
    let start = task
        .started_at
        .as_deref()
        .or(task.created_at.as_deref())
        .and_then(parse_aws_time)?;
    let stop = task.stopped_at.as_deref().and_then(parse_aws_time)?;
    Some(format_duration((stop - start).whole_seconds()))
}

/// When the notice is dated: the task's stop, else now.
fn stopped_at(task: &TaskStateChange, now: OffsetDateTime) -> OffsetDateTime {
    task.stopped_at
        .as_deref()
        .and_then(parse_aws_time)
        .unwrap_or(now)
}

/// Whether a stopped task can have a log; `Err` says why not.
pub fn log_expected(task: &TaskStateChange) -> Result<(), String> {
    if task.stop_code.as_deref() == Some(TASK_FAILED_TO_START) {
        Err("The task never started, so it wrote no log.".into())
    } else {
        Ok(())
    }
}

/// The notice for a stopped deployment task.
pub struct Stopped<'a> {
    pub task: &'a TaskStateChange,
    pub task_arn: &'a str,
    pub container_name: &'a str,
    pub identity: &'a TaskIdentity,
    pub outcome: DeployOutcome,
    /// How it ended, as [`crate::completion`] says it.
    pub detail: &'a str,
    pub log: DeploymentLog,
    pub now: OffsetDateTime,
}

pub fn stopped(s: Stopped<'_>) -> DeploymentNotice {
    let identity = s.identity;
    let sha = short_sha(&identity.sha);
    let summary = match s.outcome {
        DeployOutcome::Succeeded => format!("Deployed {sha} to {}.", identity.environment),
        _ => format!(
            "The deployment of {sha} to {} failed: {}.",
            identity.environment, s.detail
        ),
    };
    DeploymentNotice {
        outcome: s.outcome,
        repository: identity.repository.clone(),
        environment: identity.environment.clone(),
        sha: identity.sha.clone(),
        sender: identity.sender.clone(),
        duration: duration(s.task),
        summary,
        exit_code: s.task.container(s.container_name).and_then(|c| c.exit_code),
        stop_code: s.task.stop_code.clone(),
        stopped_reason: s.task.stopped_reason.clone(),
        superseded_by: None,
        task_arn: Some(s.task_arn.to_string()),
        log: s.log,
        at: stopped_at(s.task, s.now),
    }
}

/// The notice for a deployment task that was just started.
pub fn started(request: &DeployRequest, task_arn: &str, now: OffsetDateTime) -> DeploymentNotice {
    let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    DeploymentNotice {
        outcome: DeployOutcome::Started,
        repository: request.repository.clone(),
        environment: request.environment.clone(),
        sha: request.sha.clone(),
        sender: Some(request.sender.clone()).filter(|s| !s.is_empty()),
        duration: None,
        summary: format!(
            "Deploying {} ({}) to {}: ECS task {} started.",
            short_sha(&request.sha),
            request.short_ref(),
            request.environment,
            task_id.get(..8).unwrap_or(task_id)
        ),
        exit_code: None,
        stop_code: None,
        stopped_reason: None,
        superseded_by: None,
        task_arn: Some(task_arn.to_string()),
        log: DeploymentLog::NotIncluded,
        at: now,
    }
}

/// The notice for a deployment that a newer one of the same environment
/// replaced before it ran to the end.
pub fn superseded(
    identity: &TaskIdentity,
    task_arn: Option<&str>,
    newer_sha: &str,
    now: OffsetDateTime,
) -> DeploymentNotice {
    DeploymentNotice {
        outcome: DeployOutcome::Superseded,
        repository: identity.repository.clone(),
        environment: identity.environment.clone(),
        sha: identity.sha.clone(),
        sender: identity.sender.clone(),
        duration: None,
        summary: format!(
            "The deployment of {} to {} was superseded by {}, a newer commit for the same environment.",
            short_sha(&identity.sha),
            identity.environment,
            short_sha(newer_sha)
        ),
        exit_code: None,
        stop_code: None,
        stopped_reason: None,
        superseded_by: Some(newer_sha.to_string()),
        task_arn: task_arn.map(str::to_string),
        log: DeploymentLog::NotIncluded,
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln::events::ecs::Container;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:10:00 UTC);
    const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/kiln/0f4b2c1d9e8a";

    fn identity() -> TaskIdentity {
        TaskIdentity {
            repository: "o/r".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            environment: "production".into(),
            deployment_id: None,
            delivery_id: Some("d-1".into()),
            sender: Some("octocat".into()),
        }
    }

    fn task() -> TaskStateChange {
        TaskStateChange {
            last_status: Some("STOPPED".into()),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            created_at: Some("2026-11-22T10:00:00.000Z".into()),
            started_at: Some("2026-11-22T10:00:30.000Z".into()),
            stopped_at: Some("2026-11-22T10:03:42.500Z".into()),
            containers: vec![Container {
                name: Some("stack-updater".into()),
                exit_code: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_policy() {
        use DeployOutcome::*;
        for outcome in DeployOutcome::ALL {
            assert!(wanted(NotifyDeploys::All, outcome));
            assert!(!wanted(NotifyDeploys::None, outcome));
            assert_eq!(wanted(NotifyDeploys::Failures, outcome), outcome == Failed);
        }
        assert_eq!(notified_tag(Superseded), "kiln:notified:superseded");
    }

    #[test]
    fn a_failure_carries_exit_stop_duration_and_pusher() {
        let task = task();
        let notice = stopped(Stopped {
            task: &task,
            task_arn: TASK,
            container_name: "stack-updater",
            identity: &identity(),
            outcome: DeployOutcome::Failed,
            detail: "exit code 1 (EssentialContainerExited: Essential container in task exited)",
            log: DeploymentLog::NotIncluded,
            now: NOW,
        });
        assert_eq!(notice.title(), "Deploy failed: o/r f95f852 to production");
        assert_eq!(
            notice.summary,
            "The deployment of f95f852 to production failed: exit code 1 (EssentialContainerExited: Essential container in task exited)."
        );
        assert_eq!(notice.exit_code, Some(1));
        assert_eq!(notice.duration.as_deref(), Some("3 min 12 s"));
        assert_eq!(notice.sender.as_deref(), Some("octocat"));
        assert_eq!(notice.at, datetime!(2026-11-22 10:03:42.5 UTC));
        let message = outbound(&notice);
        assert_eq!(
            message.subject.as_deref(),
            Some("Deploy failed: o/r f95f852 to production")
        );
        assert!(
            message
                .attributes
                .contains(&("outcome".into(), "failed".into()))
        );
        assert!(kiln::Alert::from_json(&message.body).is_ok());
    }

    #[test]
    fn a_task_that_never_started_is_timed_from_its_creation_and_has_no_log() {
        let mut task = task();
        task.started_at = None;
        task.stop_code = Some(TASK_FAILED_TO_START.into());
        task.containers.clear();
        assert_eq!(duration(&task).as_deref(), Some("3 min 42 s"));
        assert!(log_expected(&task).unwrap_err().contains("never started"));
        assert!(log_expected(&self::task()).is_ok());
        task.stopped_at = None;
        assert_eq!(duration(&task), None);
    }

    #[test]
    fn started_and_superseded_notices() {
        let request = DeployRequest {
            kind: kiln::messages::deploy_request::KIND.into(),
            version: 1,
            delivery_id: "d-1".into(),
            event: kiln::DeployEvent::Push,
            repository: "o/r".into(),
            clone_url: "https://github.com/o/r.git".into(),
            git_ref: "refs/heads/main".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            environment: "production".into(),
            sender: "octocat".into(),
            deployment_id: None,
            requested_at: NOW,
            event_at: None,
            before: None,
        };
        let notice = started(&request, TASK, NOW);
        assert_eq!(notice.title(), "Deploy started: o/r f95f852 to production");
        assert_eq!(
            notice.summary,
            "Deploying f95f852 (main) to production: ECS task 0f4b2c1d started."
        );
        let notice = superseded(
            &identity(),
            Some(TASK),
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            NOW,
        );
        assert_eq!(
            notice.title(),
            "Deploy superseded: o/r f95f852 to production"
        );
        assert!(notice.summary.contains("superseded by 6113728"));
    }
}
