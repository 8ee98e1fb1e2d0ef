//! Counting recent crashes from ECS itself, so watchdog stays stateless.
//!
//! ECS keeps stopped tasks listable for about an hour: ListTasks with
//! `desiredStatus=STOPPED` plus DescribeTasks gives every task of the group
//! that stopped recently, and the crash rule of [`crate::trigger`] picks the
//! crashes among them. The task that triggered the invocation always counts,
//! even if ECS does not list it yet.

use kiln::aws::LazyClient;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::DesiredStatus;
use time::OffsetDateTime;

use crate::trigger::{ContainerExit, StoppedTask, Verdict, crash_verdict};

/// A failed ECS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ECS {operation} failed: {message}")]
pub struct EcsError {
    pub operation: &'static str,
    pub message: String,
}

/// The port: what watchdog asks ECS.
pub trait TaskHistory: Send + Sync {
    /// The tasks of `group` that ECS lists as stopped, in `cluster` (the
    /// default cluster when `None`).
    fn stopped_tasks(
        &self,
        cluster: Option<&str>,
        group: &str,
    ) -> impl Future<Output = Result<Vec<StoppedTask>, EcsError>> + Send;

    /// The names of a task definition's essential containers.
    fn essential_containers(
        &self,
        task_definition_arn: &str,
    ) -> impl Future<Output = Result<BTreeSet<String>, EcsError>> + Send;
}

/// Decides a task that may or may not have crashed, looking up its task
/// definition only when the event cannot tell. `cache` keeps the answers
/// per task definition for the rest of the invocation.
pub async fn resolve<H: TaskHistory>(
    history: &H,
    task: &StoppedTask,
    cache: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<Verdict, EcsError> {
    let verdict = crash_verdict(task, None);
    if verdict != Verdict::NeedsEssentialContainers {
        return Ok(verdict);
    }
    let Some(arn) = task.task_definition_arn.as_deref() else {
        // Can't tell which containers matter: a failed one is a crash.
        return Ok(Verdict::Crash(
            task.containers
                .iter()
                .find(|c| c.exit_code.is_some_and(|e| e != 0))
                .cloned(),
        ));
    };
    if !cache.contains_key(arn) {
        let names = history.essential_containers(arn).await?;
        cache.insert(arn.to_string(), names);
    }
    Ok(crash_verdict(task, cache.get(arn)))
}

/// Crashes of one group within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashCount {
    /// Including the task that triggered the invocation.
    pub crashes: u32,
    /// The task ARNs counted, the triggering one first.
    pub task_arns: Vec<String>,
}

/// Counts the crashed tasks of `current`'s group that stopped within
/// `window` before `now`, `current` included.
pub async fn recent_crashes<H: TaskHistory>(
    history: &H,
    current: &StoppedTask,
    default_cluster: Option<&str>,
    window: Duration,
    now: OffsetDateTime,
) -> Result<CrashCount, EcsError> {
    let current_arn = current.task_arn.clone().unwrap_or_default();
    let mut count = CrashCount {
        crashes: 1,
        task_arns: vec![current_arn.clone()],
    };
    let Some(group) = current.group.as_deref() else {
        return Ok(count);
    };
    let cluster = current.cluster_arn.as_deref().or(default_cluster);
    let since = now - window;
    let mut cache = BTreeMap::new();
    for task in history.stopped_tasks(cluster, group).await? {
        let Some(arn) = task.task_arn.clone() else {
            continue;
        };
        let in_window = task
            .stopped_at
            .is_some_and(|at| at >= since && at <= now + Duration::from_secs(60));
        if arn == current_arn || task.group.as_deref() != Some(group) || !in_window {
            continue;
        }
        if let Verdict::Crash(_) = resolve(history, &task, &mut cache).await? {
            count.crashes += 1;
            count.task_arns.push(arn);
        }
    }
    Ok(count)
}

/// The ECS adapter.
#[derive(Clone, Debug)]
pub struct EcsTaskHistory {
    client: LazyClient<aws_sdk_ecs::Client>,
    /// ListTasks pages to read at most (100 tasks each).
    max_pages: usize,
}

impl EcsTaskHistory {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_ecs::Client>>) -> Self {
        EcsTaskHistory {
            client: client.into(),
            max_pages: 10,
        }
    }
}

impl TaskHistory for EcsTaskHistory {
    async fn stopped_tasks(
        &self,
        cluster: Option<&str>,
        group: &str,
    ) -> Result<Vec<StoppedTask>, EcsError> {
        // ListTasks can't filter by group, but by the service or family the
        // group names; the group itself is checked on the described tasks.
        let mut list = self
            .client
            .get()
            .await
            .list_tasks()
            .set_cluster(cluster.map(str::to_string))
            .desired_status(DesiredStatus::Stopped)
            .max_results(100);
        if let Some(service) = group.strip_prefix("service:") {
            list = list.service_name(service);
        } else if let Some(family) = group.strip_prefix("family:") {
            list = list.family(family);
        }
        let mut arns = Vec::new();
        let mut pages = list.into_paginator().send();
        for _ in 0..self.max_pages {
            match pages.next().await {
                Some(page) => {
                    let page = page.map_err(|e| ecs_error("ListTasks", e))?;
                    arns.extend(page.task_arns().iter().cloned());
                }
                None => break,
            }
        }
        let mut tasks = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(100) {
            let output = self
                .client
                .get()
                .await
                .describe_tasks()
                .set_cluster(cluster.map(str::to_string))
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ecs_error("DescribeTasks", e))?;
            tasks.extend(output.tasks().iter().map(stopped_task));
        }
        Ok(tasks)
    }

    async fn essential_containers(
        &self,
        task_definition_arn: &str,
    ) -> Result<BTreeSet<String>, EcsError> {
        let output = self
            .client
            .get()
            .await
            .describe_task_definition()
            .task_definition(task_definition_arn)
            .send()
            .await
            .map_err(|e| ecs_error("DescribeTaskDefinition", e))?;
        Ok(output
            .task_definition()
            .map(|d| d.container_definitions())
            .unwrap_or_default()
            .iter()
            // A container is essential unless it says otherwise.
            .filter(|c| c.essential() != Some(false))
            .filter_map(|c| c.name().map(str::to_string))
            .collect())
    }
}

fn stopped_task(task: &aws_sdk_ecs::types::Task) -> StoppedTask {
    StoppedTask {
        task_arn: task.task_arn().map(str::to_string),
        cluster_arn: task.cluster_arn().map(str::to_string),
        group: task.group().map(str::to_string),
        task_definition_arn: task.task_definition_arn().map(str::to_string),
        last_status: task.last_status().map(str::to_string),
        stop_code: task.stop_code().map(|c| c.as_str().to_string()),
        stopped_reason: task.stopped_reason().map(str::to_string),
        stopped_at: task
            .stopped_at()
            .and_then(|at| OffsetDateTime::from_unix_timestamp_nanos(at.as_nanos()).ok()),
        containers: task
            .containers()
            .iter()
            .map(|c| ContainerExit {
                name: c.name().map(str::to_string),
                exit_code: c.exit_code().map(i64::from),
                reason: c.reason().map(str::to_string),
            })
            .collect(),
    }
}

fn ecs_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> EcsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.to_string(),
        _ => kiln::aws::error_chain(&err),
    };
    EcsError { operation, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{ESSENTIAL_CONTAINER_EXITED, TASK_FAILED_TO_START};
    use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{Container, ContainerDefinition, Task, TaskDefinition, TaskStopCode};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use time::macros::datetime;

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:111122223333:cluster/kiln";
    const TASK_DEF: &str = "arn:aws:ecs:us-east-1:111122223333:task-definition/app:7";
    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

    fn sdk_task(
        id: &str,
        group: &str,
        stop_code: TaskStopCode,
        minutes_ago: i64,
        exits: &[(&str, i32)],
    ) -> Task {
        let mut task = Task::builder()
            .task_arn(format!("arn:aws:ecs:us-east-1:111122223333:task/kiln/{id}"))
            .cluster_arn(CLUSTER)
            .group(group)
            .task_definition_arn(TASK_DEF)
            .last_status("STOPPED")
            .desired_status("STOPPED")
            .stop_code(stop_code)
            .stopped_at(DateTime::from_secs(
                (NOW.unix_timestamp()) - minutes_ago * 60,
            ));
        for (name, code) in exits {
            task = task.containers(Container::builder().name(*name).exit_code(*code).build());
        }
        task.build()
    }

    fn current() -> StoppedTask {
        StoppedTask {
            task_arn: Some("arn:aws:ecs:us-east-1:111122223333:task/kiln/now".into()),
            cluster_arn: Some(CLUSTER.into()),
            group: Some("service:app".into()),
            task_definition_arn: Some(TASK_DEF.into()),
            last_status: Some("STOPPED".into()),
            stop_code: Some(ESSENTIAL_CONTAINER_EXITED.into()),
            containers: vec![ContainerExit {
                name: Some("app".into()),
                exit_code: Some(1),
                reason: None,
            }],
            ..StoppedTask::default()
        }
    }

    #[tokio::test]
    async fn counts_only_crashes_of_the_group_within_the_window() {
        let list = mock!(aws_sdk_ecs::Client::list_tasks)
            .match_requests(|r| {
                r.cluster() == Some(CLUSTER)
                    && r.desired_status() == Some(&DesiredStatus::Stopped)
                    && r.service_name() == Some("app")
            })
            .then_output(|| {
                ListTasksOutput::builder()
                    .task_arns("arn:aws:ecs:us-east-1:111122223333:task/kiln/a")
                    .task_arns("arn:aws:ecs:us-east-1:111122223333:task/kiln/b")
                    .build()
            });
        use TaskStopCode::{EssentialContainerExited as Exited, TaskFailedToStart, UserInitiated};
        /// id, group, stop code, minutes ago, container exit codes.
        type Stopped = (
            &'static str,
            &'static str,
            TaskStopCode,
            i64,
            &'static [(&'static str, i32)],
        );
        #[rustfmt::skip]
        let stopped: Vec<Stopped> = vec![
            // Counted: a crash 3 minutes ago, a failed start 9 minutes ago.
            ("a", "service:app", Exited, 3, &[("app", 2)]),
            ("b", "service:app", TaskFailedToStart, 9, &[]),
            // Not counted: too old, a clean exit, a user stop, another group,
            // the triggering task itself.
            ("old", "service:app", Exited, 11, &[("app", 1)]),
            ("clean", "service:app", Exited, 1, &[("app", 0)]),
            ("user", "service:app", UserInitiated, 1, &[("app", 137)]),
            ("other", "service:web", Exited, 1, &[("app", 1)]),
            ("now", "service:app", Exited, 0, &[("app", 1)]),
        ];
        let describe = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(move || {
            let tasks = stopped
                .iter()
                .map(|(id, group, code, ago, exits)| sdk_task(id, group, code.clone(), *ago, exits))
                .collect();
            DescribeTasksOutput::builder()
                .set_tasks(Some(tasks))
                .build()
        });
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&list, &describe]);
        let history = EcsTaskHistory::new(client);
        let count = recent_crashes(&history, &current(), None, Duration::from_secs(600), NOW)
            .await
            .unwrap();
        assert_eq!(count.crashes, 3, "{count:?}");
        assert!(count.task_arns[0].ends_with("/now"));
        assert_eq!(list.num_calls(), 1);
    }

    #[tokio::test]
    async fn mixed_exits_look_up_the_task_definition_once() {
        let list = mock!(aws_sdk_ecs::Client::list_tasks).then_output(|| {
            ListTasksOutput::builder()
                .task_arns("arn:aws:ecs:us-east-1:111122223333:task/kiln/a")
                .build()
        });
        let describe = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(|| {
            DescribeTasksOutput::builder()
                // The sidecar failed, the app exited cleanly: not a crash.
                .tasks(sdk_task(
                    "a",
                    "service:app",
                    TaskStopCode::EssentialContainerExited,
                    1,
                    &[("app", 0), ("envoy", 143)],
                ))
                // The app failed: a crash.
                .tasks(sdk_task(
                    "b",
                    "service:app",
                    TaskStopCode::EssentialContainerExited,
                    2,
                    &[("app", 1), ("envoy", 0)],
                ))
                .build()
        });
        let definition = mock!(aws_sdk_ecs::Client::describe_task_definition)
            .match_requests(|r| r.task_definition() == Some(TASK_DEF))
            .then_output(|| {
                DescribeTaskDefinitionOutput::builder()
                    .task_definition(
                        TaskDefinition::builder()
                            .container_definitions(
                                ContainerDefinition::builder().name("app").build(),
                            )
                            .container_definitions(
                                ContainerDefinition::builder()
                                    .name("envoy")
                                    .essential(false)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(
            aws_sdk_ecs,
            RuleMode::MatchAny,
            [&list, &describe, &definition]
        );
        let history = EcsTaskHistory::new(client);
        let count = recent_crashes(&history, &current(), None, Duration::from_secs(600), NOW)
            .await
            .unwrap();
        assert_eq!(count.crashes, 2, "{count:?}");
        assert_eq!(definition.num_calls(), 1);
    }

    #[tokio::test]
    async fn no_group_counts_only_the_current_task() {
        let unused = mock!(aws_sdk_ecs::Client::list_tasks)
            .then_output(|| ListTasksOutput::builder().build());
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&unused]);
        let mut task = current();
        task.group = None;
        task.stop_code = Some(TASK_FAILED_TO_START.into());
        let count = recent_crashes(
            &EcsTaskHistory::new(client),
            &task,
            None,
            Duration::from_secs(600),
            NOW,
        )
        .await
        .unwrap();
        assert_eq!(count.crashes, 1);
        assert_eq!(unused.num_calls(), 0);
    }

    #[tokio::test]
    async fn ecs_errors_carry_the_aws_message() {
        let list = mock!(aws_sdk_ecs::Client::list_tasks).then_error(|| {
            aws_sdk_ecs::operation::list_tasks::ListTasksError::generic(
                aws_sdk_ecs::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: ecs:ListTasks")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&list], |c| {
            c.retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        });
        let err = recent_crashes(
            &EcsTaskHistory::new(client),
            &current(),
            None,
            Duration::from_secs(600),
            NOW,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ECS ListTasks failed: AccessDeniedException: not authorized to perform: ecs:ListTasks"
        );
    }
}
