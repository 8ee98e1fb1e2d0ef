//! The inputs of kiln's in-process benchmarks, shared by the criterion
//! benchmarks (`benches/hotpaths.rs`) and the benchmark runner, which
//! compares the HMAC result with OpenSSL on the same machine.

use std::path::PathBuf;

/// Criterion's group for the HMAC-SHA256 of a large webhook body.
pub const HMAC_GROUP: &str = "hmac-sha256";
/// Size of the large body: 25 MiB, GitHub's cap on a webhook payload.
pub const HMAC_BODY_LEN: usize = 25 * 1024 * 1024;
/// The webhook secret the benchmarks sign with.
pub const HMAC_KEY: &str = "kiln-bench-webhook-secret";

/// Alarm notifications, as the SNS message or the EventBridge event that
/// reaches alert-forwarder: every CloudWatch alarm shape in the fixtures.
pub const ALARM_FIXTURES: &[&str] = &[
    "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
    "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-multiple-metrics.json",
    "aws/lambda-go/cloudwatch-alarm-sns-payload-single-metric.json",
    "aws/lambda-go/cloudwatch-alarm-sns-payload-multiple-metrics.json",
    "aws/notify-slack/messages/cloudwatch_alarm.json",
    "aws/rust-runtime/example-cloudwatch-alarm-metric.json",
    "aws/rust-runtime/example-cloudwatch-alarm-composite.json",
    "aws/rust-runtime/example-cloudwatch-alarm-composite-with-suppressor-alarm.json",
    "aws/cloudwatch-docs/alarm-state-change-single-metric.json",
    "aws/cloudwatch-docs/alarm-state-change-metric-math.json",
    "aws/cloudwatch-docs/alarm-state-change-composite-with-suppressor.json",
    "aws/notify-slack/events/cloudwatch_alarm.json",
];

/// EventBridge "ECS Task State Change" events.
pub const ECS_FIXTURES: &[&str] = &[
    "aws/ecs-docs/task-state-change-container-stopped-exit0.json",
    "aws/lambda-dotnet/ecs-task-state-change-event.json",
];

/// `<workspace>/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

/// A fixture's bytes; panics with the path if it cannot be read (benchmarks
/// only).
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The short name a fixture is reported under: its file stem, with the
/// source directory when two sources share a stem.
pub fn fixture_label(relative: &str) -> String {
    let mut parts = relative.rsplit('/');
    let stem = parts
        .next()
        .unwrap_or(relative)
        .trim_end_matches(".json")
        .trim_start_matches("example-");
    let source = parts.next().unwrap_or_default();
    format!("{source}/{stem}")
}

/// A JSON body of `len` bytes, shaped like a webhook payload (an object with
/// one long string), for the large-body benchmarks. Deterministic, so every
/// run hashes the same bytes.
pub fn large_json_body(len: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"padding\":\"";
    const TAIL: &[u8] = b"\"}";
    let fill = len.saturating_sub(HEAD.len() + TAIL.len());
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(HEAD);
    body.extend((0..fill).map(|i| b"abcdefghijklmnopqrstuvwxyz012345"[i % 32]));
    body.extend_from_slice(TAIL);
    body
}
