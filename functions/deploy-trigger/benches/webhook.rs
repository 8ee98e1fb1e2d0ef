//! How long deploy-trigger takes for one webhook: a typical 25 KB push and
//! a 25 MiB body (GitHub's maximum), sent as text and as base64.
//!
//! `handle/*` is the whole handler (decode, headers, HMAC against the
//! secret, content type, payload parse, routing, building the deploy
//! request) with in-memory ports, so no network time is counted.
//! `event_json/*` is the runtime's share: deserialising the invocation's
//! JSON into the API Gateway event. `hmac/*` is the signature check alone.

use base64::Engine;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use deploy_trigger::{Config, Deps, handle, signature};
use kiln::secrets::fake::FakeSecrets;
use kiln::sns::{OutboundMessage, PublishError, Publisher};
use kiln::{Metrics, SecretCache, SecretString, VersionStage};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{Value, json};

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln-webhook";
const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo";
const SECRET: &str = "It's a Secret to Everybody";

/// Accepts every message and keeps none, so memory stays flat.
struct NullPublisher;

impl Publisher for NullPublisher {
    async fn publish(&self, _: &str, _: OutboundMessage) -> Result<String, PublishError> {
        Ok("bench-message".into())
    }
}

/// The new-branch push fixture with its commit repeated until the compact
/// JSON is at least `min_bytes` long (but never over the 25 MiB limit).
fn push_payload(min_bytes: usize) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/github/push/with-new-branch.payload.json"
    );
    let mut payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let commit = payload["commits"][0].clone();
    let commit_len = serde_json::to_vec(&commit).unwrap().len() + 1;
    let base_len = serde_json::to_vec(&payload).unwrap().len();
    let limit = deploy_trigger::request::MAX_BODY_BYTES;
    let wanted = min_bytes.min(limit - commit_len).saturating_sub(base_len);
    let count = wanted.div_ceil(commit_len);
    let commits = payload["commits"].as_array_mut().unwrap();
    commits.extend(std::iter::repeat_n(commit, count));
    let bytes = serde_json::to_vec(&payload).unwrap();
    assert!(bytes.len() >= min_bytes.min(limit - 2 * commit_len) && bytes.len() <= limit);
    bytes
}

/// The invocation JSON API Gateway would send for `payload`.
fn event_json(payload: &[u8], base64: bool) -> String {
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(payload)
    } else {
        String::from_utf8(payload.to_vec()).unwrap()
    };
    json!({
        "version": "2.0",
        "routeKey": "POST /webhook",
        "rawPath": "/webhook",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "user-agent": "GitHub-Hookshot/0000000",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "x-github-event": "push",
            "x-hub-signature-256": signature::sign(SECRET.as_bytes(), payload),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "http": { "method": "POST", "path": "/webhook", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/0000000" },
            "requestId": "id",
            "routeKey": "POST /webhook",
            "stage": "$default",
            "timeEpoch": 1583348638390_u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
    .to_string()
}

fn deps() -> Deps<FakeSecrets, NullPublisher> {
    let config = Config::from_env(&kiln::Env::from_pairs([
        ("WEBHOOK_SECRET_ARN", SECRET_ARN),
        ("DEPLOY_TOPIC_ARN", TOPIC_ARN),
        ("DEPLOY_BRANCHES", "master=production"),
    ]))
    .unwrap();
    Deps {
        config,
        secrets: SecretCache::new(FakeSecrets::new().with(
            SECRET_ARN,
            VersionStage::Current,
            SECRET,
        )),
        publisher: NullPublisher,
        metrics: Metrics::in_memory("deploy-trigger"),
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let deps = deps();
    // Metrics and logs are off the hot path here: no subscriber is installed.
    let cases = [
        ("push_25kb", push_payload(25_000), false, 50),
        ("body_25mib", push_payload(usize::MAX), false, 10),
        ("body_25mib_base64", push_payload(usize::MAX), true, 10),
    ];
    for (name, payload, base64, samples) in cases {
        let json = event_json(&payload, base64);
        let event: ApiGatewayV2httpRequest = serde_json::from_str(&json).unwrap();
        // The handler must accept it, or the numbers mean nothing.
        let response = runtime.block_on(handle(&deps, event.clone()));
        assert_eq!(response.status_code, 200, "{name}: {:?}", response.body);

        let mut group = c.benchmark_group(name);
        group.sample_size(samples);
        group.bench_function("handle", |b| {
            b.iter_batched(
                || event.clone(),
                |event| runtime.block_on(handle(&deps, event)),
                BatchSize::PerIteration,
            )
        });
        group.bench_function("event_json", |b| {
            b.iter(|| serde_json::from_str::<ApiGatewayV2httpRequest>(&json).unwrap())
        });
        let header = signature::sign(SECRET.as_bytes(), &payload);
        let parsed = signature::parse_header(header.as_bytes()).unwrap();
        let secrets = [SecretString::new(SECRET)];
        group.bench_function("hmac", |b| {
            b.iter(|| signature::verify(&payload, &parsed, &secrets))
        });
        group.finish();
    }
}

criterion_group!(webhook, benches);
criterion_main!(webhook);
