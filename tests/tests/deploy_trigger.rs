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
use kiln_tests::fixtures::{
    apigw_v2_event, fixture_bytes, fixture_json, github_headers, github_webhook_event,
};
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

    /// [`Stack::deps`] with some variables set differently.
    async fn deps_overriding(
        &self,
        overrides: &[(&str, &str)],
    ) -> Deps<SecretsManagerFetcher, SnsPublisher> {
        let mut env = self.env();
        for (name, value) in overrides {
            env.retain(|(n, _)| n != name);
            env.push((name.to_string(), value.to_string()));
        }
        let mut deps = self.deps(Duration::from_secs(300)).await;
        deps.config = Config::from_env(&Env::from_pairs(env)).unwrap();
        deps
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

/// A commit of the new-branch push fixture with chosen files and message.
fn commit(template: &Value, id: usize, message: &str, files: [&[&str]; 3]) -> Value {
    let mut commit = template.clone();
    commit["id"] = Value::String(format!("{id:040x}"));
    commit["message"] = Value::String(message.to_string());
    for (list, files) in ["added", "modified", "removed"].iter().zip(files) {
        commit[*list] = serde_json::json!(files);
    }
    commit
}

/// A fixture push edited by `edit`, re-serialised: the bytes that are then
/// signed and sent. `edit` also gets a commit to copy.
fn edited_push(fixture: &str, edit: impl FnOnce(&mut Value, &Value)) -> Vec<u8> {
    let mut push = fixture_json(fixture);
    let template = fixture_json("github/push/with-new-branch.payload.json")["commits"][0].clone();
    // An ordinary push to an existing branch unless the case says otherwise.
    push["created"] = Value::Bool(false);
    push["forced"] = Value::Bool(false);
    edit(&mut push, &template);
    serde_json::to_vec(&push).unwrap()
}

/// `commits` set to these commits, and `head_commit` to the last of them.
fn with_commits(push: &mut Value, commits: Vec<Value>) {
    push["head_commit"] = commits.last().cloned().unwrap_or(Value::Null);
    push["commits"] = Value::Array(commits);
}

/// One commit changing these files.
fn one_commit(
    message: impl Into<String>,
    added: &'static [&'static str],
    modified: &'static [&'static str],
    removed: &'static [&'static str],
) -> impl FnOnce(&mut Value, &Value) {
    let message = message.into();
    move |push, template| {
        with_commits(
            push,
            vec![commit(template, 1, &message, [added, modified, removed])],
        )
    }
}

/// `[skip deploy]` in mixed case: `[SkIp dEpLoY]`.
fn mixed_case(marker: &str) -> String {
    marker
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// What a delivery must lead to.
enum Expect {
    /// 200 and exactly one deploy request, for this environment.
    Deploy(&'static str),
    /// 202 for this rule with this reason, and nothing published.
    Skip(&'static str, String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_filters_and_skip_markers_decide_which_pushes_deploy() {
    let stack = Stack::start().await;
    let deps = stack
        .deps_overriding(&[
            ("DEPLOY_BRANCHES", "master=production,develop=staging"),
            ("DEPLOY_TAGS", "simple-*=production"),
            ("DEPLOY_PATHS", "production=infra/**,services/api/**"),
        ])
        .await;
    const PUSH: &str = "github/push/with-new-branch.payload.json";
    const TAG: &str = "github/push/ghes-push.json";
    let docs_only = || one_commit("Docs", &[], &["README.md"], &[]);
    let infra_with = |message: String| one_commit(message, &[], &["infra/template.yaml"], &[]);

    let mut cases: Vec<(String, &str, Vec<u8>, Expect)> = vec![
        (
            "a match in added".into(),
            "push",
            edited_push(PUSH, one_commit("Add", &["infra/new.yaml"], &[], &[])),
            Expect::Deploy("production"),
        ),
        (
            "a match in modified".into(),
            "push",
            edited_push(
                PUSH,
                one_commit("Edit", &["README.md"], &["services/api/src/main.rs"], &[]),
            ),
            Expect::Deploy("production"),
        ),
        (
            "a match in removed".into(),
            "push",
            edited_push(
                PUSH,
                one_commit("Remove", &[], &["README.md"], &["infra/old.yaml"]),
            ),
            Expect::Deploy("production"),
        ),
        (
            "a match only in an earlier commit".into(),
            "push",
            edited_push(PUSH, |push, template| {
                let api: [&[&str]; 3] = [&[], &["services/api/lib.rs"], &[]];
                let docs: [&[&str]; 3] = [&["docs/a b.md"], &["README.md"], &[]];
                with_commits(
                    push,
                    vec![
                        commit(template, 1, "API", api),
                        commit(template, 2, "Docs", docs),
                    ],
                )
            }),
            Expect::Deploy("production"),
        ),
        (
            "no match".into(),
            "push",
            edited_push(PUSH, |push, template| {
                let first: [&[&str]; 3] = [&["docs/é.md"], &["README.md"], &[]];
                let second: [&[&str]; 3] = [&[], &["README.md"], &["infrastructure/x"]];
                with_commits(
                    push,
                    vec![
                        commit(template, 1, "Docs", first),
                        commit(template, 2, "More", second),
                    ],
                )
            }),
            Expect::Skip(
                "path-filter",
                "no changed file matches DEPLOY_PATHS for production (3 changed files checked)"
                    .into(),
            ),
        ),
        (
            "an environment without globs".into(),
            "push",
            edited_push(PUSH, |push, template| {
                push["ref"] = Value::String("refs/heads/develop".into());
                docs_only()(push, template);
            }),
            Expect::Deploy("staging"),
        ),
        (
            "[skip ci] is not a skip marker".into(),
            "push",
            edited_push(PUSH, infra_with("Rebuild the stack [skip ci]".into())),
            Expect::Deploy("production"),
        ),
        (
            "no commits listed: a new branch at an existing commit".into(),
            "push",
            edited_push(PUSH, |push, _| {
                push["created"] = Value::Bool(true);
                push["commits"] = serde_json::json!([]);
            }),
            Expect::Deploy("production"),
        ),
        (
            "no commits listed: a force push back to an earlier commit".into(),
            "push",
            edited_push(PUSH, |push, _| {
                push["forced"] = Value::Bool(true);
                push["commits"] = serde_json::json!([]);
            }),
            Expect::Deploy("production"),
        ),
        (
            "a force push whose listed files do not match".into(),
            "push",
            edited_push(PUSH, |push, template| {
                push["forced"] = Value::Bool(true);
                docs_only()(push, template);
            }),
            Expect::Deploy("production"),
        ),
        (
            "a capped commits array".into(),
            "push",
            edited_push(PUSH, |push, template| {
                let docs: [&[&str]; 3] = [&[], &["README.md"], &[]];
                let commits = (0..2048)
                    .map(|n| commit(template, n, "Docs", docs))
                    .collect();
                with_commits(push, commits);
            }),
            Expect::Deploy("production"),
        ),
        (
            "a commit at the per-commit file cap".into(),
            "push",
            edited_push(PUSH, |push, template| {
                let mut capped = commit(template, 1, "Docs", [&[], &[], &[]]);
                capped["modified"] = (0..3000).map(|n| format!("docs/{n}.md")).collect();
                with_commits(push, vec![capped]);
            }),
            Expect::Deploy("production"),
        ),
        (
            "a tag push is never path-filtered".into(),
            "push",
            edited_push(TAG, |push, template| docs_only()(push, template)),
            Expect::Deploy("production"),
        ),
        (
            "a deployment event is an explicit request".into(),
            "deployment",
            fixture_bytes("github/deployment/payload.json"),
            Expect::Deploy("production"),
        ),
    ];
    for marker in deploy_trigger::skip::SKIP_MARKERS {
        for written in [marker.to_uppercase(), mixed_case(marker)] {
            cases.push((
                format!("the skip marker {written}"),
                "push",
                edited_push(PUSH, infra_with(format!("Tidy up\n\nSee notes. {written}"))),
                Expect::Skip(
                    "skip-marker",
                    format!("the head commit's message carries the skip marker {marker}"),
                ),
            ));
        }
    }

    let mut skipped = std::collections::BTreeMap::new();
    for (n, (case, event, body, expect)) in cases.into_iter().enumerate() {
        let delivery_id = delivery(100 + n);
        let headers = github_headers(event, &delivery_id, SECRET, &body);
        let (status, reply) = send(&deps, &apigw_v2_event(headers, &body, false)).await;
        assert_eq!(reply["delivery_id"], delivery_id.as_str(), "{case}");
        match expect {
            Expect::Deploy(environment) => {
                assert_eq!(
                    (status, reply["status"].as_str()),
                    (200, Some("queued")),
                    "{case}: {reply}"
                );
                assert_eq!(reply["environment"], environment, "{case}");
                assert!(
                    reply.get("reason").is_none() && reply.get("rule").is_none(),
                    "{case}: {reply}"
                );
                let envelope = stack.deploys.expect_one().await;
                assert_eq!(reply["message_id"], envelope.message_id.as_str(), "{case}");
                let request = DeployRequest::from_json(&envelope.message).unwrap();
                assert_eq!(request.delivery_id, delivery_id, "{case}");
                assert_eq!(request.environment, environment, "{case}");
            }
            Expect::Skip(rule, reason) => {
                assert_eq!(
                    (status, reply["status"].as_str()),
                    (202, Some("skipped")),
                    "{case}: {reply}"
                );
                assert_eq!(reply["reason"], reason.as_str(), "{case}");
                assert_eq!(reply["rule"], rule, "{case}");
                assert_eq!(reply["environment"], "production", "{case}");
                stack.deploys.expect_none().await;
                *skipped.entry(rule).or_insert(0.0) += 1.0;
            }
        }
    }
    assert_eq!(skipped.get("skip-marker"), Some(&6.0));
    assert_eq!(skipped.get("path-filter"), Some(&1.0));
    let metrics = &deps.metrics;
    for (rule, count) in skipped {
        assert_eq!(
            metrics.total_by("DeploysSkipped", "Rule", rule),
            count,
            "{rule}"
        );
    }
    assert_eq!(metrics.total("DeploysSkipped"), 7.0);
    assert_eq!(metrics.total("WebhooksIgnored"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_deploy_paths_stops_the_init_phase() {
    let stack = Stack::start().await;
    let mut env = stack.moto.child_env();
    env.extend(stack.env());
    env.push(("DEPLOY_PATHS".into(), "production=**.md".into()));
    let function = Arc::new(LambdaFunction::start("deploy-trigger", env).await);
    let failure = function.expect_init_failure(Duration::from_secs(30)).await;
    assert!(
        failure.stderr.contains("DEPLOY_PATHS is malformed")
            && failure.stderr.contains("`**` must be a whole path segment"),
        "{failure}"
    );
}
