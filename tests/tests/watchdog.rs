//! watchdog against moto: a real Auto Scaling group, a real alert topic read
//! back through SQS, and (for the crash-loop threshold) ECS through SDK mocks,
//! because moto's stopped tasks carry no stop code, no exit code and no
//! stop time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types::{Container, DesiredStatus, Task, TaskStopCode};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use kiln::Alert;
use kiln_tests::aws::{AsgCapacity, Aws, SnsQueue};
use kiln_tests::fixtures::{SnsNotification, fixture_bytes, fixture_json, sns_event};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use serde_json::{Value, json};
use watchdog::crash_history::EcsTaskHistory;
use watchdog::retry::{Backoff, Deadline};
use watchdog::scaling::AsgClient;
use watchdog::{Config, Outcome, Watchdog};

const ASG: &str = "kiln-app";
/// The cluster of the synthetic stopped-task fixtures.
const CLUSTER: &str = "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster";
const CRASH: &str = "synthetic/ecs-task-stopped-essential-exit1.json";

/// moto with an ASG, an alert topic and a queue reading it.
struct Stack {
    moto: Moto,
    aws: Aws,
    topic: String,
    alerts: SnsQueue,
}

impl Stack {
    async fn start(min: i32, desired: i32) -> Stack {
        let moto = Moto::start().await;
        let aws = moto.aws().await;
        aws.create_asg(ASG, min, desired, 2).await;
        let topic = aws.create_topic("kiln-alerts").await;
        let alerts = aws.subscribe_queue(&topic).await;
        Stack {
            moto,
            aws,
            topic,
            alerts,
        }
    }

    async fn function(&self, extra: &[(&str, &str)]) -> LambdaFunction {
        let mut env = self.moto.child_env();
        env.push(("ASG_NAME".into(), ASG.into()));
        env.push(("ALERT_TOPIC_ARN".into(), self.topic.clone()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        LambdaFunction::start("watchdog", env).await
    }

    async fn capacity(&self) -> AsgCapacity {
        self.aws.asg_capacity(ASG).await
    }

    async fn set_desired(&self, desired: i32) {
        self.aws
            .autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(ASG)
            .desired_capacity(desired)
            .send()
            .await
            .unwrap();
    }

    async fn expect_alert(&self) -> Alert {
        let envelope = self.alerts.expect_one().await;
        let alert = Alert::from_json(&envelope.message).unwrap();
        assert_eq!(envelope.subject.as_deref(), Some(alert.subject().as_str()));
        assert!(alert.subject().chars().count() <= 100);
        assert_eq!(envelope.attribute("source"), Some("watchdog"));
        alert
    }
}

fn capacity(min: i32, desired: i32) -> AsgCapacity {
    AsgCapacity {
        min,
        desired,
        max: 2,
    }
}

#[tokio::test]
async fn a_crash_scales_to_zero_and_alerts_once() {
    let stack = Stack::start(0, 1).await;
    let function = stack.function(&[("CLUSTER_ARN", CLUSTER)]).await;

    let response = function.invoke(fixture_json(CRASH)).await.unwrap();
    assert_eq!(response["action"], "scaled_down", "{response}");
    assert_eq!(stack.capacity().await, capacity(0, 0));

    let alert = stack.expect_alert().await;
    assert_eq!(alert.kind, "kiln.alert");
    assert_eq!(alert.version, 1);
    assert_eq!(alert.source, "watchdog");
    assert_eq!(alert.severity, kiln::Severity::Critical);
    assert_eq!(
        alert.title,
        "Crash loop in family:sample-fargate: kiln-app scaled to 0"
    );
    for (name, value) in [
        ("Auto Scaling group", ASG),
        ("Desired capacity", "1 → 0"),
        ("Min size", "0 (unchanged)"),
        ("Cluster", CLUSTER),
        (
            "Task",
            "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad",
        ),
        ("Group", "family:sample-fargate"),
        ("Container", "FargateApp"),
        ("Exit code", "1"),
        ("Stop code", "EssentialContainerExited"),
        ("Stopped reason", "Essential container in task exited"),
        (
            "Restore with",
            "aws autoscaling update-auto-scaling-group --auto-scaling-group-name kiln-app \
             --min-size 0 --desired-capacity 1 --region us-east-1",
        ),
    ] {
        assert_eq!(alert.field_value(name), Some(value), "{name}");
    }

    // The same event again, as EventBridge delivers one crash several
    // times: the group is already at zero, so nothing is published.
    let again = function.invoke(fixture_json(CRASH)).await.unwrap();
    assert_eq!(again, json!({"action": "already_zero", "asg": ASG}));
    stack.alerts.expect_none().await;
    assert_eq!(stack.capacity().await, capacity(0, 0));
}

#[tokio::test]
async fn clean_exits_user_stops_and_other_clusters_change_nothing() {
    let stack = Stack::start(0, 1).await;
    let function = stack
        .function(&[(
            "CLUSTER_ARN",
            "arn:aws:ecs:us-west-2:111122223333:cluster/Other",
        )])
        .await;
    // Even a crash is ignored when it comes from another cluster.
    let response = function.invoke(fixture_json(CRASH)).await.unwrap();
    assert_eq!(response["action"], "ignored", "{response}");

    let function = stack.function(&[]).await;
    for path in [
        "synthetic/ecs-task-stopped-essential-exit0.json",
        "synthetic/ecs-task-stopped-user-initiated.json",
        "aws/lambda-dotnet/ecs-task-state-change-event.json",
        "aws/ecs-docs/task-state-change-container-stopped-exit0.json",
    ] {
        let response = function.invoke(fixture_json(path)).await.unwrap();
        assert_eq!(response["action"], "ignored", "{path}: {response}");
    }
    assert_eq!(stack.capacity().await, capacity(0, 1));
    stack.alerts.expect_none().await;
}

#[tokio::test]
async fn a_failed_start_is_a_crash() {
    let stack = Stack::start(0, 1).await;
    let function = stack.function(&[]).await;
    let response = function
        .invoke(fixture_json(
            "synthetic/ecs-task-stopped-failed-to-start.json",
        ))
        .await
        .unwrap();
    assert_eq!(response["action"], "scaled_down", "{response}");
    let alert = stack.expect_alert().await;
    assert_eq!(alert.field_value("Stop code"), Some("TaskFailedToStart"));
    assert!(
        alert
            .field_value("Container reason")
            .is_some_and(|r| r.starts_with("CannotPullContainerError"))
    );
    assert_eq!(alert.field_value("Exit code"), None);
}

#[tokio::test]
async fn min_size_above_zero_is_lowered_too() {
    let stack = Stack::start(1, 1).await;
    let function = stack.function(&[]).await;
    let response = function.invoke(fixture_json(CRASH)).await.unwrap();
    assert_eq!(
        response,
        json!({
            "action": "scaled_down",
            "asg": ASG,
            "desired_before": 1,
            "min_size_before": 1,
            "alert_message_id": response["alert_message_id"],
        })
    );
    assert_eq!(stack.capacity().await, capacity(0, 0));
    let alert = stack.expect_alert().await;
    assert_eq!(alert.field_value("Min size"), Some("1 → 0"));
    assert_eq!(alert.field_value("Desired capacity"), Some("1 → 0"));
    assert!(
        alert
            .field_value("Restore with")
            .is_some_and(|c| c.contains("--min-size 1 --desired-capacity 1"))
    );
}

#[tokio::test]
async fn unrecognised_events_fail_the_invocation() {
    let stack = Stack::start(0, 1).await;
    let function = stack.function(&[]).await;
    for path in [
        "aws/rust-runtime/example-sns-event.json",
        "aws/lambda-go/ecs-container-instance-state-change.json",
        "aws/rust-runtime/example-apigw-v2-request-no-authorizer.json",
    ] {
        let err = function.invoke(fixture_json(path)).await.unwrap_err();
        assert_eq!(err.error_type, "UnrecognisedEvent", "{path}: {err}");
    }
    assert_eq!(stack.capacity().await, capacity(0, 1));
    stack.alerts.expect_none().await;
}

#[tokio::test]
async fn listed_alarms_in_alarm_scale_down() {
    let stack = Stack::start(0, 1).await;
    let function = stack
        .function(&[(
            "SCALE_DOWN_ALARMS",
            "awsrds-app-High-DB-Connections,EXAMPLE,Example,ServerCpuTooHigh,\
             ServiceAggregatedAlarm,DBMigrationRequired",
        )])
        .await;
    // A bare alarm message without Trigger (the shape of a composite
    // alarm's), delivered through SNS.
    let without_trigger = String::from_utf8(fixture_bytes(
        "aws/notify-slack/events/cloudwatch_alarm.json",
    ))
    .unwrap();
    let without_trigger = sns_event(&[SnsNotification::new(
        "arn:aws:sns:eu-west-1:000000000000:alarms",
        without_trigger,
    )
    .subject("ALARM: \"Example\" in EU - Ireland")]);

    let acting: Vec<(&str, Value, &str)> = vec![
        // AlarmDescription null, Unit null, no signature keys.
        (
            "assertible null description",
            fixture_json("aws/assertible/sns-cloudwatch-event.json"),
            "awsrds-app-High-DB-Connections",
        ),
        (
            "lambda-go metric math",
            fixture_json("aws/lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json"),
            "EXAMPLE",
        ),
        (
            "rust-runtime two records",
            fixture_json(
                "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
            ),
            "EXAMPLE",
        ),
        ("no Trigger", without_trigger, "Example"),
        (
            "EventBridge single metric",
            fixture_json("aws/cloudwatch-docs/alarm-state-change-single-metric.json"),
            "ServerCpuTooHigh",
        ),
        (
            "EventBridge composite",
            fixture_json("aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json"),
            "ServiceAggregatedAlarm",
        ),
    ];
    for (case, event, alarm) in acting {
        stack.set_desired(1).await;
        let response = function.invoke(event).await.unwrap();
        assert_eq!(response["action"], "scaled_down", "{case}: {response}");
        assert_eq!(stack.capacity().await.desired, 0, "{case}");
        let alert = stack.expect_alert().await;
        assert_eq!(alert.field_value("Alarm"), Some(alarm), "{case}");
        assert_eq!(alert.severity, kiln::Severity::Warning, "{case}");
        assert!(alert.field_value("Alarm reason").is_some(), "{case}");
    }

    // Not listed, or not going to ALARM: nothing happens.
    stack.set_desired(1).await;
    for (case, event) in [
        ("not listed", fixture_json("aws/assertible/sns-event.json")),
        (
            "not listed (EventBridge)",
            fixture_json("aws/cloudwatch-docs/alarm-state-change-metric-math.json"),
        ),
        (
            "ALARM → OK",
            fixture_json("aws/notify-slack/messages/cloudwatch_alarm.json"),
        ),
    ] {
        let response = function.invoke(event).await.unwrap();
        assert_eq!(response["action"], "ignored", "{case}: {response}");
    }
    assert_eq!(stack.capacity().await.desired, 1);
    stack.alerts.expect_none().await;
}

/// ECS as SDK mocks: ListTasks(desiredStatus=STOPPED) and DescribeTasks
/// answer with the tasks "stopped" so far.
fn ecs_with(stopped: Arc<Mutex<Vec<Task>>>) -> aws_sdk_ecs::Client {
    let listed = Arc::clone(&stopped);
    let list = mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(|r| {
            r.desired_status() == Some(&DesiredStatus::Stopped)
                && r.cluster() == Some(CLUSTER)
                && r.family() == Some("sample-fargate")
        })
        .then_compute_output(move |_| {
            let tasks = listed.lock().unwrap();
            ListTasksOutput::builder()
                .set_task_arns(Some(
                    tasks.iter().filter_map(|t| t.task_arn.clone()).collect(),
                ))
                .build()
        });
    let describe = mock!(aws_sdk_ecs::Client::describe_tasks).then_compute_output(move |r| {
        let tasks = stopped.lock().unwrap();
        DescribeTasksOutput::builder()
            .set_tasks(Some(
                tasks
                    .iter()
                    .filter(|t| r.tasks().iter().any(|arn| t.task_arn() == Some(arn)))
                    .cloned()
                    .collect(),
            ))
            .build()
    });
    mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&list, &describe], |c| {
        c.retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
    })
}

#[tokio::test]
async fn with_a_threshold_of_three_the_third_crash_acts() {
    let stack = Stack::start(0, 1).await;
    let sdk = stack.moto.sdk_config().await;
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let config = Config::from_env(&kiln::Env::from_pairs([
        ("ASG_NAME", ASG),
        ("ALERT_TOPIC_ARN", stack.topic.as_str()),
        ("CRASH_LOOP_THRESHOLD", "3"),
        ("CRASH_LOOP_WINDOW_MINUTES", "10"),
    ]))
    .unwrap();
    let watchdog = Watchdog {
        config,
        autoscaling: AsgClient::new(aws_sdk_autoscaling::Client::new(&sdk)),
        history: EcsTaskHistory::new(ecs_with(Arc::clone(&stopped))),
        publisher: kiln::sns::SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
        metrics: kiln::Metrics::in_memory("watchdog"),
        backoff: Backoff::immediate(3),
        region: None,
    };

    let now = time::OffsetDateTime::now_utc();
    // A crash 30 minutes ago is outside the window and never counts.
    stopped
        .lock()
        .unwrap()
        .push(stopped_task("old", now - time::Duration::minutes(30)));

    for (n, expected) in [(1u32, 1u32), (2, 2)] {
        let (event, task) = crash(&format!("crash-{n}"), now);
        // ECS lists the task once it has stopped.
        stopped.lock().unwrap().push(task);
        let outcome = watchdog.handle(event, Deadline::NONE, now).await.unwrap();
        assert_eq!(
            outcome,
            Outcome::BelowThreshold {
                crashes: expected,
                threshold: 3,
                window_minutes: 10
            }
        );
        assert_eq!(stack.capacity().await, capacity(0, 1));
    }
    stack.alerts.expect_none().await;

    // The third crash: ECS may not list it yet, it counts anyway.
    let (event, _) = crash("crash-3", now);
    let outcome = watchdog.handle(event, Deadline::NONE, now).await.unwrap();
    assert!(matches!(outcome, Outcome::ScaledDown { .. }), "{outcome:?}");
    assert_eq!(stack.capacity().await, capacity(0, 0));
    let alert = stack.expect_alert().await;
    assert_eq!(
        alert.field_value("Crashes"),
        Some("3 in the last 10 minutes (threshold 3)")
    );
    assert!(
        alert
            .summary
            .contains("3 tasks crashed in the last 10 minutes")
    );
}

/// The same count through the real binary, against moto: with a threshold
/// above one the watchdog reads the group's stopped tasks (ListTasks,
/// DescribeTasks) and, for a task whose containers disagree, its task
/// definition (DescribeTaskDefinition), with the calls its role must allow.
/// moto's stopped tasks carry no stop code, so the earlier one does not
/// count and the crash stays below the threshold.
#[tokio::test]
async fn with_a_threshold_the_binary_reads_the_task_history_from_ecs() {
    let stack = Stack::start(0, 1).await;
    let ecs = stack.aws.create_ecs("apps", "app").await;
    let earlier = stack
        .aws
        .ecs
        .run_task()
        .cluster(&ecs.cluster_name)
        .task_definition(&ecs.task_definition_arn)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(ecs.network_configuration())
        .send()
        .await
        .unwrap();
    let earlier_arn = earlier.tasks()[0].task_arn().unwrap().to_string();
    stack
        .aws
        .ecs
        .stop_task()
        .cluster(&ecs.cluster_name)
        .task(&earlier_arn)
        .send()
        .await
        .unwrap();

    let task = format!(
        "{}/0123456789abcdef0123456789abcdef",
        ecs.cluster_arn.replace(":cluster/", ":task/")
    );
    let mut event = fixture_json(CRASH);
    let detail = &mut event["detail"];
    detail["clusterArn"] = ecs.cluster_arn.clone().into();
    detail["taskArn"] = task.clone().into();
    detail["taskDefinitionArn"] = ecs.task_definition_arn.clone().into();
    detail["group"] = "family:app".into();
    // One container failed, one did not: which is essential is only in the
    // task definition.
    let mut sidecar = detail["containers"][0].clone();
    sidecar["name"] = "sidecar".into();
    sidecar["exitCode"] = 0.into();
    detail["containers"][0]["name"] = "app".into();
    detail["containers"].as_array_mut().unwrap().push(sidecar);
    event["resources"] = json!([task]);

    let function = stack
        .function(&[
            ("CLUSTER_ARN", ecs.cluster_arn.as_str()),
            ("CRASH_LOOP_THRESHOLD", "3"),
        ])
        .await;
    let response = function.invoke(event).await.unwrap();
    assert_eq!(response["action"], "below_threshold", "{response}");
    assert_eq!(response["crashes"], 1, "{response}");
    assert_eq!(stack.capacity().await, capacity(0, 1));
    stack.alerts.expect_none().await;
}

fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/{id}")
}

/// A crash event for task `id`, and the task as ECS would describe it.
fn crash(id: &str, now: time::OffsetDateTime) -> (Value, Task) {
    let mut event = fixture_json(CRASH);
    event["detail"]["taskArn"] = task_arn(id).into();
    event["resources"] = json!([task_arn(id)]);
    (event, stopped_task(id, now - time::Duration::seconds(5)))
}

fn stopped_task(id: &str, stopped_at: time::OffsetDateTime) -> Task {
    Task::builder()
        .task_arn(task_arn(id))
        .cluster_arn(CLUSTER)
        .group("family:sample-fargate")
        .last_status("STOPPED")
        .desired_status("STOPPED")
        .stop_code(TaskStopCode::EssentialContainerExited)
        .stopped_reason("Essential container in task exited")
        .stopped_at(DateTime::from_secs(stopped_at.unix_timestamp()))
        .containers(Container::builder().name("FargateApp").exit_code(1).build())
        .build()
}

#[tokio::test]
async fn a_bad_configuration_fails_init_naming_the_variable() {
    let moto_env: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-east-1".into()),
        ("ASG_NAME".into(), ASG.into()),
        (
            "ALERT_TOPIC_ARN".into(),
            "arn:aws:sns:us-east-1:123456789012:a".into(),
        ),
        ("CRASH_LOOP_THRESHOLD".into(), "0".into()),
    ];
    let function = LambdaFunction::start("watchdog", moto_env).await;
    let failure = function.expect_init_failure(Duration::from_secs(30)).await;
    assert_eq!(failure.exit_code, Some(1));
    assert!(
        failure
            .stderr
            .contains("error: CRASH_LOOP_THRESHOLD is malformed"),
        "{}",
        failure.stderr
    );
}
