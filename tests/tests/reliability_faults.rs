//! Fault injection on the AWS path: the real SDK talks to moto through
//! [`FaultProxy`], which throttles, fails, resets, truncates or stalls
//! chosen calls. For every case the invariants are the same:
//!
//! - the end state on moto is right, or the call reported failure;
//! - no success is reported for an action that did not happen;
//! - a side effect happens more than once only when a reply was lost after
//!   AWS acted (the caller could not know), and then every copy carries the
//!   same idempotency key.
//!
//! Each case runs with the fault on the first call (the SDK's standard
//! retries, three attempts, should absorb it) and on the first three calls
//! (retries exhausted: the failure must surface, classified as retryable).

use std::time::Duration;

use kiln::sns::{OutboundMessage, Publisher, SnsPublisher};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::moto::Moto;

/// Stalls end with the connection closed after this long.
const STALL: Duration = Duration::from_millis(300);

/// The SDK's attempts per call in production (standard retry mode).
const SDK_ATTEMPTS: usize = 3;

fn plans(operations: &[&str]) -> Vec<(String, FaultPlan)> {
    let mut plans = Vec::new();
    for fault in Fault::all(STALL) {
        for n in [1, SDK_ATTEMPTS] {
            plans.push((
                format!("{} x{n}", fault.name()),
                FaultPlan::first(n, fault).on(operations),
            ));
        }
    }
    plans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publish_is_never_reported_for_a_message_that_was_not_sent() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_topic("faults-publish").await;
    let queue = aws.subscribe_queue(&topic).await;
    let mut table = Vec::new();

    for (case, plan) in plans(&["Publish"]) {
        let proxy = FaultProxy::start(moto.endpoint(), plan).await;
        let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&proxy.sdk_config().await));
        let body = format!("{{\"case\":\"{case}\"}}");
        let message = OutboundMessage {
            body: body.clone(),
            deduplication_id: Some(format!("dedup-{case}")),
            ..OutboundMessage::default()
        };
        let result = publisher.publish(&topic, message).await;

        let delivered = queue
            .drain()
            .await
            .into_iter()
            .filter(|e| e.message == body)
            .count();
        let calls = proxy.calls_to("Publish");
        let accepted = calls
            .iter()
            .filter(|c| c.forwarded && c.upstream_status == Some(200))
            .count();
        let lost_replies = calls
            .iter()
            .filter(|c| c.fault.is_some_and(Fault::forwards))
            .count();

        assert_eq!(
            delivered, accepted,
            "{case}: moto's deliveries match the calls it accepted"
        );
        match &result {
            Ok(_) => assert!(
                delivered >= 1,
                "{case}: success reported, nothing published"
            ),
            Err(err) => assert!(
                err.retryable,
                "{case}: a transient fault classified as permanent: {err}"
            ),
        }
        assert!(
            delivered <= 1 + lost_replies,
            "{case}: {delivered} copies with {lost_replies} lost replies"
        );
        table.push(format!(
            "{case:<22} {:<8} attempts {} delivered {delivered}",
            if result.is_ok() { "ok" } else { "failed" },
            calls.len()
        ));
    }
    println!("SNS Publish under faults:\n{}", table.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_retries_one_transient_fault_of_every_kind() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_topic("faults-absorbed").await;
    for fault in Fault::all(STALL) {
        let proxy = FaultProxy::start(moto.endpoint(), FaultPlan::first(1, fault)).await;
        let sns = aws_sdk_sns::Client::new(&proxy.sdk_config().await);
        let result = sns.publish().topic_arn(&topic).message("m").send().await;
        assert!(
            result.is_ok(),
            "{}: one fault should be retried: {}",
            fault.name(),
            result
                .err()
                .map(|e| kiln::aws::error_chain(&e))
                .unwrap_or_default()
        );
        assert_eq!(proxy.calls_to("Publish").len(), 2, "{}", fault.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_answers_follow_each_protocol() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let proxy = FaultProxy::start(moto.endpoint(), FaultPlan::always(Fault::Throttle)).await;
    let config = proxy.sdk_config().await;

    // awsQuery (SNS): the SDK reads the XML error code.
    let sns = aws_sdk_sns::Client::new(&config);
    let err = sns.list_topics().send().await.unwrap_err();
    assert_eq!(
        aws_sdk_sns::error::ProvideErrorMetadata::code(&err),
        Some("Throttling")
    );
    // awsJson 1.1 (Secrets Manager): the SDK reads `__type`.
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let err = secrets
        .get_secret_value()
        .secret_id("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&err),
        Some("ThrottlingException")
    );
    // Each was tried the standard three times, then given up.
    assert_eq!(proxy.calls_to("ListTopics").len(), SDK_ATTEMPTS);
    assert_eq!(proxy.calls_to("GetSecretValue").len(), SDK_ATTEMPTS);
    assert!(proxy.calls().iter().all(|c| !c.forwarded));
    let services: Vec<String> = proxy.calls().iter().map(|c| c.service.clone()).collect();
    assert!(
        services.contains(&"sns".to_string()) && services.contains(&"secretsmanager".to_string())
    );
    drop(aws);
}

/// A connection that never answers: the SDK has no read timeout by default,
/// so without one the call waits as long as the server holds it. kiln's
/// functions rely on Lambda's timeout to end such an invocation (a failed
/// invocation, retried); this records that the wait is the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_call_waits_for_the_server_without_an_sdk_timeout() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_topic("faults-stall").await;
    let hold = Duration::from_secs(3);
    let proxy = FaultProxy::start(
        moto.endpoint(),
        FaultPlan::first(1, Fault::StallBefore(hold)),
    )
    .await;
    let sns = aws_sdk_sns::Client::new(&proxy.sdk_config().await);
    let lambda_timeout = Duration::from_secs(1);
    let outcome = tokio::time::timeout(
        lambda_timeout,
        sns.publish().topic_arn(&topic).message("m").send(),
    )
    .await;
    assert!(
        outcome.is_err(),
        "the call should still be waiting at the Lambda timeout"
    );
    assert_eq!(proxy.calls_to("Publish").len(), 1);
    assert!(
        !proxy.calls_to("Publish")[0].forwarded,
        "nothing was published"
    );
}

// --- deploy-exec: RunTask -------------------------------------------------

mod deploy_exec_faults {
    use super::*;
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::runner::EcsTaskRunner;
    use deploy_exec::task_request::{client_token, started_by};
    use deploy_exec::{Config, Deps, handle};
    use kiln::secrets::fake::FakeSecrets;
    use kiln::{DeployEvent, DeployRequest, Env, KilnError, Metrics};
    use kiln_tests::aws::EcsStack;
    use kiln_tests::fixtures::{SnsNotification, sns_event};

    pub(super) fn request(delivery_id: &str) -> DeployRequest {
        DeployRequest {
            kind: kiln::messages::deploy_request::KIND.into(),
            version: kiln::messages::deploy_request::VERSION,
            delivery_id: delivery_id.into(),
            event: DeployEvent::Push,
            repository: "Codertocat/Hello-World".into(),
            clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
            git_ref: "refs/heads/main".into(),
            sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
            environment: "production".into(),
            sender: "Codertocat".into(),
            deployment_id: None,
            requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
            event_at: None,
            before: None,
        }
    }

    pub(super) async fn deps(
        stack: &EcsStack,
        proxy: &FaultProxy,
    ) -> Deps<
        EcsTaskRunner,
        GitHubReporter<FakeSecrets>,
        kiln::sns::fake::RecordingPublisher,
        deploy_exec::task_log::fake::FakeLogTail,
    > {
        let config = Config::from_env(&Env::from_pairs([
            ("CLUSTER", stack.cluster_name.as_str()),
            ("TASK_DEFINITION", stack.family.as_str()),
            ("CONTAINER_NAME", stack.container_name.as_str()),
            ("SUBNETS", stack.subnets_csv().as_str()),
            ("SECURITY_GROUPS", stack.security_groups_csv().as_str()),
        ]))
        .unwrap();
        let reporter = GitHubReporter::new(&config.github_api_url, None, RetryPolicy::immediate(1));
        Deps {
            runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(&proxy.sdk_config().await)),
            publisher: kiln::sns::fake::RecordingPublisher::new(),
            logs: deploy_exec::task_log::fake::FakeLogTail::new(),
            reporter,
            metrics: Metrics::in_memory("deploy-exec"),
            lanes: deploy_exec::lane_store::NO_LANES,
            config,
        }
    }

    pub(super) fn tokens(proxy: &FaultProxy) -> Vec<String> {
        proxy
            .calls_to("RunTask")
            .iter()
            .map(|c| {
                let body: serde_json::Value = serde_json::from_slice(&c.request_body).unwrap();
                body["clientToken"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_task_starts_one_task_per_delivery_or_fails_the_invocation() {
        let moto = Moto::start().await;
        moto.freeze_ecs_tasks().await;
        let aws = moto.aws().await;
        let stack = aws.create_ecs("kiln-faults", "stack-updater").await;
        let mut table = Vec::new();

        for (case, plan) in plans(&["RunTask"]) {
            let delivery = format!("delivery-{}", case.replace([' ', 'x'], "-"));
            let proxy = FaultProxy::start(moto.endpoint(), plan).await;
            let deps = deps(&stack, &proxy).await;
            let topic = "arn:aws:sns:us-east-1:123456789012:kiln-deploy";
            let event = sns_event(&[SnsNotification::new(topic, request(&delivery).to_json())]);
            let result = handle(&deps, event.clone()).await;

            let tasks_of = |tasks: Vec<aws_sdk_ecs::types::Task>| -> Vec<String> {
                tasks
                    .into_iter()
                    .filter(|t| t.started_by() == Some(started_by(&delivery).as_str()))
                    .filter_map(|t| t.task_arn().map(str::to_string))
                    .collect()
            };
            let tasks = tasks_of(aws.describe_all_tasks(&stack.cluster_name).await);
            let calls = proxy.calls_to("RunTask");
            let lost = calls
                .iter()
                .filter(|c| c.fault.is_some_and(Fault::forwards))
                .count();
            let accepted = calls
                .iter()
                .filter(|c| c.upstream_status == Some(200))
                .count();
            assert_eq!(
                tasks.len(),
                accepted,
                "{case}: moto's tasks match the RunTask calls it accepted"
            );
            match &result {
                Ok(value) => {
                    let arn = value["started"][0]["task_arn"].as_str().unwrap_or_default();
                    assert!(
                        tasks.iter().any(|t| t == arn),
                        "{case}: reported {arn}, moto has {tasks:?}"
                    );
                }
                Err(err) => assert_eq!(err.error_type(), "RunTaskFailed", "{case}: {err}"),
            }
            assert!(
                tasks.len() <= 1 + lost,
                "{case}: {} tasks, {lost} lost replies",
                tasks.len()
            );

            // Lambda retries a failed invocation: with the faults gone, the
            // retry starts (or, on ECS, finds) the task under the same token.
            let mut retried = "";
            if result.is_err() {
                proxy.set_plan(FaultPlan::none());
                let again = handle(&deps, event).await;
                assert!(again.is_ok(), "{case}: the retry failed: {:?}", again.err());
                retried = " retried ok";
            }
            let tokens = tokens(&proxy);
            assert!(
                tokens.iter().all(|t| *t == client_token(&delivery)),
                "{case}: every RunTask of one delivery carries its clientToken: {tokens:?}"
            );
            table.push(format!(
                "{case:<22} {:<8} RunTask calls {} (token reused by all), tasks on moto {}{retried}",
                if result.is_ok() { "ok" } else { "failed" },
                tokens.len(),
                tasks_of(aws.describe_all_tasks(&stack.cluster_name).await).len(),
            ));
        }
        println!("deploy-exec RunTask under faults:\n{}", table.join("\n"));
    }
}

// --- watchdog: Auto Scaling and the alert ---------------------------------

mod watchdog_faults {
    use super::*;
    use kiln::{Alert, KilnError, Metrics};
    use kiln_tests::aws::{Aws, SnsQueue};
    use kiln_tests::fixtures::fixture_json;
    use watchdog::crash_history::EcsTaskHistory;
    use watchdog::retry::{Backoff, Deadline};
    use watchdog::scaling::AsgClient;
    use watchdog::{Config, Outcome, Watchdog};

    /// A stopped task whose essential container exited 1.
    pub(super) const CRASH: &str = "synthetic/ecs-task-stopped-essential-exit1.json";
    const OPERATIONS: [&str; 6] = [
        "DescribeAutoScalingGroups",
        "CreateOrUpdateTags",
        "SetDesiredCapacity",
        "UpdateAutoScalingGroup",
        "Publish",
        "DeleteTags",
    ];

    pub(super) type Function = Watchdog<AsgClient, EcsTaskHistory, SnsPublisher>;

    pub(super) async fn watchdog(asg: &str, topic: &str, proxy: &FaultProxy) -> Function {
        let sdk = proxy.sdk_config().await;
        let config = Config::from_env(&kiln::Env::from_pairs([
            ("ASG_NAME", asg),
            ("ALERT_TOPIC_ARN", topic),
        ]))
        .unwrap();
        Watchdog {
            config,
            autoscaling: AsgClient::new(aws_sdk_autoscaling::Client::new(&sdk)),
            history: EcsTaskHistory::new(aws_sdk_ecs::Client::new(&sdk)),
            publisher: SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
            metrics: Metrics::in_memory("watchdog"),
            // watchdog's own retries, as in production but without the waits.
            backoff: Backoff::immediate(8),
            region: Some("us-east-1".into()),
        }
    }

    pub(super) async fn alerts_for(queue: &SnsQueue, asg: &str) -> usize {
        queue
            .drain()
            .await
            .iter()
            .filter_map(|e| Alert::from_json(&e.message).ok())
            .filter(|a| a.field_value("Auto Scaling group") == Some(asg) || a.title.contains(asg))
            .count()
    }

    pub(super) async fn desired(aws: &Aws, asg: &str) -> i32 {
        aws.asg_capacity(asg).await.desired
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_scales_the_group_to_zero_or_fails_the_invocation() {
        let moto = Moto::start().await;
        let aws = moto.aws().await;
        let topic = aws.create_topic("faults-alerts").await;
        let queue = aws.subscribe_queue(&topic).await;
        let mut table = Vec::new();

        for (index, (case, plan)) in plans(&OPERATIONS).into_iter().enumerate() {
            let asg = format!("faults-asg-{index}");
            aws.create_asg(&asg, 0, 2, 2).await;
            let proxy = FaultProxy::start(moto.endpoint(), plan).await;
            let function = watchdog(&asg, &topic, &proxy).await;
            let now = time::OffsetDateTime::now_utc();
            let result = function
                .handle(fixture_json(CRASH), Deadline::NONE, now)
                .await;
            let scaled = desired(&aws, &asg).await == 0;
            let alerts = alerts_for(&queue, &asg).await;
            match &result {
                Ok(Outcome::ScaledDown { .. }) => {
                    assert!(scaled, "{case}: ScaledDown reported, group still up");
                    assert!(
                        alerts >= 1,
                        "{case}: ScaledDown reported, no alert published"
                    );
                }
                Ok(other) => panic!("{case}: a first crash gave {other:?}"),
                Err(err) => assert!(
                    ["ScalingFailed", "AlertPublishFailed"].contains(&err.error_type()),
                    "{case}: {err}"
                ),
            }
            table.push(format!(
                "{case:<22} {:<20} desired 0: {scaled:<5} alerts {alerts} (AWS calls {})",
                match &result {
                    Ok(_) => "scaled_down".to_string(),
                    Err(e) => e.error_type().to_string(),
                },
                proxy.calls().len()
            ));
        }
        println!("watchdog under faults:\n{}", table.join("\n"));
    }

    /// The scale-down happened but the invocation failed (its reply was
    /// lost every time, or the alert could not be published): Lambda's
    /// retry finds the group at zero, and the pending-alert tag makes it
    /// send the alert. The operator is told exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scale_down_is_never_left_without_its_alert() {
        let moto = Moto::start().await;
        let aws = moto.aws().await;
        let topic = aws.create_topic("faults-lost-alert").await;
        let queue = aws.subscribe_queue(&topic).await;
        let cases = [
            (
                "SetDesiredCapacity reply lost",
                FaultPlan::always(Fault::ResetAfter).on(&["SetDesiredCapacity"]),
            ),
            (
                "alert publish failing",
                FaultPlan::always(Fault::ServerError).on(&["Publish"]),
            ),
        ];
        for (index, (case, plan)) in cases.into_iter().enumerate() {
            let asg = format!("lost-alert-asg-{index}");
            aws.create_asg(&asg, 0, 2, 2).await;
            let proxy = FaultProxy::start(moto.endpoint(), plan).await;
            let function = watchdog(&asg, &topic, &proxy).await;
            let now = time::OffsetDateTime::now_utc();
            let first = function
                .handle(fixture_json(CRASH), Deadline::NONE, now)
                .await;
            assert!(first.is_err(), "{case}: the first invocation should fail");
            assert_eq!(desired(&aws, &asg).await, 0, "{case}: the group was scaled");
            // Lambda's two retries, the fault gone.
            proxy.set_plan(FaultPlan::none());
            for _ in 0..2 {
                let _ = function
                    .handle(fixture_json(CRASH), Deadline::NONE, now)
                    .await;
            }
            assert_eq!(
                alerts_for(&queue, &asg).await,
                1,
                "{case}: the group went to zero: one alert, no more, no less"
            );
        }
    }
}

// --- Slack: alert-forwarder against a scripted webhook ----------------------

mod slack_faults {
    use super::*;
    use alert_forwarder::clock::SystemClock;
    use alert_forwarder::refire::NoAlarms;
    use alert_forwarder::slack::{ReqwestWebhook, RetryPolicy};
    use alert_forwarder::{Config, Forwarder};
    use kiln::secrets::fake::FakeSecrets;
    use kiln::{Env, KilnError, Metrics, SecretCache, VersionStage};
    use kiln_tests::fixtures::{SnsNotification, sns_event};
    use kiln_tests::http::{RecordingServer, Reply};
    use lambda_runtime::{Context, LambdaEvent};

    const WEBHOOK_ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/slack-AbCdEf";
    const ATTEMPTS: u32 = 3;

    fn forwarder(
        slack: &RecordingServer,
    ) -> Forwarder<ReqwestWebhook, FakeSecrets, NoAlarms, SystemClock> {
        let url = slack.url_for("/services/T0/B0/faults");
        let mut forwarder = Forwarder::new(
            Config::from_env(&Env::from_pairs([(
                "SLACK_WEBHOOK_SECRET_ARN",
                WEBHOOK_ARN,
            )]))
            .unwrap(),
            SecretCache::new(FakeSecrets::new().with(WEBHOOK_ARN, VersionStage::Current, &url)),
            ReqwestWebhook::new(),
            NoAlarms,
            SystemClock,
            Metrics::in_memory("alert-forwarder"),
        );
        forwarder.policy = RetryPolicy {
            attempts: ATTEMPTS,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            default_retry_after: Duration::from_millis(5),
            request_timeout: Duration::from_millis(500),
            reserve: Duration::ZERO,
        };
        forwarder
    }

    fn ok() -> Reply {
        Reply::text(200, "ok")
    }

    fn storm(reply: Reply) -> Vec<Reply> {
        vec![reply; ATTEMPTS as usize]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slack_failures_are_retried_or_surfaced_never_reported_as_sent() {
        let slow = ok().delay(Duration::from_secs(2));
        let cases: Vec<(&str, Vec<Reply>, Option<&str>)> = vec![
            (
                "5xx once",
                vec![Reply::text(500, "internal_error"), ok()],
                None,
            ),
            (
                "connection dropped once",
                vec![Reply::drop_connection(), ok()],
                None,
            ),
            ("slow reply once", vec![slow, ok()], None),
            (
                "429 once",
                vec![
                    Reply::text(429, "rate_limited").header("retry-after", "0"),
                    ok(),
                ],
                None,
            ),
            (
                "429 storm",
                storm(Reply::text(429, "rate_limited").header("retry-after", "0")),
                Some("SlackRateLimited"),
            ),
            (
                "429 asking for an hour",
                vec![Reply::text(429, "rate_limited").header("retry-after", "3600")],
                Some("SlackRateLimited"),
            ),
            (
                "5xx storm",
                storm(Reply::text(503, "service_unavailable")),
                Some("SlackUnavailable"),
            ),
            (
                "drop storm",
                storm(Reply::drop_connection()),
                Some("SlackUnavailable"),
            ),
            (
                "404 no_service",
                vec![Reply::text(404, "no_service")],
                Some("SlackRejected"),
            ),
        ];
        let mut table = Vec::new();
        for (case, replies, expected_error) in cases {
            let slack = RecordingServer::start_with_default(ok()).await;
            slack.push_all(replies.clone());
            let forwarder = forwarder(&slack);
            let event = sns_event(&[SnsNotification::new(
                "arn:aws:sns:us-east-1:123456789012:kiln-alerts",
                format!("alert for {case}"),
            )]);
            let result = forwarder
                .handle(LambdaEvent::new(event.clone(), Context::default()))
                .await;
            let attempts = slack.request_count();
            // A request Slack answered 2xx was posted, even when the reply
            // came too late for the client.
            let answered_ok = replies
                .iter()
                .chain(std::iter::repeat(&ok()))
                .take(attempts)
                .filter(|r| r.status == 200 && !r.drop_connection)
                .count();
            match (&result, expected_error) {
                (Ok(outcome), None) => {
                    assert_eq!(outcome.posted, 1, "{case}");
                    assert!(
                        answered_ok >= 1,
                        "{case}: reported posted, Slack accepted nothing"
                    );
                }
                (Err(err), Some(expected)) => {
                    assert_eq!(err.error_type(), expected, "{case}: {err}");
                    assert_eq!(
                        answered_ok, 0,
                        "{case}: failure reported for a posted message"
                    );
                }
                (other, _) => panic!("{case}: {other:?}"),
            }
            assert!(attempts <= ATTEMPTS as usize, "{case}: {attempts} attempts");
            // Lambda's retry once Slack is back posts it.
            let mut retried = "";
            if result.is_err() {
                let again = forwarder
                    .handle(LambdaEvent::new(event, Context::default()))
                    .await;
                assert!(again.is_ok(), "{case}: {again:?}");
                retried = ", Lambda retry posted it";
            }
            table.push(format!(
                "{case:<24} {:<17} requests {attempts}, accepted by Slack {answered_ok}{retried}",
                result
                    .as_ref()
                    .map(|_| "posted".to_string())
                    .unwrap_or_else(|e| e.error_type().to_string()),
            ));
        }
        println!("Slack under faults:\n{}", table.join("\n"));
    }
}

// --- GitHub: deploy-exec's final status against a scripted API ---------------

mod github_faults {
    use super::*;
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::runner::RunTaskError;
    use deploy_exec::runner::fake::FakeRunner;
    use deploy_exec::{Config, Deps, handle};
    use kiln::secrets::fake::FakeSecrets;
    use kiln::{Env, KilnError, Metrics, SecretCache, VersionStage};
    use kiln_tests::fixtures::fixture_json;
    use kiln_tests::http::{RecordingServer, Reply};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    const TOKEN_ARN: &str =
        "arn:aws:secretsmanager:us-west-2:111122223333:secret:kiln/github-token-AbCdEf";

    /// GitHub: statuses listed back empty; POSTs answered from `script`,
    /// then 201.
    async fn github(script: Vec<Reply>) -> (RecordingServer, Arc<Mutex<Vec<u16>>>) {
        let server = RecordingServer::start().await;
        let script = Mutex::new(VecDeque::from(script));
        let answered: Arc<Mutex<Vec<u16>>> = Arc::default();
        let answered_in = Arc::clone(&answered);
        server.respond_with(move |request| {
            if request.method == "GET" {
                return Some(Reply::json(200, &serde_json::json!([])));
            }
            let reply = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Reply::json(201, &serde_json::json!({"id": 1})));
            if !reply.drop_connection {
                answered_in.lock().unwrap().push(reply.status);
            }
            Some(reply)
        });
        (server, answered)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_final_status_is_posted_or_the_invocation_fails() {
        let created = || Reply::json(201, &serde_json::json!({"id": 1}));
        let cases: Vec<(&str, Vec<Reply>, bool)> = vec![
            (
                "5xx once",
                vec![Reply::text(502, "Bad Gateway"), created()],
                true,
            ),
            (
                "connection dropped once",
                vec![Reply::drop_connection(), created()],
                true,
            ),
            (
                "slow reply",
                vec![created().delay(Duration::from_millis(800))],
                true,
            ),
            (
                "429 with retry-after 0",
                vec![
                    Reply::text(429, "slow down").header("retry-after", "0"),
                    created(),
                ],
                true,
            ),
            (
                "401 (token rotated) once",
                vec![Reply::text(401, "Bad credentials"), created()],
                true,
            ),
            ("5xx storm", vec![Reply::text(500, "boom"); 3], false),
            (
                "secondary rate limit for an hour",
                vec![Reply::text(403, "limit").header("retry-after", "3600")],
                false,
            ),
            (
                "422 validation failed",
                vec![Reply::text(422, "Validation Failed")],
                false,
            ),
        ];
        let mut table = Vec::new();
        for (case, script, posts) in cases {
            let (server, answered) = github(script).await;
            let config = Config::from_env(&Env::from_pairs([
                ("CLUSTER", "kiln"),
                ("TASK_DEFINITION", "kiln-stack-updater:3"),
                ("CONTAINER_NAME", "stack-updater"),
                ("SUBNETS", "subnet-1"),
                ("SECURITY_GROUPS", "sg-1"),
                ("GITHUB_TOKEN_SECRET_ARN", TOKEN_ARN),
                ("GITHUB_API_URL", server.url().as_str()),
            ]))
            .unwrap();
            let secrets =
                Arc::new(FakeSecrets::new().with(TOKEN_ARN, VersionStage::Current, "ghp_faults"));
            let deps = Deps {
                reporter: GitHubReporter::new(
                    &config.github_api_url,
                    Some((TOKEN_ARN.to_string(), SecretCache::new(secrets))),
                    RetryPolicy::immediate(3),
                ),
                runner: FakeRunner::failing(RunTaskError::NoTask),
                publisher: kiln::sns::fake::RecordingPublisher::new(),
                logs: deploy_exec::task_log::fake::FakeLogTail::new(),
                metrics: Metrics::in_memory("deploy-exec"),
                lanes: deploy_exec::lane_store::NO_LANES,
                config,
            };
            let result = handle(
                &deps,
                fixture_json("synthetic/deploy-task-stopped-exit0.json"),
            )
            .await;
            let accepted = answered
                .lock()
                .unwrap()
                .iter()
                .filter(|s| **s == 201)
                .count();
            match &result {
                Ok(value) => {
                    assert!(posts, "{case}: expected a failure, got {value}");
                    assert_eq!(value["reported"], "posted", "{case}");
                    assert!(
                        accepted >= 1,
                        "{case}: reported posted, GitHub accepted nothing"
                    );
                }
                Err(err) => {
                    assert!(!posts, "{case}: {err}");
                    assert_eq!(err.error_type(), "GitHubReportFailed", "{case}");
                    assert_eq!(accepted, 0, "{case}: failure reported for a posted status");
                }
            }
            let posts_sent = server
                .requests()
                .iter()
                .filter(|r| r.method == "POST")
                .count();
            table.push(format!(
                "{case:<34} {:<19} POSTs {posts_sent}, accepted {accepted}",
                result
                    .as_ref()
                    .map(|_| "posted".to_string())
                    .unwrap_or_else(|e| e.error_type().to_string()),
            ));
        }
        println!("GitHub under faults:\n{}", table.join("\n"));
    }
}
