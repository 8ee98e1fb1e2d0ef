//! GitHub reporting against a local fake of GitHub's status
//! APIs: the exact statuses posted for pushes and deployments, at the start
//! and at the end (from the ECS Task State Change fixtures), no double
//! posts, retries, no call without a token, and no token in any log line.

use std::sync::{Arc, Mutex};

use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::runner::fake::FakeRunner;
use deploy_exec::{Config, Deps, handle};
use kiln::secrets::fake::FakeSecrets;
use kiln::secrets::{SecretCache, VersionStage};
use kiln::{Env, Metrics};
use kiln_tests::fixtures::{SnsNotification, fixture_json, sns_event};
use kiln_tests::http::{RecordedRequest, RecordingServer, Reply};
use serde_json::{Value, json};

use super::{SHA, deploy_request};

const TOKEN: &str = "ghp_kilnTestToken0123456789abcdefSECRET";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-west-2:111122223333:secret:kiln/github-token-AbCdEf";
/// The task of the synthetic fixtures.
const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/kiln/0f9a1c2b3d4e5f60718293a4b5c6d7e8";
const TASK_URL: &str = "https://us-west-2.console.aws.amazon.com/ecs/v2/clusters/kiln/tasks/0f9a1c2b3d4e5f60718293a4b5c6d7e8/configuration?region=us-west-2";
const DEPLOYMENT_ID: u64 = 145988746;
/// The delivery of the fixtures' task.
const DELIVERY_ID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

/// GitHub's commit and deployment status APIs, in memory: what is posted
/// is listed back, newest first, as GitHub does.
struct FakeGitHub {
    server: RecordingServer,
}

impl FakeGitHub {
    async fn start() -> FakeGitHub {
        let server = RecordingServer::start().await;
        let statuses: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        server.respond_with(move |request: &RecordedRequest| {
            let mut statuses = statuses.lock().unwrap();
            match request.method.as_str() {
                "POST" => {
                    let mut status = request.json();
                    if let Some(log_url) = status.get("log_url").cloned() {
                        status["target_url"] = log_url;
                    }
                    status["id"] = (statuses.len() + 1).into();
                    statuses.push((request.path.clone(), status.clone()));
                    Some(Reply::json(201, &status))
                }
                "GET" => {
                    // GET /repos/o/r/commits/SHA/statuses lists what was posted
                    // to /repos/o/r/statuses/SHA; deployments use one path.
                    let posted_to = request.path.replace("/commits/", "/statuses/");
                    let posted_to = posted_to.trim_end_matches("/statuses").to_string();
                    let listed: Vec<Value> = statuses
                        .iter()
                        .rev()
                        .filter(|(path, _)| *path == request.path || *path == posted_to)
                        .map(|(_, status)| status.clone())
                        .collect();
                    Some(Reply::json(200, &Value::Array(listed)))
                }
                _ => None,
            }
        });
        FakeGitHub { server }
    }

    /// The POSTed statuses: path and body.
    fn posted(&self) -> Vec<(String, Value)> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| (r.path.clone(), r.json()))
            .collect()
    }
}

fn config(api_url: &str) -> Config {
    Config::from_env(&Env::from_pairs([
        ("CLUSTER", "kiln"),
        ("TASK_DEFINITION", "kiln-stack-updater:3"),
        ("CONTAINER_NAME", "stack-updater"),
        ("SUBNETS", "subnet-1"),
        ("SECURITY_GROUPS", "sg-1"),
        ("GITHUB_TOKEN_SECRET_ARN", SECRET_ARN),
        ("GITHUB_API_URL", api_url),
    ]))
    .unwrap()
}

fn secrets() -> Arc<FakeSecrets> {
    Arc::new(FakeSecrets::new().with(SECRET_ARN, VersionStage::Current, TOKEN))
}

fn deps_with(
    api_url: &str,
    secrets: Option<Arc<FakeSecrets>>,
    retry: RetryPolicy,
) -> Deps<
    FakeRunner,
    GitHubReporter<Arc<FakeSecrets>>,
    kiln::sns::fake::RecordingPublisher,
    deploy_exec::task_log::fake::FakeLogTail,
> {
    let config = config(api_url);
    let token = secrets.map(|s| (SECRET_ARN.to_string(), SecretCache::new(s)));
    Deps {
        reporter: GitHubReporter::new(&config.github_api_url, token, retry),
        // Every task starts as the fixtures' task.
        runner: FakeRunner::always_starting(TASK_ARN),
        publisher: kiln::sns::fake::RecordingPublisher::new(),
        logs: deploy_exec::task_log::fake::FakeLogTail::new(),
        metrics: Metrics::in_memory("deploy-exec"),
        lanes: deploy_exec::lane_store::NO_LANES,
        config,
    }
}

fn deps_for(
    api_url: &str,
) -> Deps<
    FakeRunner,
    GitHubReporter<Arc<FakeSecrets>>,
    kiln::sns::fake::RecordingPublisher,
    deploy_exec::task_log::fake::FakeLogTail,
> {
    deps_with(api_url, Some(secrets()), RetryPolicy::immediate(3))
}

/// Hands deploy-exec a task state change fixture; it must succeed.
async fn deliver(
    deps: &Deps<
        FakeRunner,
        GitHubReporter<Arc<FakeSecrets>>,
        kiln::sns::fake::RecordingPublisher,
        deploy_exec::task_log::fake::FakeLogTail,
    >,
    fixture: &str,
) -> Value {
    handle(deps, fixture_json(fixture)).await.unwrap()
}

fn start_event(deployment_id: Option<u64>) -> Value {
    sns_event(&[SnsNotification::new(
        "arn:aws:sns:us-west-2:111122223333:kiln-deploy",
        deploy_request(DELIVERY_ID, deployment_id).to_json(),
    )])
}

#[tokio::test]
async fn push_start_posts_a_pending_commit_status() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    handle(&deps, start_event(None)).await.unwrap();
    let requests = github.server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    // First the guard: what is already there.
    assert_eq!(requests[0].method, "GET");
    assert_eq!(
        requests[0].path,
        format!("/repos/Codertocat/Hello-World/commits/{SHA}/statuses")
    );
    assert_eq!(requests[0].query.as_deref(), Some("per_page=100"));
    let post = &requests[1];
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.path,
        format!("/repos/Codertocat/Hello-World/statuses/{SHA}")
    );
    assert_eq!(
        post.json(),
        json!({
            "state": "pending",
            "description": "Deploying f95f852 to production (ECS task 0f9a1c2b)",
            "context": "kiln/deploy (production)",
            "target_url": TASK_URL,
        })
    );
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(post.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(post.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(post.header("user-agent"), Some("kiln-deploy-exec"));
}

#[tokio::test]
async fn deployment_start_posts_an_in_progress_deployment_status() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    handle(&deps, start_event(Some(DEPLOYMENT_ID)))
        .await
        .unwrap();
    let requests = github.server.requests();
    assert_eq!(requests[0].method, "GET");
    assert_eq!(
        requests[0].path,
        format!("/repos/Codertocat/Hello-World/deployments/{DEPLOYMENT_ID}/statuses")
    );
    assert_eq!(
        github.posted(),
        vec![(
            format!("/repos/Codertocat/Hello-World/deployments/{DEPLOYMENT_ID}/statuses"),
            json!({
                "state": "in_progress",
                "description": "Deploying f95f852 to production (ECS task 0f9a1c2b)",
                "log_url": TASK_URL,
            })
        )]
    );
}

#[tokio::test]
async fn deployment_success_ending() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    let out = deliver(&deps, "synthetic/deploy-task-stopped-exit0.json").await;
    assert_eq!(out["reported"], "posted");
    assert_eq!(
        github.posted(),
        vec![(
            format!("/repos/Codertocat/Hello-World/deployments/{DEPLOYMENT_ID}/statuses"),
            json!({
                "state": "success",
                "description": "Deployed f95f852 to production",
                "log_url": TASK_URL,
            })
        )]
    );
}

#[tokio::test]
async fn push_failure_ending_carries_exit_code_and_stop_reason() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    deliver(&deps, "synthetic/deploy-task-stopped-exit1.json").await;
    assert_eq!(
        github.posted(),
        vec![(
            format!("/repos/Codertocat/Hello-World/statuses/{SHA}"),
            json!({
                "state": "failure",
                "description": "Deploy of f95f852 to production failed: exit code 1 (EssentialContainerExited: Essential container in task exited)",
                "context": "kiln/deploy (production)",
                "target_url": TASK_URL,
            })
        )]
    );
}

#[tokio::test]
async fn a_task_that_failed_to_start_is_a_failure_cut_to_140_characters() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    deliver(&deps, "synthetic/deploy-task-failed-to-start.json").await;
    let posted = github.posted();
    assert_eq!(posted.len(), 1);
    let body = &posted[0].1;
    assert_eq!(body["state"], "failure");
    let description = body["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 140);
    assert!(
        description.starts_with(
            "Deploy of f95f852 to production failed: the task failed to start (TaskFailedToStart: CannotPullContainerError: pull image manifest"
        ),
        "{description}"
    );
    assert!(description.ends_with('…'));
}

#[tokio::test]
async fn the_real_running_fixture_posts_nothing() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    let out = deliver(&deps, "aws/lambda-dotnet/ecs-task-state-change-event.json").await;
    assert_eq!(out["ignored"], "the task has not stopped yet");
    assert_eq!(github.server.request_count(), 0);
}

#[tokio::test]
async fn duplicate_stop_events_post_once() {
    for fixture in [
        "synthetic/deploy-task-stopped-exit0.json",
        "synthetic/deploy-task-stopped-exit1.json",
    ] {
        let github = FakeGitHub::start().await;
        let deps = deps_for(&github.server.url());
        let event = fixture_json(fixture);
        handle(&deps, event.clone()).await.unwrap();
        let again = handle(&deps, event).await.unwrap();
        assert_eq!(again["reported"], "already_final", "{fixture}");
        assert_eq!(github.posted().len(), 1, "{fixture}");
        // Each deployment is counted once, however often ECS says it ended.
        let ended = deps.metrics.total("DeploysSucceeded") + deps.metrics.total("DeploysFailed");
        assert_eq!(ended, 1.0, "{fixture}");
    }
}

#[tokio::test]
async fn a_late_retry_of_the_start_does_not_reopen_a_finished_deployment() {
    for (deployment_id, fixture) in [
        (None, "synthetic/deploy-task-stopped-exit1.json"),
        (
            Some(DEPLOYMENT_ID),
            "synthetic/deploy-task-stopped-exit0.json",
        ),
    ] {
        let github = FakeGitHub::start().await;
        let deps = deps_for(&github.server.url());
        handle(&deps, start_event(deployment_id)).await.unwrap();
        handle(&deps, fixture_json(fixture)).await.unwrap();
        // Lambda retries the start after the task already finished.
        handle(&deps, start_event(deployment_id)).await.unwrap();
        let states: Vec<Value> = github
            .posted()
            .iter()
            .map(|(_, b)| b["state"].clone())
            .collect();
        let expected = if deployment_id.is_some() {
            vec![json!("in_progress"), json!("success")]
        } else {
            vec![json!("pending"), json!("failure")]
        };
        assert_eq!(states, expected, "{fixture}");
    }
}

#[tokio::test]
async fn a_new_deployment_of_the_same_commit_is_reported_again() {
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    deliver(&deps, "synthetic/deploy-task-stopped-exit1.json").await;
    // Another task (a later delivery) deploys the same commit.
    let mut event = fixture_json("synthetic/deploy-task-stopped-exit1.json");
    let other = TASK_ARN.replace("0f9a1c2b", "11111111");
    event["detail"]["taskArn"] = other.into();
    event["detail"]["containers"][0]["exitCode"] = 0.into();
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(out["reported"], "posted");
    assert_eq!(github.posted().len(), 2);
}

#[tokio::test]
async fn no_token_no_calls() {
    let github = FakeGitHub::start().await;
    let deps = deps_with(&github.server.url(), None, RetryPolicy::immediate(3));
    handle(&deps, start_event(Some(DEPLOYMENT_ID)))
        .await
        .unwrap();
    let out = deliver(&deps, "synthetic/deploy-task-stopped-exit1.json").await;
    assert_eq!(out["reported"], "disabled");
    assert_eq!(github.server.request_count(), 0);
}

#[tokio::test]
async fn server_errors_and_secondary_rate_limits_are_retried() {
    let server = RecordingServer::start().await;
    let deps = deps_for(&server.url());
    server.push_all([
        Reply::json(200, &json!([])),
        Reply::status(502),
        Reply::json(
            403,
            &json!({"message": "You have exceeded a secondary rate limit."}),
        )
        .header("retry-after", "0"),
    ]);
    server.set_default(Reply::json(201, &json!({"id": 1})));
    handle(&deps, start_event(None)).await.unwrap();
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["GET", "POST", "POST", "POST"]);
    assert_eq!(deps.metrics.total("GitHubReportFailures"), 0.0);

    // An exhausted primary limit, with its reset time already passed.
    let server = RecordingServer::start().await;
    let deps = deps_for(&server.url());
    server.push_all([
        Reply::json(200, &json!([])),
        Reply::json(429, &json!({"message": "API rate limit exceeded"}))
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "0"),
    ]);
    server.set_default(Reply::json(201, &json!({"id": 1})));
    handle(&deps, start_event(None)).await.unwrap();
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn github_refusing_never_fails_a_start_that_worked() {
    // A plain 403 (no rate-limit headers) is a permission problem: no retry.
    let server = RecordingServer::start().await;
    let deps = deps_for(&server.url());
    server.push(Reply::json(200, &json!([])));
    server.set_default(Reply::json(
        403,
        &json!({"message": "Resource not accessible by integration"}),
    ));
    let out = handle(&deps, start_event(None)).await.unwrap();
    assert_eq!(out["started"][0]["task_arn"], TASK_ARN);
    assert_eq!(server.request_count(), 2);
    assert_eq!(deps.metrics.total("GitHubReportFailures"), 1.0);

    // GitHub down: every attempt of both calls, then the start still succeeds.
    let server = RecordingServer::start_with_default(Reply::status(503)).await;
    let deps = deps_for(&server.url());
    handle(&deps, start_event(Some(DEPLOYMENT_ID)))
        .await
        .unwrap();
    assert_eq!(server.request_count(), 6);
    assert_eq!(deps.metrics.total("GitHubReportFailures"), 1.0);

    // Unreachable.
    let dead = RecordingServer::start_with_default(Reply::drop_connection()).await;
    let deps = deps_for(&dead.url());
    handle(&deps, start_event(None)).await.unwrap();
    assert_eq!(deps.metrics.total("GitHubReportFailures"), 1.0);
}

#[tokio::test]
async fn the_end_of_a_deployment_that_cannot_be_reported_fails_the_invocation() {
    let server = RecordingServer::start_with_default(Reply::status(502)).await;
    let deps = deps_for(&server.url());
    let err = handle(
        &deps,
        fixture_json("synthetic/deploy-task-stopped-exit0.json"),
    )
    .await
    .unwrap_err();
    let diagnostic: lambda_runtime::Diagnostic = err.into();
    assert_eq!(diagnostic.error_type, "GitHubReportFailed");
    assert!(
        diagnostic.error_message.contains(&format!(
            "GitHub POST /repos/Codertocat/Hello-World/deployments/{DEPLOYMENT_ID}/statuses: answered 502 Bad Gateway"
        )),
        "{}",
        diagnostic.error_message
    );
}

#[tokio::test]
async fn a_rejected_token_is_fetched_again_once() {
    let server = RecordingServer::start_with_default(Reply::json(201, &json!({"id": 1}))).await;
    let secrets = Arc::new(FakeSecrets::new().with(SECRET_ARN, VersionStage::Current, "ghp_old"));
    let deps = deps_with(
        &server.url(),
        Some(Arc::clone(&secrets)),
        RetryPolicy::immediate(3),
    );
    handle(&deps, start_event(None)).await.unwrap();
    // The token is rotated while the old one is cached: GitHub says 401.
    secrets.set(SECRET_ARN, VersionStage::Current, TOKEN);
    server.push(Reply::json(401, &json!({"message": "Bad credentials"})));
    deliver(&deps, "synthetic/deploy-task-stopped-exit0.json").await;
    let auth: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            r.header("authorization")
                .unwrap_or_default()
                .replace("Bearer ", "")
        })
        .collect();
    assert_eq!(auth, ["ghp_old", "ghp_old", "ghp_old", TOKEN, TOKEN]);
    assert_eq!(secrets.fetches(), 2);
}

#[tokio::test]
async fn the_token_never_appears_in_a_log_line() {
    let (_guard, logs) = kiln::logging::capture::json_subscriber();
    // Success, GitHub errors with retries, and an unreachable GitHub.
    let github = FakeGitHub::start().await;
    let deps = deps_for(&github.server.url());
    handle(&deps, start_event(Some(DEPLOYMENT_ID)))
        .await
        .unwrap();
    deliver(&deps, "synthetic/deploy-task-stopped-exit0.json").await;
    let failing = RecordingServer::start_with_default(Reply::json(
        401,
        &json!({"message": "Bad credentials"}),
    ))
    .await;
    let deps = deps_for(&failing.url());
    handle(&deps, start_event(None)).await.unwrap();
    let _ = handle(
        &deps,
        fixture_json("synthetic/deploy-task-stopped-exit1.json"),
    )
    .await;
    let dead = RecordingServer::start_with_default(Reply::drop_connection()).await;
    let deps = deps_with(&dead.url(), Some(secrets()), RetryPolicy::immediate(2));
    handle(&deps, start_event(None)).await.unwrap();
    assert!(!format!("{:?}", deps.reporter).contains(TOKEN));

    let logs = logs.contents();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() > 5, "expected logs, got: {logs}");
    for line in &lines {
        assert!(!line.contains(TOKEN), "token in a log line: {line}");
        assert!(!line.contains("ghp_"), "token prefix in a log line: {line}");
    }
    assert!(logs.contains("GitHub status not posted"), "{logs}");
    // The token did reach GitHub.
    assert!(
        failing
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some(format!("Bearer {TOKEN}").as_str()))
    );
}
