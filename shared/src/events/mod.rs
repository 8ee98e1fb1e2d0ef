//! Tolerant decoders for the AWS events kiln receives.
//!
//! Real payloads carry `null`s, omit fields and vary in casing (see the
//! fixtures), so these types make almost everything optional and ignore
//! what they don't use. Decoding fails only when the shape is not the event
//! at all; each function then decides whether that is an error.
//!
//! - [`sns`]: the Lambda SNS event (`Records[].Sns`).
//! - [`eventbridge`]: the EventBridge envelope (`detail-type`, `source`,
//!   `detail`), including scheduled events.
//! - [`ecs`]: the "ECS Task State Change" detail.
//! - [`cloudwatch`]: CloudWatch alarm notifications, both the SNS message
//!   and the EventBridge "CloudWatch Alarm State Change" detail.

pub mod cloudwatch;
pub mod ecs;
pub mod eventbridge;
pub mod sns;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The shapes a kiln function can be invoked with.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// An SNS event (one or more records).
    Sns(sns::SnsEvent),
    /// An EventBridge event (a rule target). Boxed: it is ten times the
    /// size of the SNS variant.
    EventBridge(Box<eventbridge::EventBridgeEvent>),
}

/// Why an invocation payload is not an event kiln knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised event: {0}")]
pub struct UnrecognisedEvent(pub String);

impl Inbound {
    /// Tells SNS and EventBridge events apart by their shape.
    pub fn from_value(value: serde_json::Value) -> Result<Self, UnrecognisedEvent> {
        if value.get("Records").is_some() {
            return serde_json::from_value(value)
                .map(Inbound::Sns)
                .map_err(|e| UnrecognisedEvent(format!("an SNS event that does not decode: {e}")));
        }
        if value.get("detail-type").is_some() {
            return serde_json::from_value(value)
                .map(|event| Inbound::EventBridge(Box::new(event)))
                .map_err(|e| {
                    UnrecognisedEvent(format!("an EventBridge event that does not decode: {e}"))
                });
        }
        let keys: Vec<String> = match value.as_object() {
            Some(map) => map.keys().take(8).cloned().collect(),
            None => vec![format!("a JSON {}", json_type(&value))],
        };
        Err(UnrecognisedEvent(format!(
            "neither an SNS event (Records) nor an EventBridge event (detail-type); top-level keys: {}",
            keys.join(", ")
        )))
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Parses the timestamps AWS events use: RFC 3339 (`2020-01-23T17:57:58Z`,
/// `2016-12-06T16:41:06.8Z`) and CloudWatch's `+0000` offsets
/// (`2016-07-24T22:05:19.737+0000`).
pub fn parse_aws_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    // `+0000` → `+00:00`. The split must fall on a character boundary:
    // arbitrary text can end in multi-byte characters.
    let split = text.len().saturating_sub(5);
    if split > 0 && text.is_char_boundary(split) {
        let (head, offset) = text.split_at(split);
        let sign = offset.as_bytes()[0];
        if (sign == b'+' || sign == b'-') && offset[1..].bytes().all(|b| b.is_ascii_digit()) {
            let fixed = format!("{head}{}:{}", &offset[..3], &offset[3..]);
            return OffsetDateTime::parse(&fixed, &Rfc3339).ok();
        }
    }
    None
}

/// A string field that may be absent, `null`, or (in odd payloads) a number.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// A number field that may be absent, `null`, or a numeric string.
pub(crate) fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// An integer field that may be absent, `null`, or a numeric string.
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A list that may be absent or `null`.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod test_fixtures {
    /// Reads a fixture from the workspace's tests/fixtures.
    pub fn read(path: &str) -> String {
        let full = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_aws_time_formats() {
        let a = parse_aws_time("2016-07-24T22:05:19.737+0000").unwrap();
        let b = parse_aws_time("2016-07-24T22:05:19.737Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_aws_time("2016-12-06T16:41:06.8Z").is_some());
        assert!(parse_aws_time("2023-08-04T12: 36: 15.490+0000").is_none());
        assert!(parse_aws_time("").is_none());
    }

    #[test]
    fn text_ending_in_multibyte_characters_is_not_a_time() {
        // Found by fuzzing (aws_events): the `+0000` split landed inside 'ʚ'.
        assert!(parse_aws_time("[\n-5\0ʚ;veK").is_none());
        assert!(parse_aws_time("2016-07-24T22:05:19.737+00é0").is_none());
        assert!(parse_aws_time("ééééé").is_none());
    }

    #[test]
    fn inbound_tells_shapes_apart() {
        let sns = test_fixtures::read("aws/rust-runtime/example-sns-event.json");
        assert!(matches!(
            Inbound::from_value(serde_json::from_str(&sns).unwrap()),
            Ok(Inbound::Sns(_))
        ));
        let ecs = test_fixtures::read("aws/lambda-dotnet/ecs-task-state-change-event.json");
        assert!(matches!(
            Inbound::from_value(serde_json::from_str(&ecs).unwrap()),
            Ok(Inbound::EventBridge(_))
        ));
        let err = Inbound::from_value(serde_json::json!({"hello": 1})).unwrap_err();
        assert!(err.to_string().contains("top-level keys: hello"));
        assert!(Inbound::from_value(serde_json::json!([1])).is_err());
    }
}
