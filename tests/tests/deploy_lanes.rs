//! Deploy lanes end to end: the real deploy-exec binary (under the Lambda
//! Runtime API emulation) against moto's ECS and DynamoDB, with a local
//! fake of GitHub's API.
//!
//! One test per behaviour of lanes: an idle lane starts, a busy one queues,
//! only the newest waits, an older request is superseded at once, a stop
//! frees the lane and starts the next, nothing sticks (a lost stop event, a
//! failed RunTask), redeliveries change nothing, lanes are independent;
//! and a race of 20 requests through 4 deploy-exec processes.

use std::collections::{HashMap, HashSet};

use aws_sdk_ecs::types::Task;
use deploy_exec::lane_store::from_item;
use deploy_exec::lanes::{LaneState, lane_key};
use kiln::{DeployEvent, DeployRequest};
use kiln_tests::aws::{Aws, EcsStack};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::fixtures::{SnsNotification, deploy_task_stopped_event, sns_event};
use kiln_tests::http::{RecordedRequest, RecordingServer};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const REPOSITORY: &str = "Codertocat/Hello-World";
const TABLE: &str = "kiln-deploy-lanes";
const TOKEN: &str = "ghp_kilnLanesToken0123456789abcdef";
/// When the first push of every test was made.
const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// moto with ECS (tasks frozen where they are: only the test stops them),
/// the lanes table, a GitHub token, and a fake GitHub that lists no
/// statuses and accepts every post.
struct Lanes {
    moto: Moto,
    aws: Aws,
    ecs: EcsStack,
    token_arn: String,
    github: RecordingServer,
}

impl Lanes {
    async fn start() -> Lanes {
        let moto = Moto::start().await;
        moto.freeze_ecs_tasks().await;
        let aws = moto.aws().await;
        let ecs = aws
            .create_ecs_with_container("kiln", "kiln-stack-updater", "stack-updater")
            .await;
        aws.create_lanes_table(TABLE).await;
        let token_arn = aws.create_secret("kiln/github-token", TOKEN).await;
        let github = RecordingServer::start_github().await;
        Lanes {
            moto,
            aws,
            ecs,
            token_arn,
            github,
        }
    }

    /// deploy-exec's environment, with AWS reached at `endpoint`.
    fn env(&self, endpoint: &str) -> Vec<(String, String)> {
        let mut env = self.moto.child_env();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.extend(
            [
                ("AWS_ENDPOINT_URL", endpoint.to_string()),
                ("CLUSTER", self.ecs.cluster_name.clone()),
                ("TASK_DEFINITION", self.ecs.task_definition_arn.clone()),
                ("CONTAINER_NAME", self.ecs.container_name.clone()),
                ("SUBNETS", self.ecs.subnets_csv()),
                ("SECURITY_GROUPS", self.ecs.security_groups_csv()),
                ("GITHUB_TOKEN_SECRET_ARN", self.token_arn.clone()),
                ("GITHUB_API_URL", self.github.url()),
                ("LANES_TABLE", TABLE.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        env
    }

    async fn function(&self) -> LambdaFunction {
        LambdaFunction::start("deploy-exec", self.env(self.moto.endpoint())).await
    }

    /// The tasks kiln started, oldest first, by delivery id.
    async fn started(&self) -> Vec<String> {
        let mut tasks = self.aws.describe_all_tasks(&self.ecs.cluster_name).await;
        tasks.sort_by_key(|t| t.created_at().map(|d| d.as_nanos()));
        tasks.iter().map(delivery_of).collect()
    }

    async fn task_of(&self, delivery: &str) -> Task {
        let tasks = self.aws.describe_all_tasks(&self.ecs.cluster_name).await;
        let found: Vec<Task> = tasks
            .into_iter()
            .filter(|t| delivery_of(t) == delivery)
            .collect();
        assert_eq!(found.len(), 1, "tasks of {delivery}");
        found.into_iter().next().unwrap()
    }

    /// Stops the delivery's task on moto, and returns the stop event
    /// EventBridge would deliver.
    async fn stop(&self, delivery: &str) -> Value {
        let task = self.task_of(delivery).await;
        let arn = task.task_arn().unwrap().to_string();
        self.aws
            .ecs
            .stop_task()
            .cluster(&self.ecs.cluster_name)
            .task(&arn)
            .send()
            .await
            .unwrap();
        deploy_task_stopped_event(&self.ecs, &arn, delivery, &self.ecs.container_name, 0)
    }

    async fn lane(&self, environment: &str) -> LaneState {
        self.aws
            .lane_item(TABLE, &lane_key(REPOSITORY, environment))
            .await
            .map(|item| from_item(&item).unwrap())
            .unwrap_or_default()
    }

    /// The statuses posted for a commit: (state, description), in order.
    fn statuses(&self, sha: &str) -> Vec<(String, String)> {
        posts(&self.github)
            .iter()
            .filter(|r| r.path.ends_with(sha))
            .map(|r| {
                let body = r.json();
                (
                    body["state"].as_str().unwrap_or_default().to_string(),
                    body["description"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

fn posts(github: &RecordingServer) -> Vec<RecordedRequest> {
    github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

fn delivery_of(task: &Task) -> String {
    task.started_by()
        .and_then(|s| s.strip_prefix("kiln/"))
        .unwrap_or_default()
        .to_string()
}

/// The commit of request `n`: 40 hex digits, distinct per `n`.
fn sha(n: usize) -> String {
    format!("{n:040x}")
}

/// A push of commit `n` to `environment`, `second` seconds after T0.
fn push(n: usize, environment: &str, second: i64) -> DeployRequest {
    DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: format!("delivery-{n:02}"),
        event: DeployEvent::Push,
        repository: REPOSITORY.into(),
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        git_ref: "refs/heads/main".into(),
        sha: sha(n),
        environment: environment.into(),
        sender: "Codertocat".into(),
        deployment_id: None,
        requested_at: T0 + time::Duration::seconds(second),
        event_at: Some(T0 + time::Duration::seconds(second)),
        before: None,
    }
}

fn sns(request: &DeployRequest) -> Value {
    sns_event(&[SnsNotification::new(
        "arn:aws:sns:us-east-1:123456789012:kiln-deploy",
        request.to_json(),
    )])
}

/// Hands `function` one deploy request, as SNS would; the invocation must
/// succeed.
async fn deliver(function: &LambdaFunction, request: &DeployRequest) -> Value {
    match function.invoke(sns(request)).await {
        Ok(out) => out,
        Err(err) => panic!("{} failed: {err}", request.delivery_id),
    }
}

#[tokio::test]
async fn one_deployment_at_a_time_the_newest_waits_and_a_stop_starts_it() {
    let lanes = Lanes::start().await;
    let function = lanes.function().await;
    let (first, second, third) = (
        push(1, "production", 0),
        push(2, "production", 1),
        push(3, "production", 2),
    );
    // 1. An idle lane starts the request, and records it.
    let out = deliver(&function, &first).await;
    assert_eq!(out["started"][0]["started"]["delivery_id"], "delivery-01");
    assert_eq!(lanes.started().await, ["delivery-01"]);
    let lane = lanes.lane("production").await;
    let running = lane.running.unwrap();
    assert_eq!(running.request, first);
    let task = lanes.task_of("delivery-01").await;
    assert_eq!(running.task_arn.as_deref(), task.task_arn());
    // The item expires 35 days after its last write.
    let item = lanes
        .aws
        .lane_item(TABLE, "Codertocat/Hello-World#production")
        .await
        .unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let in_days = (expires - OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
    assert!((34..=35).contains(&in_days), "{in_days}");

    // 2. A busy lane starts nothing: the request waits, pending on GitHub.
    let out = deliver(&function, &second).await;
    assert_eq!(out["started"][0]["queued"], "delivery-02");
    assert_eq!(lanes.started().await, ["delivery-01"]);
    assert_eq!(
        lanes.statuses(&sha(2)),
        [(
            "pending".to_string(),
            format!(
                "Queued behind {}, which is deploying to production",
                &sha(1)[..7]
            )
        )]
    );

    // 3. Only the newest waits: the second is superseded by the third.
    let out = deliver(&function, &third).await;
    assert_eq!(out["started"][0]["superseded"], json!(["delivery-02"]));
    let last = lanes.statuses(&sha(2)).pop().unwrap();
    assert_eq!(last.0, "error");
    assert!(
        last.1
            .starts_with(&format!("Superseded by {}", &sha(3)[..7])),
        "{}",
        last.1
    );
    assert_eq!(lanes.lane("production").await.next, Some(third.clone()));

    // 4. The first task stops: the same invocation frees the lane, starts
    // the third, and reports the first's end.
    let out = function
        .invoke(lanes.stop("delivery-01").await)
        .await
        .unwrap();
    assert_eq!(out["lane"]["started"]["delivery_id"], "delivery-03");
    assert_eq!(out["reported"], "posted");
    assert_eq!(lanes.started().await, ["delivery-01", "delivery-03"]);
    assert_eq!(lanes.statuses(&sha(1)).last().unwrap().0, "success");
    assert_eq!(lanes.statuses(&sha(3)).last().unwrap().0, "pending");
    let lane = lanes.lane("production").await;
    assert_eq!(lane.running.unwrap().request.delivery_id, "delivery-03");
    assert_eq!(lane.next, None);

    // Metrics and logs name the lane and the deliveries.
    let output = function.stdout();
    for needle in [
        "\"DeploysQueued\"",
        "\"DeploysSuperseded\"",
        "Codertocat/Hello-World#production",
        "\"by_delivery\":\"delivery-03\"",
    ] {
        assert!(output.contains(needle), "{needle} not in:\n{output}");
    }
    assert!(!output.contains(TOKEN));
}

#[tokio::test]
async fn an_older_request_never_deploys_after_a_newer_one() {
    let lanes = Lanes::start().await;
    let function = lanes.function().await;
    deliver(&function, &push(5, "production", 5)).await;
    // Older than the running deployment: superseded at once.
    let out = deliver(&function, &push(4, "production", 4)).await;
    assert_eq!(out["started"][0]["superseded"], json!(["delivery-04"]));
    assert_eq!(lanes.statuses(&sha(4))[0].0, "error");
    // The lane is free again; a replay of an older delivery still loses
    // to what the lane deployed last.
    function
        .invoke(lanes.stop("delivery-05").await)
        .await
        .unwrap();
    let out = deliver(&function, &push(3, "production", 3)).await;
    assert_eq!(out["started"][0]["superseded"], json!(["delivery-03"]));
    assert_eq!(lanes.started().await, ["delivery-05"]);
    // Without event_at, requested_at orders the request: a deployment
    // created now is newer, and deploys.
    let mut deployment = push(6, "production", 0);
    deployment.event = DeployEvent::Deployment;
    deployment.deployment_id = Some(77);
    deployment.event_at = None;
    deployment.requested_at = T0 + time::Duration::seconds(60);
    let out = deliver(&function, &deployment).await;
    assert_eq!(out["started"][0]["started"]["delivery_id"], "delivery-06");
    // A deployment superseded is made inactive.
    let mut older = push(7, "production", 0);
    older.event = DeployEvent::Deployment;
    older.deployment_id = Some(78);
    deliver(&function, &older).await;
    let inactive = posts(&lanes.github)
        .into_iter()
        .find(|r| r.path.ends_with("/deployments/78/statuses"))
        .unwrap();
    assert_eq!(inactive.json()["state"], "inactive");
}

#[tokio::test]
async fn a_lost_stop_event_does_not_hold_the_lane() {
    let lanes = Lanes::start().await;
    let function = lanes.function().await;
    deliver(&function, &push(1, "production", 0)).await;
    // The task stops, and its event never arrives.
    let _lost = lanes.stop("delivery-01").await;
    let out = deliver(&function, &push(2, "production", 1)).await;
    assert_eq!(out["started"][0]["started"]["delivery_id"], "delivery-02");
    assert_eq!(lanes.started().await, ["delivery-01", "delivery-02"]);
    assert_eq!(lanes.statuses(&sha(2)).last().unwrap().0, "pending");
    assert!(function.stdout().contains("stopped or unknown to ECS"));
}

#[tokio::test]
async fn a_failed_run_task_leaves_the_lane_as_it_was() {
    let lanes = Lanes::start().await;
    let proxy = FaultProxy::start(
        lanes.moto.endpoint(),
        FaultPlan::always(Fault::ServerError).on(&["RunTask"]),
    )
    .await;
    let function = LambdaFunction::start("deploy-exec", lanes.env(&proxy.endpoint())).await;
    let request = push(1, "production", 0);
    let err = function.invoke(sns(&request)).await.unwrap_err();
    assert_eq!(err.error_type, "RunTaskFailed");
    let lane = lanes.lane("production").await;
    assert_eq!((lane.running, lane.next, lane.latest), (None, None, None));
    // Lambda's retry, with ECS back, starts it.
    proxy.set_plan(FaultPlan::none());
    deliver(&function, &request).await;
    assert_eq!(lanes.started().await, ["delivery-01"]);
    // On the stop path: the next one waits again, and the stop event fails
    // so that it is retried.
    deliver(&function, &push(2, "production", 1)).await;
    proxy.set_plan(FaultPlan::always(Fault::ServerError).on(&["RunTask"]));
    let stop = lanes.stop("delivery-01").await;
    let err = function.invoke(stop.clone()).await.unwrap_err();
    assert_eq!(err.error_type, "RunTaskFailed");
    let lane = lanes.lane("production").await;
    assert_eq!(lane.running, None);
    assert_eq!(lane.next.unwrap().delivery_id, "delivery-02");
    proxy.set_plan(FaultPlan::none());
    let out = function.invoke(stop).await.unwrap();
    assert_eq!(out["lane"]["started"]["delivery_id"], "delivery-02");
}

#[tokio::test]
async fn a_redelivered_request_changes_nothing_and_posts_nothing() {
    let lanes = Lanes::start().await;
    let function = lanes.function().await;
    let (first, second) = (push(1, "production", 0), push(2, "production", 1));
    deliver(&function, &first).await;
    deliver(&function, &second).await;
    let posted = posts(&lanes.github).len();
    let before = lanes.lane("production").await;
    for request in [&first, &second] {
        let out = deliver(&function, request).await;
        assert!(out["started"][0]["unchanged"].is_string(), "{out}");
    }
    assert_eq!(posts(&lanes.github).len(), posted);
    assert_eq!(lanes.lane("production").await, before);
    assert_eq!(lanes.started().await, ["delivery-01"]);
}

#[tokio::test]
async fn production_waiting_never_delays_staging() {
    let lanes = Lanes::start().await;
    let function = lanes.function().await;
    deliver(&function, &push(1, "production", 0)).await;
    deliver(&function, &push(2, "production", 1)).await;
    let out = deliver(&function, &push(3, "staging", 2)).await;
    assert_eq!(out["started"][0]["lane"], "Codertocat/Hello-World#staging");
    assert_eq!(out["started"][0]["started"]["delivery_id"], "delivery-03");
    assert_eq!(lanes.started().await, ["delivery-01", "delivery-03"]);
}

/// 20 requests for one lane, in shuffled order, at once through 4
/// deploy-exec processes: every invocation succeeds, one task starts;
/// after its stop, at most one more; the newest request is the last one
/// started, and every other one is superseded on GitHub.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_instances_start_one_task_and_the_newest_wins() {
    const REQUESTS: usize = 20;
    let lanes = Lanes::start().await;
    let functions = join_all((0..4).map(|_| lanes.function())).await;
    // A fixed shuffle (a permutation by a multiplier coprime to 20).
    let order: Vec<usize> = (0..REQUESTS).map(|i| (i * 7 + 3) % REQUESTS).collect();
    assert_eq!(order.iter().collect::<HashSet<_>>().len(), REQUESTS);
    let requests: Vec<DeployRequest> = order
        .iter()
        .map(|&n| push(n, "production", n as i64))
        .collect();
    let answers = join_all(
        requests
            .iter()
            .enumerate()
            .map(|(i, request)| functions[i % 4].invoke(sns(request))),
    )
    .await;
    for (request, answer) in requests.iter().zip(&answers) {
        assert!(answer.is_ok(), "{}: {answer:?}", request.delivery_id);
    }
    let started = lanes.started().await;
    assert_eq!(started.len(), 1, "{started:?}");
    // The stop starts at most one more: the newest.
    functions[0]
        .invoke(lanes.stop(&started[0]).await)
        .await
        .unwrap();
    let started = lanes.started().await;
    assert!(started.len() <= 2, "{started:?}");
    let newest = format!("delivery-{:02}", REQUESTS - 1);
    assert_eq!(started.last(), Some(&newest));
    let lane = lanes.lane("production").await;
    assert_eq!(lane.next, None);
    assert!(lane.unreported.is_empty());
    // Every request that never started is superseded on GitHub.
    let started: HashSet<&String> = started.iter().collect();
    let mut superseded = HashMap::new();
    for n in 0..REQUESTS {
        let delivery = format!("delivery-{n:02}");
        if started.contains(&delivery) {
            continue;
        }
        let statuses = lanes.statuses(&sha(n));
        let last = statuses
            .last()
            .unwrap_or_else(|| panic!("{delivery}: no status"));
        assert_eq!(last.0, "error", "{delivery}: {statuses:?}");
        assert!(
            last.1.starts_with("Superseded by "),
            "{delivery}: {}",
            last.1
        );
        superseded.insert(delivery, last.1.clone());
    }
    assert_eq!(superseded.len() + started.len(), REQUESTS);
}

/// Runs the futures concurrently (on this task) and returns their
/// outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
