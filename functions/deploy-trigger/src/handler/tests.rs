//! The handler's flow with in-memory ports: every documented status, and
//! nothing published for any bad input.

use std::sync::Arc;

use base64::Engine;
use kiln::VersionStage;
use kiln::secrets::fake::FakeSecrets;
use kiln::sns::fake::RecordingPublisher;
use serde_json::{Value, json};

use super::*;

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln-webhook";
const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo";
const SECRET: &str = "It's a Secret to Everybody";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/../../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn github(path: &str) -> Vec<u8> {
    fixture(&format!("github/{path}"))
}

struct Harness {
    deps: Deps<Arc<FakeSecrets>, RecordingPublisher>,
    secrets: Arc<FakeSecrets>,
}

impl Harness {
    fn published(&self) -> Vec<(String, OutboundMessage)> {
        self.deps.publisher.published()
    }
}

fn harness(extra_env: &[(&str, &str)]) -> Harness {
    let mut env = vec![
        ("WEBHOOK_SECRET_ARN", SECRET_ARN),
        ("DEPLOY_TOPIC_ARN", TOPIC_ARN),
        ("DEPLOY_BRANCHES", "master=production"),
        ("DEPLOY_TAGS", "simple-*=staging"),
    ];
    env.extend_from_slice(extra_env);
    let config = Config::from_env(&kiln::Env::from_pairs(env)).unwrap();
    let secrets = Arc::new(FakeSecrets::new().with(SECRET_ARN, VersionStage::Current, SECRET));
    Harness {
        deps: Deps {
            config,
            secrets: SecretCache::new(Arc::clone(&secrets)),
            publisher: RecordingPublisher::new(),
            metrics: Metrics::in_memory("deploy-trigger"),
        },
        secrets,
    }
}

/// A payload 2.0 event, built from the real API Gateway fixture the way
/// the runtime receives it (JSON), with our headers and body.
fn api_event(
    headers: &[(&str, &str)],
    body: Option<&str>,
    is_base64: bool,
) -> ApiGatewayV2httpRequest {
    let mut event: Value =
        serde_json::from_slice(&fixture("aws/rust-runtime/apigw_v2_proxy_request.json")).unwrap();
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        header_map.insert(name.to_string(), json!(value));
    }
    event["headers"] = Value::Object(header_map);
    event["body"] = body.map_or(Value::Null, |b| json!(b));
    event["isBase64Encoded"] = json!(is_base64);
    serde_json::from_value(event).unwrap()
}

fn signed_headers<'a>(event: &'a str, signature: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("X-GitHub-Delivery", DELIVERY),
        ("X-GitHub-Event", event),
        ("X-Hub-Signature-256", signature),
        ("Content-Type", "application/json"),
    ]
}

/// Sends `body` as GitHub would: JSON, signed with `SECRET`.
async fn send(h: &Harness, event: &str, body: &[u8]) -> (u16, Value) {
    let signature = signature::sign(SECRET.as_bytes(), body);
    let text = std::str::from_utf8(body).unwrap();
    call(
        h,
        api_event(&signed_headers(event, &signature), Some(text), false),
    )
    .await
}

async fn call(h: &Harness, event: ApiGatewayV2httpRequest) -> (u16, Value) {
    let response = handle(&h.deps, event).await;
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
    let body = match response.body {
        Some(Body::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (u16::try_from(response.status_code).unwrap(), body)
}

fn published_request(h: &Harness) -> (OutboundMessage, DeployRequest) {
    let published = h.published();
    assert_eq!(published.len(), 1, "{published:?}");
    let (topic, message) = published[0].clone();
    assert_eq!(topic, TOPIC_ARN);
    let request = DeployRequest::from_json(&message.body).unwrap();
    (message, request)
}

#[tokio::test]
async fn push_to_a_routed_branch_publishes_one_deploy_request() {
    let h = harness(&[]);
    let (status, body) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["delivery_id"], DELIVERY);
    assert_eq!(body["environment"], "production");
    assert_eq!(body["message_id"], "fake-message-1");

    let (message, request) = published_request(&h);
    assert_eq!(request.delivery_id, DELIVERY);
    assert_eq!(request.event, DeployEvent::Push);
    assert_eq!(request.repository, "Codertocat/Hello-World");
    assert_eq!(
        request.clone_url,
        "https://github.com/Codertocat/Hello-World.git"
    );
    assert_eq!(request.git_ref, "refs/heads/master");
    assert_eq!(request.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    // A new branch: GitHub's `before` is all zeros, which is no commit.
    assert_eq!(request.before, None);
    assert_eq!(request.environment, "production");
    assert_eq!(request.sender, "Codertocat");
    assert_eq!(request.deployment_id, None);
    assert_eq!(
        message.attributes,
        vec![
            ("environment".to_string(), "production".to_string()),
            (
                "repository".to_string(),
                "Codertocat/Hello-World".to_string()
            ),
            ("event".to_string(), "push".to_string()),
        ]
    );
    assert_eq!(message.group_id.as_deref(), Some("Codertocat/Hello-World"));
    assert_eq!(message.deduplication_id.as_deref(), Some(DELIVERY));
    // The GitHub body is never forwarded.
    assert!(message.body.len() < 1024);
    assert_eq!(h.deps.metrics.total("DeploysRequested"), 1.0);
}

#[tokio::test]
async fn tag_push_uses_the_tag_rules() {
    let h = harness(&[]);
    let (status, body) = send(&h, "push", &github("push/ghes-push.json")).await;
    assert_eq!(status, 200, "{body}");
    let (_, request) = published_request(&h);
    assert_eq!(request.git_ref, "refs/tags/simple-tag");
    assert_eq!(request.environment, "staging");
    assert_eq!(
        request.clone_url,
        "https://octocoders.github.io/Codertocat/Hello-World.git"
    );
}

#[tokio::test]
async fn deployment_deploys_its_environment_at_its_sha() {
    let h = harness(&[]);
    let (status, body) = send(&h, "deployment", &github("deployment/payload.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["environment"], "production");
    let (message, request) = published_request(&h);
    assert_eq!(request.event, DeployEvent::Deployment);
    assert_eq!(request.deployment_id, Some(145988746));
    assert_eq!(request.sha, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
    assert_eq!(request.git_ref, "refs/heads/master");
    assert_eq!(message.attributes[2], ("event".into(), "deployment".into()));
}

#[tokio::test]
async fn pings_get_200_and_publish_nothing() {
    for path in [
        "ping/payload.json",
        "ping/with-app_id.payload.json",
        "ping/with-organization.payload.json",
    ] {
        let h = harness(&[("ALLOWED_REPOSITORIES", "Octocoders/*")]);
        let (status, body) = send(&h, "ping", &github(path)).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("pong")),
            "{path}"
        );
        assert!(h.published().is_empty());
    }
}

/// The new-branch push fixture as a push to an existing branch, with one
/// commit that has this message and modifies these files.
fn push_changing(message: &str, files: &[&str]) -> Vec<u8> {
    let mut push: Value =
        serde_json::from_slice(&github("push/with-new-branch.payload.json")).unwrap();
    push["created"] = json!(false);
    let mut commit = push["commits"][0].clone();
    commit["message"] = json!(message);
    commit["added"] = json!([]);
    commit["modified"] = json!(files);
    push["commits"] = json!([commit.clone()]);
    push["head_commit"] = commit;
    serde_json::to_vec(&push).unwrap()
}

#[tokio::test]
async fn skips_are_202_with_the_rule_and_counted_by_rule() {
    let h = harness(&[("DEPLOY_PATHS", "production=infra/**")]);
    let (status, body) = send(&h, "push", &push_changing("Docs", &["README.md"])).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "skipped",
            "reason": "no changed file matches DEPLOY_PATHS for production (1 changed file checked)",
            "delivery_id": DELIVERY,
            "environment": "production",
            "rule": "path-filter",
        })
    );
    let (status, body) = send(
        &h,
        "push",
        &push_changing("Infra [Deploy Skip]", &["infra/a"]),
    )
    .await;
    assert_eq!(
        (status, body["rule"].as_str()),
        (202, Some("skip-marker")),
        "{body}"
    );
    assert_eq!(
        body["reason"],
        "the head commit's message carries the skip marker [deploy skip]"
    );
    assert!(h.published().is_empty());
    let metrics = &h.deps.metrics;
    assert_eq!(
        metrics.total_by("DeploysSkipped", "Rule", "path-filter"),
        1.0
    );
    assert_eq!(
        metrics.total_by("DeploysSkipped", "Rule", "skip-marker"),
        1.0
    );
    assert_eq!(metrics.total("WebhooksIgnored"), 0.0);

    let (status, body) = send(&h, "push", &push_changing("Infra", &["infra/a"])).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("queued")),
        "{body}"
    );
    assert_eq!(h.published().len(), 1);
}

#[tokio::test]
async fn deletions_unrouted_refs_and_other_events_get_202() {
    let cases = [
        (
            "push",
            "push/payload.json",
            "refs/tags/simple-tag was deleted",
        ),
        (
            "push",
            "push/with-organization.payload.json",
            "refs/tags/simple-tag was deleted",
        ),
        (
            "deployment_status",
            "deployment_status/payload.json",
            "deployment_status events are ignored (deploying on them would loop)",
        ),
        (
            "pull_request",
            "pull_request/opened.payload.json",
            "pull_request events are not deployed",
        ),
        (
            "release",
            "release/published.payload.json",
            "release events are not deployed",
        ),
        (
            "create",
            "create/payload.json",
            "create events are not deployed",
        ),
        (
            "delete",
            "delete/payload.json",
            "delete events are not deployed",
        ),
        (
            "workflow_run",
            "workflow_run/completed.payload.json",
            "workflow_run events are not deployed",
        ),
    ];
    for (event, path, reason) in cases {
        let h = harness(&[]);
        let (status, body) = send(&h, event, &github(path)).await;
        assert_eq!(status, 202, "{path}: {body}");
        assert_eq!(body["status"], "ignored");
        assert_eq!(body["reason"], reason, "{path}");
        assert!(h.published().is_empty(), "{path}");
    }
    // The same push, but its branch matches no rule.
    let h = harness(&[("DEPLOY_BRANCHES", "main=production")]);
    let (status, body) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 202);
    assert_eq!(
        body["reason"],
        "branch master matches no rule in DEPLOY_BRANCHES"
    );
    assert!(h.published().is_empty());
}

#[tokio::test]
async fn form_encoded_and_base64_bodies_are_accepted() {
    let payload = github("push/with-no-username-committer.payload.json");
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&payload).unwrap())
        .finish();
    let signature = signature::sign(SECRET.as_bytes(), form.as_bytes());
    let mut headers = signed_headers("push", &signature);
    headers[3].1 = "application/x-www-form-urlencoded";
    let h = harness(&[]);
    let (status, body) = call(&h, api_event(&headers, Some(&form), false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        published_request(&h).1.sha,
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    );

    let encoded = base64::engine::general_purpose::STANDARD.encode(&payload);
    let signature = signature::sign(SECRET.as_bytes(), &payload);
    let h = harness(&[]);
    let (status, body) = call(
        &h,
        api_event(&signed_headers("push", &signature), Some(&encoded), true),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn header_names_are_case_insensitive() {
    let payload = github("push/with-new-branch.payload.json");
    let signature = signature::sign(SECRET.as_bytes(), &payload);
    let headers = [
        ("x-github-delivery", DELIVERY),
        ("X-GITHUB-EVENT", "push"),
        ("x-hub-signature-256", signature.as_str()),
        ("content-TYPE", "application/json; charset=utf-8"),
    ];
    let h = harness(&[]);
    let text = std::str::from_utf8(&payload).unwrap();
    let (status, _) = call(&h, api_event(&headers, Some(text), false)).await;
    assert_eq!(status, 200);
}

/// A name, headers, body, whether it is base64-encoded, and the status.
type BadInput<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>, bool, u16);

/// Each bad input, its status, and a check that nothing was published.
#[tokio::test]
async fn bad_input_gets_its_documented_status_and_publishes_nothing() {
    let payload = github("push/with-new-branch.payload.json");
    let text = std::str::from_utf8(&payload).unwrap();
    let good = signature::sign(SECRET.as_bytes(), &payload);
    let other_body = signature::sign(SECRET.as_bytes(), b"{}");
    let other_secret = signature::sign(b"not the secret", &payload);
    let truncated = good[..good.len() - 2].to_string();
    let uppercase = format!("sha256={}", good["sha256=".len()..].to_ascii_uppercase());
    let sha1 = format!("sha1={}", &good["sha256=".len()..][..40]);
    let two = format!("{good},{other_body}");
    let sig = |value: &str| {
        let mut h = signed_headers("push", "");
        h[2].1 = Box::leak(value.to_string().into_boxed_str());
        h
    };
    let without = |name: &str| {
        let mut h = signed_headers("push", Box::leak(good.clone().into_boxed_str()));
        h.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        h
    };
    let signed_text = |body: &'static str, ct: &'static str| {
        let mut h = signed_headers(
            "push",
            Box::leak(signature::sign(SECRET.as_bytes(), body.as_bytes()).into_boxed_str()),
        );
        h[3].1 = ct;
        (h, Some(body))
    };
    let oversized = "x".repeat(request::MAX_BODY_BYTES + 1);
    let oversized: &'static str = Box::leak(oversized.into_boxed_str());

    let mut cases: Vec<BadInput> = vec![
        ("wrong signature", sig(&other_body), Some(text), false, 401),
        (
            "signed with another secret",
            sig(&other_secret),
            Some(text),
            false,
            401,
        ),
        (
            "truncated signature",
            sig(&truncated),
            Some(text),
            false,
            401,
        ),
        ("uppercase hex", sig(&uppercase), Some(text), false, 401),
        ("sha1 signature", sig(&sha1), Some(text), false, 401),
        (
            "two signatures, comma-joined",
            sig(&two),
            Some(text),
            false,
            401,
        ),
        ("empty signature", sig(""), Some(text), false, 401),
        (
            "missing signature",
            without("X-Hub-Signature-256"),
            Some(text),
            false,
            401,
        ),
        (
            "missing delivery id",
            without("X-GitHub-Delivery"),
            Some(text),
            false,
            400,
        ),
        (
            "missing event",
            without("X-GitHub-Event"),
            Some(text),
            false,
            400,
        ),
        (
            "missing content type",
            without("Content-Type"),
            Some(text),
            false,
            415,
        ),
        ("no body", sig(&good), None, false, 400),
        (
            "empty body",
            signed_text("", "application/json").0,
            Some(""),
            false,
            400,
        ),
        ("invalid base64", sig(&good), Some("not*base64"), true, 400),
        ("oversized body", sig(&good), Some(oversized), false, 413),
    ];
    for (name, body, ct, status) in [
        ("invalid JSON", "{\"ref\": ", "application/json", 400),
        ("JSON array", "[]", "application/json", 400),
        (
            "push without after",
            r#"{"ref":"refs/heads/master","repository":{"full_name":"a/b","clone_url":"x"},"sender":{"login":"u"}}"#,
            "application/json",
            400,
        ),
        (
            "push without repository",
            r#"{"ref":"refs/heads/master","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#,
            "application/json",
            400,
        ),
        ("wrong content type", "{}", "text/plain", 415),
        (
            "form without payload",
            "other=1",
            "application/x-www-form-urlencoded",
            400,
        ),
    ] {
        let (headers, body) = signed_text(body, ct);
        cases.push((name, headers, body, false, status));
    }
    for (name, headers, body, is_base64, expected) in cases {
        let h = harness(&[]);
        let (status, reply) = call(&h, api_event(&headers, body, is_base64)).await;
        assert_eq!(status, expected, "{name}: {reply}");
        assert_eq!(reply["status"], "rejected", "{name}");
        assert!(
            reply["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}"
        );
        assert!(h.published().is_empty(), "{name} published");
    }

    // Two separate signature headers (API Gateway would join them, but a
    // direct invoke may not).
    let h = harness(&[]);
    let mut event = api_event(&signed_headers("push", &good), Some(text), false);
    event
        .headers
        .append("x-hub-signature-256", HeaderValue::from_str(&good).unwrap());
    assert_eq!(call(&h, event).await.0, 401);
    assert!(h.published().is_empty());
}

#[tokio::test]
async fn repositories_outside_the_allowlist_get_403_after_the_signature_check() {
    let h = harness(&[("ALLOWED_REPOSITORIES", "octo-org/*")]);
    for (event, path) in [
        ("push", "push/with-new-branch.payload.json"),
        ("deployment", "deployment/payload.json"),
        ("ping", "ping/payload.json"),
        ("pull_request", "pull_request/opened.payload.json"),
    ] {
        let (status, body) = send(&h, event, &github(path)).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    // An unsigned request from that repository is a 401: the allowlist is
    // only consulted for authenticated payloads.
    let payload = github("push/with-new-branch.payload.json");
    let headers = signed_headers("push", "sha256=00");
    let (status, _) = call(
        &h,
        api_event(
            &headers,
            Some(std::str::from_utf8(&payload).unwrap()),
            false,
        ),
    )
    .await;
    assert_eq!(status, 401);
    assert!(h.published().is_empty());
    // The allowed organisation still deploys.
    let h = harness(&[("ALLOWED_REPOSITORIES", "codertocat/hello-world")]);
    assert_eq!(
        send(&h, "push", &github("push/with-new-branch.payload.json"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let h = harness(&[]);
    // Decoding comes first: invalid base64 with no headers at all is a 400.
    let (status, reply) = call(&h, api_event(&[], Some("%%%"), true)).await;
    assert_eq!(status, 400);
    assert_eq!(reply["delivery_id"], Value::Null);
    // Size before headers.
    let oversized = "x".repeat(request::MAX_BODY_BYTES + 1);
    assert_eq!(
        call(&h, api_event(&[], Some(&oversized), false)).await.0,
        413
    );
    // Headers before the signature: no delivery id, bad signature → 400.
    let (status, reply) = call(
        &h,
        api_event(&[("X-GitHub-Event", "push")], Some("{}"), false),
    )
    .await;
    assert_eq!(
        (status, reply["reason"].as_str()),
        (400, Some("the X-GitHub-Delivery header is missing"))
    );
    // Signature before content type and payload: unsigned text/plain junk → 401.
    let mut headers = signed_headers("push", "sha256=bad");
    headers[3].1 = "text/plain";
    let (status, reply) = call(&h, api_event(&headers, Some("junk"), false)).await;
    assert_eq!(status, 401);
    assert_eq!(reply["delivery_id"], DELIVERY);
    // Content type before the payload: signed junk as text/plain → 415.
    let signature = signature::sign(SECRET.as_bytes(), b"junk");
    let mut headers = signed_headers("push", &signature);
    headers[3].1 = "text/plain";
    assert_eq!(
        call(&h, api_event(&headers, Some("junk"), false)).await.0,
        415
    );
    assert!(h.published().is_empty());
    // No secret was fetched for requests refused before step 3, and the one
    // signed with the current version read that version only.
    assert_eq!(h.secrets.fetches(), 1);
}

#[tokio::test]
async fn the_previous_version_is_read_only_when_the_current_one_does_not_match() {
    let h = harness(&[]);
    h.secrets
        .set(SECRET_ARN, VersionStage::Previous, "an older secret");
    let (status, _) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 200);
    assert_eq!(h.secrets.fetches(), 1, "AWSCURRENT only");

    let signature = signature::sign(b"not the secret", b"{}");
    let headers = signed_headers("push", &signature);
    let (status, _) = call(&h, api_event(&headers, Some("{}"), false)).await;
    assert_eq!(status, 401);
    assert_eq!(h.secrets.fetches(), 2, "AWSPREVIOUS read for the mismatch");
}

#[tokio::test]
async fn previous_secret_version_is_accepted_during_rotation() {
    let h = harness(&[]);
    h.secrets
        .set(SECRET_ARN, VersionStage::Current, "the rotated secret");
    h.secrets.set(SECRET_ARN, VersionStage::Previous, SECRET);
    let (status, body) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 200, "{body}");

    let h = harness(&[]);
    h.secrets
        .set(SECRET_ARN, VersionStage::Current, "the rotated secret");
    h.secrets
        .set(SECRET_ARN, VersionStage::Previous, "an even older secret");
    let (status, _) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 401);
    assert!(h.published().is_empty());
    assert_eq!(h.deps.metrics.total("SignatureFailures"), 1.0);
}

#[tokio::test]
async fn an_unreadable_secret_is_a_retryable_503() {
    let mut h = harness(&[]);
    h.deps.secrets = SecretCache::new(Arc::new(FakeSecrets::new()));
    let (status, body) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "retry");
    assert_eq!(
        body["reason"],
        "the webhook secret could not be read; redeliver later"
    );
    assert!(!body.to_string().contains(SECRET_ARN));
}

#[tokio::test]
async fn publish_failures_are_never_2xx() {
    for (retryable, expected) in [(true, 503), (false, 502)] {
        let h = harness(&[]);
        h.deps.publisher.fail_with(PublishError {
            topic_arn: TOPIC_ARN.into(),
            message: "InternalError: boom".into(),
            retryable,
        });
        let (status, body) = send(&h, "push", &github("push/with-new-branch.payload.json")).await;
        assert_eq!(status, expected);
        assert_eq!(body["status"], "retry");
        assert_eq!(body["delivery_id"], DELIVERY);
        assert_eq!(
            body["reason"],
            "the deploy request could not be queued; redeliver later"
        );
        assert_eq!(h.deps.metrics.total("WebhookFailures"), 1.0);
    }
}

#[tokio::test]
async fn logs_carry_the_delivery_id_but_never_the_secret_or_signature() {
    let (_guard, logs) = kiln::logging::capture::json_subscriber();
    let h = harness(&[]);
    let payload = github("push/with-new-branch.payload.json");
    let good = signature::sign(SECRET.as_bytes(), &payload);
    let bad = signature::sign(b"wrong", &payload);
    assert_eq!(send(&h, "push", &payload).await.0, 200);
    let text = std::str::from_utf8(&payload).unwrap();
    assert_eq!(
        call(
            &h,
            api_event(&signed_headers("push", &bad), Some(text), false)
        )
        .await
        .0,
        401
    );
    let logs = logs.contents();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{logs}");
    for line in &lines {
        assert_eq!(line["spans"][0]["delivery_id"], DELIVERY, "{line}");
    }
    assert!(lines.iter().any(|l| l["error_type"] == "SignatureMismatch"));
    for forbidden in [SECRET, &good["sha256=".len()..], &bad["sha256=".len()..]] {
        assert!(!logs.contains(forbidden), "logs contain {forbidden}");
    }
}

#[test]
fn deployment_refs_are_recorded_as_full_refs() {
    assert_eq!(full_ref("master"), "refs/heads/master");
    assert_eq!(full_ref("refs/tags/v1.0.0"), "refs/tags/v1.0.0");
}

#[test]
fn deployments_need_their_fields() {
    let config = harness(&[]).deps.config;
    let now = OffsetDateTime::UNIX_EPOCH;
    let mut payload: Value = serde_json::from_slice(&github("deployment/payload.json")).unwrap();
    for (pointer, field) in [
        (
            "/deployment/sha",
            "deployment.sha (a 40-character lowercase commit id)",
        ),
        ("/deployment/environment", "deployment.environment"),
        ("/deployment/id", "deployment.id"),
    ] {
        let mut broken = payload.clone();
        *broken.pointer_mut(pointer).unwrap() = Value::Null;
        let err = decide(
            &config,
            "deployment",
            DELIVERY,
            broken.to_string().as_bytes(),
            now,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the deployment payload has no usable {field}")
        );
        assert_eq!(err.status(), 400);
    }
    payload["deployment"]["sha"] = json!("F95F852BD8FCA8FCC58A9A2D6C842781E32A215E");
    assert!(
        decide(
            &config,
            "deployment",
            DELIVERY,
            payload.to_string().as_bytes(),
            now
        )
        .is_err()
    );
}
