//! Secrets never leak: each function runs its paths (success, rejection,
//! every kind of upstream failure) with recognisable secret values, and no
//! log line, metric, error, Lambda diagnostic, HTTP response or `Debug`
//! output may contain them.
//!
//! Logs are captured with kiln's own JSON subscriber at `trace`, the most
//! verbose level, so a secret logged at any level is caught.

use std::sync::Arc;
use std::time::Duration;

use kiln::logging::capture;
use kiln::secrets::fake::FakeSecrets;
use kiln::sns::PublishError;
use kiln::sns::fake::RecordingPublisher;
use kiln::{Env, Metrics, SecretCache, SecretString, VersionStage};
use kiln_tests::fixtures::{SnsNotification, fixture_json, github_webhook_event, sns_event};
use kiln_tests::http::{RecordingServer, Reply};
use serde_json::Value;

const WEBHOOK_SECRET: &str = "whsec-LeakCanary-7f3a9c";
const PREVIOUS_WEBHOOK_SECRET: &str = "whsec-PreviousCanary-21be04";
const GITHUB_TOKEN: &str = "ghp_LeakCanary0123456789abcdefABCDEFgh";
const SLACK_PATH: &str = "/services/T0LEAK000/B0LEAK000/LeakCanaryWebhookPath";

/// Asserts that none of `secrets` appears in `text`.
fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} contains a secret ({secret}):\n{text}"
        );
    }
}

// --- deploy-trigger -----------------------------------------------------------

mod deploy_trigger_secrets {
    use super::*;
    use deploy_trigger::{Config, Deps, handle};
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;

    const SECRET_ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/webhook-AbCdEf";
    const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo";
    const SECRETS: [&str; 2] = [WEBHOOK_SECRET, PREVIOUS_WEBHOOK_SECRET];

    fn deps(secrets: FakeSecrets) -> Deps<FakeSecrets, RecordingPublisher> {
        let config = Config::from_env(&Env::from_pairs([
            ("WEBHOOK_SECRET_ARN", SECRET_ARN),
            ("DEPLOY_TOPIC_ARN", TOPIC_ARN),
            ("DEPLOY_BRANCHES", "master=production"),
        ]))
        .unwrap();
        Deps {
            config,
            secrets: SecretCache::new(secrets),
            publisher: RecordingPublisher::new(),
            metrics: Metrics::in_memory("deploy-trigger"),
        }
    }

    fn both_versions() -> FakeSecrets {
        FakeSecrets::new()
            .with(SECRET_ARN, VersionStage::Current, WEBHOOK_SECRET)
            .with(SECRET_ARN, VersionStage::Previous, PREVIOUS_WEBHOOK_SECRET)
    }

    fn event(value: Value) -> ApiGatewayV2httpRequest {
        serde_json::from_value(value).unwrap()
    }

    fn push(secret: &str) -> Value {
        github_webhook_event(
            "push",
            "github/push/with-new-branch.payload.json",
            "d-1",
            secret,
        )
    }

    /// One request per path through the handler.
    fn requests() -> Vec<(&'static str, Value)> {
        let mut header_is_the_secret = push(WEBHOOK_SECRET);
        header_is_the_secret["headers"]["x-hub-signature-256"] =
            format!("sha256={WEBHOOK_SECRET}").into();
        let mut no_signature = push(WEBHOOK_SECRET);
        no_signature["headers"]
            .as_object_mut()
            .unwrap()
            .remove("x-hub-signature-256");
        vec![
            ("signed", push(WEBHOOK_SECRET)),
            (
                "signed with the previous secret",
                push(PREVIOUS_WEBHOOK_SECRET),
            ),
            ("forged", push("not-the-secret")),
            ("no signature", no_signature),
            ("the secret sent as the signature", header_is_the_secret),
            (
                "ping",
                github_webhook_event("ping", "github/ping/payload.json", "d-2", WEBHOOK_SECRET),
            ),
        ]
    }

    async fn run(
        deps: &Deps<FakeSecrets, RecordingPublisher>,
        label: &str,
        request: Value,
    ) -> String {
        let (guard, logs) = capture::json_subscriber();
        let response = handle(deps, event(request)).await;
        drop(guard);
        let body = format!("{:?}", response.body);
        let headers = format!("{:?}", response.headers);
        format!(
            "{label}\nlogs:\n{}\nresponse: {} {body} {headers}",
            logs.contents(),
            response.status_code
        )
    }

    #[tokio::test]
    async fn no_path_logs_or_answers_the_webhook_secret() {
        let deps = deps(both_versions());
        for (label, request) in requests() {
            let output = run(&deps, label, request).await;
            assert_clean(label, &output, &SECRETS);
        }
        assert_clean("metrics", &deps.metrics.lines().join("\n"), &SECRETS);
        assert_clean(
            "published",
            &format!("{:?}", deps.publisher.published()),
            &SECRETS,
        );
        assert_clean(
            "Debug of the configuration",
            &format!("{:?}", deps.config),
            &SECRETS,
        );
        assert_clean(
            "Debug of the secret cache",
            &format!("{:?}", deps.secrets),
            &SECRETS,
        );
    }

    #[tokio::test]
    async fn failures_on_our_side_do_not_leak_it_either() {
        // The secret cannot be read (only the previous version exists).
        let deps = deps(FakeSecrets::new().with(
            SECRET_ARN,
            VersionStage::Previous,
            PREVIOUS_WEBHOOK_SECRET,
        ));
        let output = run(&deps, "secret unavailable", push(WEBHOOK_SECRET)).await;
        assert_clean("secret unavailable", &output, &SECRETS);

        // The publish fails.
        let deps = deps_failing_publish();
        let output = run(&deps, "publish failed", push(WEBHOOK_SECRET)).await;
        assert!(output.contains("503"), "{output}");
        assert_clean("publish failed", &output, &SECRETS);
    }

    fn deps_failing_publish() -> Deps<FakeSecrets, RecordingPublisher> {
        let deps = deps(both_versions());
        deps.publisher.fail_with(PublishError {
            topic_arn: TOPIC_ARN.into(),
            message: "Throttling: Rate exceeded".into(),
            retryable: true,
        });
        deps
    }
}

// --- deploy-exec --------------------------------------------------------------

mod deploy_exec_secrets {
    use super::*;
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::runner::fake::FakeRunner;
    use deploy_exec::{Config, Deps, handle};
    use kiln::KilnError;

    const SECRET_ARN: &str =
        "arn:aws:secretsmanager:us-west-2:111122223333:secret:kiln/github-token-AbCdEf";
    const TASK_ARN: &str =
        "arn:aws:ecs:us-west-2:111122223333:task/kiln/0f9a1c2b3d4e5f60718293a4b5c6d7e8";

    fn deps(
        api_url: &str,
    ) -> Deps<
        FakeRunner,
        GitHubReporter<Arc<FakeSecrets>>,
        kiln::sns::fake::RecordingPublisher,
        deploy_exec::task_log::fake::FakeLogTail,
    > {
        let config = Config::from_env(&Env::from_pairs([
            ("CLUSTER", "kiln"),
            ("TASK_DEFINITION", "kiln-stack-updater:3"),
            ("CONTAINER_NAME", "stack-updater"),
            ("SUBNETS", "subnet-1"),
            ("SECURITY_GROUPS", "sg-1"),
            ("GITHUB_TOKEN_SECRET_ARN", SECRET_ARN),
            ("GITHUB_API_URL", api_url),
        ]))
        .unwrap();
        let secrets =
            Arc::new(FakeSecrets::new().with(SECRET_ARN, VersionStage::Current, GITHUB_TOKEN));
        let token = Some((SECRET_ARN.to_string(), SecretCache::new(secrets)));
        Deps {
            reporter: GitHubReporter::new(&config.github_api_url, token, RetryPolicy::immediate(2)),
            runner: FakeRunner::always_starting(TASK_ARN),
            publisher: kiln::sns::fake::RecordingPublisher::new(),
            logs: deploy_exec::task_log::fake::FakeLogTail::new(),
            metrics: Metrics::in_memory("deploy-exec"),
            lanes: deploy_exec::lane_store::NO_LANES,
            config,
        }
    }

    fn start_event() -> Value {
        let request = super::super_request();
        sns_event(&[SnsNotification::new(
            "arn:aws:sns:us-west-2:111122223333:kiln-deploy",
            request.to_json(),
        )])
    }

    /// GitHub answering each way it can fail.
    fn scripts() -> Vec<(&'static str, Reply)> {
        vec![
            ("201", Reply::json(201, &serde_json::json!({"id": 1}))),
            (
                "401",
                Reply::json(401, &serde_json::json!({"message": "Bad credentials"})),
            ),
            ("500", Reply::text(500, "Internal Server Error")),
            (
                "429",
                Reply::json(429, &serde_json::json!({"message": "rate limited"}))
                    .header("retry-after", "0"),
            ),
            ("connection dropped", Reply::drop_connection()),
        ]
    }

    #[tokio::test]
    async fn the_github_token_never_reaches_logs_errors_or_answers() {
        check_replies(scripts()).await;
    }

    /// An error body that quotes the Authorization header back (a
    /// misbehaving proxy in front of GitHub): deploy-exec puts GitHub's
    /// error body into its error message and its log, with the token
    /// scrubbed out.
    #[tokio::test]
    async fn a_github_error_body_quoting_the_token_is_not_logged() {
        let echo = Reply::text(
            400,
            &format!("bad request: Authorization: Bearer {GITHUB_TOKEN}"),
        );
        check_replies(vec![("body echoing the token", echo)]).await;
    }

    async fn check_replies(scripts: Vec<(&'static str, Reply)>) {
        for (label, reply) in scripts {
            let github = RecordingServer::start_with_default(reply).await;
            let deps = deps(&github.url());
            let mut outputs = Vec::new();
            for event in [
                start_event(),
                fixture_json("synthetic/deploy-task-stopped-exit0.json"),
            ] {
                let (guard, logs) = capture::json_subscriber();
                let result = handle(&deps, event).await;
                drop(guard);
                let answer = match &result {
                    Ok(value) => value.to_string(),
                    Err(err) => {
                        let diagnostic: lambda_runtime::Diagnostic = kiln::error::diagnostic(err);
                        format!(
                            "{err} {err:?} {} {}",
                            diagnostic.error_type, diagnostic.error_message
                        )
                    }
                };
                outputs.push(format!("logs:\n{}\nanswer: {answer}", logs.contents()));
                let _ = result.as_ref().map_err(|e| e.error_type());
            }
            // The token did go to GitHub (that is its use), and nowhere else.
            assert!(
                github
                    .requests()
                    .iter()
                    .any(|r| r.header("authorization").is_some()),
                "{label}"
            );
            assert_clean(label, &outputs.join("\n"), &[GITHUB_TOKEN]);
            assert_clean(label, &deps.metrics.lines().join("\n"), &[GITHUB_TOKEN]);
            assert_clean(
                label,
                &format!("{:?} {:?}", deps.config, deps.reporter),
                &[GITHUB_TOKEN],
            );
        }
    }
}

/// The deploy request the deploy-exec paths start from.
fn super_request() -> kiln::DeployRequest {
    kiln::DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        event: kiln::DeployEvent::Push,
        repository: "Codertocat/Hello-World".into(),
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        git_ref: "refs/heads/master".into(),
        sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
        environment: "production".into(),
        sender: "Codertocat".into(),
        deployment_id: None,
        requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
        event_at: None,
        before: None,
    }
}

#[test]
fn secret_strings_never_format_their_value() {
    let secret = SecretString::new(GITHUB_TOKEN);
    assert_clean("Debug", &format!("{secret:?}"), &[GITHUB_TOKEN]);
    assert_clean("Display", &format!("{secret}"), &[GITHUB_TOKEN]);
    let _ = Duration::ZERO;
    let _ = SLACK_PATH;
}
