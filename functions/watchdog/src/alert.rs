//! The alert watchdog raises after scaling down. Pure: it only builds the
//! message.
//!
//! The alert says why (the crashed task and container, or the alarm), what
//! changed (capacity before and after), and how to undo it: the "Restore
//! with" field is the exact AWS CLI command that puts the previous capacity
//! back once the cause is fixed.

use kiln::{Alert, Severity};
use time::OffsetDateTime;

use crate::scaling::Capacity;
use crate::trigger::{AlarmTrigger, ContainerExit, StoppedTask, TASK_FAILED_TO_START};

/// The `source` of watchdog's alerts.
pub const SOURCE: &str = "watchdog";

/// What was scaled down.
#[derive(Debug, Clone, Copy)]
pub struct ScaledGroup<'a> {
    pub name: &'a str,
    pub before: Capacity,
    pub after: Capacity,
    /// The region, for the restore command.
    pub region: Option<&'a str>,
}

/// Why it was scaled down.
#[derive(Debug, Clone, Copy)]
pub enum Cause<'a> {
    Crash {
        task: &'a StoppedTask,
        container: Option<&'a ContainerExit>,
        /// Crashed tasks of the group within the window, this one included.
        crashes: u32,
        threshold: u32,
        window_minutes: u64,
    },
    Alarm(&'a AlarmTrigger),
}

/// The AWS CLI command that restores the capacity the group had before.
pub fn restore_command(group: &ScaledGroup<'_>) -> String {
    let mut command = format!(
        "aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} \
         --min-size {} --desired-capacity {}",
        shell_word(group.name),
        group.before.min_size,
        group.before.desired
    );
    if let Some(region) = group.region {
        command.push_str(&format!(" --region {}", shell_word(region)));
    }
    command
}

/// Quotes a value for a POSIX shell when it needs it. Group names may hold
/// spaces and most punctuation.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+=".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn change(before: i32, after: i32) -> String {
    if before == after {
        format!("{after} (unchanged)")
    } else {
        format!("{before} → {after}")
    }
}

/// Builds the alert.
pub fn build(group: &ScaledGroup<'_>, cause: &Cause<'_>, raised_at: OffsetDateTime) -> Alert {
    let capacity = if group.before.min_size > 0 {
        format!(
            "desired capacity {} → 0 and minimum size {} → 0",
            group.before.desired, group.before.min_size
        )
    } else {
        format!("desired capacity {} → 0", group.before.desired)
    };
    let restore = restore_command(group);
    let (severity, title, why) = match cause {
        Cause::Crash {
            task,
            container,
            crashes,
            window_minutes,
            ..
        } => {
            let who = task
                .group
                .clone()
                .or_else(|| task.task_id().map(|id| format!("task {id}")))
                .unwrap_or_else(|| "an ECS task".into());
            let what = match (task.stop_code.as_deref(), container) {
                (Some(TASK_FAILED_TO_START), Some(c)) => match &c.reason {
                    Some(reason) => format!("failed to start ({reason})"),
                    None => "failed to start".into(),
                },
                (Some(TASK_FAILED_TO_START), None) => "failed to start".into(),
                (
                    _,
                    Some(ContainerExit {
                        name,
                        exit_code: Some(code),
                        ..
                    }),
                ) => format!(
                    "stopped: container {} exited with code {code}",
                    name.as_deref().unwrap_or("(unnamed)")
                ),
                _ => "stopped".into(),
            };
            let repeat = if *crashes > 1 {
                format!(" {crashes} tasks crashed in the last {window_minutes} minutes.")
            } else {
                String::new()
            };
            (
                Severity::Critical,
                format!("Crash loop in {who}: {} scaled to 0", group.name),
                format!("A task of {who} {what}.{repeat}"),
            )
        }
        Cause::Alarm(alarm) => (
            Severity::Warning,
            format!("Alarm {}: {} scaled to 0", alarm.name, group.name),
            format!("Alarm {} went to ALARM.", alarm.name),
        ),
    };
    let summary = format!(
        "{why} watchdog set Auto Scaling group {} to zero instances ({capacity}), so the stack \
         stops running and costing money. Fix the cause, then restore the capacity with: {restore}",
        group.name
    );

    let mut alert = Alert::new(SOURCE, severity, title, summary, raised_at)
        .field("Auto Scaling group", group.name)
        .field(
            "Desired capacity",
            change(group.before.desired, group.after.desired),
        )
        .field(
            "Min size",
            change(group.before.min_size, group.after.min_size),
        )
        .field(
            "Max size",
            change(group.before.max_size, group.after.max_size),
        );
    let mut optional = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            alert.fields.push(kiln::AlertField {
                name: name.to_string(),
                value,
            });
        }
    };
    match cause {
        Cause::Crash {
            task,
            container,
            crashes,
            threshold,
            window_minutes,
        } => {
            optional("Cluster", task.cluster_arn.clone());
            optional("Task", task.task_arn.clone());
            optional("Group", task.group.clone());
            optional("Container", container.and_then(|c| c.name.clone()));
            optional(
                "Exit code",
                container.and_then(|c| c.exit_code).map(|c| c.to_string()),
            );
            optional("Container reason", container.and_then(|c| c.reason.clone()));
            optional("Stop code", task.stop_code.clone());
            optional("Stopped reason", task.stopped_reason.clone());
            optional(
                "Crashes",
                Some(format!(
                    "{crashes} in the last {window_minutes} minutes (threshold {threshold})"
                )),
            );
        }
        Cause::Alarm(alarm) => {
            optional("Alarm", Some(alarm.name.clone()));
            optional("Alarm reason", alarm.reason.clone());
            optional("Alarm description", alarm.description.clone());
            optional(
                "State change",
                Some(match (&alarm.previous_state, &alarm.changed_at) {
                    (Some(previous), Some(at)) => format!("{previous} → ALARM at {at}"),
                    (Some(previous), None) => format!("{previous} → ALARM"),
                    (None, Some(at)) => format!("ALARM at {at}"),
                    (None, None) => "ALARM".into(),
                }),
            );
            optional("Received via", Some(alarm.via.to_string()));
        }
    }
    optional("Restore with", Some(restore));
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

    fn group(min_size: i32) -> ScaledGroup<'static> {
        ScaledGroup {
            name: "kiln-app",
            before: Capacity {
                min_size,
                desired: 1,
                max_size: 2,
            },
            after: Capacity {
                min_size: 0,
                desired: 0,
                max_size: 2,
            },
            region: Some("eu-west-1"),
        }
    }

    fn crashed_task() -> StoppedTask {
        StoppedTask {
            task_arn: Some("arn:aws:ecs:eu-west-1:123456789012:task/kiln/0123abcd".into()),
            cluster_arn: Some("arn:aws:ecs:eu-west-1:123456789012:cluster/kiln".into()),
            group: Some("service:app".into()),
            last_status: Some("STOPPED".into()),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            ..StoppedTask::default()
        }
    }

    #[test]
    fn crash_alert_has_every_field_and_the_restore_command() {
        let task = crashed_task();
        let container = ContainerExit {
            name: Some("app".into()),
            exit_code: Some(1),
            reason: None,
        };
        let alert = build(
            &group(1),
            &Cause::Crash {
                task: &task,
                container: Some(&container),
                crashes: 3,
                threshold: 3,
                window_minutes: 10,
            },
            AT,
        );
        assert_eq!(alert.kind, "kiln.alert");
        assert_eq!(alert.version, 1);
        assert_eq!(alert.source, "watchdog");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(
            alert.title,
            "Crash loop in service:app: kiln-app scaled to 0"
        );
        let fields: Vec<(&str, &str)> = alert
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("Auto Scaling group", "kiln-app"),
                ("Desired capacity", "1 → 0"),
                ("Min size", "1 → 0"),
                ("Max size", "2 (unchanged)"),
                ("Cluster", "arn:aws:ecs:eu-west-1:123456789012:cluster/kiln"),
                (
                    "Task",
                    "arn:aws:ecs:eu-west-1:123456789012:task/kiln/0123abcd"
                ),
                ("Group", "service:app"),
                ("Container", "app"),
                ("Exit code", "1"),
                ("Stop code", "EssentialContainerExited"),
                ("Stopped reason", "Essential container in task exited"),
                ("Crashes", "3 in the last 10 minutes (threshold 3)"),
                (
                    "Restore with",
                    "aws autoscaling update-auto-scaling-group --auto-scaling-group-name kiln-app \
                     --min-size 1 --desired-capacity 1 --region eu-west-1"
                ),
            ]
        );
        assert!(alert.summary.starts_with(
            "A task of service:app stopped: container app exited with code 1. \
             3 tasks crashed in the last 10 minutes."
        ));
        assert!(
            alert
                .summary
                .contains("desired capacity 1 → 0 and minimum size 1 → 0")
        );
        assert_eq!(kiln::Alert::from_json(&alert.to_json()).unwrap(), alert);
    }

    #[test]
    fn failed_start_names_the_reason() {
        let mut task = crashed_task();
        task.stop_code = Some(TASK_FAILED_TO_START.into());
        task.group = None;
        let container = ContainerExit {
            name: Some("app".into()),
            exit_code: None,
            reason: Some("CannotPullContainerError: pull access denied".into()),
        };
        let alert = build(
            &group(0),
            &Cause::Crash {
                task: &task,
                container: Some(&container),
                crashes: 1,
                threshold: 1,
                window_minutes: 10,
            },
            AT,
        );
        assert_eq!(
            alert.title,
            "Crash loop in task 0123abcd: kiln-app scaled to 0"
        );
        assert!(alert.summary.starts_with(
            "A task of task 0123abcd failed to start (CannotPullContainerError: pull access denied)."
        ));
        assert_eq!(alert.field_value("Min size"), Some("0 (unchanged)"));
        assert_eq!(alert.field_value("Exit code"), None);
        assert_eq!(
            alert.field_value("Container reason"),
            Some("CannotPullContainerError: pull access denied")
        );
    }

    #[test]
    fn alarm_alert() {
        let alarm = AlarmTrigger {
            name: "kiln-idle".into(),
            reason: Some("Threshold Crossed".into()),
            description: None,
            previous_state: Some("OK".into()),
            changed_at: Some("2017-01-12T16:30:42.236+0000".into()),
            via: "SNS",
        };
        let alert = build(&group(0), &Cause::Alarm(&alarm), AT);
        assert_eq!(alert.severity, Severity::Warning);
        assert_eq!(alert.title, "Alarm kiln-idle: kiln-app scaled to 0");
        assert_eq!(alert.field_value("Alarm"), Some("kiln-idle"));
        assert_eq!(alert.field_value("Alarm reason"), Some("Threshold Crossed"));
        assert_eq!(alert.field_value("Alarm description"), None);
        assert_eq!(
            alert.field_value("State change"),
            Some("OK → ALARM at 2017-01-12T16:30:42.236+0000")
        );
    }

    #[test]
    fn subject_fits_sns_even_for_long_names() {
        let name = "a".repeat(255);
        let mut g = group(0);
        g.name = &name;
        let alarm = AlarmTrigger {
            name: "b".repeat(255),
            reason: None,
            description: None,
            previous_state: None,
            changed_at: None,
            via: "EventBridge",
        };
        let alert = build(&g, &Cause::Alarm(&alarm), AT);
        assert!(alert.subject().chars().count() <= 100);
    }

    #[test]
    fn restore_command_quotes_odd_names() {
        let mut g = group(2);
        g.name = "my app's group";
        g.region = None;
        assert_eq!(
            restore_command(&g),
            r"aws autoscaling update-auto-scaling-group --auto-scaling-group-name 'my app'\''s group' --min-size 2 --desired-capacity 1"
        );
    }
}
