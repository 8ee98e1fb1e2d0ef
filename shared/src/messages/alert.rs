//! The kiln alert: what watchdog and deploy-exec publish to the alert
//! topic, and alert-forwarder renders for Slack. deploy-exec's deployment
//! notifications are alerts of this one schema, with well-known fields
//! ([`super::deployment`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MessageError, check_envelope};

/// `kind` of an alert.
pub const KIND: &str = "kiln.alert";
/// The schema version this build writes and reads.
pub const VERSION: u32 = 1;
/// SNS's limit on a Subject.
pub const SUBJECT_MAX_CHARS: usize = 100;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

/// One labelled value of an alert ("ASG capacity": "1 → 0").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertField {
    pub name: String,
    pub value: String,
}

/// An alert raised by a kiln function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The function that raised it, e.g. `watchdog`.
    pub source: String,
    pub severity: Severity,
    /// One line: what happened.
    pub title: String,
    /// A few sentences: why, and what to do.
    pub summary: String,
    /// Labelled details, in display order.
    pub fields: Vec<AlertField>,
    #[serde(with = "time::serde::rfc3339")]
    pub raised_at: OffsetDateTime,
}

impl Alert {
    /// A new alert with no fields yet.
    pub fn new(
        source: impl Into<String>,
        severity: Severity,
        title: impl Into<String>,
        summary: impl Into<String>,
        raised_at: OffsetDateTime,
    ) -> Self {
        Alert {
            kind: KIND.into(),
            version: VERSION,
            source: source.into(),
            severity,
            title: title.into(),
            summary: summary.into(),
            fields: Vec::new(),
            raised_at,
        }
    }

    /// Adds a field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(AlertField {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The value of a field by name.
    pub fn field_value(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// The SNS Subject: the title, cut to SNS's 100-character limit.
    pub fn subject(&self) -> String {
        truncate_chars(&self.title, SUBJECT_MAX_CHARS)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes strictly: the right kind and version, no unknown fields.
    pub fn from_json(json: &str) -> Result<Self, MessageError> {
        check_envelope(json, KIND, VERSION)?;
        serde_json::from_str(json).map_err(|e| MessageError::Invalid {
            kind: KIND,
            version: VERSION,
            detail: e.to_string(),
        })
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_subject_limit() {
        let alert = Alert::new(
            "watchdog",
            Severity::Critical,
            "x".repeat(150),
            "summary",
            time::macros::datetime!(2026-11-22 10:00:00 UTC),
        )
        .field("ASG", "kiln-app")
        .field("Desired capacity", "1 → 0");
        let json = alert.to_json();
        assert_eq!(Alert::from_json(&json).unwrap(), alert);
        assert_eq!(alert.subject().chars().count(), 100);
        assert!(alert.subject().ends_with('…'));
        assert_eq!(alert.field_value("ASG"), Some("kiln-app"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["kind"], "kiln.alert");
        assert_eq!(v["severity"], "critical");
    }

    #[test]
    fn other_kinds_are_rejected() {
        let err = Alert::from_json(r#"{"kind":"kiln.deploy.request","version":1}"#).unwrap_err();
        assert!(matches!(err, MessageError::WrongKind { .. }));
    }
}
