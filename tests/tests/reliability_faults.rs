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
