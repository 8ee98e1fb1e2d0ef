//! The EventBridge envelope.

use serde::Deserialize;

use super::{lenient_string, null_as_empty};

/// `detail-type` of ECS task state changes.
pub const ECS_TASK_STATE_CHANGE: &str = "ECS Task State Change";
/// `detail-type` of CloudWatch alarm state changes.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";
/// `detail-type` of EventBridge schedules.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// An EventBridge event with its `detail` kept as JSON; decode the detail
/// with [`EventBridgeEvent::detail_as`] once `detail_type` says what it is.
#[derive(Debug, Clone, Deserialize)]
pub struct EventBridgeEvent {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(rename = "detail-type", default)]
    pub detail_type: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub account: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub time: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub resources: Vec<String>,
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl EventBridgeEvent {
    /// Decodes `detail` as `T`.
    pub fn detail_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.detail)
    }

    pub fn is(&self, source: &str, detail_type: &str) -> bool {
        self.source == source && self.detail_type == detail_type
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::read;
    use super::*;

    #[test]
    fn decodes_eventbridge_fixtures() {
        for path in [
            "aws/lambda-dotnet/ecs-task-state-change-event.json",
            "aws/ecs-docs/task-state-change-container-stopped-exit0.json",
            "aws/lambda-go/ecs-container-instance-state-change.json",
            "aws/cloudwatch-docs/alarm-state-change-single-metric.json",
            "aws/cloudwatch-docs/alarm-state-change-metric-math.json",
            "aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
            "aws/rust-runtime/example-eventbridge-event-obj.json",
            "aws/notify-slack/events/aws_health_event.json",
            "aws/notify-slack/events/guardduty_finding_high.json",
        ] {
            let event: EventBridgeEvent =
                serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!event.detail_type.is_empty(), "{path}");
        }
    }
}
