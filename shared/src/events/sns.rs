//! The Lambda SNS event.
//!
//! Our own type rather than `aws_lambda_events`' because real payloads omit
//! `Signature`, `SigningCertUrl` and `UnsubscribeUrl` (and vary their casing),
//! and kiln needs only the message, its subject and attributes.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{lenient_string, null_as_empty};

#[derive(Debug, Clone, Deserialize)]
pub struct SnsEvent {
    #[serde(rename = "Records", deserialize_with = "null_as_empty")]
    pub records: Vec<SnsRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnsRecord {
    #[serde(
        rename = "EventSubscriptionArn",
        default,
        deserialize_with = "lenient_string"
    )]
    pub subscription_arn: Option<String>,
    #[serde(rename = "Sns")]
    pub sns: SnsMessage,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(default, deserialize_with = "lenient_string")]
    pub message_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub topic_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub subject: Option<String>,
    /// The message body; for CloudWatch alarms and kiln's messages, a JSON
    /// document in a string.
    #[serde(default)]
    pub message: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub message_attributes: BTreeMap<String, SnsMessageAttribute>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnsMessageAttribute {
    #[serde(rename = "Type", default, deserialize_with = "lenient_string")]
    pub data_type: Option<String>,
    #[serde(rename = "Value", default, deserialize_with = "lenient_string")]
    pub value: Option<String>,
}

impl SnsRecord {
    /// A short label for error messages: the record's position and message id.
    pub fn label(&self, index: usize) -> String {
        match &self.sns.message_id {
            Some(id) => format!("record {} (SNS message {id})", index + 1),
            None => format!("record {}", index + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::read;
    use super::*;

    #[test]
    fn decodes_every_sns_fixture() {
        for path in [
            "aws/rust-runtime/example-sns-event.json",
            "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
            "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
            "aws/lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
            "aws/lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
            "aws/assertible/sns-event.json",
            "aws/assertible/sns-cloudwatch-event.json",
            "aws/notify-slack/messages/backup.json",
            "aws/notify-slack/messages/text_message.json",
            "aws/notify-slack/messages/cloudwatch_alarm.json",
        ] {
            let event: SnsEvent =
                serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!event.records.is_empty(), "{path}");
        }
    }

    #[test]
    fn plain_message_and_attributes() {
        let event: SnsEvent =
            serde_json::from_str(&read("aws/rust-runtime/example-sns-event.json")).unwrap();
        let record = &event.records[0];
        assert_eq!(record.sns.message, "Hello\r\nworld!");
        assert!(record.label(0).starts_with("record 1 (SNS message "));
    }
}
