//! The deployment notification: a [`kiln.alert`](super::alert) v1 with
//! `source` `deploy-exec`, saying how one deployment went (started,
//! succeeded, failed, superseded) and, for a failure, carrying the last
//! lines of the stack updater's log.
//!
//! Everything travels in the alert's existing members (`title`, `summary`,
//! labelled `fields`), never in new ones. An alert-forwarder built before
//! deployment notifications existed decodes the alert strictly and would
//! refuse an unknown member; this way it decodes every deployment
//! notification and shows it as a plain kiln alert, with every field,
//! while a current forwarder recognises it ([`DeploymentNotice::from_alert`])
//! and gives it its own look. The field names below are the contract
//! between deploy-exec (which writes them) and alert-forwarder (which reads
//! them).

use time::OffsetDateTime;

use super::alert::{Alert, Severity};

/// The `source` of deployment notifications.
pub const SOURCE: &str = "deploy-exec";
/// At most this many log lines travel with a failure.
pub const LOG_LINES_MAX: usize = 30;
/// At most this many characters of log lines travel with a failure
/// (newlines between the lines included).
pub const LOG_CHARS_MAX: usize = 3_000;

/// The names of the fields a deployment notification carries, in the order
/// they are written.
pub mod field {
    pub const OUTCOME: &str = "Outcome";
    pub const REPOSITORY: &str = "Repository";
    pub const ENVIRONMENT: &str = "Environment";
    pub const COMMIT: &str = "Commit";
    pub const PUSHED_BY: &str = "Pushed by";
    pub const DURATION: &str = "Duration";
    pub const EXIT_CODE: &str = "Exit code";
    pub const STOP_CODE: &str = "Stop code";
    pub const STOPPED_REASON: &str = "Stopped reason";
    pub const SUPERSEDED_BY: &str = "Superseded by";
    pub const TASK: &str = "Task";
    pub const LOG_GROUP: &str = "Log group";
    pub const LOG_STREAM: &str = "Log stream";
    pub const LOG_REGION: &str = "Log region";
    pub const LOG_LINES: &str = "Last log lines";
    pub const LOG_UNAVAILABLE: &str = "Log unavailable";
}

/// How a deployment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployOutcome {
    /// The stack-updater task was started.
    Started,
    /// The deploy container exited with code 0.
    Succeeded,
    /// Anything else: a non-zero exit, no exit, a task that never started.
    Failed,
    /// A newer deployment of the same environment took its place.
    Superseded,
}

impl DeployOutcome {
    pub const ALL: [DeployOutcome; 4] = [
        DeployOutcome::Started,
        DeployOutcome::Succeeded,
        DeployOutcome::Failed,
        DeployOutcome::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployOutcome::Started => "started",
            DeployOutcome::Succeeded => "succeeded",
            DeployOutcome::Failed => "failed",
            DeployOutcome::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }

    fn severity(self) -> Severity {
        match self {
            DeployOutcome::Failed => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// Where the stack updater's log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    pub group: String,
    pub stream: String,
    pub region: String,
}

/// What a notification says about the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentLog {
    /// Nothing (started, succeeded, superseded).
    NotIncluded,
    /// The last lines, oldest first, within [`LOG_LINES_MAX`] and
    /// [`LOG_CHARS_MAX`].
    Lines {
        location: LogLocation,
        lines: Vec<String>,
    },
    /// The lines could not be read, and why. The location is given when it
    /// is known (the stream may still appear, or be readable by a person).
    Unavailable {
        location: Option<LogLocation>,
        reason: String,
    },
}

/// One deployment notification, before it becomes an [`Alert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentNotice {
    pub outcome: DeployOutcome,
    /// `owner/name`.
    pub repository: String,
    pub environment: String,
    /// The full commit id.
    pub sha: String,
    /// The GitHub login that pushed.
    pub sender: Option<String>,
    /// From the task's start (or creation) to its stop, for people:
    /// `3 min 12 s`.
    pub duration: Option<String>,
    /// One sentence: what happened.
    pub summary: String,
    pub exit_code: Option<i64>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    /// The commit that took this deployment's place.
    pub superseded_by: Option<String>,
    pub task_arn: Option<String>,
    pub log: DeploymentLog,
    pub at: OffsetDateTime,
}

/// The first 7 characters of a commit id, as GitHub shows it.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A duration for people: `45 s`, `3 min 12 s`, `1 h 2 min`.
pub fn format_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => match seconds % 60 {
            0 => format!("{} min", seconds / 60),
            s => format!("{} min {s} s", seconds / 60),
        },
        _ => match (seconds % 3600) / 60 {
            0 => format!("{} h", seconds / 3600),
            m => format!("{} h {m} min", seconds / 3600),
        },
    }
}

impl DeploymentNotice {
    /// One line naming the repository, the environment, the short sha and
    /// the outcome: `Deploy failed: owner/name f95f852 to production`.
    pub fn title(&self) -> String {
        format!(
            "Deploy {}: {} {} to {}",
            self.outcome.as_str(),
            self.repository,
            short_sha(&self.sha),
            self.environment
        )
    }

    /// The alert published to the alert topic.
    pub fn to_alert(&self) -> Alert {
        let mut alert = Alert::new(
            SOURCE,
            self.outcome.severity(),
            self.title(),
            self.summary.clone(),
            self.at,
        )
        .field(field::OUTCOME, self.outcome.as_str())
        .field(field::REPOSITORY, &self.repository)
        .field(field::ENVIRONMENT, &self.environment)
        .field(field::COMMIT, &self.sha);
        let mut optional = |name: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                alert.fields.push(super::AlertField {
                    name: name.to_string(),
                    value,
                });
            }
        };
        optional(field::PUSHED_BY, self.sender.clone());
        optional(field::DURATION, self.duration.clone());
        optional(field::EXIT_CODE, self.exit_code.map(|c| c.to_string()));
        optional(field::STOP_CODE, self.stop_code.clone());
        optional(field::STOPPED_REASON, self.stopped_reason.clone());
        optional(field::SUPERSEDED_BY, self.superseded_by.clone());
        optional(field::TASK, self.task_arn.clone());
        let location = match &self.log {
            DeploymentLog::NotIncluded => None,
            DeploymentLog::Lines { location, .. } => Some(location),
            DeploymentLog::Unavailable { location, .. } => location.as_ref(),
        };
        if let Some(location) = location {
            optional(field::LOG_GROUP, Some(location.group.clone()));
            optional(field::LOG_STREAM, Some(location.stream.clone()));
            optional(field::LOG_REGION, Some(location.region.clone()));
        }
        match &self.log {
            DeploymentLog::NotIncluded => {}
            DeploymentLog::Lines { lines, .. } => {
                optional(field::LOG_LINES, Some(lines.join("\n")));
            }
            DeploymentLog::Unavailable { reason, .. } => {
                optional(field::LOG_UNAVAILABLE, Some(reason.clone()));
            }
        }
        alert
    }

    /// Reads a deployment notification back from an alert: `None` when the
    /// alert is not one (another source, or the outcome, repository,
    /// environment or commit missing), and it is then shown as a plain
    /// alert.
    pub fn from_alert(alert: &Alert) -> Option<DeploymentNotice> {
        if alert.source != SOURCE {
            return None;
        }
        let get = |name: &str| alert.field_value(name).map(str::to_string);
        let outcome = DeployOutcome::parse(alert.field_value(field::OUTCOME)?)?;
        let location = match (
            get(field::LOG_GROUP),
            get(field::LOG_STREAM),
            get(field::LOG_REGION),
        ) {
            (Some(group), Some(stream), Some(region)) => Some(LogLocation {
                group,
                stream,
                region,
            }),
            _ => None,
        };
        let log = match (get(field::LOG_LINES), get(field::LOG_UNAVAILABLE), location) {
            (Some(lines), _, Some(location)) => DeploymentLog::Lines {
                location,
                lines: lines.split('\n').map(str::to_string).collect(),
            },
            (_, Some(reason), location) => DeploymentLog::Unavailable { location, reason },
            _ => DeploymentLog::NotIncluded,
        };
        Some(DeploymentNotice {
            outcome,
            repository: get(field::REPOSITORY)?,
            environment: get(field::ENVIRONMENT)?,
            sha: get(field::COMMIT)?,
            sender: get(field::PUSHED_BY),
            duration: get(field::DURATION),
            summary: alert.summary.clone(),
            exit_code: alert
                .field_value(field::EXIT_CODE)
                .and_then(|c| c.parse().ok()),
            stop_code: get(field::STOP_CODE),
            stopped_reason: get(field::STOPPED_REASON),
            superseded_by: get(field::SUPERSEDED_BY),
            task_arn: get(field::TASK),
            log,
            at: alert.raised_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> DeploymentNotice {
        DeploymentNotice {
            outcome: DeployOutcome::Failed,
            repository: "Codertocat/Hello-World".into(),
            environment: "production".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            sender: Some("Codertocat".into()),
            duration: Some(format_duration(192)),
            summary: "The deployment failed: exit code 1.".into(),
            exit_code: Some(1),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            superseded_by: None,
            task_arn: Some("arn:aws:ecs:eu-west-1:123456789012:task/kiln/abc".into()),
            log: DeploymentLog::Lines {
                location: LogLocation {
                    group: "/ecs/kiln-stack-updater".into(),
                    stream: "deploy/stack-updater/abc".into(),
                    region: "eu-west-1".into(),
                },
                lines: vec!["one".into(), "two".into()],
            },
            at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
        }
    }

    #[test]
    fn a_notice_is_a_plain_v1_alert_that_old_decoders_accept() {
        let alert = failure().to_alert();
        let json = alert.to_json();
        // Only the members every v1 decoder knows.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "fields",
                "kind",
                "raised_at",
                "severity",
                "source",
                "summary",
                "title",
                "version"
            ]
        );
        let decoded = Alert::from_json(&json).unwrap();
        assert_eq!(
            decoded.title,
            "Deploy failed: Codertocat/Hello-World f95f852 to production"
        );
        assert_eq!(decoded.severity, Severity::Warning);
        assert_eq!(decoded.field_value(field::LOG_LINES), Some("one\ntwo"));
        assert_eq!(DeploymentNotice::from_alert(&decoded), Some(failure()));
    }

    #[test]
    fn unavailable_logs_and_other_outcomes_round_trip() {
        let mut notice = failure();
        notice.log = DeploymentLog::Unavailable {
            location: None,
            reason: "the task never started, so it wrote no log".into(),
        };
        notice.exit_code = None;
        let alert = notice.to_alert();
        assert_eq!(alert.field_value(field::LOG_GROUP), None);
        assert_eq!(DeploymentNotice::from_alert(&alert), Some(notice.clone()));
        for outcome in DeployOutcome::ALL {
            notice.outcome = outcome;
            notice.log = DeploymentLog::NotIncluded;
            let alert = notice.to_alert();
            assert_eq!(
                alert.severity == Severity::Warning,
                outcome == DeployOutcome::Failed
            );
            assert_eq!(DeploymentNotice::from_alert(&alert), Some(notice.clone()));
        }
    }

    #[test]
    fn other_alerts_are_not_deployment_notices() {
        let alert = Alert::new("watchdog", Severity::Critical, "t", "s", failure().at)
            .field("Outcome", "failed");
        assert_eq!(DeploymentNotice::from_alert(&alert), None);
        let mut alert = failure().to_alert();
        alert.fields.retain(|f| f.name != field::COMMIT);
        assert_eq!(DeploymentNotice::from_alert(&alert), None);
        let mut alert = failure().to_alert();
        alert.fields[0].value = "exploded".into();
        assert_eq!(DeploymentNotice::from_alert(&alert), None);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(format_duration(0), "0 s");
        assert_eq!(format_duration(45), "45 s");
        assert_eq!(format_duration(60), "1 min");
        assert_eq!(format_duration(192), "3 min 12 s");
        assert_eq!(format_duration(3600), "1 h");
        assert_eq!(format_duration(3720), "1 h 2 min");
        assert_eq!(format_duration(-5), "0 s");
    }
}
