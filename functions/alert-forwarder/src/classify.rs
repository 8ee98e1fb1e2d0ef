//! What an invocation is, and what each message in it is. Pure.
//!
//! An invocation is an SNS event (each record's `Message` is classified),
//! an EventBridge "Scheduled Event" (the re-post check), or anything else
//! sent straight to the function (an EventBridge rule target, a CloudWatch
//! alarm's Lambda action), which is classified like a message.
//!
//! A message is, in this order: a kiln alert (`kind` `kiln.alert`, decoded
//! strictly); a CloudWatch alarm notification (`AlarmName` and
//! `NewStateValue`); an EventBridge event (`detail-type`: alarm state
//! change, ECS task state change, or any other); a CloudWatch alarm Lambda
//! action (`alarmData`); a Slack payload (`text` or `blocks`); any other
//! JSON object or array; plain text. Nothing is dropped: every message
//! falls into one of these.

use kiln::Alert;
use kiln::events::cloudwatch::{self, AlarmNotification, AlarmStateChange};
use kiln::events::ecs::{self, TaskStateChange};
use kiln::events::eventbridge::{
    ALARM_STATE_CHANGE, ECS_TASK_STATE_CHANGE, EventBridgeEvent, SCHEDULED_EVENT,
};
use kiln::events::sns::SnsEvent;
use serde_json::Value;

/// What one message is.
#[derive(Debug, Clone)]
pub enum Message {
    /// A CloudWatch alarm notification, as an alarm action publishes it to SNS.
    Alarm(Box<AlarmNotification>),
    /// A "CloudWatch Alarm State Change" (EventBridge, or an alarm's Lambda
    /// action, which carries the same detail as `alarmData`).
    AlarmStateChange {
        event: Box<EventBridgeEvent>,
        change: Box<AlarmStateChange>,
    },
    /// An "ECS Task State Change".
    EcsTask {
        event: Box<EventBridgeEvent>,
        task: Box<TaskStateChange>,
    },
    /// Any other EventBridge event.
    Event(Box<EventBridgeEvent>),
    /// An alert from a kiln function.
    KilnAlert(Box<Alert>),
    /// Claims to be one of kiln's messages but does not decode.
    InvalidKilnMessage { value: Value, error: String },
    /// Already a Slack payload: posted as it is.
    SlackPayload(serde_json::Map<String, Value>),
    /// Any other JSON.
    Json(Value),
    /// Not JSON (or a bare JSON string or number).
    PlainText(String),
}

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Alarm(_) => "cloudwatch_alarm",
            Message::AlarmStateChange { .. } => "alarm_state_change",
            Message::EcsTask { .. } => "ecs_task_state_change",
            Message::Event(_) => "eventbridge_event",
            Message::KilnAlert(_) => "kiln_alert",
            Message::InvalidKilnMessage { .. } => "invalid_kiln_message",
            Message::SlackPayload(_) => "slack_payload",
            Message::Json(_) => "json",
            Message::PlainText(_) => "plain_text",
        }
    }
}

/// What an invocation is.
#[derive(Debug, Clone)]
pub enum Invocation {
    Sns(SnsEvent),
    /// The schedule that drives re-posting of alarms still in ALARM.
    Schedule(Box<EventBridgeEvent>),
    /// One message sent straight to the function.
    Direct(Box<Message>),
}

/// Classifies an invocation payload.
pub fn invocation(value: Value) -> Invocation {
    if value.get("Records").is_some_and(Value::is_array)
        && let Ok(event) = serde_json::from_value::<SnsEvent>(value.clone())
    {
        return Invocation::Sns(event);
    }
    if value.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT)
        && let Ok(event) = serde_json::from_value::<EventBridgeEvent>(value.clone())
    {
        return Invocation::Schedule(Box::new(event));
    }
    Invocation::Direct(Box::new(json_message(value)))
}

/// Classifies an SNS `Message`.
pub fn message(text: &str) -> Message {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => json_message(value),
        _ => Message::PlainText(text.to_string()),
    }
}

/// Classifies a message that is JSON.
pub fn json_message(value: Value) -> Message {
    let Some(object) = value.as_object() else {
        return match value {
            Value::Array(_) => Message::Json(value),
            Value::String(text) => Message::PlainText(text),
            other => Message::PlainText(other.to_string()),
        };
    };
    if object.get("kind").and_then(Value::as_str) == Some(kiln::messages::alert::KIND) {
        return match Alert::from_json(&value.to_string()) {
            Ok(alert) => Message::KilnAlert(Box::new(alert)),
            Err(err) => Message::InvalidKilnMessage {
                value,
                error: err.to_string(),
            },
        };
    }
    if object.contains_key("AlarmName")
        && object.contains_key("NewStateValue")
        && let Ok(alarm) = serde_json::from_value::<AlarmNotification>(value.clone())
    {
        return Message::Alarm(Box::new(alarm));
    }
    if object.contains_key("alarmData")
        && !object.contains_key("detail")
        && let Some(event) = alarm_action_as_event(object)
    {
        return eventbridge(event);
    }
    if object.contains_key("detail-type")
        && let Ok(event) = serde_json::from_value::<EventBridgeEvent>(value.clone())
    {
        return eventbridge(event);
    }
    if object.get("text").is_some_and(Value::is_string)
        || object.get("blocks").is_some_and(Value::is_array)
    {
        return Message::SlackPayload(object.clone());
    }
    Message::Json(value)
}

fn eventbridge(event: EventBridgeEvent) -> Message {
    if event.is(cloudwatch::SOURCE, ALARM_STATE_CHANGE)
        && let Ok(change) = event.detail_as::<AlarmStateChange>()
    {
        return Message::AlarmStateChange {
            event: Box::new(event),
            change: Box::new(change),
        };
    }
    if event.is(ecs::SOURCE, ECS_TASK_STATE_CHANGE)
        && let Ok(task) = event.detail_as::<TaskStateChange>()
    {
        return Message::EcsTask {
            event: Box::new(event),
            task: Box::new(task),
        };
    }
    Message::Event(Box::new(event))
}

/// A CloudWatch alarm's Lambda action (`alarmData` with `alarmArn`,
/// `accountId`, `time`, `region`) seen as the EventBridge event it mirrors.
fn alarm_action_as_event(object: &serde_json::Map<String, Value>) -> Option<EventBridgeEvent> {
    let mut event = object.clone();
    let mut fill = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            event.entry(key.to_string()).or_insert(value);
        }
    };
    fill("detail-type", Some(Value::from(ALARM_STATE_CHANGE)));
    fill("source", Some(Value::from(cloudwatch::SOURCE)));
    fill("account", object.get("accountId").cloned());
    fill(
        "resources",
        object
            .get("alarmArn")
            .and_then(Value::as_str)
            .map(|arn| Value::from(vec![arn.trim()])),
    );
    fill("detail", object.get("alarmData").cloned());
    serde_json::from_value(Value::Object(event)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> String {
        let full = format!(
            "{}/../../tests/fixtures/aws/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn sns_messages(path: &str) -> Vec<Message> {
        match invocation(serde_json::from_str(&fixture(path)).unwrap()) {
            Invocation::Sns(event) => event
                .records
                .iter()
                .map(|r| message(&r.sns.message))
                .collect(),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn direct(path: &str) -> Message {
        match invocation(serde_json::from_str(&fixture(path)).unwrap()) {
            Invocation::Direct(message) => *message,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn sns_alarm_notifications() {
        for path in [
            "assertible/sns-event.json",
            "assertible/sns-cloudwatch-event.json",
            "rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
            "rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
            "lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
            "lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
            "notify-slack/messages/cloudwatch_alarm.json",
        ] {
            for m in sns_messages(path) {
                assert_eq!(m.kind(), "cloudwatch_alarm", "{path}");
            }
        }
        assert_eq!(
            message(&fixture("notify-slack/events/cloudwatch_alarm.json")).kind(),
            "cloudwatch_alarm"
        );
    }

    #[test]
    fn eventbridge_events() {
        for (path, kind) in [
            (
                "cloudwatch-docs/alarm-state-change-single-metric.json",
                "alarm_state_change",
            ),
            (
                "cloudwatch-docs/alarm-state-change-metric-math.json",
                "alarm_state_change",
            ),
            (
                "cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
                "alarm_state_change",
            ),
            (
                "rust-runtime/example-cloudwatch-alarm-metric.json",
                "alarm_state_change",
            ),
            (
                "rust-runtime/example-cloudwatch-alarm-composite.json",
                "alarm_state_change",
            ),
            (
                "rust-runtime/example-cloudwatch-alarm-composite-with-suppressor-alarm.json",
                "alarm_state_change",
            ),
            (
                "lambda-dotnet/ecs-task-state-change-event.json",
                "ecs_task_state_change",
            ),
            (
                "ecs-docs/task-state-change-container-stopped-exit0.json",
                "ecs_task_state_change",
            ),
            (
                "lambda-go/ecs-container-instance-state-change.json",
                "eventbridge_event",
            ),
            (
                "rust-runtime/example-eventbridge-event-obj.json",
                "eventbridge_event",
            ),
            (
                "notify-slack/events/aws_health_event.json",
                "eventbridge_event",
            ),
            (
                "notify-slack/events/guardduty_finding_high.json",
                "eventbridge_event",
            ),
        ] {
            assert_eq!(direct(path).kind(), kind, "{path}");
        }
        let glue = sns_messages("notify-slack/messages/glue_notification.json");
        assert_eq!(glue[0].kind(), "eventbridge_event");
    }

    #[test]
    fn alarm_action_keeps_its_arn_and_account() {
        let Message::AlarmStateChange { event, change } =
            direct("rust-runtime/example-cloudwatch-alarm-metric.json")
        else {
            panic!("not an alarm state change");
        };
        assert_eq!(change.alarm_name, "lambda-demo-metric-alarm");
        assert_eq!(event.account.as_deref(), Some("444455556666"));
        assert_eq!(event.region.as_deref(), Some("us-east-1"));
        assert_eq!(event.resources.len(), 1);
    }

    #[test]
    fn other_json_and_text() {
        assert_eq!(
            sns_messages("notify-slack/messages/dms_notification.json")[0].kind(),
            "json"
        );
        assert_eq!(
            sns_messages("notify-slack/messages/guardduty_finding.json")[0].kind(),
            "eventbridge_event"
        );
        for m in sns_messages("notify-slack/messages/backup.json") {
            assert_eq!(m.kind(), "plain_text");
        }
        assert_eq!(
            sns_messages("rust-runtime/example-sns-event.json")[0].kind(),
            "plain_text"
        );
        assert_eq!(message("42").kind(), "plain_text");
        assert_eq!(message("\"quoted\"").kind(), "plain_text");
        assert_eq!(message("[1, 2]").kind(), "json");
        assert_eq!(message("{\"hello\": 1}").kind(), "json");
        assert_eq!(message("").kind(), "plain_text");
    }

    #[test]
    fn kiln_alerts_strictly() {
        let alert = Alert::new(
            "watchdog",
            kiln::Severity::Critical,
            "t",
            "s",
            time::macros::datetime!(2026-11-22 10:00:00 UTC),
        );
        assert_eq!(message(&alert.to_json()).kind(), "kiln_alert");
        let bad = message(r#"{"kind":"kiln.alert","version":9}"#);
        let Message::InvalidKilnMessage { error, .. } = bad else {
            panic!("expected an invalid kiln message");
        };
        assert!(error.contains("version 9"), "{error}");
    }

    #[test]
    fn slack_payloads_pass_through() {
        assert_eq!(message(r#"{"text": "hi"}"#).kind(), "slack_payload");
        assert_eq!(message(r#"{"blocks": []}"#).kind(), "slack_payload");
        assert_eq!(message(r#"{"text": 3}"#).kind(), "json");
    }

    #[test]
    fn scheduled_events_start_the_refire_check() {
        let event = serde_json::json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-22T10:15:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/kiln-refire"], "detail": {}
        });
        assert!(matches!(invocation(event), Invocation::Schedule(_)));
    }
}
