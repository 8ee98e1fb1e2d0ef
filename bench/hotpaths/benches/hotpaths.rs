//! kiln's in-process hot paths, measured with criterion:
//! - the HMAC-SHA256 check of a 25 MiB webhook body (deploy-trigger's own
//!   `signature::verify`); the runner compares it with OpenSSL;
//! - rendering each CloudWatch alarm fixture to the Slack JSON body
//!   alert-forwarder posts (from the invocation payload's bytes);
//! - decoding each "ECS Task State Change" fixture with `kiln::events`.
//!
//! Webhook verification and decoding end to end (25 KB and 25 MiB) are in
//! deploy-trigger's own `webhook` benchmark.

use std::hint::black_box;

use alert_forwarder::classify::{self, Invocation};
use alert_forwarder::config::NotifyOk;
use alert_forwarder::render::{self, Options, Origin, Rendered};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use deploy_trigger::signature;
use kiln::SecretString;
use kiln::events::ecs::TaskStateChange;
use kiln::events::eventbridge::EventBridgeEvent;
use kiln_hotpaths::{
    ALARM_FIXTURES, ECS_FIXTURES, HMAC_BODY_LEN, HMAC_GROUP, HMAC_KEY, fixture, fixture_label,
    large_json_body,
};

fn hmac(c: &mut Criterion) {
    let body = large_json_body(HMAC_BODY_LEN);
    let header = signature::sign(HMAC_KEY.as_bytes(), &body);
    let signature = signature::parse_header(header.as_bytes()).expect("a valid signature");
    let secrets = [SecretString::new(HMAC_KEY)];
    assert_eq!(signature::verify(&body, &signature, &secrets), Some(0));

    let mut group = c.benchmark_group(HMAC_GROUP);
    // About 10 ms an iteration: ten samples are plenty and keep the run short.
    group.sample_size(10);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(BenchmarkId::new("verify", "25MiB"), |b| {
        b.iter(|| signature::verify(black_box(&body), &signature, &secrets))
    });
    group.finish();
}

/// What alert-forwarder does with an invocation payload, short of posting:
/// classify it, render every message, serialise the Slack bodies.
fn slack_bodies(payload: &[u8]) -> Vec<String> {
    let options = Options {
        mention: None,
        notify_ok: NotifyOk::Always,
    };
    let body = |rendered: Rendered| match rendered {
        Rendered::Post(payload) => Some(payload.to_body()),
        Rendered::Skip { .. } => None,
    };
    let value: serde_json::Value = serde_json::from_slice(payload).expect("a JSON fixture");
    match classify::invocation(value) {
        Invocation::Sns(event) => event
            .records
            .iter()
            .filter_map(|record| {
                let origin = Origin {
                    topic_arn: record.sns.topic_arn.as_deref(),
                    subject: record.sns.subject.as_deref(),
                    timestamp: record.sns.timestamp.as_deref(),
                };
                body(render::render(
                    &classify::message(&record.sns.message),
                    &origin,
                    &options,
                ))
            })
            .collect(),
        Invocation::Direct(message) => body(render::render(&message, &Origin::default(), &options))
            .into_iter()
            .collect(),
        Invocation::Schedule(_) => Vec::new(),
    }
}

fn alarm_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("alarm-to-slack");
    for path in ALARM_FIXTURES {
        let bytes = fixture(path);
        let bodies = slack_bodies(&bytes);
        assert!(
            !bodies.is_empty() && bodies.iter().all(|b| b.contains("\"blocks\"")),
            "{path}: no Slack message rendered"
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(fixture_label(path)), |b| {
            b.iter(|| slack_bodies(black_box(&bytes)))
        });
    }
    group.finish();
}

fn ecs_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ecs-task-state-change-decode");
    for path in ECS_FIXTURES {
        let bytes = fixture(path);
        let decode = |bytes: &[u8]| {
            let event: EventBridgeEvent =
                serde_json::from_slice(bytes).expect("an EventBridge event");
            event
                .detail_as::<TaskStateChange>()
                .expect("an ECS task state change")
        };
        assert!(decode(&bytes).task_arn.is_some(), "{path}: no task ARN");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(fixture_label(path)), |b| {
            b.iter(|| decode(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, hmac, alarm_render, ecs_decode);
criterion_main!(benches);
