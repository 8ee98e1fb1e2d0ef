//! CloudWatch alarm notifications, in the two shapes kiln receives:
//!
//! - [`AlarmNotification`]: the JSON an alarm action publishes to SNS (the
//!   record's `Message`). PascalCase; `AlarmDescription` and `Trigger.Unit`
//!   may be `null`; `Region` is a display name ("EU - Ireland"), so the
//!   region code comes from `AlarmArn`; `StateChangeTime` ends in `+0000`.
//!   Single-metric alarms have `Trigger.MetricName`, metric-math alarms
//!   `Trigger.Metrics`, composite alarms `AlarmRule` and no `Trigger`.
//! - [`AlarmStateChange`]: the `detail` of an EventBridge "CloudWatch Alarm
//!   State Change" event. camelCase, with `state` and `previousState`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{lenient_f64, lenient_i64, lenient_string, null_as_empty};

/// `source` of CloudWatch events.
pub const SOURCE: &str = "aws.cloudwatch";

/// The alarm states.
pub const ALARM: &str = "ALARM";
pub const OK: &str = "OK";
pub const INSUFFICIENT_DATA: &str = "INSUFFICIENT_DATA";

/// An alarm notification as published to SNS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmNotification {
    pub alarm_name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub alarm_description: Option<String>,
    #[serde(rename = "AWSAccountId", default, deserialize_with = "lenient_string")]
    pub aws_account_id: Option<String>,
    pub new_state_value: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub new_state_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub state_change_time: Option<String>,
    /// A display name such as "US West - Oregon", not a region code.
    #[serde(default, deserialize_with = "lenient_string")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub alarm_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub old_state_value: Option<String>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Composite alarms: the rule, e.g. `ALARM(a) OR ALARM(b)`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub alarm_rule: Option<String>,
}

/// What a metric alarm watches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trigger {
    #[serde(default, deserialize_with = "lenient_string")]
    pub metric_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub statistic: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub extended_statistic: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub unit: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dimensions: Vec<Dimension>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub period: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub evaluation_periods: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub datapoints_to_alarm: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub comparison_operator: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub threshold: Option<f64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub treat_missing_data: Option<String>,
    /// Metric-math alarms: the expressions and the metrics they use.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metrics: Vec<MetricDataQuery>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Dimension {
    #[serde(default, alias = "Name")]
    pub name: String,
    #[serde(default, alias = "Value", deserialize_with = "lenient_string")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDataQuery {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub expression: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub label: Option<String>,
    #[serde(default)]
    pub return_data: Option<bool>,
    #[serde(default)]
    pub metric_stat: Option<MetricStat>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricStat {
    #[serde(default)]
    pub metric: Option<Metric>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub period: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub stat: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metric {
    #[serde(default, deserialize_with = "lenient_string")]
    pub metric_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dimensions: Vec<Dimension>,
}

impl AlarmNotification {
    /// Decodes an SNS `Message` if it is an alarm notification. `None` for
    /// anything else (other JSON, plain text).
    pub fn from_message(message: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(message).ok()?;
        let object = value.as_object()?;
        if !(object.contains_key("AlarmName") && object.contains_key("NewStateValue")) {
            return None;
        }
        serde_json::from_value(value).ok()
    }

    /// The region code (`eu-west-1`) from the alarm ARN, if it has one.
    pub fn region_code(&self) -> Option<&str> {
        self.alarm_arn.as_deref().and_then(arn_region)
    }

    pub fn is_composite(&self) -> bool {
        self.alarm_rule.is_some() && self.trigger.is_none()
    }
}

/// The region part of an ARN (`arn:aws:cloudwatch:eu-west-1:…` → `eu-west-1`),
/// if it looks like a region code.
pub fn arn_region(arn: &str) -> Option<&str> {
    let region = arn.split(':').nth(3)?;
    let looks_like_code = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    looks_like_code.then_some(region)
}

/// The `detail` of an EventBridge "CloudWatch Alarm State Change".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub state: AlarmState,
    #[serde(default)]
    pub previous_state: Option<AlarmState>,
    #[serde(default)]
    pub configuration: Option<AlarmConfiguration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmState {
    pub value: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub reason_data: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub actions_suppressed_by: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub actions_suppressed_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmConfiguration {
    #[serde(default, deserialize_with = "lenient_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub alarm_rule: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub actions_suppressor: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metrics: Vec<StateChangeMetric>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeMetric {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub expression: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub label: Option<String>,
    #[serde(default)]
    pub return_data: Option<bool>,
    #[serde(default)]
    pub metric_stat: Option<StateChangeMetricStat>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChangeMetricStat {
    #[serde(default)]
    pub metric: Option<StateChangeMetricId>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub period: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub stat: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StateChangeMetricId {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub namespace: Option<String>,
    /// A map here, unlike the SNS shape's list of name/value pairs.
    #[serde(default)]
    pub dimensions: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::super::eventbridge::{ALARM_STATE_CHANGE, EventBridgeEvent};
    use super::super::sns::SnsEvent;
    use super::super::test_fixtures::read;
    use super::*;

    fn notifications(path: &str) -> Vec<AlarmNotification> {
        let event: SnsEvent = serde_json::from_str(&read(path)).unwrap();
        event
            .records
            .iter()
            .map(|r| {
                AlarmNotification::from_message(&r.sns.message)
                    .unwrap_or_else(|| panic!("{path}: not an alarm"))
            })
            .collect()
    }

    #[test]
    fn single_metric_with_null_description() {
        let alarm = &notifications("aws/assertible/sns-cloudwatch-event.json")[0];
        assert_eq!(alarm.alarm_name, "awsrds-app-High-DB-Connections");
        assert_eq!(alarm.alarm_description, None);
        assert_eq!(alarm.region.as_deref(), Some("US West - Oregon"));
        assert_eq!(alarm.region_code(), None);
        let trigger = alarm.trigger.as_ref().unwrap();
        assert_eq!(trigger.unit, None);
        assert_eq!(trigger.threshold, Some(10.0));
        assert_eq!(trigger.dimensions[0].name, "DBInstanceIdentifier");
        assert!(!alarm.is_composite());
    }

    #[test]
    fn metric_math_alarm() {
        let alarms = notifications(
            "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
        );
        assert_eq!(alarms.len(), 2);
        let trigger = alarms[0].trigger.as_ref().unwrap();
        assert_eq!(trigger.metric_name, None);
        assert_eq!(trigger.metrics.len(), 2);
        assert_eq!(trigger.metrics[0].expression.as_deref(), Some("m1*1"));
        let metric = trigger.metrics[1]
            .metric_stat
            .as_ref()
            .unwrap()
            .metric
            .as_ref()
            .unwrap();
        assert_eq!(metric.metric_name.as_deref(), Some("NetworkOut"));
    }

    #[test]
    fn every_sns_alarm_fixture_decodes() {
        for path in [
            "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
            "aws/lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
            "aws/lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
            "aws/assertible/sns-event.json",
            "aws/notify-slack/messages/cloudwatch_alarm.json",
        ] {
            assert!(!notifications(path).is_empty());
        }
        // The notify-slack event file is a bare alarm message, not SNS.
        let bare = read("aws/notify-slack/events/cloudwatch_alarm.json");
        assert!(AlarmNotification::from_message(&bare).is_some());
    }

    #[test]
    fn composite_alarm_without_trigger() {
        let message = r#"{"AlarmName":"app-down","AlarmDescription":null,"AWSAccountId":"123456789012","NewStateValue":"ALARM","NewStateReason":"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu transitioned to ALARM","StateChangeTime":"2026-11-22T10:00:00.000+0000","Region":"EU (Ireland)","AlarmArn":"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:app-down","OldStateValue":"OK","AlarmRule":"ALARM(cpu) OR ALARM(mem)"}"#;
        let alarm = AlarmNotification::from_message(message).unwrap();
        assert!(alarm.is_composite());
        assert_eq!(alarm.region_code(), Some("eu-west-1"));
    }

    #[test]
    fn non_alarms_are_none() {
        assert!(AlarmNotification::from_message("Hello\r\nworld!").is_none());
        assert!(AlarmNotification::from_message(r#"{"kind":"kiln.alert"}"#).is_none());
        assert_eq!(
            arn_region("arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"),
            None
        );
    }

    #[test]
    fn eventbridge_state_changes() {
        for path in [
            "aws/cloudwatch-docs/alarm-state-change-single-metric.json",
            "aws/cloudwatch-docs/alarm-state-change-metric-math.json",
            "aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
        ] {
            let event: EventBridgeEvent = serde_json::from_str(&read(path)).unwrap();
            assert!(event.is(SOURCE, ALARM_STATE_CHANGE));
            let change: AlarmStateChange = event.detail_as().unwrap();
            assert_eq!(change.state.value, ALARM, "{path}");
            assert!(change.previous_state.is_some());
        }
        let event: EventBridgeEvent = serde_json::from_str(&read(
            "aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
        ))
        .unwrap();
        let change: AlarmStateChange = event.detail_as().unwrap();
        let config = change.configuration.unwrap();
        assert_eq!(
            config.alarm_rule.as_deref(),
            Some("ALARM(ServerCpuTooHigh) OR ALARM(TotalNetworkTrafficTooHigh)")
        );
        assert_eq!(
            change.state.actions_suppressed_by.as_deref(),
            Some("WaitPeriod")
        );
    }
}
