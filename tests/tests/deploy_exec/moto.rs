//! On moto: deploy requests published to a real SNS topic
//! start tasks on an emulated ECS cluster (read back with DescribeTasks),
//! the idempotency token seen through a recording proxy, the end of a
//! deployment read back from the task's tags, and the real binary under
//! the emulated Lambda runtime.

use std::time::Duration;

use aws_sdk_ecs::types::{Task, TaskField};
use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::runner::EcsTaskRunner;
use deploy_exec::{Config, Deps, handle};
use kiln::secrets::fake::FakeSecrets;
use kiln::secrets::{SecretCache, VersionStage};
use kiln::{DeployRequest, Env, Metrics};
use kiln_tests::aws::{Aws, EcsStack, SnsQueue};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::fixtures::{SnsNotification, fixture_json, sns_event};
use kiln_tests::http::{RecordedRequest, RecordingServer, Reply};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use serde_json::{Value, json};

use super::deploy_request;

const TOKEN: &str = "ghp_kilnMotoToken0123456789abcdefSECRET";
const FAMILY: &str = "kiln-stack-updater";

/// moto with a cluster, the stack-updater task definition and the deploy
/// topic, read through SQS so tests hand deploy-exec the SNS messages moto
/// really delivered.
struct Stack {
    moto: Moto,
    aws: Aws,
    ecs: EcsStack,
    topic: String,
    queue: SnsQueue,
}

impl Stack {
    async fn start() -> Stack {
        let moto = Moto::start().await;
        moto.freeze_ecs_tasks().await;
        let aws = moto.aws().await;
        let ecs = aws.create_ecs("kiln", FAMILY).await;
        let topic = aws.create_topic("kiln-deploy").await;
        let queue = aws.subscribe_queue(&topic).await;
        Stack {
            moto,
            aws,
            ecs,
            topic,
            queue,
        }
    }

    /// deploy-exec's environment for this stack.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("CLUSTER", self.ecs.cluster_name.clone()),
            ("TASK_DEFINITION", self.ecs.task_definition_arn.clone()),
            ("CONTAINER_NAME", self.ecs.container_name.clone()),
            ("SUBNETS", self.ecs.subnets_csv()),
            ("SECURITY_GROUPS", self.ecs.security_groups_csv()),
            (
                "TASK_ENVIRONMENT",
                "FURNACE_INSTANCE=moto,BUILD_BUCKET=kiln-builds".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The real binary's environment: moto's endpoint and credentials, and
    /// deploy-exec's variables.
    fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.child_env();
        env.extend(self.env());
        env
    }

    fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_env(&Env::from_pairs(env)).unwrap()
    }

    /// Publishes the requests to the deploy topic and returns the Lambda
    /// SNS event of what moto delivered.
    async fn published(&self, requests: &[DeployRequest]) -> Value {
        for request in requests {
            self.aws
                .sns
                .publish()
                .topic_arn(&self.topic)
                .message(request.to_json())
                .send()
                .await
                .unwrap();
        }
        let envelopes = self
            .queue
            .expect(requests.len(), Duration::from_secs(10))
            .await;
        let notifications: Vec<SnsNotification> =
            envelopes.iter().map(SnsNotification::from).collect();
        sns_event(&notifications)
    }

    async fn describe(&self, task_arns: &[String]) -> Vec<Task> {
        self.aws
            .ecs
            .describe_tasks()
            .cluster(&self.ecs.cluster_name)
            .set_tasks(Some(task_arns.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .unwrap()
            .tasks
            .unwrap_or_default()
    }
}

fn deps(
    config: Config,
    ecs: aws_sdk_ecs::Client,
    github: Option<&RecordingServer>,
) -> Deps<
    EcsTaskRunner,
    GitHubReporter<FakeSecrets>,
    kiln::sns::fake::RecordingPublisher,
    deploy_exec::task_log::fake::FakeLogTail,
> {
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/github-token";
    let (api_url, token) = match github {
        Some(server) => (
            server.url(),
            Some((
                secret.to_string(),
                SecretCache::new(FakeSecrets::new().with(secret, VersionStage::Current, TOKEN)),
            )),
        ),
        None => (config.github_api_url.clone(), None),
    };
    Deps {
        reporter: GitHubReporter::new(&api_url, token, RetryPolicy::immediate(1)),
        runner: EcsTaskRunner::new(ecs),
        publisher: kiln::sns::fake::RecordingPublisher::new(),
        logs: deploy_exec::task_log::fake::FakeLogTail::new(),
        metrics: Metrics::in_memory("deploy-exec"),
        lanes: deploy_exec::lane_store::NO_LANES,
        config,
    }
}

fn task_arns(out: &Value) -> Vec<String> {
    out["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["task_arn"].as_str().unwrap().to_string())
        .collect()
}

fn environment(task: &Task) -> Vec<(String, String)> {
    task.overrides()
        .unwrap()
        .container_overrides()
        .iter()
        .find(|o| o.name() == Some(FAMILY))
        .unwrap()
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap().to_string(),
                kv.value().unwrap().to_string(),
            )
        })
        .collect()
}

fn tags(task: &Task) -> Vec<(String, String)> {
    let mut tags: Vec<_> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    tags.sort();
    tags
}

/// The POST requests GitHub received.
fn posts(github: &RecordingServer) -> Vec<RecordedRequest> {
    github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_deploy_request_from_sns_starts_one_task_with_overrides_started_by_and_tags() {
    let stack = Stack::start().await;
    let deps = deps(stack.config(&[]), stack.aws.ecs.clone(), None);
    let mut tagged_release =
        deploy_request("72d3162e-cc78-11e3-81ab-4c9367dc0958", Some(145988746));
    tagged_release.git_ref = "refs/tags/v1.2.0".into();
    let event = stack.published(&[tagged_release]).await;
    let out = handle(&deps, event).await.unwrap();
    let arns = task_arns(&out);
    assert_eq!(arns.len(), 1);
    let tasks = stack.describe(&arns).await;
    let task = &tasks[0];
    assert_eq!(
        task.started_by(),
        Some("kiln/72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        task.task_definition_arn(),
        Some(stack.ecs.task_definition_arn.as_str())
    );
    assert_eq!(
        environment(task),
        pairs(&[
            (
                "GIT_REMOTE",
                "https://github.com/Codertocat/Hello-World.git"
            ),
            ("GIT_SHA", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
            ("GIT_REF", "refs/tags/v1.2.0"),
            ("GIT_TAG", "v1.2.0"),
            ("STACK_ENV", "production"),
            ("DEPLOYMENT_ID", "145988746"),
            ("DELIVERY_ID", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("REPOSITORY", "Codertocat/Hello-World"),
            ("SENDER", "Codertocat"),
            ("FURNACE_INSTANCE", "moto"),
            ("BUILD_BUCKET", "kiln-builds"),
        ])
    );
    assert_eq!(
        tags(task),
        pairs(&[
            ("kiln:delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("kiln:deployment", "145988746"),
            ("kiln:environment", "production"),
            ("kiln:repository", "Codertocat/Hello-World"),
            ("kiln:sender", "Codertocat"),
            ("kiln:sha", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
        ])
    );
    // The task of a delivery is found by its startedBy.
    let listed = stack
        .aws
        .ecs
        .list_tasks()
        .cluster("kiln")
        .started_by("kiln/72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns(), arns.as_slice());
    assert_eq!(deps.metrics.total("DeploysStarted"), 1.0);
}

#[tokio::test]
async fn a_two_record_event_starts_two_tasks() {
    let stack = Stack::start().await;
    let deps = deps(stack.config(&[]), stack.aws.ecs.clone(), None);
    let event = stack
        .published(&[
            deploy_request("delivery-a", None),
            deploy_request("delivery-b", Some(7)),
        ])
        .await;
    assert_eq!(event["Records"].as_array().unwrap().len(), 2);
    let out = handle(&deps, event).await.unwrap();
    let arns = task_arns(&out);
    assert_eq!(arns.len(), 2);
    assert_ne!(arns[0], arns[1]);
    let mut started_by: Vec<String> = stack
        .describe(&arns)
        .await
        .iter()
        .map(|t| t.started_by().unwrap_or_default().to_string())
        .collect();
    started_by.sort();
    assert_eq!(started_by, ["kiln/delivery-a", "kiln/delivery-b"]);
    assert_eq!(stack.aws.describe_all_tasks("kiln").await.len(), 2);
}

#[tokio::test]
async fn the_same_delivery_twice_sends_the_same_client_token() {
    let stack = Stack::start().await;
    // Recorded between the SDK and moto; the first reply is lost after moto
    // started the task, so the SDK's own retry is recorded too.
    let proxy = FaultProxy::start(
        stack.moto.endpoint(),
        FaultPlan::first(1, Fault::ResetAfter).on(&["RunTask"]),
    )
    .await;
    let ecs = aws_sdk_ecs::Client::new(&proxy.sdk_config().await);
    let deps = deps(stack.config(&[]), ecs, None);
    let event = stack
        .published(&[deploy_request("delivery-once", None)])
        .await;
    handle(&deps, event.clone()).await.unwrap();
    handle(&deps, event).await.unwrap();
    handle(
        &deps,
        stack
            .published(&[deploy_request("delivery-other", None)])
            .await,
    )
    .await
    .unwrap();
    let tokens: Vec<String> = proxy
        .calls_to("RunTask")
        .iter()
        .map(|call| {
            let body: Value = serde_json::from_slice(&call.request_body).unwrap();
            body["clientToken"].as_str().unwrap().to_string()
        })
        .collect();
    // Lost reply + SDK retry, Lambda's redelivery, another delivery.
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[1], tokens[2]);
    assert_ne!(tokens[2], tokens[3]);
    assert_eq!(
        tokens[0],
        deploy_exec::task_request::client_token("delivery-once")
    );
    assert!(tokens.iter().all(|t| t.len() <= 64));
}

#[tokio::test]
async fn the_end_is_read_back_from_the_tasks_tags_when_the_event_lacks_overrides() {
    let stack = Stack::start().await;
    let github = RecordingServer::start_with_default(Reply::json(201, &json!({"id": 1}))).await;
    github.push(Reply::json(200, &json!([])));
    let deps = deps(stack.config(&[]), stack.aws.ecs.clone(), Some(&github));
    let out = handle(
        &deps,
        stack
            .published(&[deploy_request("delivery-end", None)])
            .await,
    )
    .await
    .unwrap();
    let task_arn = task_arns(&out).remove(0);
    github.clear();
    github.push(Reply::json(200, &json!([])));

    // The task stops with exit code 1; this event carries no overrides.
    let mut event = fixture_json("synthetic/deploy-task-stopped-exit1.json");
    event["detail"]["taskArn"] = task_arn.clone().into();
    event["detail"]["clusterArn"] = stack.ecs.cluster_arn.clone().into();
    event["detail"]["containers"][0]["name"] = FAMILY.into();
    event["detail"]["startedBy"] = "kiln/delivery-end".into();
    event["detail"]["overrides"] = Value::Null;
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(out["reported"], "posted");
    let posts = posts(&github);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].path,
        "/repos/Codertocat/Hello-World/statuses/f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    );
    let body = posts[0].json();
    assert_eq!(body["state"], "failure");
    assert_eq!(body["context"], "kiln/deploy (production)");
    let task_id = task_arn.rsplit('/').next().unwrap();
    assert!(
        body["target_url"]
            .as_str()
            .unwrap()
            .contains(&format!("/clusters/kiln/tasks/{task_id}/")),
        "{body}"
    );
}

#[tokio::test]
async fn the_real_binary_starts_reports_and_never_logs_the_token() {
    let stack = Stack::start().await;
    let secret_arn = stack.aws.create_secret("kiln/github-token", TOKEN).await;
    let github = RecordingServer::start_with_default(Reply::json(201, &json!({"id": 1}))).await;
    github.push(Reply::json(200, &json!([])));
    let mut env = stack.function_env();
    env.push(("GITHUB_TOKEN_SECRET_ARN".into(), secret_arn));
    env.push(("GITHUB_API_URL".into(), github.url()));
    let function = LambdaFunction::start("deploy-exec", env).await;

    let out = function
        .invoke(
            stack
                .published(&[deploy_request("delivery-bin", Some(42))])
                .await,
        )
        .await
        .unwrap();
    let task_arn = task_arns(&out).remove(0);
    assert_eq!(
        stack.describe(std::slice::from_ref(&task_arn)).await.len(),
        1
    );
    let posts = posts(&github);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].path,
        "/repos/Codertocat/Hello-World/deployments/42/statuses"
    );
    assert_eq!(posts[0].json()["state"], "in_progress");
    assert_eq!(
        posts[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let err = function
        .invoke(json!({"Records": [{"Sns": {"MessageId": "m-1", "Message": "{}"}}]}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "InvalidDeployRequest");
    assert!(
        err.error_message.starts_with(
            "1 of 1 records failed: record 1 (SNS message m-1): not a valid deploy request"
        ),
        "{err}"
    );
    let err = function
        .invoke(json!({"hello": "world"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "UnsupportedEvent");

    let output = format!("{}\n{}", function.stdout(), function.stderr());
    assert!(output.contains("deploy task started"), "{output}");
    assert!(!output.contains(TOKEN), "the token was logged");
}

#[tokio::test]
async fn the_real_binary_refuses_to_start_with_a_conflicting_placement() {
    let stack = Stack::start().await;
    let mut env = stack.function_env();
    env.push(("LAUNCH_TYPE".into(), "FARGATE".into()));
    env.push(("CAPACITY_PROVIDER".into(), "FARGATE_SPOT".into()));
    let function = LambdaFunction::start("deploy-exec", env).await;
    let failure = function.expect_init_failure(Duration::from_secs(30)).await;
    assert!(
        failure
            .stderr
            .contains("error: LAUNCH_TYPE and CAPACITY_PROVIDER conflict"),
        "{failure}"
    );
}
