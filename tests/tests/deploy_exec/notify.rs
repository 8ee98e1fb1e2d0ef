//! Deployment notifications on moto: the alert deploy-exec publishes to a
//! real alert topic (read back through SQS) for a task that stopped, with
//! the last lines of its log read from moto's CloudWatch Logs; the
//! `NOTIFY_DEPLOYS` policies; one alert per outcome; and, through the fault
//! proxy, CloudWatch Logs throttling and 5xx, and SNS refusing the publish.

use std::time::Duration;

use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::runner::EcsTaskRunner;
use deploy_exec::task_log::CloudWatchLogTail;
use deploy_exec::{Config, Deps, handle};
use kiln::messages::deployment::field;
use kiln::secrets::fake::FakeSecrets;
use kiln::secrets::{SecretCache, VersionStage};
use kiln::sns::SnsPublisher;
use kiln::{Alert, Env, Metrics};
use kiln_tests::aws::{Aws, EcsStack, SnsQueue};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::fixtures::{SnsNotification, fixture_json, sns_event};
use kiln_tests::http::{RecordingServer, Reply};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use serde_json::{Value, json};

use super::deploy_request;

const FAMILY: &str = "kiln-stack-updater";
const CONTAINER: &str = "stack-updater";

type MotoDeps = Deps<EcsTaskRunner, GitHubReporter<FakeSecrets>, SnsPublisher, CloudWatchLogTail>;

/// moto with the deploy cluster (its task definition logs with awslogs),
/// the alert topic read back through SQS, and a GitHub fake.
struct Stack {
    moto: Moto,
    aws: Aws,
    ecs: EcsStack,
    alert_topic: String,
    alerts: SnsQueue,
    github: RecordingServer,
}

impl Stack {
    async fn start() -> Stack {
        let moto = Moto::start().await;
        moto.freeze_ecs_tasks().await;
        let aws = moto.aws().await;
        let ecs = aws
            .create_ecs_with_container("kiln", FAMILY, CONTAINER)
            .await;
        let alert_topic = aws.create_topic("kiln-alerts").await;
        let alerts = aws.subscribe_queue(&alert_topic).await;
        // GitHub lists no statuses (none final yet) and accepts every post.
        let github = RecordingServer::start_with_default(Reply::json(201, &json!({"id": 1}))).await;
        Stack {
            moto,
            aws,
            ecs,
            alert_topic,
            alerts,
            github,
        }
    }

    fn env(&self, deploys: &str) -> Vec<(String, String)> {
        [
            ("CLUSTER", self.ecs.cluster_name.clone()),
            ("TASK_DEFINITION", self.ecs.task_definition_arn.clone()),
            ("CONTAINER_NAME", self.ecs.container_name.clone()),
            ("SUBNETS", self.ecs.subnets_csv()),
            ("SECURITY_GROUPS", self.ecs.security_groups_csv()),
            ("NOTIFY_TOPIC_ARN", self.alert_topic.clone()),
            ("NOTIFY_DEPLOYS", deploys.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Deps whose AWS calls go to `sdk` (moto, or a fault proxy in front
    /// of it).
    fn deps(&self, deploys: &str, sdk: &aws_config::SdkConfig) -> MotoDeps {
        let config = Config::from_env(&Env::from_pairs(self.env(deploys))).unwrap();
        let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/github-token";
        let token = SecretCache::new(FakeSecrets::new().with(
            secret,
            VersionStage::Current,
            "ghp_kilnNotifyToken0123456789",
        ));
        Deps {
            reporter: GitHubReporter::new(
                &self.github.url(),
                Some((secret.to_string(), token)),
                RetryPolicy::immediate(1),
            ),
            runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(sdk)),
            publisher: SnsPublisher::new(aws_sdk_sns::Client::new(sdk)),
            logs: CloudWatchLogTail::new(aws_sdk_cloudwatchlogs::Client::new(sdk)),
            lanes: None,
            metrics: Metrics::in_memory("deploy-exec"),
            config,
        }
    }

    /// Starts the task of a delivery through deploy-exec; its ARN.
    async fn start_task(&self, deps: &MotoDeps, delivery_id: &str) -> String {
        let request = deploy_request(delivery_id, None);
        let event = sns_event(&[SnsNotification::new(
            "arn:aws:sns:us-east-1:123456789012:kiln-deploy",
            request.to_json(),
        )]);
        let out = handle(deps, event).await.unwrap();
        out["started"][0]["task_arn"].as_str().unwrap().to_string()
    }

    /// The "task stopped" event EventBridge delivers for `task_arn`.
    fn stopped(&self, task_arn: &str, delivery_id: &str, fixture: &str) -> Value {
        let mut event = fixture_json(fixture);
        event["resources"] = json!([task_arn]);
        let detail = &mut event["detail"];
        detail["taskArn"] = task_arn.into();
        detail["clusterArn"] = self.ecs.cluster_arn.clone().into();
        detail["taskDefinitionArn"] = self.ecs.task_definition_arn.clone().into();
        detail["startedBy"] = format!("kiln/{delivery_id}").into();
        if let Some(containers) = detail["containers"].as_array_mut() {
            for container in containers {
                container["taskArn"] = task_arn.into();
            }
        }
        event
    }

    fn failed(&self, task_arn: &str, delivery_id: &str) -> Value {
        self.stopped(
            task_arn,
            delivery_id,
            "synthetic/deploy-task-stopped-exit1.json",
        )
    }

    /// The alerts published, decoded strictly.
    async fn alerts(&self, count: usize) -> Vec<Alert> {
        let received = self.alerts.expect(count, Duration::from_secs(10)).await;
        self.alerts.expect_none().await;
        received
            .iter()
            .map(|envelope| Alert::from_json(&envelope.message).unwrap())
            .collect()
    }

    fn github_posts(&self) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }
}

fn lines(count: usize) -> Vec<String> {
    (1..=count)
        .map(|i| format!("{i:03} cloudformation: UPDATE_IN_PROGRESS step {i}"))
        .collect()
}

#[tokio::test]
async fn a_failure_carries_exactly_the_last_thirty_lines_oldest_first_from_the_real_binary() {
    let stack = Stack::start().await;
    let deps = stack.deps("failures", &stack.moto.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-log").await;
    stack
        .aws
        .write_log(
            &stack.ecs.log_group,
            &stack.ecs.log_stream(&task_arn),
            &lines(100),
        )
        .await;

    let mut env = stack.moto.child_env();
    env.extend(stack.env("failures"));
    env.push(("GITHUB_API_URL".into(), stack.github.url()));
    let function = LambdaFunction::start("deploy-exec", env).await;
    let out = function
        .invoke(stack.failed(&task_arn, "delivery-log"))
        .await
        .unwrap();
    assert_eq!(out["notification"], "published", "{out}");

    let alerts = stack.alerts(1).await;
    let alert = &alerts[0];
    assert_eq!(alert.source, "deploy-exec");
    assert_eq!(
        alert.title,
        "Deploy failed: Codertocat/Hello-World f95f852 to production"
    );
    let expected: Vec<String> = lines(100).split_off(70);
    let got: Vec<&str> = alert
        .field_value(field::LOG_LINES)
        .unwrap()
        .split('\n')
        .collect();
    assert_eq!(got, expected);
    assert_eq!(alert.field_value(field::PUSHED_BY), Some("Codertocat"));
    assert_eq!(alert.field_value(field::EXIT_CODE), Some("1"));
    assert_eq!(alert.field_value(field::DURATION), Some("3 min 54 s"));
    assert_eq!(
        alert.field_value(field::LOG_GROUP),
        Some("/ecs/kiln-stack-updater")
    );
    assert_eq!(
        alert.field_value(field::LOG_STREAM),
        Some(stack.ecs.log_stream(&task_arn).as_str())
    );
    // The task carries the mark of its notification.
    let tagged = stack
        .aws
        .ecs
        .list_tags_for_resource()
        .resource_arn(&task_arn)
        .send()
        .await
        .unwrap();
    assert!(
        tagged
            .tags()
            .iter()
            .any(|t| t.key() == Some("kiln:notified:failed")),
        "{tagged:?}"
    );
}

#[tokio::test]
async fn long_lines_are_cut_to_three_thousand_characters() {
    let stack = Stack::start().await;
    let deps = stack.deps("failures", &stack.moto.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-long").await;
    let long: Vec<String> = (0..30)
        .map(|i| format!("{i:02}{}", "x".repeat(298)))
        .collect();
    stack
        .aws
        .write_log(
            &stack.ecs.log_group,
            &stack.ecs.log_stream(&task_arn),
            &long,
        )
        .await;
    handle(&deps, stack.failed(&task_arn, "delivery-long"))
        .await
        .unwrap();
    let alert = &stack.alerts(1).await[0];
    let text = alert.field_value(field::LOG_LINES).unwrap();
    assert!(text.chars().count() <= 3_000, "{}", text.len());
    let got: Vec<&str> = text.split('\n').collect();
    assert_eq!(got.len(), 9);
    assert_eq!(
        got,
        long[21..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_missing_stream_says_the_log_is_unavailable() {
    let stack = Stack::start().await;
    let deps = stack.deps("failures", &stack.moto.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-nolog").await;
    handle(&deps, stack.failed(&task_arn, "delivery-nolog"))
        .await
        .unwrap();
    let alert = &stack.alerts(1).await[0];
    assert_eq!(alert.field_value(field::LOG_LINES), None);
    let why = alert.field_value(field::LOG_UNAVAILABLE).unwrap();
    assert!(why.contains("does not exist"), "{why}");
    assert!(why.contains(&stack.ecs.log_stream(&task_arn)), "{why}");
}

#[tokio::test]
async fn a_task_that_never_started_gives_the_reason_and_no_log_lookup() {
    let stack = Stack::start().await;
    let proxy = FaultProxy::start(stack.moto.endpoint(), FaultPlan::none()).await;
    let deps = stack.deps("failures", &proxy.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-pull").await;
    let event = stack.stopped(
        &task_arn,
        "delivery-pull",
        "synthetic/deploy-task-failed-to-start.json",
    );
    handle(&deps, event).await.unwrap();
    let alert = &stack.alerts(1).await[0];
    assert_eq!(
        alert.field_value(field::LOG_UNAVAILABLE),
        Some("The task never started, so it wrote no log.")
    );
    assert_eq!(
        alert.field_value(field::STOP_CODE),
        Some("TaskFailedToStart")
    );
    assert!(
        alert
            .field_value(field::STOPPED_REASON)
            .unwrap()
            .starts_with("CannotPullContainerError")
    );
    assert!(proxy.calls_to("GetLogEvents").is_empty());
    assert!(proxy.calls_to("DescribeTaskDefinition").is_empty());
}

#[tokio::test]
async fn notify_deploys_failures_all_and_none() {
    let stack = Stack::start().await;
    let sdk = stack.moto.sdk_config().await;
    for (deploys, expected) in [
        ("failures", vec!["failed"]),
        ("all", vec!["started", "succeeded", "started", "failed"]),
        ("none", vec![]),
    ] {
        let deps = stack.deps(deploys, &sdk);
        let ok = stack.start_task(&deps, &format!("{deploys}-ok")).await;
        let success = stack.stopped(
            &ok,
            &format!("{deploys}-ok"),
            "synthetic/deploy-task-stopped-exit0.json",
        );
        handle(&deps, success).await.unwrap();
        let bad = stack.start_task(&deps, &format!("{deploys}-bad")).await;
        handle(&deps, stack.failed(&bad, &format!("{deploys}-bad")))
            .await
            .unwrap();
        let outcomes: Vec<String> = stack
            .alerts(expected.len())
            .await
            .iter()
            .map(|a| a.field_value(field::OUTCOME).unwrap().to_string())
            .collect();
        assert_eq!(outcomes, expected, "NOTIFY_DEPLOYS={deploys}");
    }
}

#[tokio::test]
async fn a_duplicate_stop_event_produces_one_alert() {
    let stack = Stack::start().await;
    let deps = stack.deps("failures", &stack.moto.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-twice").await;
    let event = stack.failed(&task_arn, "delivery-twice");
    let first = handle(&deps, event.clone()).await.unwrap();
    assert_eq!(first["notification"], "published");
    // GitHub now lists the final status it was given.
    let posted = stack.github.requests().last().unwrap().json();
    stack.github.push(Reply::json(200, &json!([posted])));
    let second = handle(&deps, event).await.unwrap();
    assert_eq!(second["notification"], "already_published");
    assert_eq!(stack.alerts(1).await.len(), 1);
}

/// CloudWatch Logs answering every read with `error` after the SDK's
/// retries: the alert still goes out, without lines, saying why.
async fn log_read_fails(fault: Fault, expected: &str) {
    let stack = Stack::start().await;
    let proxy = FaultProxy::start(
        stack.moto.endpoint(),
        FaultPlan::always(fault).on(&["GetLogEvents"]),
    )
    .await;
    let deps = stack.deps("failures", &proxy.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-faulty-log").await;
    stack
        .aws
        .write_log(
            &stack.ecs.log_group,
            &stack.ecs.log_stream(&task_arn),
            &lines(5),
        )
        .await;
    let out = handle(&deps, stack.failed(&task_arn, "delivery-faulty-log"))
        .await
        .unwrap();
    assert_eq!(out["notification"], "published");
    // The SDK's standard mode: three attempts.
    assert_eq!(proxy.calls_to("GetLogEvents").len(), 3);
    let alert = &stack.alerts(1).await[0];
    assert_eq!(alert.field_value(field::LOG_LINES), None);
    let why = alert.field_value(field::LOG_UNAVAILABLE).unwrap();
    assert!(why.contains("failed after retries"), "{why}");
    assert!(why.contains(expected), "{why}");
}

#[tokio::test]
async fn cloudwatch_logs_throttling_still_sends_the_alert_without_lines() {
    log_read_fails(Fault::Throttle, "ThrottlingException").await;
}

#[tokio::test]
async fn cloudwatch_logs_5xx_still_sends_the_alert_without_lines() {
    log_read_fails(Fault::Unavailable, "ServiceUnavailable").await;
}

#[tokio::test]
async fn a_failed_publish_fails_the_invocation_and_the_retry_posts_no_second_github_status() {
    let stack = Stack::start().await;
    let proxy = FaultProxy::start(
        stack.moto.endpoint(),
        FaultPlan::always(Fault::ServerError).on(&["Publish"]),
    )
    .await;
    let deps = stack.deps("failures", &proxy.sdk_config().await);
    let task_arn = stack.start_task(&deps, "delivery-sns-down").await;
    let posts_at_start = stack.github_posts();
    let event = stack.failed(&task_arn, "delivery-sns-down");
    let err = handle(&deps, event.clone()).await.unwrap_err();
    assert_eq!(
        kiln::KilnError::error_type(&err),
        "NotificationPublishFailed"
    );
    assert_eq!(stack.github_posts(), posts_at_start + 1, "GitHub was told");
    let failure = stack.github.requests().last().unwrap().json();
    assert_eq!(failure["state"], "failure");
    stack.alerts.expect_none().await;

    // Lambda's retry, once SNS answers again: GitHub lists the final
    // status, so nothing is posted; the alert goes out.
    proxy.set_plan(FaultPlan::none());
    stack.github.push(Reply::json(200, &json!([failure])));
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(out["reported"], "already_final");
    assert_eq!(out["notification"], "published");
    assert_eq!(stack.github_posts(), posts_at_start + 1, "no second status");
    assert_eq!(stack.alerts(1).await.len(), 1);
}
