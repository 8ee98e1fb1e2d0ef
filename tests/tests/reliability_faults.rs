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
        }
    }

    pub(super) async fn deps(
        stack: &EcsStack,
        proxy: &FaultProxy,
    ) -> Deps<EcsTaskRunner, GitHubReporter<FakeSecrets>> {
        let config = Config::from_env(&Env::from_pairs([
            ("CLUSTER", stack.cluster_name.as_str()),
            ("TASK_DEFINITION", stack.family.as_str()),
            ("CONTAINER_NAME", stack.container_name.as_str()),
            ("SUBNETS", stack.subnets_csv().as_str()),
            ("SECURITY_GROUPS", stack.security_groups_csv().as_str()),
        ]))
        .unwrap();
        let reporter =
            GitHubReporter::new(&config.github_api_url, None, RetryPolicy::immediate(1)).unwrap();
        Deps {
            runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(&proxy.sdk_config().await)),
            reporter,
            metrics: Metrics::in_memory("deploy-exec"),
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
