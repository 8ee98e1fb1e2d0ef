//! Slack rendering: one pure function per kind of message, all producing
//! Block Kit through [`blocks::SlackMessage::new`] (which enforces Slack's
//! limits).
//!
//! Every message has a top-level `text` (the only thing a mobile
//! notification shows), a header with an emoji for the state, labelled
//! fields, and a context line with the time and, where there is one, a
//! console link. Text taken from events is escaped, so it can neither
//! mention nor link.
//!
//! - [`alarm`]: CloudWatch alarms (SNS notification, EventBridge state
//!   change, and the "still in ALARM" re-post), with `SLACK_MENTION` on
//!   ALARM and `NOTIFY_OK` deciding OK messages.
//! - [`ecs`]: ECS task state changes.
//! - [`alert`]: kiln alerts.
//! - [`deployment`]: kiln alerts that are deploy-exec's deployment
//!   notifications.
//! - [`other`]: any other EventBridge event, other JSON, plain text, and
//!   Slack payloads passed through.

pub mod alarm;
pub mod alert;
pub mod blocks;
pub mod console;
pub mod deployment;
pub mod ecs;
pub mod other;

use kiln::events::parse_aws_time;
use time::OffsetDateTime;

use crate::classify::Message;
use crate::config::NotifyOk;
use blocks::SlackMessage;

/// Where a message came from: the SNS record around it, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub topic_arn: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

impl Origin<'_> {
    /// The topic's name (the last part of its ARN).
    pub fn topic_name(&self) -> Option<&str> {
        self.topic_arn
            .and_then(|arn| arn.rsplit(':').next())
            .filter(|name| !name.is_empty() && *name != "EXAMPLE")
    }

    /// The SNS subject, when it says something.
    pub fn subject(&self) -> Option<&str> {
        self.subject.map(str::trim).filter(|s| !s.is_empty())
    }
}

/// The choices configuration makes about rendering.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Added to ALARM messages only.
    pub mention: Option<&'a str>,
    pub notify_ok: NotifyOk,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            mention: None,
            notify_ok: NotifyOk::AfterAlarm,
        }
    }
}

/// The body to post.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Blocks(SlackMessage),
    /// A message that already was a Slack payload.
    Passthrough(serde_json::Value),
}

impl Payload {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Payload::Blocks(message) => message.to_json(),
            Payload::Passthrough(value) => value.clone(),
        }
    }

    pub fn to_body(&self) -> String {
        self.to_json().to_string()
    }
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Post(Payload),
    /// Not posted, by configuration (an OK under `NOTIFY_OK`).
    Skip {
        reason: String,
    },
}

/// Renders any message.
pub fn render(message: &Message, origin: &Origin<'_>, options: &Options<'_>) -> Rendered {
    let post = |m: SlackMessage| Rendered::Post(Payload::Blocks(m));
    match message {
        Message::Alarm(notification) => alarm::render(
            &alarm::AlarmView::from_notification(notification, origin),
            options,
        ),
        Message::AlarmStateChange { event, change } => {
            alarm::render(&alarm::AlarmView::from_state_change(event, change), options)
        }
        Message::EcsTask { event, task } => post(ecs::render(event, task)),
        Message::Event(event) => post(other::event(event, origin)),
        Message::KilnAlert(alert) => match kiln::messages::DeploymentNotice::from_alert(alert) {
            Some(notice) => post(deployment::render(&notice)),
            None => post(alert::render(alert)),
        },
        Message::InvalidKilnMessage { value, error } => {
            post(other::invalid_kiln_message(value, error, origin))
        }
        Message::SlackPayload(payload) => {
            Rendered::Post(Payload::Passthrough(other::passthrough(payload, origin)))
        }
        Message::Json(value) => post(other::json(value, origin)),
        Message::PlainText(text) => post(other::plain_text(text, origin)),
    }
}

/// A time for people: `2019-10-02 17:04:40 UTC`. AWS's odd formats that
/// don't parse are shown as they came.
pub fn format_time(raw: &str) -> String {
    match parse_aws_time(raw) {
        Some(time) => format_datetime(time),
        None => raw.trim().to_string(),
    }
}

pub fn format_datetime(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// A whole number without `.0`, anything else as it is: `1000`, `0.5`.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// `300` seconds → `5 min`.
pub fn format_seconds(seconds: i64) -> String {
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A span of minutes for people: `45 minutes`, `2 h 5 min`, `1 day 3 h`.
pub fn format_minutes(minutes: u64) -> String {
    match minutes {
        0..60 => format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" }),
        60..1440 => match minutes % 60 {
            0 => format!("{} h", minutes / 60),
            m => format!("{} h {m} min", minutes / 60),
        },
        _ => {
            let days = minutes / 1440;
            let hours = (minutes % 1440) / 60;
            let day = if days == 1 { "day" } else { "days" };
            match hours {
                0 => format!("{days} {day}"),
                h => format!("{days} {day} {h} h"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_numbers_and_spans() {
        assert_eq!(
            format_time("2017-08-07T18:51:41.602+0000"),
            "2017-08-07 18:51:41 UTC"
        );
        assert_eq!(
            format_time("2019-10-02T17:04:40Z"),
            "2019-10-02 17:04:40 UTC"
        );
        assert_eq!(
            format_time("2023-08-04T12: 56: 46.138+0000"),
            "2023-08-04T12: 56: 46.138+0000"
        );
        assert_eq!(format_number(1000.0), "1000");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_seconds(300), "5 min");
        assert_eq!(format_seconds(3600), "1 h");
        assert_eq!(format_seconds(90), "90 s");
        assert_eq!(format_minutes(1), "1 minute");
        assert_eq!(format_minutes(45), "45 minutes");
        assert_eq!(format_minutes(60), "1 h");
        assert_eq!(format_minutes(125), "2 h 5 min");
        assert_eq!(format_minutes(1440 + 180), "1 day 3 h");
        assert_eq!(format_minutes(2880), "2 days");
    }

    #[test]
    fn origin_names() {
        let origin = Origin {
            topic_arn: Some("arn:aws:sns:eu-west-1:123456789012:kiln-alerts"),
            subject: Some("  "),
            timestamp: None,
        };
        assert_eq!(origin.topic_name(), Some("kiln-alerts"));
        assert_eq!(origin.subject(), None);
    }
}
