//! The "ECS Task State Change" event detail.
//!
//! Decoded tolerantly: `containers` may be empty (a task that failed to
//! start), `exitCode` is missing until a container stops, and most
//! timestamps appear only in some states.

use serde::Deserialize;

use super::{lenient_i64, lenient_string, null_as_empty};

/// `source` of ECS events.
pub const SOURCE: &str = "aws.ecs";

/// The `detail` of an ECS Task State Change event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    #[serde(default, deserialize_with = "lenient_string")]
    pub cluster_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub task_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub task_definition_arn: Option<String>,
    /// `family:NAME` for standalone tasks, `service:NAME` for services.
    #[serde(default, deserialize_with = "lenient_string")]
    pub group: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub started_by: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub desired_status: Option<String>,
    /// `TaskFailedToStart`, `EssentialContainerExited`, `UserInitiated`,
    /// `ServiceSchedulerInitiated`, `SpotInterruption`,
    /// `TerminationNotice`, ...
    #[serde(default, deserialize_with = "lenient_string")]
    pub stop_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub stopped_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub launch_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub started_at: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub stopping_at: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub stopped_at: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub updated_at: Option<String>,
    /// Increases with every state change of the task: lets a consumer spot
    /// a duplicate or out-of-order delivery.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub version: Option<i64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub overrides: Option<TaskOverrides>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub container_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub exit_code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverrides {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub container_overrides: Vec<ContainerOverride>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub environment: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub value: Option<String>,
}

impl TaskStateChange {
    pub fn is_stopped(&self) -> bool {
        self.last_status.as_deref() == Some("STOPPED")
    }

    /// The container of that name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
    }

    /// An environment variable from the container override of `container`.
    pub fn override_env(&self, container: &str, variable: &str) -> Option<&str> {
        self.overrides
            .as_ref()?
            .container_overrides
            .iter()
            .filter(|o| o.name.as_deref() == Some(container))
            .flat_map(|o| o.environment.iter())
            .find(|kv| kv.name.as_deref() == Some(variable))
            .and_then(|kv| kv.value.as_deref())
    }

    /// The cluster's name: the last part of its ARN.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster_arn
            .as_deref()
            .and_then(|arn| arn.rsplit('/').next())
    }
}

#[cfg(test)]
mod tests {
    use super::super::eventbridge::{ECS_TASK_STATE_CHANGE, EventBridgeEvent};
    use super::super::test_fixtures::read;
    use super::*;

    fn detail(path: &str) -> TaskStateChange {
        let event: EventBridgeEvent = serde_json::from_str(&read(path)).unwrap();
        assert!(event.is(SOURCE, ECS_TASK_STATE_CHANGE));
        event.detail_as().unwrap()
    }

    #[test]
    fn running_fargate_task() {
        let task = detail("aws/lambda-dotnet/ecs-task-state-change-event.json");
        assert_eq!(task.last_status.as_deref(), Some("RUNNING"));
        assert!(!task.is_stopped());
        assert_eq!(task.cluster_name(), Some("FargateCluster"));
        assert_eq!(task.group.as_deref(), Some("family:sample-fargate"));
        assert_eq!(task.version, Some(4));
        assert_eq!(
            task.override_env("FargateApp", "testname"),
            Some("testvalue")
        );
        assert_eq!(task.container("FargateApp").unwrap().exit_code, None);
    }

    #[test]
    fn stopped_container_exit_code() {
        let task = detail("aws/ecs-docs/task-state-change-container-stopped-exit0.json");
        assert_eq!(task.containers[0].exit_code, Some(0));
        assert_eq!(
            task.started_by.as_deref(),
            Some("ecs-svc/9223370556150183303")
        );
    }

    #[test]
    fn empty_and_null_fields_are_tolerated() {
        let task: TaskStateChange = serde_json::from_value(serde_json::json!({
            "lastStatus": "STOPPED",
            "stopCode": "TaskFailedToStart",
            "containers": null,
            "overrides": null,
            "version": "7"
        }))
        .unwrap();
        assert!(task.is_stopped());
        assert!(task.containers.is_empty());
        assert_eq!(task.version, Some(7));
        assert_eq!(task.override_env("x", "y"), None);
    }
}
