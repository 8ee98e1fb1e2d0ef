//! Starting and looking up ECS tasks: the [`TaskRunner`] port and its SDK
//! adapter.
//!
//! The adapter turns RunTask's quieter failure modes into errors: a
//! response with `failures[]`, or with no task, started nothing. A
//! `ConflictException` means the idempotency token was used before, so the
//! task of this delivery already exists: that is a success.
//!
//! The port also reads a task definition's `awslogs` configuration (cached
//! per process: a task definition revision never changes) and tags a task
//! (how a deployment notification is marked as sent).

use kiln::aws::LazyClient;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    KeyValuePair, LaunchType, NetworkConfiguration, PropagateTags, Tag, TaskField, TaskOverride,
};

use crate::config::Placement;
use crate::task_log::AwsLogsConfig;
use crate::task_request::TaskRequest;

/// A task that RunTask started (or had started for the same token before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedTask {
    pub task_arn: String,
    /// The task's status as RunTask reported it (`PROVISIONING`,
    /// `PENDING`, ... or `STOPPED` when an earlier attempt's task is done).
    pub last_status: Option<String>,
    /// True when ECS said the token was already used.
    pub already_started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunTaskError {
    #[error("RunTask started no task: {}", reasons.join("; "))]
    Failures { reasons: Vec<String> },
    #[error("RunTask returned neither a task nor a failure")]
    NoTask,
    #[error("RunTask failed: {0}")]
    Api(String),
    #[error("RunTask input is invalid: {0}")]
    Input(String),
}

/// What DescribeTasks says about a task, as far as kiln needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDetails {
    pub last_status: Option<String>,
    /// The override environment of the deploy container.
    pub environment: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DescribeTasks for {task_arn} failed: {message}")]
pub struct DescribeError {
    pub task_arn: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} for {resource} failed: {message}")]
pub struct EcsError {
    pub operation: &'static str,
    pub resource: String,
    pub message: String,
}

/// The port.
pub trait TaskRunner: Send + Sync {
    fn run_task(
        &self,
        request: &TaskRequest,
    ) -> impl Future<Output = Result<StartedTask, RunTaskError>> + Send;

    /// One task with its tags; `Ok(None)` when ECS no longer knows it.
    fn describe_task(
        &self,
        cluster: &str,
        task_arn: &str,
        container_name: &str,
    ) -> impl Future<Output = Result<Option<TaskDetails>, DescribeError>> + Send;

    /// The `awslogs` configuration of one container of a task definition;
    /// `Ok(None)` when the container logs some other way, or not at all.
    fn log_configuration(
        &self,
        task_definition: &str,
        container_name: &str,
    ) -> impl Future<Output = Result<Option<AwsLogsConfig>, EcsError>> + Send;

    /// Adds one tag to a task.
    fn tag_task(
        &self,
        task_arn: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), EcsError>> + Send;
}

/// The `awslogs` configuration per (task definition ARN, container).
type LogConfigurations = HashMap<(String, String), Option<AwsLogsConfig>>;

/// The ECS adapter.
#[derive(Clone, Debug)]
pub struct EcsTaskRunner {
    client: LazyClient<aws_sdk_ecs::Client>,
    log_configurations: Arc<Mutex<LogConfigurations>>,
}

impl EcsTaskRunner {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_ecs::Client>>) -> Self {
        EcsTaskRunner {
            client: client.into(),
            log_configurations: Arc::default(),
        }
    }

    fn cached_log_configuration(&self, key: &(String, String)) -> Option<Option<AwsLogsConfig>> {
        self.log_configurations
            .lock()
            .ok()
            .and_then(|cache| cache.get(key).cloned())
    }
}

impl TaskRunner for EcsTaskRunner {
    async fn run_task(&self, request: &TaskRequest) -> Result<StartedTask, RunTaskError> {
        let environment = request
            .environment
            .iter()
            .map(|(name, value)| KeyValuePair::builder().name(name).value(value).build())
            .collect();
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&request.container_name)
                    .set_environment(Some(environment))
                    .build(),
            )
            .build();
        let tags = request
            .tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        let mut call = self
            .client
            .get()
            .await
            .run_task()
            .cluster(&request.cluster)
            .task_definition(&request.task_definition)
            .count(1)
            .client_token(&request.client_token)
            .started_by(&request.started_by)
            .overrides(overrides)
            .set_tags(Some(tags))
            .propagate_tags(PropagateTags::TaskDefinition);
        call = match &request.placement {
            Placement::LaunchType(launch_type) => {
                call.launch_type(LaunchType::from(launch_type.as_str()))
            }
            Placement::CapacityProvider(name) => call.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(name)
                    .weight(1)
                    .build()
                    .map_err(|e| RunTaskError::Input(e.to_string()))?,
            ),
        };
        if let Some(network) = &request.network {
            let awsvpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(network.subnets.clone()))
                .set_security_groups(Some(network.security_groups.clone()))
                .assign_public_ip(if network.assign_public_ip {
                    AssignPublicIp::Enabled
                } else {
                    AssignPublicIp::Disabled
                })
                .build()
                .map_err(|e| RunTaskError::Input(e.to_string()))?;
            call = call.network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(awsvpc)
                    .build(),
            );
        }
        match call.send().await {
            Ok(output) => {
                let failures = output.failures();
                if !failures.is_empty() {
                    return Err(RunTaskError::Failures {
                        reasons: failures.iter().map(describe_failure).collect(),
                    });
                }
                let task = output.tasks().first().ok_or(RunTaskError::NoTask)?;
                let task_arn = task.task_arn().ok_or(RunTaskError::NoTask)?;
                Ok(StartedTask {
                    task_arn: task_arn.to_string(),
                    last_status: task.last_status().map(str::to_string),
                    already_started: false,
                })
            }
            Err(err) => {
                if let Some(aws_sdk_ecs::operation::run_task::RunTaskError::ConflictException(
                    conflict,
                )) = err.as_service_error()
                    && let Some(task_arn) = conflict.resource_ids().first()
                {
                    return Ok(StartedTask {
                        task_arn: task_arn.clone(),
                        last_status: None,
                        already_started: true,
                    });
                }
                Err(RunTaskError::Api(sdk_message(&err)))
            }
        }
    }

    async fn describe_task(
        &self,
        cluster: &str,
        task_arn: &str,
        container_name: &str,
    ) -> Result<Option<TaskDetails>, DescribeError> {
        let output = self
            .client
            .get()
            .await
            .describe_tasks()
            .cluster(cluster)
            .tasks(task_arn)
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|err| DescribeError {
                task_arn: task_arn.to_string(),
                message: sdk_message(&err),
            })?;
        let Some(task) = output.tasks().first() else {
            return Ok(None);
        };
        let environment = task
            .overrides()
            .map(|o| o.container_overrides())
            .unwrap_or_default()
            .iter()
            .filter(|o| o.name() == Some(container_name))
            .flat_map(|o| o.environment())
            .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
            .collect();
        let tags = task
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        Ok(Some(TaskDetails {
            last_status: task.last_status().map(str::to_string),
            environment,
            tags,
        }))
    }

    async fn log_configuration(
        &self,
        task_definition: &str,
        container_name: &str,
    ) -> Result<Option<AwsLogsConfig>, EcsError> {
        let key = (task_definition.to_string(), container_name.to_string());
        if let Some(cached) = self.cached_log_configuration(&key) {
            return Ok(cached);
        }
        let output = self
            .client
            .get()
            .await
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|err| EcsError {
                operation: "DescribeTaskDefinition",
                resource: task_definition.to_string(),
                message: sdk_message(&err),
            })?;
        let configuration = output
            .task_definition()
            .map(|d| d.container_definitions())
            .unwrap_or_default()
            .iter()
            .find(|c| c.name() == Some(container_name))
            .and_then(|c| c.log_configuration())
            .and_then(|log| {
                let options = log.options().cloned().unwrap_or_default();
                AwsLogsConfig::from_driver(log.log_driver().as_str(), &options)
            });
        // Only a revision is immutable: a bare family may move on.
        if task_definition.contains(':')
            && let Ok(mut cache) = self.log_configurations.lock()
        {
            cache.insert(key, configuration.clone());
        }
        Ok(configuration)
    }

    async fn tag_task(&self, task_arn: &str, key: &str, value: &str) -> Result<(), EcsError> {
        self.client
            .get()
            .await
            .tag_resource()
            .resource_arn(task_arn)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|err| EcsError {
                operation: "TagResource",
                resource: task_arn.to_string(),
                message: sdk_message(&err),
            })
    }
}

fn describe_failure(failure: &aws_sdk_ecs::types::Failure) -> String {
    let mut text = failure.reason().unwrap_or("unknown reason").to_string();
    if let Some(detail) = failure.detail() {
        text.push_str(&format!(" ({detail})"));
    }
    if let Some(arn) = failure.arn() {
        text.push_str(&format!(" for {arn}"));
    }
    text
}

/// `Code: message` when the service said so, else the whole error chain
/// (timeouts and connection failures put the cause several levels down).
pub(crate) fn sdk_message<E, R>(err: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => kiln::aws::error_chain(err),
    }
}

/// An in-memory runner for tests: records requests, answers from a
/// script, and otherwise starts a task.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Mutex, MutexGuard};

    #[derive(Default)]
    pub struct FakeRunner {
        task_arn: Option<String>,
        /// Fails every RunTask the script does not answer.
        failure: Option<RunTaskError>,
        requests: Mutex<Vec<TaskRequest>>,
        answers: Mutex<VecDeque<Result<StartedTask, RunTaskError>>>,
        details: Mutex<Option<Result<Option<TaskDetails>, DescribeError>>>,
        describes: Mutex<usize>,
        log_configuration: Mutex<Option<Result<Option<AwsLogsConfig>, EcsError>>>,
        log_lookups: Mutex<usize>,
        tagged: Mutex<Vec<(String, String, String)>>,
    }

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    impl FakeRunner {
        /// Starts `…/task/kiln/task<N>` for the Nth request.
        pub fn new() -> Self {
            Self::default()
        }

        /// Starts this task for every request.
        pub fn always_starting(task_arn: &str) -> Self {
            FakeRunner {
                task_arn: Some(task_arn.to_string()),
                ..Self::default()
            }
        }

        /// Fails every RunTask with `error`: a runner for paths that must
        /// not start a task.
        pub fn failing(error: RunTaskError) -> Self {
            FakeRunner {
                failure: Some(error),
                ..Self::default()
            }
        }

        /// The answer to the next RunTask, before the default.
        pub fn answer(&self, answer: Result<StartedTask, RunTaskError>) {
            lock(&self.answers).push_back(answer);
        }

        /// What DescribeTasks answers (by default: no such task).
        pub fn set_details(&self, details: Result<Option<TaskDetails>, DescribeError>) {
            *lock(&self.details) = Some(details);
        }

        pub fn requests(&self) -> Vec<TaskRequest> {
            lock(&self.requests).clone()
        }

        pub fn describes(&self) -> usize {
            *lock(&self.describes)
        }

        /// What DescribeTaskDefinition answers (by default: no awslogs).
        pub fn set_log_configuration(&self, answer: Result<Option<AwsLogsConfig>, EcsError>) {
            *lock(&self.log_configuration) = Some(answer);
        }

        pub fn log_lookups(&self) -> usize {
            *lock(&self.log_lookups)
        }

        /// Every (task, key, value) tagged, in order.
        pub fn tagged(&self) -> Vec<(String, String, String)> {
            lock(&self.tagged).clone()
        }
    }

    impl TaskRunner for FakeRunner {
        async fn run_task(&self, request: &TaskRequest) -> Result<StartedTask, RunTaskError> {
            let n = {
                let mut requests = lock(&self.requests);
                requests.push(request.clone());
                requests.len()
            };
            if let Some(answer) = lock(&self.answers).pop_front() {
                return answer;
            }
            if let Some(error) = &self.failure {
                return Err(error.clone());
            }
            Ok(StartedTask {
                task_arn: self.task_arn.clone().unwrap_or_else(|| {
                    format!("arn:aws:ecs:us-east-1:123456789012:task/kiln/task{n}")
                }),
                last_status: Some("PROVISIONING".into()),
                already_started: false,
            })
        }

        async fn describe_task(
            &self,
            _cluster: &str,
            task_arn: &str,
            _container_name: &str,
        ) -> Result<Option<TaskDetails>, DescribeError> {
            *lock(&self.describes) += 1;
            let details = lock(&self.details).clone().unwrap_or(Ok(None));
            // Tags added since are part of the answer, as in ECS, which
            // knows every task it tagged.
            let tagged: Vec<(String, String)> = self
                .tagged()
                .into_iter()
                .filter(|(arn, _, _)| arn == task_arn)
                .map(|(_, k, v)| (k, v))
                .collect();
            details.map(|found| match found {
                Some(mut d) => {
                    d.tags.extend(tagged);
                    Some(d)
                }
                None if !tagged.is_empty() => Some(TaskDetails {
                    tags: tagged,
                    ..TaskDetails::default()
                }),
                None => None,
            })
        }

        async fn log_configuration(
            &self,
            _task_definition: &str,
            _container_name: &str,
        ) -> Result<Option<AwsLogsConfig>, EcsError> {
            *lock(&self.log_lookups) += 1;
            lock(&self.log_configuration).clone().unwrap_or(Ok(None))
        }

        async fn tag_task(&self, task_arn: &str, key: &str, value: &str) -> Result<(), EcsError> {
            lock(&self.tagged).push((task_arn.to_string(), key.to_string(), value.to_string()));
            Ok(())
        }
    }
}
