//! deploy-trigger against moto: real Secrets Manager for the webhook secret
//! (and its rotation), a real FIFO deploy topic read back through an SQS
//! queue, and every GitHub fixture signed over its exact bytes and sent as
//! the API Gateway HTTP API event the runtime hands the function.

use std::sync::Arc;
use std::time::Duration;

use deploy_trigger::{Config, Deps, handle};
use kiln::secrets::SecretsManagerFetcher;
use kiln::sns::SnsPublisher;
use kiln::{DeployEvent, DeployRequest, Env, Metrics, SecretCache};
use kiln_tests::aws::{Aws, SnsQueue};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::fixtures::{apigw_v2_event, fixture_bytes, github_headers, github_webhook_event};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::Value;

const SECRET: &str = "It's a Secret to Everybody";
const BRANCHES: &str = "master=production";
const TAGS: &str = "simple-*=staging";

struct Stack {
    moto: Moto,
    aws: Aws,
    topic: String,
    secret_arn: String,
    deploys: SnsQueue,
}

impl Stack {
    async fn start() -> Stack {
        let moto = Moto::start().await;
        let aws = moto.aws().await;
        let topic = aws.create_fifo_topic("kiln-deploy").await;
        let deploys = aws.subscribe_queue(&topic).await;
        let secret_arn = aws.create_secret("kiln-webhook", SECRET).await;
        Stack {
            moto,
            aws,
            topic,
            secret_arn,
            deploys,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("WEBHOOK_SECRET_ARN", self.secret_arn.as_str()),
            ("DEPLOY_TOPIC_ARN", self.topic.as_str()),
            ("DEPLOY_BRANCHES", BRANCHES),
            ("DEPLOY_TAGS", TAGS),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The handler's dependencies, wired to moto as `main.rs` wires them to
    /// AWS. `secret_ttl` zero makes a rotation visible at once.
    async fn deps(&self, secret_ttl: Duration) -> Deps<SecretsManagerFetcher, SnsPublisher> {
        let sdk = self.moto.sdk_config().await;
        self.deps_with(&sdk, &sdk, secret_ttl)
    }

    fn deps_with(
        &self,
        secrets_sdk: &aws_config::SdkConfig,
        sns_sdk: &aws_config::SdkConfig,
        secret_ttl: Duration,
    ) -> Deps<SecretsManagerFetcher, SnsPublisher> {
        Deps {
            config: Config::from_env(&Env::from_pairs(self.env())).unwrap(),
            secrets: SecretCache::with_ttl(
                SecretsManagerFetcher::new(aws_sdk_secretsmanager::Client::new(secrets_sdk)),
                secret_ttl,
            ),
            publisher: SnsPublisher::new(aws_sdk_sns::Client::new(sns_sdk)),
            metrics: Metrics::in_memory("deploy-trigger"),
        }
    }
}

/// The runtime deserialises the invocation's JSON into the handler's event
/// type; so does this.
fn runtime_event(event: &Value) -> ApiGatewayV2httpRequest {
    serde_json::from_str(&event.to_string()).unwrap()
}

async fn send(deps: &Deps<SecretsManagerFetcher, SnsPublisher>, event: &Value) -> (u16, Value) {
    let response = handle(deps, runtime_event(event)).await;
    let body = match response.body {
        Some(Body::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (u16::try_from(response.status_code).unwrap(), body)
}

fn delivery(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

struct Expected {
    environment: &'static str,
    event: DeployEvent,
    git_ref: &'static str,
    sha: &'static str,
    deployment_id: Option<u64>,
}

fn check_deploy(envelope: &kiln_tests::aws::SnsEnvelope, delivery_id: &str, expected: &Expected) {
    let request = DeployRequest::from_json(&envelope.message).unwrap();
    assert_eq!(request.delivery_id, delivery_id);
    assert_eq!(request.event, expected.event);
    assert_eq!(request.repository, "Codertocat/Hello-World");
    assert!(request.clone_url.ends_with("/Codertocat/Hello-World.git"));
    assert_eq!(request.git_ref, expected.git_ref);
    assert_eq!(request.sha, expected.sha);
    assert_eq!(request.environment, expected.environment);
    assert_eq!(request.sender, "Codertocat");
    assert_eq!(request.deployment_id, expected.deployment_id);
    assert_eq!(
        envelope.attribute("environment"),
        Some(expected.environment)
    );
    assert_eq!(
        envelope.attribute("repository"),
        Some("Codertocat/Hello-World")
    );
    assert_eq!(envelope.attribute("event"), Some(expected.event.as_str()));
    assert_eq!(envelope.group_id.as_deref(), Some("Codertocat/Hello-World"));
    assert_eq!(envelope.deduplication_id.as_deref(), Some(delivery_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_github_fixture_gets_its_status_and_deploys_arrive_on_sns() {
    let stack = Stack::start().await;
    let deps = stack.deps(Duration::from_secs(300)).await;
    let push_master = Expected {
        environment: "production",
        event: DeployEvent::Push,
        git_ref: "refs/heads/master",
        sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        deployment_id: None,
    };
    let cases: Vec<(&str, &str, u16, Option<Expected>)> = vec![
        ("ping", "github/ping/payload.json", 200, None),
        ("ping", "github/ping/with-app_id.payload.json", 200, None),
        (
            "ping",
            "github/ping/with-organization.payload.json",
            200,
            None,
        ),
        (
            "push",
            "github/push/with-new-branch.payload.json",
            200,
            Some(push_master),
        ),
        (
            "push",
            "github/push/with-no-username-committer.payload.json",
            200,
            Some(Expected {
                environment: "production",
                event: DeployEvent::Push,
                git_ref: "refs/heads/master",
                sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                deployment_id: None,
            }),
        ),
        (
            "push",
            "github/push/ghes-push.json",
            200,
            Some(Expected {
                environment: "staging",
                event: DeployEvent::Push,
                git_ref: "refs/tags/simple-tag",
                sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                deployment_id: None,
            }),
        ),
        ("push", "github/push/payload.json", 202, None),
        (
            "push",
            "github/push/with-organization.payload.json",
            202,
            None,
        ),
        (
            "deployment",
            "github/deployment/payload.json",
            200,
            Some(Expected {
                environment: "production",
                event: DeployEvent::Deployment,
                git_ref: "refs/heads/master",
                sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
                deployment_id: Some(145988746),
            }),
        ),
        (
            "deployment_status",
            "github/deployment_status/payload.json",
            202,
            None,
        ),
        ("create", "github/create/payload.json", 202, None),
        ("delete", "github/delete/payload.json", 202, None),
        (
            "pull_request",
            "github/pull_request/opened.payload.json",
            202,
            None,
        ),
        (
            "pull_request",
            "github/pull_request/synchronize.payload.json",
            202,
            None,
        ),
        (
            "release",
            "github/release/published.payload.json",
            202,
            None,
        ),
        (
            "workflow_run",
            "github/workflow_run/completed.payload.json",
            202,
            None,
        ),
    ];
    for (n, (event, fixture, status, expected)) in cases.into_iter().enumerate() {
        let delivery_id = delivery(n);
        let webhook = github_webhook_event(event, fixture, &delivery_id, SECRET);
        let (got, body) = send(&deps, &webhook).await;
        assert_eq!(got, status, "{fixture}: {body}");
        assert_eq!(body["delivery_id"], delivery_id.as_str());
        match expected {
            Some(expected) => {
                let envelope = stack.deploys.expect_one().await;
                assert_eq!(
                    body["message_id"],
                    envelope.message_id.as_str(),
                    "{fixture}"
                );
                check_deploy(&envelope, &delivery_id, &expected);
            }
            None => stack.deploys.expect_none().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_encoded_and_base64_deliveries_deploy_the_same_commit() {
    let stack = Stack::start().await;
    let deps = stack.deps(Duration::from_secs(300)).await;
    let payload = fixture_bytes("github/push/with-new-branch.payload.json");

    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&payload).unwrap())
        .finish();
    let mut headers = github_headers("push", &delivery(1), SECRET, form.as_bytes());
    headers[0].1 = "application/x-www-form-urlencoded".into();
    let (status, body) = send(&deps, &apigw_v2_event(headers, form.as_bytes(), false)).await;
    assert_eq!(status, 200, "{body}");
    let request = DeployRequest::from_json(&stack.deploys.expect_one().await.message).unwrap();
    assert_eq!(request.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");

    let headers = github_headers("push", &delivery(2), SECRET, &payload);
    let (status, body) = send(&deps, &apigw_v2_event(headers, &payload, true)).await;
    assert_eq!(status, 200, "{body}");
    let request = DeployRequest::from_json(&stack.deploys.expect_one().await.message).unwrap();
    assert_eq!(request.delivery_id, delivery(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_get_their_status_and_publish_nothing() {
    let stack = Stack::start().await;
    let deps = stack.deps(Duration::from_secs(300)).await;
    let payload = fixture_bytes("github/push/with-new-branch.payload.json");
    let good = github_headers("push", &delivery(1), SECRET, &payload);
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut headers: Vec<_> = good.iter().filter(|(n, _)| n != name).cloned().collect();
        headers.push((name.to_string(), value.to_string()));
        headers
    };
    let without = |name: &str| -> Vec<(String, String)> {
        good.iter().filter(|(n, _)| n != name).cloned().collect()
    };
    let signature = good
        .iter()
        .find(|(n, _)| n == "x-hub-signature-256")
        .unwrap()
        .1
        .clone();
    let hex = signature.trim_start_matches("sha256=").to_string();
    let other_secret = github_headers("push", &delivery(1), "another secret", &payload);
    let signed = |body: &[u8], content_type: &str| -> Vec<(String, String)> {
        let mut headers = github_headers("push", &delivery(1), SECRET, body);
        headers[0].1 = content_type.to_string();
        headers
    };

    // (what is wrong, headers, body, base64-encoded, expected status)
    type BadDelivery<'a> = (&'a str, Vec<(String, String)>, Vec<u8>, bool, u16);
    let cases: Vec<BadDelivery> = vec![
        (
            "signed with another secret",
            other_secret,
            payload.clone(),
            false,
            401,
        ),
        (
            "signature over other bytes",
            good.clone(),
            b"{\"ref\":\"refs/heads/master\"}".to_vec(),
            false,
            401,
        ),
        (
            "truncated signature",
            with("x-hub-signature-256", &signature[..signature.len() - 1]),
            payload.clone(),
            false,
            401,
        ),
        (
            "uppercase hex",
            with(
                "x-hub-signature-256",
                &format!("sha256={}", hex.to_ascii_uppercase()),
            ),
            payload.clone(),
            false,
            401,
        ),
        (
            "sha1 signature",
            with("x-hub-signature-256", &format!("sha1={}", &hex[..40])),
            payload.clone(),
            false,
            401,
        ),
        (
            "two signatures",
            [
                good.clone(),
                vec![("x-hub-signature-256".into(), signature.clone())],
            ]
            .concat(),
            payload.clone(),
            false,
            401,
        ),
        (
            "missing signature",
            without("x-hub-signature-256"),
            payload.clone(),
            false,
            401,
        ),
        (
            "missing event",
            without("x-github-event"),
            payload.clone(),
            false,
            400,
        ),
        (
            "missing delivery",
            without("x-github-delivery"),
            payload.clone(),
            false,
            400,
        ),
        (
            "empty body",
            signed(b"", "application/json"),
            Vec::new(),
            false,
            400,
        ),
        (
            "invalid JSON",
            signed(b"{\"ref\":", "application/json"),
            b"{\"ref\":".to_vec(),
            false,
            400,
        ),
        (
            "wrong content type",
            signed(&payload, "text/plain"),
            payload.clone(),
            false,
            415,
        ),
        (
            "oversized body",
            good.clone(),
            vec![b' '; 25 * 1024 * 1024 + 1],
            false,
            413,
        ),
    ];
    for (name, headers, body, base64, status) in cases {
        let (got, reply) = send(&deps, &apigw_v2_event(headers, &body, base64)).await;
        assert_eq!(got, status, "{name}: {reply}");
        assert_eq!(reply["status"], "rejected", "{name}");
    }
    // Invalid base64 (the harness always encodes correctly, so edit the event).
    let mut event = apigw_v2_event(good.clone(), &payload, true);
    event["body"] = Value::String("not base64!".into());
    assert_eq!(send(&deps, &event).await.0, 400);
    stack.deploys.expect_none().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_accepts_the_previous_version_only() {
    let stack = Stack::start().await;
    // No caching, so each rotation on Secrets Manager is seen at once.
    let deps = stack.deps(Duration::ZERO).await;
    let push = |n: usize, secret: &str| {
        github_webhook_event(
            "push",
            "github/push/with-new-branch.payload.json",
            &delivery(n),
            secret,
        )
    };
    assert_eq!(send(&deps, &push(1, SECRET)).await.0, 200);
    stack.deploys.expect_one().await;

    stack
        .aws
        .put_secret_version(&stack.secret_arn, "the second secret")
        .await;
    // GitHub still signs with the old secret until it is changed there.
    assert_eq!(send(&deps, &push(2, SECRET)).await.0, 200);
    assert_eq!(send(&deps, &push(3, "the second secret")).await.0, 200);
    assert_eq!(
        stack.deploys.expect(2, Duration::from_secs(10)).await.len(),
        2
    );
    assert_eq!(send(&deps, &push(4, "a wrong secret")).await.0, 401);

    stack
        .aws
        .put_secret_version(&stack.secret_arn, "the third secret")
        .await;
    // Two rotations later the first secret is neither current nor previous.
    let (status, body) = send(&deps, &push(5, SECRET)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["reason"],
        "the signature does not match the webhook secret"
    );
    assert_eq!(send(&deps, &push(6, "the second secret")).await.0, 200);
    stack.deploys.expect_one().await;
    stack.deploys.expect_none().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_never_answered_2xx() {
    let mut stack = Stack::start().await;
    let push = |n: usize| {
        github_webhook_event(
            "push",
            "github/push/with-new-branch.payload.json",
            &delivery(n),
            SECRET,
        )
    };

    // SNS answers 500 to every Publish (Secrets Manager is untouched).
    let proxy = FaultProxy::start(
        stack.moto.endpoint(),
        FaultPlan::always(Fault::ServerError).on(&["Publish"]),
    )
    .await;
    let faulty = proxy.sdk_config().await;
    let direct = stack.moto.sdk_config().await;
    let deps = stack.deps_with(&direct, &faulty, Duration::from_secs(300));
    let (status, body) = send(&deps, &push(1)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("retry")),
        "{body}"
    );
    assert!(proxy.faults_injected() >= 1);
    stack.deploys.expect_none().await;

    // A topic that does not exist: retrying won't help, so 502.
    let mut deps = stack.deps(Duration::from_secs(300)).await;
    deps.config.deploy_topic_arn =
        format!("{}-missing", stack.topic.trim_end_matches(".fifo")) + ".fifo";
    let (status, body) = send(&deps, &push(2)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["reason"],
        "the deploy request could not be queued; redeliver later"
    );

    // The emulator stops after the secret was cached: SNS is unreachable.
    let deps = stack.deps_with(&direct, &proxy.sdk_config().await, Duration::from_secs(300));
    proxy.set_plan(FaultPlan::none());
    assert_eq!(send(&deps, &push(3)).await.0, 200);
    stack.deploys.expect_one().await;
    stack.moto.stop().await;
    let (status, body) = send(&deps, &push(4)).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_answers_through_the_lambda_runtime() {
    let stack = Stack::start().await;
    let mut env = stack.moto.child_env();
    env.extend(stack.env());
    let function = LambdaFunction::start("deploy-trigger", env.clone()).await;

    let webhook = github_webhook_event(
        "push",
        "github/push/with-new-branch.payload.json",
        &delivery(1),
        SECRET,
    );
    let response = function.invoke(webhook).await.unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "queued");
    let request = DeployRequest::from_json(&stack.deploys.expect_one().await.message).unwrap();
    assert_eq!(request.delivery_id, delivery(1));

    // Invalid base64 is a 400 from the function, not a crash of the runtime.
    let payload = fixture_bytes("github/push/with-new-branch.payload.json");
    let mut event = apigw_v2_event(
        github_headers("push", &delivery(2), SECRET, &payload),
        &payload,
        true,
    );
    event["body"] = Value::String("%%% not base64 %%%".into());
    let response = function.invoke(event).await.unwrap();
    assert_eq!(response["statusCode"], 400, "{response}");
    // Still serving.
    let ping = github_webhook_event("ping", "github/ping/payload.json", &delivery(3), SECRET);
    assert_eq!(function.invoke(ping).await.unwrap()["statusCode"], 200);

    // Log lines carry the delivery id and never the secret.
    let lines = function.json_lines();
    // The runtime's own span comes first; the webhook span follows it.
    let in_span = |line: &Value, id: &str| {
        line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span["delivery_id"] == id))
    };
    assert!(lines.iter().any(|l| in_span(l, &delivery(1))));
    assert!(!function.stdout().contains(SECRET) && !function.stderr().contains(SECRET));
    stack.deploys.expect_none().await;

    // A bad rule stops the init phase with a message naming the variable.
    let broken: Vec<_> = env
        .into_iter()
        .map(|(k, v)| {
            if k == "DEPLOY_BRANCHES" {
                (k, "ma*in=production".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    let function = Arc::new(LambdaFunction::start("deploy-trigger", broken).await);
    let failure = function.expect_init_failure(Duration::from_secs(30)).await;
    assert!(
        failure.stderr.contains("DEPLOY_BRANCHES is malformed"),
        "{failure}"
    );
}
