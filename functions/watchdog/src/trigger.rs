//! What an incoming event means for watchdog: a crash, a scale-down alarm,
//! or nothing. Pure: no I/O.
//!
//! The crash rule: a task whose `lastStatus` is STOPPED, and either
//! - `stopCode` is `TaskFailedToStart`, or
//! - `stopCode` is `EssentialContainerExited` and an essential container
//!   exited with a code other than 0.
//!
//! Exit code 0, `UserInitiated`, `ServiceSchedulerInitiated`, Spot
//! interruptions and the like are not crashes. Task events don't say which
//! containers are essential, so a multi-container task where only some
//! containers failed is a [`Trigger::PossibleCrash`]: the task definition
//! decides (a sidecar killed at shutdown is not a crash).
//!
//! Alarms act when they transition to ALARM and are listed in
//! `SCALE_DOWN_ALARMS`. Any other shape is an error, so that a misrouted
//! event surfaces instead of being silently dropped.

use std::collections::BTreeSet;

use kiln::events::cloudwatch::{ALARM, AlarmNotification, AlarmStateChange};
use kiln::events::ecs::TaskStateChange;
use kiln::events::eventbridge::{ALARM_STATE_CHANGE, ECS_TASK_STATE_CHANGE, EventBridgeEvent};
use kiln::events::{Inbound, UnrecognisedEvent, parse_aws_time};
use time::OffsetDateTime;

pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
pub const ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";

/// A task ECS reports as stopped, from an event or from DescribeTasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoppedTask {
    pub task_arn: Option<String>,
    pub cluster_arn: Option<String>,
    /// `service:NAME` or `family:NAME`.
    pub group: Option<String>,
    pub task_definition_arn: Option<String>,
    pub last_status: Option<String>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub stopped_at: Option<OffsetDateTime>,
    pub containers: Vec<ContainerExit>,
}

/// How one container of a task ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerExit {
    pub name: Option<String>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
}

impl ContainerExit {
    fn failed(&self) -> bool {
        self.exit_code.is_some_and(|code| code != 0)
    }
}

impl StoppedTask {
    /// From the `detail` of an ECS Task State Change event.
    pub fn from_event(detail: &TaskStateChange, resources: &[String]) -> Self {
        StoppedTask {
            // The task ARN is also the event's only resource.
            task_arn: detail
                .task_arn
                .clone()
                .or_else(|| resources.first().cloned()),
            cluster_arn: detail.cluster_arn.clone(),
            group: detail.group.clone(),
            task_definition_arn: detail.task_definition_arn.clone(),
            last_status: detail.last_status.clone(),
            stop_code: detail.stop_code.clone(),
            stopped_reason: detail.stopped_reason.clone(),
            stopped_at: detail.stopped_at.as_deref().and_then(parse_aws_time),
            containers: detail
                .containers
                .iter()
                .map(|c| ContainerExit {
                    name: c.name.clone(),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                })
                .collect(),
        }
    }

    /// The task's id: the last part of its ARN.
    pub fn task_id(&self) -> Option<&str> {
        self.task_arn
            .as_deref()
            .and_then(|arn| arn.rsplit('/').next())
    }
}

/// Whether a stopped task crashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It crashed; the container to blame, when one can be named.
    Crash(Option<ContainerExit>),
    /// Only some containers failed: which ones are essential decides.
    NeedsEssentialContainers,
    NotCrash(String),
}

/// Applies the crash rule. `essential` holds the names of the task's
/// essential containers when known; `None` means "not looked up".
pub fn crash_verdict(task: &StoppedTask, essential: Option<&BTreeSet<String>>) -> Verdict {
    let status = task.last_status.as_deref().unwrap_or("unknown");
    if status != "STOPPED" {
        return Verdict::NotCrash(format!("the task is {status}, not STOPPED"));
    }
    match task.stop_code.as_deref() {
        Some(TASK_FAILED_TO_START) => {
            let blamed = task
                .containers
                .iter()
                .find(|c| c.failed())
                .or_else(|| task.containers.iter().find(|c| c.reason.is_some()))
                .cloned();
            Verdict::Crash(blamed)
        }
        Some(ESSENTIAL_CONTAINER_EXITED) => {
            let is_essential = |c: &&ContainerExit| match (essential, &c.name) {
                (Some(names), Some(name)) => names.contains(name),
                // Not looked up, or unnamed: assume essential.
                _ => true,
            };
            let failed: Vec<&ContainerExit> = task
                .containers
                .iter()
                .filter(is_essential)
                .filter(|c| c.failed())
                .collect();
            match failed.first() {
                None => Verdict::NotCrash(
                    "the essential containers exited with code 0 (or no code)".into(),
                ),
                Some(first) => {
                    let all_failed = task.containers.iter().all(ContainerExit::failed);
                    if essential.is_none() && !all_failed && task.containers.len() > 1 {
                        Verdict::NeedsEssentialContainers
                    } else {
                        Verdict::Crash(Some((*first).clone()))
                    }
                }
            }
        }
        Some(other) => Verdict::NotCrash(format!("stopCode {other} is not a crash")),
        None => Verdict::NotCrash("the event has no stopCode".into()),
    }
}

/// A listed alarm that went to ALARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmTrigger {
    pub name: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub previous_state: Option<String>,
    /// When the alarm changed state, as AWS wrote it.
    pub changed_at: Option<String>,
    /// How it arrived: `SNS` or `EventBridge`.
    pub via: &'static str,
}

/// What an event asks watchdog to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Crash {
        task: StoppedTask,
        container: Option<ContainerExit>,
    },
    /// A stopped task where only some containers failed.
    PossibleCrash {
        task: StoppedTask,
    },
    ScaleDownAlarm(AlarmTrigger),
    Ignore {
        reason: String,
    },
}

/// What the classification needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub cluster_arn: Option<&'a str>,
    pub scale_down_alarms: &'a [String],
}

/// Classifies an invocation payload.
pub fn classify(event: serde_json::Value, rules: &Rules<'_>) -> Result<Trigger, UnrecognisedEvent> {
    match Inbound::from_value(event)? {
        Inbound::EventBridge(event) => classify_eventbridge(&event, rules),
        Inbound::Sns(event) => {
            if event.records.is_empty() {
                return Err(UnrecognisedEvent("an SNS event with no records".into()));
            }
            // Lambda delivers one record per SNS event; if there are more,
            // every one must be an alarm and the first listed one acts.
            let mut ignored = Vec::new();
            let mut acting = None;
            for (index, record) in event.records.iter().enumerate() {
                let alarm =
                    AlarmNotification::from_message(&record.sns.message).ok_or_else(|| {
                        UnrecognisedEvent(format!(
                            "{}: the SNS message is not a CloudWatch alarm notification",
                            record.label(index)
                        ))
                    })?;
                match alarm_trigger(
                    AlarmTrigger {
                        name: alarm.alarm_name.clone(),
                        reason: alarm.new_state_reason.clone(),
                        description: alarm.alarm_description.clone(),
                        previous_state: alarm.old_state_value.clone(),
                        changed_at: alarm.state_change_time.clone(),
                        via: "SNS",
                    },
                    &alarm.new_state_value,
                    alarm.alarm_arn.as_deref(),
                    rules,
                ) {
                    Trigger::Ignore { reason } => ignored.push(reason),
                    other => {
                        acting.get_or_insert(other);
                    }
                }
            }
            Ok(acting.unwrap_or_else(|| Trigger::Ignore {
                reason: ignored.join("; "),
            }))
        }
    }
}

fn classify_eventbridge(
    event: &EventBridgeEvent,
    rules: &Rules<'_>,
) -> Result<Trigger, UnrecognisedEvent> {
    if event.is(kiln::events::ecs::SOURCE, ECS_TASK_STATE_CHANGE) {
        let detail: TaskStateChange = event.detail_as().map_err(|e| {
            UnrecognisedEvent(format!(
                "an ECS Task State Change whose detail does not decode: {e}"
            ))
        })?;
        return Ok(classify_task(
            StoppedTask::from_event(&detail, &event.resources),
            rules,
        ));
    }
    if event.is(kiln::events::cloudwatch::SOURCE, ALARM_STATE_CHANGE) {
        let detail: AlarmStateChange = event.detail_as().map_err(|e| {
            UnrecognisedEvent(format!(
                "a CloudWatch Alarm State Change whose detail does not decode: {e}"
            ))
        })?;
        return Ok(alarm_trigger(
            AlarmTrigger {
                name: detail.alarm_name.clone(),
                reason: detail.state.reason.clone(),
                description: detail
                    .configuration
                    .as_ref()
                    .and_then(|c| c.description.clone()),
                previous_state: detail.previous_state.as_ref().map(|s| s.value.clone()),
                changed_at: detail
                    .state
                    .timestamp
                    .clone()
                    .or_else(|| event.time.clone()),
                via: "EventBridge",
            },
            &detail.state.value,
            event.resources.first().map(String::as_str),
            rules,
        ));
    }
    Err(UnrecognisedEvent(format!(
        "an EventBridge event from {:?} of type {:?}; watchdog handles only \
         \"{ECS_TASK_STATE_CHANGE}\" and \"{ALARM_STATE_CHANGE}\"",
        event.source, event.detail_type
    )))
}

fn classify_task(task: StoppedTask, rules: &Rules<'_>) -> Trigger {
    if let Some(ours) = rules.cluster_arn
        && task.cluster_arn.as_deref() != Some(ours)
    {
        return Trigger::Ignore {
            reason: format!(
                "the task belongs to cluster {}, not {ours}",
                task.cluster_arn.as_deref().unwrap_or("(none)")
            ),
        };
    }
    match crash_verdict(&task, None) {
        Verdict::Crash(container) => Trigger::Crash { task, container },
        Verdict::NeedsEssentialContainers => Trigger::PossibleCrash { task },
        Verdict::NotCrash(reason) => Trigger::Ignore { reason },
    }
}

fn alarm_trigger(
    alarm: AlarmTrigger,
    new_state: &str,
    alarm_arn: Option<&str>,
    rules: &Rules<'_>,
) -> Trigger {
    let listed = rules
        .scale_down_alarms
        .iter()
        .any(|listed| *listed == alarm.name || Some(listed.as_str()) == alarm_arn);
    if !listed {
        return Trigger::Ignore {
            reason: format!("alarm {} is not in SCALE_DOWN_ALARMS", alarm.name),
        };
    }
    if new_state != ALARM {
        return Trigger::Ignore {
            reason: format!("alarm {} went to {new_state}, not ALARM", alarm.name),
        };
    }
    Trigger::ScaleDownAlarm(alarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:111122223333:cluster/kiln";

    fn task(stop_code: &str, exits: &[(&str, Option<i64>)]) -> StoppedTask {
        StoppedTask {
            task_arn: Some("arn:aws:ecs:us-east-1:111122223333:task/kiln/abc".into()),
            cluster_arn: Some(CLUSTER.into()),
            group: Some("service:app".into()),
            last_status: Some("STOPPED".into()),
            stop_code: Some(stop_code.into()),
            containers: exits
                .iter()
                .map(|(name, code)| ContainerExit {
                    name: Some((*name).into()),
                    exit_code: *code,
                    reason: None,
                })
                .collect(),
            ..StoppedTask::default()
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crash_rule() {
        let crash = |t: &StoppedTask, e: Option<&BTreeSet<String>>| {
            matches!(crash_verdict(t, e), Verdict::Crash(_))
        };
        assert!(crash(
            &task(ESSENTIAL_CONTAINER_EXITED, &[("app", Some(1))]),
            None
        ));
        assert!(crash(
            &task(ESSENTIAL_CONTAINER_EXITED, &[("app", Some(137))]),
            None
        ));
        assert!(!crash(
            &task(ESSENTIAL_CONTAINER_EXITED, &[("app", Some(0))]),
            None
        ));
        assert!(!crash(
            &task(ESSENTIAL_CONTAINER_EXITED, &[("app", None)]),
            None
        ));
        assert!(!crash(&task(ESSENTIAL_CONTAINER_EXITED, &[]), None));
        assert!(crash(&task(TASK_FAILED_TO_START, &[]), None));
        assert!(crash(&task(TASK_FAILED_TO_START, &[("app", None)]), None));
        for code in [
            "UserInitiated",
            "ServiceSchedulerInitiated",
            "SpotInterruption",
            "TerminationNotice",
        ] {
            assert!(!crash(&task(code, &[("app", Some(1))]), None), "{code}");
        }
        let mut running = task(TASK_FAILED_TO_START, &[]);
        running.last_status = Some("RUNNING".into());
        assert_eq!(
            crash_verdict(&running, None),
            Verdict::NotCrash("the task is RUNNING, not STOPPED".into())
        );
    }

    #[test]
    fn essential_containers_decide_mixed_exits() {
        // App exited 0, sidecar killed at shutdown: ask the task definition.
        let mixed = task(
            ESSENTIAL_CONTAINER_EXITED,
            &[("app", Some(0)), ("log-router", Some(143))],
        );
        assert_eq!(
            crash_verdict(&mixed, None),
            Verdict::NeedsEssentialContainers
        );
        assert!(matches!(
            crash_verdict(&mixed, Some(&names(&["app"]))),
            Verdict::NotCrash(_)
        ));
        assert!(matches!(
            crash_verdict(&mixed, Some(&names(&["app", "log-router"]))),
            Verdict::Crash(Some(ContainerExit {
                exit_code: Some(143),
                ..
            }))
        ));
        // Every container failed: no lookup needed.
        let all = task(
            ESSENTIAL_CONTAINER_EXITED,
            &[("app", Some(1)), ("log-router", Some(143))],
        );
        assert!(matches!(
            crash_verdict(&all, None),
            Verdict::Crash(Some(ContainerExit {
                exit_code: Some(1),
                ..
            }))
        ));
    }

    #[test]
    fn blames_the_failed_container_of_a_task_that_failed_to_start() {
        let mut t = task(TASK_FAILED_TO_START, &[("init", Some(0)), ("app", None)]);
        t.containers[1].reason = Some("CannotPullContainerError: pull access denied".into());
        let Verdict::Crash(Some(blamed)) = crash_verdict(&t, None) else {
            panic!()
        };
        assert_eq!(blamed.name.as_deref(), Some("app"));
    }

    // Real and synthetic payloads from tests/fixtures.

    fn fixture(path: &str) -> serde_json::Value {
        let full = format!("{}/../../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn sns_wrapping(message: &str) -> serde_json::Value {
        serde_json::json!({"Records": [{
            "EventSource": "aws:sns",
            "EventSubscriptionArn": "arn:aws:sns:eu-west-1:123456789012:alarms:1",
            "Sns": {"Type": "Notification", "MessageId": "m-1", "Message": message}
        }]})
    }

    const ALARMS: &[&str] = &[
        "awsrds-app-High-DB-Connections",
        "EXAMPLE",
        "Example",
        "ServerCpuTooHigh",
        "ServiceAggregatedAlarm",
        "TotalNetworkTrafficTooHigh",
    ];

    fn classify_with(
        event: serde_json::Value,
        alarms: &[&str],
    ) -> Result<Trigger, UnrecognisedEvent> {
        let alarms: Vec<String> = alarms.iter().map(|s| s.to_string()).collect();
        classify(
            event,
            &Rules {
                cluster_arn: None,
                scale_down_alarms: &alarms,
            },
        )
    }

    #[test]
    fn synthetic_stopped_tasks() {
        let Trigger::Crash { task, container } = classify_with(
            fixture("synthetic/ecs-task-stopped-essential-exit1.json"),
            &[],
        )
        .unwrap() else {
            panic!("not a crash")
        };
        assert_eq!(task.group.as_deref(), Some("family:sample-fargate"));
        assert_eq!(task.task_id(), Some("c13b4cb40f1f4fe4a2971f76ae5a47ad"));
        assert_eq!(
            task.stopped_at,
            Some(time::macros::datetime!(2020-01-23 17:58:30.612 UTC))
        );
        let container = container.unwrap();
        assert_eq!(
            (container.name.as_deref(), container.exit_code),
            (Some("FargateApp"), Some(1))
        );

        assert!(matches!(
            classify_with(
                fixture("synthetic/ecs-task-stopped-failed-to-start.json"),
                &[]
            ),
            Ok(Trigger::Crash {
                container: Some(ContainerExit {
                    exit_code: None,
                    reason: Some(_),
                    ..
                }),
                ..
            })
        ));
        for (path, reason) in [
            (
                "synthetic/ecs-task-stopped-essential-exit0.json",
                "exited with code 0",
            ),
            (
                "synthetic/ecs-task-stopped-user-initiated.json",
                "stopCode UserInitiated is not a crash",
            ),
            (
                "aws/lambda-dotnet/ecs-task-state-change-event.json",
                "the task is RUNNING, not STOPPED",
            ),
            (
                "aws/ecs-docs/task-state-change-container-stopped-exit0.json",
                "the task is RUNNING",
            ),
        ] {
            match classify_with(fixture(path), &[]) {
                Ok(Trigger::Ignore { reason: why }) => {
                    assert!(why.contains(reason), "{path}: {why}")
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_clusters_are_ignored() {
        let event = fixture("synthetic/ecs-task-stopped-essential-exit1.json");
        let rules = |cluster: &'static str| Rules {
            cluster_arn: Some(cluster),
            scale_down_alarms: &[],
        };
        assert!(matches!(
            classify(
                event.clone(),
                &rules("arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster")
            ),
            Ok(Trigger::Crash { .. })
        ));
        let Ok(Trigger::Ignore { reason }) = classify(
            event,
            &rules("arn:aws:ecs:us-west-2:111122223333:cluster/Other"),
        ) else {
            panic!()
        };
        assert_eq!(
            reason,
            "the task belongs to cluster arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster, \
             not arn:aws:ecs:us-west-2:111122223333:cluster/Other"
        );
    }

    #[test]
    fn listed_alarms_in_alarm_act() {
        for (path, name) in [
            (
                "aws/assertible/sns-cloudwatch-event.json",
                "awsrds-app-High-DB-Connections",
            ),
            (
                "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
                "EXAMPLE",
            ),
            (
                "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
                "EXAMPLE",
            ),
            (
                "aws/lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
                "EXAMPLE",
            ),
            (
                "aws/lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
                "EXAMPLE",
            ),
            (
                "aws/cloudwatch-docs/alarm-state-change-single-metric.json",
                "ServerCpuTooHigh",
            ),
            (
                "aws/cloudwatch-docs/alarm-state-change-metric-math.json",
                "TotalNetworkTrafficTooHigh",
            ),
            (
                "aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
                "ServiceAggregatedAlarm",
            ),
        ] {
            let Ok(Trigger::ScaleDownAlarm(alarm)) = classify_with(fixture(path), ALARMS) else {
                panic!("{path}: did not act")
            };
            assert_eq!(alarm.name, name, "{path}");
            assert!(alarm.reason.is_some(), "{path}");
            // Not listed: ignored.
            assert!(
                matches!(
                    classify_with(fixture(path), &["other"]),
                    Ok(Trigger::Ignore { .. })
                ),
                "{path}"
            );
        }
        let Ok(Trigger::ScaleDownAlarm(alarm)) =
            classify_with(fixture("aws/assertible/sns-cloudwatch-event.json"), ALARMS)
        else {
            panic!()
        };
        assert_eq!(alarm.description, None);
        assert_eq!(alarm.via, "SNS");
        assert_eq!(alarm.previous_state.as_deref(), Some("OK"));
    }

    #[test]
    fn alarm_without_trigger_wrapped_in_sns() {
        // A bare alarm message with no Trigger (like a composite alarm's).
        let bare = std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/aws/notify-slack/events/cloudwatch_alarm.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let Ok(Trigger::ScaleDownAlarm(alarm)) = classify_with(sns_wrapping(&bare), &["Example"])
        else {
            panic!()
        };
        assert_eq!(
            alarm.description.as_deref(),
            Some("Example alarm description.")
        );
        let composite = r#"{"AlarmName":"app-down","AlarmDescription":null,"NewStateValue":"ALARM","NewStateReason":"cpu transitioned to ALARM","OldStateValue":"OK","AlarmRule":"ALARM(cpu) OR ALARM(mem)"}"#;
        assert!(matches!(
            classify_with(sns_wrapping(composite), &["app-down"]),
            Ok(Trigger::ScaleDownAlarm(_))
        ));
    }

    #[test]
    fn alarms_leaving_alarm_are_ignored() {
        // ALARM → OK, listed.
        let Ok(Trigger::Ignore { reason }) = classify_with(
            fixture("aws/notify-slack/messages/cloudwatch_alarm.json"),
            &["DBMigrationRequired"],
        ) else {
            panic!()
        };
        assert_eq!(reason, "alarm DBMigrationRequired went to OK, not ALARM");
    }

    #[test]
    fn alarms_can_be_listed_by_arn() {
        let listed = ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh"];
        assert!(matches!(
            classify_with(
                fixture("aws/cloudwatch-docs/alarm-state-change-single-metric.json"),
                &listed
            ),
            Ok(Trigger::ScaleDownAlarm(_))
        ));
    }

    #[test]
    fn unrecognised_events_are_errors() {
        for (event, expected) in [
            (
                fixture("aws/rust-runtime/example-sns-event.json"),
                "not a CloudWatch alarm notification",
            ),
            (
                fixture("aws/notify-slack/messages/dms_notification.json"),
                "not a CloudWatch alarm notification",
            ),
            (
                fixture("aws/lambda-go/ecs-container-instance-state-change.json"),
                "\"ECS Container Instance State Change\"",
            ),
            (
                fixture("aws/rust-runtime/example-autoscaling-event-launch-successful.json"),
                "aws.autoscaling",
            ),
            (
                fixture("aws/rust-runtime/example-apigw-v2-request-no-authorizer.json"),
                "neither an SNS event",
            ),
            (
                fixture("aws/rust-runtime/example-cloudwatch-alarm-metric.json"),
                "neither an SNS event",
            ),
            (
                fixture(
                    "aws/rust-runtime/example-cloudwatch-alarm-composite-with-suppressor-alarm.json",
                ),
                "does not decode",
            ),
            (serde_json::json!({"Records": []}), "no records"),
            (serde_json::json!("hello"), "neither an SNS event"),
        ] {
            let err = classify_with(event, ALARMS).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
