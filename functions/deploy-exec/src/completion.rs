//! How a deployment ended, from an "ECS Task State Change" event (pure).
//!
//! The deploy container's exit code decides: 0 is success, anything else
//! (or no exit code, or a task that never started) is failure, described
//! with ECS's stop code and reason. Which deployment the task was is read
//! back from what kiln put on it at start: the container override
//! environment, or failing that the task's tags. Nothing else is stored.

use kiln::events::ecs::TaskStateChange;

use crate::github::DeployState;
use crate::task_request::{
    STARTED_BY_PREFIX, TAG_DELIVERY, TAG_DEPLOYMENT, TAG_ENVIRONMENT, TAG_REPOSITORY, TAG_SENDER,
    TAG_SHA, vars,
};

/// What to do about one task state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Not the end of a kiln deployment (the reason is logged).
    Ignore(&'static str),
    /// The deployment ended; `detail` says how.
    Finished { state: DeployState, detail: String },
}

/// Decides how the task ended. `container_name` is the deploy container.
pub fn completion(task: &TaskStateChange, container_name: &str) -> Completion {
    if !task.is_stopped() {
        return Completion::Ignore("the task has not stopped yet");
    }
    if !task
        .started_by
        .as_deref()
        .is_some_and(|s| s.starts_with(STARTED_BY_PREFIX))
    {
        return Completion::Ignore("the task was not started by kiln");
    }
    let stop = stop_summary(task);
    let failure = |detail: String| Completion::Finished {
        state: DeployState::Failure,
        detail,
    };
    if task.stop_code.as_deref() == Some("TaskFailedToStart") {
        return failure(format!("the task failed to start ({stop})"));
    }
    match task.container(container_name) {
        Some(container) => match container.exit_code {
            Some(0) => Completion::Finished {
                state: DeployState::Success,
                detail: "exit code 0".into(),
            },
            Some(code) => failure(format!("exit code {code} ({stop})")),
            None => {
                let reason = container.reason.as_deref().unwrap_or("no exit code");
                failure(format!(
                    "the deploy container did not exit: {reason} ({stop})"
                ))
            }
        },
        None => failure(format!("the deploy container never ran ({stop})")),
    }
}

/// `stopCode: stoppedReason`, with whichever parts ECS gave.
fn stop_summary(task: &TaskStateChange) -> String {
    match (task.stop_code.as_deref(), task.stopped_reason.as_deref()) {
        (Some(code), Some(reason)) => format!("{code}: {reason}"),
        (Some(code), None) => code.to_string(),
        (None, Some(reason)) => reason.to_string(),
        (None, None) => "no stop reason given".to_string(),
    }
}

/// The deployment a task was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    pub repository: String,
    pub sha: String,
    pub environment: String,
    pub deployment_id: Option<u64>,
    pub delivery_id: Option<String>,
    /// Who pushed; tasks started before kiln recorded it have none.
    pub sender: Option<String>,
}

impl TaskIdentity {
    /// From the deploy container's override environment.
    pub fn from_environment<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        Self::from_lookup(
            lookup,
            [
                vars::REPOSITORY,
                vars::GIT_SHA,
                vars::STACK_ENV,
                vars::DEPLOYMENT_ID,
                vars::DELIVERY_ID,
                vars::SENDER,
            ],
        )
    }

    /// From the task's tags.
    pub fn from_tags(tags: &[(String, String)]) -> Option<Self> {
        Self::from_lookup(
            |key| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()),
            [
                TAG_REPOSITORY,
                TAG_SHA,
                TAG_ENVIRONMENT,
                TAG_DEPLOYMENT,
                TAG_DELIVERY,
                TAG_SENDER,
            ],
        )
    }

    /// `keys`: repository, sha, environment, deployment id, delivery id,
    /// sender.
    fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<&'a str>, keys: [&str; 6]) -> Option<Self> {
        let [repository, sha, environment, deployment, delivery, sender] = keys;
        let present = |key| lookup(key).filter(|v| !v.is_empty());
        let deployment_id = match present(deployment) {
            // A deployment id that doesn't parse would turn a deployment
            // status into a commit status: better to look elsewhere.
            Some(raw) => Some(raw.parse().ok()?),
            None => None,
        };
        Some(TaskIdentity {
            repository: present(repository)?.to_string(),
            sha: present(sha)?.to_string(),
            environment: present(environment)?.to_string(),
            deployment_id,
            delivery_id: present(delivery).map(str::to_string),
            sender: present(sender).map(str::to_string),
        })
    }

    /// The deployment a request asks for (before it has a task).
    pub fn of_request(request: &kiln::DeployRequest) -> Self {
        TaskIdentity {
            repository: request.repository.clone(),
            sha: request.sha.clone(),
            environment: request.environment.clone(),
            deployment_id: request.deployment_id,
            delivery_id: Some(request.delivery_id.clone()),
            sender: Some(request.sender.clone()).filter(|s| !s.is_empty()),
        }
    }

    /// The description of the end of the deployment (GitHub cuts it to 140
    /// characters; the reporter does so first).
    pub fn describe(&self, state: DeployState, detail: &str) -> String {
        let sha = short_sha(&self.sha);
        match state {
            DeployState::Success => format!("Deployed {sha} to {}", self.environment),
            DeployState::Failure => {
                format!("Deploy of {sha} to {} failed: {detail}", self.environment)
            }
            DeployState::InProgress => format!("Deploying {sha} to {}", self.environment),
            DeployState::Queued => format!("Queued to deploy {sha} to {}", self.environment),
            DeployState::Superseded => {
                format!("Superseded: {sha} will not deploy to {}", self.environment)
            }
        }
    }
}

/// The first 7 characters of a commit id, as GitHub shows it.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln::events::ecs::Container;

    fn stopped(exit_code: Option<i64>) -> TaskStateChange {
        TaskStateChange {
            last_status: Some("STOPPED".into()),
            started_by: Some("kiln/d-1".into()),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            containers: vec![Container {
                name: Some("stack-updater".into()),
                exit_code,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn exit_zero_is_success() {
        assert_eq!(
            completion(&stopped(Some(0)), "stack-updater"),
            Completion::Finished {
                state: DeployState::Success,
                detail: "exit code 0".into()
            }
        );
    }

    #[test]
    fn other_exits_fail_with_the_reason() {
        assert_eq!(
            completion(&stopped(Some(1)), "stack-updater"),
            Completion::Finished {
                state: DeployState::Failure,
                detail:
                    "exit code 1 (EssentialContainerExited: Essential container in task exited)"
                        .into()
            }
        );
        let mut no_exit = stopped(None);
        no_exit.containers[0].reason = Some("OutOfMemoryError: Container killed".into());
        let Completion::Finished { state, detail } = completion(&no_exit, "stack-updater") else {
            panic!()
        };
        assert_eq!(state, DeployState::Failure);
        assert!(detail.starts_with("the deploy container did not exit: OutOfMemoryError"));
        // A sidecar exiting 0 says nothing about the deploy container.
        let Completion::Finished { state, detail } = completion(&stopped(Some(0)), "other") else {
            panic!()
        };
        assert_eq!(state, DeployState::Failure);
        assert!(detail.starts_with("the deploy container never ran"));
    }

    #[test]
    fn a_task_that_never_started_fails() {
        let task = TaskStateChange {
            last_status: Some("STOPPED".into()),
            started_by: Some("kiln/d-1".into()),
            stop_code: Some("TaskFailedToStart".into()),
            stopped_reason: Some("CannotPullContainerError: pull access denied".into()),
            ..Default::default()
        };
        assert_eq!(
            completion(&task, "stack-updater"),
            Completion::Finished {
                state: DeployState::Failure,
                detail: "the task failed to start (TaskFailedToStart: CannotPullContainerError: pull access denied)".into()
            }
        );
    }

    #[test]
    fn running_and_foreign_tasks_are_ignored() {
        let mut running = stopped(Some(0));
        running.last_status = Some("RUNNING".into());
        assert!(matches!(
            completion(&running, "stack-updater"),
            Completion::Ignore(_)
        ));
        let mut foreign = stopped(Some(0));
        foreign.started_by = Some("ecs-svc/123".into());
        assert!(matches!(
            completion(&foreign, "stack-updater"),
            Completion::Ignore(_)
        ));
        foreign.started_by = None;
        assert!(matches!(
            completion(&foreign, "stack-updater"),
            Completion::Ignore(_)
        ));
    }

    #[test]
    fn identity_from_environment_and_tags() {
        let env = [
            ("REPOSITORY", "o/r"),
            ("GIT_SHA", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            ("STACK_ENV", "production"),
            ("DEPLOYMENT_ID", "42"),
        ];
        let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let identity = TaskIdentity::from_environment(lookup).unwrap();
        assert_eq!(identity.deployment_id, Some(42));
        assert_eq!(identity.delivery_id, None);
        assert_eq!(
            identity.describe(DeployState::Failure, "exit code 1"),
            "Deploy of 6113728 to production failed: exit code 1"
        );
        assert_eq!(
            identity.describe(DeployState::Success, "exit code 0"),
            "Deployed 6113728 to production"
        );
        let tags: Vec<(String, String)> = [
            ("kiln:repository", "o/r"),
            ("kiln:sha", "abc"),
            ("kiln:environment", "staging"),
            ("kiln:delivery", "d-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let identity = TaskIdentity::from_tags(&tags).unwrap();
        assert_eq!(identity.environment, "staging");
        assert_eq!(identity.deployment_id, None);
        assert_eq!(identity.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(TaskIdentity::from_tags(&tags[1..]), None);
        let bad = [
            ("kiln:repository", "o/r"),
            ("kiln:sha", "a"),
            ("kiln:environment", "e"),
            ("kiln:deployment", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
        assert_eq!(TaskIdentity::from_tags(&bad), None);
    }
}
