//! Golden files of the Slack JSON for every alarm and event fixture, and for
//! a kiln alert as watchdog raises it. The snapshots are the product: review
//! a change to one as you would review the message in Slack.
//!
//! Each fixture is rendered the way the function would receive it: an SNS
//! event's records one by one, anything else as a direct invocation (an
//! EventBridge rule target or an alarm's Lambda action). Rendering uses a
//! mention, so the snapshots show where it goes, and the default
//! `NOTIFY_OK` (after-alarm).

use alert_forwarder::classify::{self, Invocation};
use alert_forwarder::config::NotifyOk;
use alert_forwarder::render::{self, Options, Origin, Rendered};
use kiln::{Alert, Severity};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/aws");

const OPTIONS: Options<'static> = Options {
    mention: Some("<!here>"),
    notify_ok: NotifyOk::AfterAlarm,
};

fn rendered(rendered: Rendered) -> Value {
    match rendered {
        Rendered::Post(payload) => payload.to_json(),
        Rendered::Skip { reason } => json!({ "skipped": reason }),
    }
}

/// The Slack payloads a fixture produces, one per record.
fn render_fixture(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap();
    match classify::invocation(serde_json::from_str(&text).unwrap()) {
        Invocation::Sns(event) => event
            .records
            .iter()
            .map(|record| {
                let origin = Origin {
                    topic_arn: record.sns.topic_arn.as_deref(),
                    subject: record.sns.subject.as_deref(),
                    timestamp: record.sns.timestamp.as_deref(),
                };
                let message = classify::message(&record.sns.message);
                rendered(render::render(&message, &origin, &OPTIONS))
            })
            .collect(),
        Invocation::Direct(message) => {
            vec![rendered(render::render(
                &message,
                &Origin::default(),
                &OPTIONS,
            ))]
        }
        Invocation::Schedule(_) => panic!("{path}: a scheduled event has no message"),
    }
}

/// Every fixture the function can receive. The API Gateway and function URL
/// requests under aws/ are another function's input.
const EVENT_FIXTURES: &[&str] = &[
    "assertible/sns-cloudwatch-event.json",
    "assertible/sns-event.json",
    "cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
    "cloudwatch-docs/alarm-state-change-metric-math.json",
    "cloudwatch-docs/alarm-state-change-single-metric.json",
    "ecs-docs/task-state-change-container-stopped-exit0.json",
    "lambda-dotnet/ecs-task-state-change-event.json",
    "lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
    "lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
    "lambda-go/ecs-container-instance-state-change.json",
    "notify-slack/events/aws_health_event.json",
    "notify-slack/events/cloudwatch_alarm.json",
    "notify-slack/events/guardduty_finding_high.json",
    "notify-slack/events/guardduty_finding_low.json",
    "notify-slack/events/guardduty_finding_medium.json",
    "notify-slack/messages/backup.json",
    "notify-slack/messages/cloudwatch_alarm.json",
    "notify-slack/messages/dms_notification.json",
    "notify-slack/messages/glue_notification.json",
    "notify-slack/messages/guardduty_finding.json",
    "notify-slack/messages/guardduty_malware_protection_object_scan_result.json",
    "notify-slack/messages/text_message.json",
    "rust-runtime/example-autoscaling-event-launch-successful.json",
    "rust-runtime/example-autoscaling-event-terminate-successful.json",
    "rust-runtime/example-cloudwatch-alarm-composite-with-suppressor-alarm.json",
    "rust-runtime/example-cloudwatch-alarm-composite.json",
    "rust-runtime/example-cloudwatch-alarm-metric.json",
    "rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
    "rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
    "rust-runtime/example-eventbridge-event-obj.json",
    "rust-runtime/example-sns-event.json",
];

const NOT_EVENTS: &[&str] = &[
    "lambda-go/function-url-domain-only-request-with-base64-encoded-body.json",
    "lambda-go/function-url-request-with-headers-and-cookies-and-text-body.json",
    "rust-runtime/apigw_v2_proxy_request.json",
    "rust-runtime/example-apigw-v2-request-no-authorizer.json",
];

fn snapshot_name(path: &str) -> String {
    path.trim_end_matches(".json").replace(['/', '.'], "__")
}

#[test]
fn every_event_fixture_is_covered() {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(FIXTURES).unwrap() {
        let dir = dir.unwrap().path();
        let mut stack = vec![dir];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "json") {
                let relative = path
                    .strip_prefix(FIXTURES)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.push(relative);
            }
        }
    }
    found.sort();
    let mut listed: Vec<String> = EVENT_FIXTURES
        .iter()
        .chain(NOT_EVENTS)
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "a fixture was added or removed: list it above"
    );
}

#[test]
fn fixtures_render_as_the_golden_files() {
    for path in EVENT_FIXTURES {
        let payloads = render_fixture(path);
        assert!(!payloads.is_empty(), "{path}");
        insta::assert_json_snapshot!(snapshot_name(path), payloads);
    }
}

/// The alert watchdog raises when a deploy crash-loops (its fields, in its
/// order).
pub fn watchdog_crash_alert() -> Alert {
    Alert::new(
        "watchdog",
        Severity::Critical,
        "Crash loop in family:kiln-app: kiln-app-asg scaled to 0",
        "A task of family:kiln-app stopped: container app exited with code 1. 3 tasks crashed in \
         the last 10 minutes. watchdog set Auto Scaling group kiln-app-asg to zero instances \
         (desired capacity 1 → 0 and minimum size 1 → 0), so the stack stops running and costing \
         money. Fix the cause, then restore the capacity with: aws autoscaling \
         update-auto-scaling-group --auto-scaling-group-name kiln-app-asg --min-size 1 \
         --desired-capacity 1 --region eu-west-1",
        time::macros::datetime!(2026-11-22 10:04:31 UTC),
    )
    .field("Auto Scaling group", "kiln-app-asg")
    .field("Desired capacity", "1 → 0")
    .field("Min size", "1 → 0")
    .field("Max size", "2 (unchanged)")
    .field("Cluster", "arn:aws:ecs:eu-west-1:123456789012:cluster/kiln")
    .field(
        "Task",
        "arn:aws:ecs:eu-west-1:123456789012:task/kiln/0f4b2c1d9e8a4b7c9d6e5f4a3b2c1d0e",
    )
    .field("Group", "family:kiln-app")
    .field("Container", "app")
    .field("Exit code", "1")
    .field("Stop code", "EssentialContainerExited")
    .field("Stopped reason", "Essential container in task exited")
    .field("Crashes", "3 in the last 10 minutes (threshold 3)")
    .field(
        "Restore with",
        "aws autoscaling update-auto-scaling-group --auto-scaling-group-name kiln-app-asg \
         --min-size 1 --desired-capacity 1 --region eu-west-1",
    )
}

#[test]
fn kiln_alert_renders_as_the_golden_file() {
    let message = classify::message(&watchdog_crash_alert().to_json());
    assert_eq!(message.kind(), "kiln_alert");
    let origin = Origin {
        topic_arn: Some("arn:aws:sns:eu-west-1:123456789012:kiln-alerts"),
        subject: Some("Crash loop in family:kiln-app: kiln-app-asg scaled to 0"),
        timestamp: Some("2026-11-22T10:04:31.512Z"),
    };
    insta::assert_json_snapshot!(
        "kiln_alert__watchdog_crash_loop",
        rendered(render::render(&message, &origin, &OPTIONS))
    );
}

#[test]
fn refire_renders_as_the_golden_file() {
    use alert_forwarder::refire::{AlarmInAlarm, select};
    use kiln::events::cloudwatch::{Dimension, Trigger};
    use std::time::Duration;
    let now = time::macros::datetime!(2026-11-22 11:15:00 UTC);
    let alarm = AlarmInAlarm {
        name: "kiln-app-5xx".into(),
        arn: Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:kiln-app-5xx".into()),
        description: Some("More than 5% of requests fail with 5xx.".into()),
        reason: Some(
            "Threshold Crossed: 3 out of the last 3 datapoints [12.5 (22/11/26 10:05:00)] were \
             greater than the threshold (5.0)."
                .into(),
        ),
        state_updated: Some(now - time::Duration::minutes(62)),
        trigger: Some(Trigger {
            metric_name: Some("HTTPCode_Target_5XX_Count".into()),
            namespace: Some("AWS/ApplicationELB".into()),
            statistic: Some("Sum".into()),
            dimensions: vec![Dimension {
                name: "LoadBalancer".into(),
                value: Some("app/kiln/50dc6c495c0c9188".into()),
            }],
            period: Some(60),
            evaluation_periods: Some(3),
            comparison_operator: Some("GreaterThanThreshold".into()),
            threshold: Some(5.0),
            ..Trigger::default()
        }),
        rule: None,
    };
    let views = select(
        &[alarm],
        now,
        Duration::from_secs(3600),
        Duration::from_secs(900),
    );
    assert_eq!(views.len(), 1);
    insta::assert_json_snapshot!(
        "refire__still_in_alarm",
        rendered(render::alarm::render(&views[0], &OPTIONS))
    );
}

mod deployments {
    //! deploy-exec's deployment notifications: a failure with the last log
    //! lines, a task that never started, and a success. Each goes through
    //! the JSON the alert topic carries, as the function receives it.

    use super::*;
    use alert_forwarder::render::blocks::{self, Block, slack_len};
    use kiln::messages::deployment::{
        DeployOutcome, DeploymentLog, DeploymentNotice, LogLocation, format_duration,
    };

    const TASK: &str =
        "arn:aws:ecs:eu-west-1:123456789012:task/kiln/0f4b2c1d9e8a4b7c9d6e5f4a3b2c1d0e";

    fn notice(outcome: DeployOutcome) -> DeploymentNotice {
        DeploymentNotice {
            outcome,
            repository: "Codertocat/Hello-World".into(),
            environment: "production".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            sender: Some("Codertocat".into()),
            duration: Some(format_duration(254)),
            summary: String::new(),
            exit_code: None,
            stop_code: None,
            stopped_reason: None,
            superseded_by: None,
            task_arn: Some(TASK.into()),
            log: DeploymentLog::NotIncluded,
            at: time::macros::datetime!(2026-11-22 10:04:31 UTC),
        }
    }

    pub fn failure_with_log_lines() -> DeploymentNotice {
        let lines = [
            "+ aws cloudformation deploy --stack-name hello-world-production --template-file build/template.yaml",
            "Waiting for changeset to be created..",
            "Waiting for stack create/update to complete",
            "2026-11-22 10:03:58 UPDATE_IN_PROGRESS AWS::ECS::Service AppService",
            "2026-11-22 10:04:12 UPDATE_FAILED AWS::ECS::Service AppService Resource handler returned message: \"Invalid request provided: CreateService error: The target group with targetGroupArn arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app/73e2d6bc24d8a067 does not have an associated load balancer.\"",
            "2026-11-22 10:04:14 UPDATE_ROLLBACK_IN_PROGRESS AWS::CloudFormation::Stack hello-world-production The following resource(s) failed to update: [AppService].",
            "2026-11-22 10:04:27 UPDATE_ROLLBACK_COMPLETE AWS::CloudFormation::Stack hello-world-production",
            "",
            "Failed to create/update the stack. Run the following command",
            "to fetch the list of events leading up to the failure",
            "aws cloudformation describe-stack-events --stack-name hello-world-production",
            "deploy: stack update failed <exit 255> & rolled back",
        ];
        DeploymentNotice {
            summary: "The deployment of f95f852 to production failed: exit code 1 \
                      (EssentialContainerExited: Essential container in task exited). \
                      Its last log lines are below."
                .into(),
            exit_code: Some(1),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            log: DeploymentLog::Lines {
                location: LogLocation {
                    group: "/ecs/kiln-stack-updater".into(),
                    stream: "deploy/stack-updater/0f4b2c1d9e8a4b7c9d6e5f4a3b2c1d0e".into(),
                    region: "eu-west-1".into(),
                },
                lines: lines.iter().map(|l| l.to_string()).collect(),
            },
            ..notice(DeployOutcome::Failed)
        }
    }

    pub fn failure_to_start() -> DeploymentNotice {
        DeploymentNotice {
            summary: "The deployment of f95f852 to production failed: the task failed to start \
                      (TaskFailedToStart: CannotPullContainerError: pull image manifest has been \
                      retried 5 time(s): failed to resolve ref \
                      123456789012.dkr.ecr.eu-west-1.amazonaws.com/stack-updater:latest: not found)."
                .into(),
            duration: None,
            stop_code: Some("TaskFailedToStart".into()),
            stopped_reason: Some(
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): \
                 failed to resolve ref \
                 123456789012.dkr.ecr.eu-west-1.amazonaws.com/stack-updater:latest: not found"
                    .into(),
            ),
            log: DeploymentLog::Unavailable {
                location: None,
                reason: "The task never started, so it wrote no log.".into(),
            },
            ..notice(DeployOutcome::Failed)
        }
    }

    pub fn success() -> DeploymentNotice {
        DeploymentNotice {
            summary: "Deployed f95f852 to production.".into(),
            exit_code: Some(0),
            ..notice(DeployOutcome::Succeeded)
        }
    }

    fn render_notice(notice: &DeploymentNotice) -> Value {
        let alert = notice.to_alert();
        let message = classify::message(&alert.to_json());
        assert_eq!(message.kind(), "kiln_alert");
        let origin = Origin {
            topic_arn: Some("arn:aws:sns:eu-west-1:123456789012:kiln-alerts"),
            subject: Some(&alert.subject()),
            timestamp: Some("2026-11-22T10:04:31.512Z"),
        };
        rendered(render::render(&message, &origin, &OPTIONS))
    }

    #[test]
    fn deployments_render_as_the_golden_files() {
        insta::assert_json_snapshot!(
            "deployment__failed_with_log_lines",
            render_notice(&failure_with_log_lines())
        );
        insta::assert_json_snapshot!(
            "deployment__failed_to_start",
            render_notice(&failure_to_start())
        );
        insta::assert_json_snapshot!("deployment__succeeded", render_notice(&success()));
    }

    /// The largest failure deploy-exec can send (30 lines, 3,000
    /// characters, each character one Slack escapes) and the longest
    /// names: still within every Slack limit, the cut visible, the newest
    /// line kept.
    #[test]
    fn the_largest_failure_stays_within_slacks_limits() {
        let lines: Vec<String> = (0..30)
            .map(|i| format!("{i:02}{}", "<&>".repeat(32)))
            .collect();
        let notice = DeploymentNotice {
            repository: format!("{}/{}", "o".repeat(39), "r".repeat(100)),
            environment: "e".repeat(120),
            stopped_reason: Some("r".repeat(5_000)),
            summary: "s".repeat(5_000),
            log: DeploymentLog::Lines {
                location: LogLocation {
                    group: "g".repeat(512),
                    stream: "s".repeat(512),
                    region: "eu-west-1".into(),
                },
                lines,
            },
            ..failure_with_log_lines()
        };
        let payload = render_notice(&notice);
        let message: blocks::SlackMessage = match render::render(
            &classify::message(&notice.to_alert().to_json()),
            &Origin::default(),
            &OPTIONS,
        ) {
            Rendered::Post(render::Payload::Blocks(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(slack_len(&message.text) <= blocks::TEXT_MAX);
        assert!(message.blocks.len() <= blocks::BLOCKS_MAX);
        for block in &message.blocks {
            match block {
                Block::Header { text } => assert!(slack_len(text.as_str()) <= blocks::HEADER_MAX),
                Block::Section { text, fields } => {
                    assert!(
                        text.iter()
                            .all(|t| slack_len(t.as_str()) <= blocks::SECTION_MAX)
                    );
                    assert!(fields.len() <= blocks::FIELDS_MAX);
                    assert!(
                        fields
                            .iter()
                            .all(|f| slack_len(f.as_str()) <= blocks::FIELD_MAX)
                    );
                }
                Block::Context { elements } => {
                    assert!(elements.len() <= blocks::CONTEXT_ELEMENTS_MAX);
                    assert!(
                        elements
                            .iter()
                            .all(|e| slack_len(e.as_str()) <= blocks::CONTEXT_TEXT_MAX)
                    );
                }
                Block::Divider => {}
            }
        }
        let body = payload.to_string();
        assert!(body.contains("truncated to fit Slack"), "{body}");
        assert!(body.contains("29&lt;&amp;&gt;"), "the newest line is kept");
        assert!(!body.contains("<&>"), "everything is escaped");
    }

    /// A forwarder that doesn't know deployment notices still reads them:
    /// they are plain v1 alerts.
    #[test]
    fn a_notice_is_a_kiln_alert_for_the_generic_renderer_too() {
        let alert = failure_with_log_lines().to_alert();
        let generic = render::alert::render(&alert).to_json().to_string();
        assert!(generic.contains("Last log lines"), "{generic}");
        assert!(generic.contains("deploy: stack update failed &lt;exit 255&gt;"));
    }
}
