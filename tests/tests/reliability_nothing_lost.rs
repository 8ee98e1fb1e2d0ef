//! Nothing lost, counted: a mix of events across the four functions, with
//! faults injected into a tenth of the calls on every path out (AWS through
//! the fault proxy in front of moto, Slack and GitHub through recording
//! servers that fail a tenth of their requests).
//!
//! Each event is invoked the way Lambda would: the asynchronous functions
//! are retried twice after a failed invocation, then the event goes to the
//! dead-letter queue ("surfaced"); deploy-trigger answers GitHub, and a 5xx
//! is a failed delivery GitHub shows for redelivery ("surfaced"). After
//! every invocation the end state is checked against what the function
//! said: a success whose effect is missing is a silently dropped event.
//!
//! At the end, handled + surfaced must equal sent, with none dropped. The
//! table is printed (`--no-capture` shows it). `KILN_NOTHING_LOST_EVENTS`
//! sets the number of events (default 1,000, split evenly).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::secrets::SecretsManagerFetcher;
use kiln::sns::SnsPublisher;
use kiln::{Env, Metrics, SecretCache};
use kiln_tests::aws::{Aws, EcsStack, SnsQueue};
use kiln_tests::faults::{Fault, FaultPlan, FaultProxy};
use kiln_tests::fixtures::{SnsNotification, fixture_json, github_webhook_event, sns_event};
use kiln_tests::http::{RecordedRequest, RecordingServer, Reply};
use kiln_tests::moto::Moto;
use serde_json::json;

/// The share of calls that fail.
const FAULT_RATE: f64 = 0.10;
/// A rate at which retries inside an invocation no longer absorb every
/// fault, so Lambda's retries and the dead-letter queue come into play.
const HEAVY_FAULT_RATE: f64 = 0.60;
/// Lambda's asynchronous invocation: the first try and two retries.
const LAMBDA_ATTEMPTS: usize = 3;
/// How long a stalled connection is held before it is closed.
const STALL: Duration = Duration::from_millis(150);

fn faults() -> Vec<Fault> {
    Fault::all(STALL).to_vec()
}

fn event_count() -> usize {
    std::env::var("KILN_NOTHING_LOST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// The outcome of one event, after all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Succeeded at the first invocation with no fault in its way.
    FirstTry,
    /// Succeeded at the first invocation, a fault absorbed by a retry inside
    /// it (the SDK's, or the function's own).
    RetriedInside,
    /// Succeeded when Lambda invoked it again.
    LambdaRetry,
    /// Failed every attempt: in the dead-letter queue (or a 5xx to GitHub).
    Surfaced,
    /// Reported success, but the effect is missing.
    Dropped,
}

#[derive(Debug, Default, Clone)]
struct Tally {
    name: &'static str,
    sent: usize,
    first_try: usize,
    retried_inside: usize,
    lambda_retry: usize,
    surfaced: usize,
    dropped: usize,
    /// Faults injected on this function's paths.
    faults: usize,
    /// Effects done more than once (a lost reply, then a retry), each time
    /// under the same idempotency key.
    repeats: usize,
    notes: Vec<String>,
}

impl Tally {
    fn count(&mut self, fate: Fate) {
        self.sent += 1;
        match fate {
            Fate::FirstTry => self.first_try += 1,
            Fate::RetriedInside => self.retried_inside += 1,
            Fate::LambdaRetry => self.lambda_retry += 1,
            Fate::Surfaced => self.surfaced += 1,
            Fate::Dropped => self.dropped += 1,
        }
    }

    fn handled(&self) -> usize {
        self.first_try + self.retried_inside + self.lambda_retry
    }
}

/// A recording server that fails `rate` of its requests (500, 429 or
/// a dropped connection, seeded), and remembers which requests it accepted.
struct FlakyServer {
    server: RecordingServer,
    accepted: Arc<Mutex<Vec<RecordedRequest>>>,
    failed: Arc<Mutex<usize>>,
}

impl FlakyServer {
    async fn start(
        rate: f64,
        seed: u64,
        ok: Reply,
        answer: fn(&RecordedRequest) -> Option<Reply>,
    ) -> FlakyServer {
        let server = RecordingServer::start().await;
        let accepted: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let failed: Arc<Mutex<usize>> = Arc::default();
        let rng = Mutex::new(seed);
        let (accepted_in, failed_in) = (Arc::clone(&accepted), Arc::clone(&failed));
        server.respond_with(move |request| {
            let roll = next_unit(&mut rng.lock().unwrap());
            if roll < rate {
                *failed_in.lock().unwrap() += 1;
                return Some(match (roll / rate * 3.0) as u32 % 3 {
                    0 => Reply::text(500, "internal_error"),
                    1 => Reply::text(429, "rate_limited").header("retry-after", "0"),
                    _ => Reply::drop_connection(),
                });
            }
            accepted_in.lock().unwrap().push(request.clone());
            Some(answer(request).unwrap_or_else(|| ok.clone()))
        });
        FlakyServer {
            server,
            accepted,
            failed,
        }
    }

    fn accepted(&self) -> Vec<RecordedRequest> {
        self.accepted.lock().unwrap().clone()
    }
}

fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// moto with a fault proxy in front of it.
struct Emulator {
    moto: Moto,
    aws: Aws,
    proxy: FaultProxy,
}

impl Emulator {
    async fn start(rate: f64, seed: u64) -> Emulator {
        let moto = Moto::start().await;
        let aws = moto.aws().await;
        let proxy =
            FaultProxy::start(moto.endpoint(), FaultPlan::fraction(rate, &faults(), seed)).await;
        Emulator { moto, aws, proxy }
    }

    /// Faults injected so far, and the index the next call will have.
    fn mark(&self) -> usize {
        self.proxy.calls().len()
    }

    fn faults_since(&self, mark: usize) -> usize {
        self.proxy.calls()[mark..]
            .iter()
            .filter(|c| c.fault.is_some())
            .count()
    }
}

/// Runs one asynchronous event up to Lambda's attempts; `check` says
/// whether the effect is in place after a success.
async fn lambda_attempts<F, Fut>(mut invoke: F) -> (Option<usize>, Vec<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut errors = Vec::new();
    for attempt in 0..LAMBDA_ATTEMPTS {
        match invoke().await {
            Ok(()) => return (Some(attempt), errors),
            Err(err) => errors.push(err),
        }
    }
    (None, errors)
}

// --- deploy-trigger -------------------------------------------------------------

async fn deploy_trigger_stream(rate: f64, events: usize, seed: u64) -> Tally {
    use deploy_trigger::{Config, Deps, handle};
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;

    const SECRET: &str = "nothing-lost-webhook-secret";
    let emulator = Emulator::start(rate, seed).await;
    let aws = &emulator.aws;
    let topic = aws.create_topic("kiln-deploy").await;
    let queue = aws.subscribe_queue(&topic).await;
    let secret_arn = aws.create_secret("kiln/webhook", SECRET).await;
    let sdk = emulator.proxy.sdk_config().await;
    let deps = Deps {
        config: Config::from_env(&Env::from_pairs([
            ("WEBHOOK_SECRET_ARN", secret_arn.as_str()),
            ("DEPLOY_TOPIC_ARN", topic.as_str()),
            ("DEPLOY_BRANCHES", "master=production"),
        ]))
        .unwrap(),
        // A short TTL, so the secret is fetched (through the faults) often.
        secrets: SecretCache::with_ttl(
            SecretsManagerFetcher::new(aws_sdk_secretsmanager::Client::new(&sdk)),
            Duration::from_millis(50),
        ),
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
        metrics: Metrics::in_memory("deploy-trigger"),
    };
    let mut tally = Tally {
        name: "deploy-trigger",
        ..Tally::default()
    };
    for i in 0..events {
        let delivery = format!("nl-delivery-{i}");
        let event: ApiGatewayV2httpRequest = serde_json::from_value(github_webhook_event(
            "push",
            "github/push/with-new-branch.payload.json",
            &delivery,
            SECRET,
        ))
        .unwrap();
        let mark = emulator.mark();
        let response = handle(&deps, event).await;
        let faults = emulator.faults_since(mark);
        tally.faults += faults;
        let published = count_delivery(&queue, &delivery).await;
        let fate = match response.status_code {
            200 if published == 0 => Fate::Dropped,
            200 if faults == 0 => Fate::FirstTry,
            200 => Fate::RetriedInside,
            // GitHub shows the failed delivery; redelivering it is safe
            // (the FIFO topic drops a second message with the same id).
            502 | 503 => Fate::Surfaced,
            other => {
                tally
                    .notes
                    .push(format!("{delivery}: unexpected status {other}"));
                Fate::Dropped
            }
        };
        tally.repeats += published.saturating_sub(1);
        tally.count(fate);
    }
    tally
}

async fn count_delivery(queue: &SnsQueue, delivery: &str) -> usize {
    queue
        .drain()
        .await
        .iter()
        .filter(|e| e.json()["delivery_id"] == delivery)
        .count()
}

// --- deploy-exec ----------------------------------------------------------------

async fn deploy_exec_stream(rate: f64, events: usize, seed: u64) -> Tally {
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::runner::EcsTaskRunner;
    use deploy_exec::task_request::{client_token, started_by};
    use deploy_exec::{Deps, handle};

    let emulator = Emulator::start(rate, seed).await;
    emulator.moto.freeze_ecs_tasks().await;
    let aws = &emulator.aws;
    let stack = aws.create_ecs("kiln", "stack-updater").await;
    let token_arn = aws
        .create_secret("kiln/github-token", "ghp_nothingLostToken")
        .await;
    // GitHub: statuses are accepted (201) and listed back empty.
    let github = FlakyServer::start(
        rate,
        seed ^ 0x5eed,
        Reply::json(201, &json!({"id": 1})),
        |request| (request.method == "GET").then(|| Reply::json(200, &json!([]))),
    )
    .await;
    let sdk = emulator.proxy.sdk_config().await;
    let config = deploy_exec_config(&stack, &token_arn, &github.server.url(), &[]);
    let token = SecretCache::with_ttl(
        SecretsManagerFetcher::new(aws_sdk_secretsmanager::Client::new(&sdk)),
        Duration::from_millis(50),
    );
    let deps = Deps {
        reporter: GitHubReporter::new(
            &config.github_api_url,
            Some((token_arn.clone(), token)),
            RetryPolicy::immediate(3),
        ),
        runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(&sdk)),
        publisher: kiln::sns::fake::RecordingPublisher::new(),
        logs: deploy_exec::task_log::fake::FakeLogTail::new(),
        metrics: Metrics::in_memory("deploy-exec"),
        lanes: deploy_exec::lane_store::NO_LANES,
        config,
    };
    let mut tally = Tally {
        name: "deploy-exec",
        ..Tally::default()
    };
    for i in 0..events {
        let mark = emulator.mark();
        let github_failed_before = *github.failed.lock().unwrap();
        let github_accepted_before = github.accepted().len();
        let fate = if i % 2 == 0 {
            // A deploy request: one task under the delivery's token.
            let delivery = format!("nl-exec-{i}");
            let request = deploy_request(&delivery);
            let event = sns_event(&[SnsNotification::new(
                "arn:aws:sns:us-east-1:123456789012:kiln-deploy",
                request.to_json(),
            )]);
            let (succeeded, _) = lambda_attempts(|| {
                let event = event.clone();
                let deps = &deps;
                async move {
                    handle(deps, event)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            })
            .await;
            let tasks: Vec<_> = aws
                .describe_all_tasks(&stack.cluster_name)
                .await
                .into_iter()
                .filter(|t| t.started_by() == Some(started_by(&delivery).as_str()))
                .collect();
            let tokens_ok = emulator.proxy.calls()[mark..]
                .iter()
                .filter(|c| c.operation == "RunTask")
                .all(|c| {
                    String::from_utf8_lossy(&c.request_body).contains(&client_token(&delivery))
                });
            if !tokens_ok {
                tally.notes.push(format!(
                    "{delivery}: a RunTask without the delivery's token"
                ));
            }
            tally.repeats += tasks.len().saturating_sub(1);
            fate_of(
                succeeded,
                !tasks.is_empty() && tokens_ok,
                emulator.faults_since(mark)
                    + (*github.failed.lock().unwrap() - github_failed_before),
            )
        } else {
            // A deployment's end: the final status must reach GitHub.
            let event = fixture_json("synthetic/deploy-task-stopped-exit0.json");
            let (succeeded, _) = lambda_attempts(|| {
                let event = event.clone();
                let deps = &deps;
                async move {
                    handle(deps, event)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            })
            .await;
            let posted = github.accepted()[github_accepted_before..]
                .iter()
                .filter(|r| r.method == "POST")
                .count();
            tally.repeats += posted.saturating_sub(1);
            fate_of(
                succeeded,
                posted >= 1,
                emulator.faults_since(mark)
                    + (*github.failed.lock().unwrap() - github_failed_before),
            )
        };
        tally.count(fate);
    }
    tally.faults = emulator.faults_since(0) + *github.failed.lock().unwrap();
    tally
}

/// deploy-exec's configuration for `stack`, reporting to the GitHub at
/// `github_url` with the token at `token_arn`, and the `extra` variables.
fn deploy_exec_config(
    stack: &EcsStack,
    token_arn: &str,
    github_url: &str,
    extra: &[(&str, &str)],
) -> deploy_exec::Config {
    let subnets = stack.subnets_csv();
    let security_groups = stack.security_groups_csv();
    let mut env = vec![
        ("CLUSTER", stack.cluster_name.as_str()),
        ("TASK_DEFINITION", stack.family.as_str()),
        ("CONTAINER_NAME", "stack-updater"),
        ("SUBNETS", subnets.as_str()),
        ("SECURITY_GROUPS", security_groups.as_str()),
        ("GITHUB_TOKEN_SECRET_ARN", token_arn),
        ("GITHUB_API_URL", github_url),
    ];
    env.extend_from_slice(extra);
    deploy_exec::Config::from_env(&Env::from_pairs(env)).unwrap()
}

fn deploy_request(delivery: &str) -> kiln::DeployRequest {
    kiln::DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: delivery.into(),
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

/// An asynchronous event's fate from the attempt that succeeded (if any),
/// whether its effect is in place, and the faults met on its way.
fn fate_of(succeeded: Option<usize>, effect: bool, faults: usize) -> Fate {
    match succeeded {
        Some(_) if !effect => Fate::Dropped,
        Some(0) if faults == 0 => Fate::FirstTry,
        Some(0) => Fate::RetriedInside,
        Some(_) => Fate::LambdaRetry,
        None => Fate::Surfaced,
    }
}

// --- deploy-exec on deploy lanes -------------------------------------------------

/// Deploy lanes under faults: `requests` deploy requests over `lanes`
/// environments, in an order that differs from the order of their commits,
/// with stop events for the running tasks in between, in random order, and
/// a tenth of the DynamoDB and ECS calls failing. Every delivery must end
/// deployed (its task started, its pending status posted) or superseded
/// (its `error` status posted), or surfaced; no lane may run two
/// deployments at once, nor start an older request after a newer one.
async fn deploy_lanes_stream(rate: f64, requests: usize, lanes: usize, seed: u64) -> Tally {
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::lane_store::DynamoLaneStore;
    use deploy_exec::runner::EcsTaskRunner;
    use deploy_exec::{Deps, handle};
    use kiln_tests::fixtures::deploy_task_stopped_event;
    use std::collections::{BTreeMap, HashMap, HashSet};

    const TABLE: &str = "kiln-deploy-lanes";
    let emulator = Emulator::start(rate, seed).await;
    emulator.proxy.set_plan(FaultPlan::none());
    emulator.moto.freeze_ecs_tasks().await;
    let aws = &emulator.aws;
    let stack = aws.create_ecs("kiln", "stack-updater").await;
    aws.create_lanes_table(TABLE).await;
    let token_arn = aws
        .create_secret("kiln/github-token", "ghp_nothingLostLanes")
        .await;
    let github = RecordingServer::start_github().await;
    let sdk = emulator.proxy.sdk_config().await;
    let config = deploy_exec_config(&stack, &token_arn, &github.url(), &[("LANES_TABLE", TABLE)]);
    let deps = Deps {
        reporter: GitHubReporter::new(
            &config.github_api_url,
            Some((
                token_arn.clone(),
                SecretCache::new(SecretsManagerFetcher::new(
                    aws_sdk_secretsmanager::Client::new(&sdk),
                )),
            )),
            RetryPolicy::immediate(3),
        ),
        runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(&sdk)),
        publisher: kiln::sns::fake::RecordingPublisher::new(),
        logs: deploy_exec::task_log::fake::FakeLogTail::new(),
        lanes: Some(DynamoLaneStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            TABLE,
        )),
        metrics: Metrics::in_memory("deploy-exec"),
        config,
    };
    // Faults from here on, on DynamoDB's and ECS's calls only.
    emulator
        .proxy
        .set_plan(FaultPlan::fraction(rate, &faults(), seed).on(&[
            "GetItem",
            "PutItem",
            "RunTask",
            "DescribeTasks",
        ]));

    // The requests: lane i % lanes... in a seeded random mix, each commit
    // made up to 8 s later than its predecessor's, sent out of order.
    let mut rng = seed;
    let t0 = time::macros::datetime!(2026-11-22 10:00:00 UTC);
    let mut pending: Vec<kiln::DeployRequest> = (0..requests)
        .map(|i| {
            let mut request = deploy_request(&format!("lane-{i:03}"));
            request.environment = format!("env-{}", (next_unit(&mut rng) * lanes as f64) as usize);
            request.sha = format!("{:040x}", 0x1a2e_0000 + i);
            request.event_at = Some(t0 + time::Duration::seconds((i * 2) as i64));
            request
        })
        .collect();
    // A shuffle that keeps requests near their place: out of order locally.
    for i in 0..pending.len() {
        let j = (i + (next_unit(&mut rng) * 6.0) as usize).min(pending.len() - 1);
        pending.swap(i, j);
    }
    pending.reverse(); // pop() takes them in the shuffled order
    let order_of: HashMap<String, (time::OffsetDateTime, String)> = pending
        .iter()
        .map(|r| {
            (
                r.delivery_id.clone(),
                (r.ordered_at(), r.delivery_id.clone()),
            )
        })
        .collect();
    let lane_of: HashMap<String, String> = pending
        .iter()
        .map(|r| (r.delivery_id.clone(), r.environment.clone()))
        .collect();

    let mut tally = Tally {
        name: "deploy-exec lanes",
        ..Tally::default()
    };
    let mut succeeded: HashMap<String, Option<usize>> = HashMap::new();
    let mut faults_of: HashMap<String, usize> = HashMap::new();
    let mut seen_tasks: HashSet<String> = HashSet::new();
    // moto ignores RunTask's clientToken: a retried RunTask (its reply
    // lost) starts a second task where ECS would answer with the first.
    // Tasks of one delivery are one deployment, stopped together.
    let mut started_deliveries: HashSet<String> = HashSet::new();
    let mut newest_started: BTreeMap<String, (time::OffsetDateTime, String)> = BTreeMap::new();
    let mut stopped: HashSet<String> = HashSet::new();
    let invoke = |event: serde_json::Value| {
        let deps = &deps;
        async move {
            lambda_attempts(|| {
                let event = event.clone();
                async move {
                    handle(deps, event)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            })
            .await
        }
    };
    // Each step sends a request or stops a running task; bounded.
    for _step in 0..requests * 4 {
        let tasks = aws.describe_all_tasks(&stack.cluster_name).await;
        // Starts since the last step, oldest first: never older than what
        // the lane started before; never two deliveries at once.
        let mut fresh: Vec<_> = tasks
            .iter()
            .filter(|t| !seen_tasks.contains(t.task_arn().unwrap_or_default()))
            .collect();
        fresh.sort_by_key(|t| t.created_at().map(|d| d.as_nanos()));
        for task in fresh {
            seen_tasks.insert(task.task_arn().unwrap_or_default().to_string());
            let delivery = task
                .started_by()
                .unwrap_or_default()
                .trim_start_matches("kiln/");
            let (Some(lane), Some(order)) = (lane_of.get(delivery), order_of.get(delivery)) else {
                continue;
            };
            if !started_deliveries.insert(delivery.to_string()) {
                tally.repeats += 1;
                continue;
            }
            if let Some(newest) = newest_started.get(lane)
                && newest >= order
            {
                tally.notes.push(format!(
                    "{lane}: {delivery} started after newer {}",
                    newest.1
                ));
            }
            newest_started.insert(lane.clone(), order.clone());
        }
        let running: Vec<_> = tasks
            .iter()
            .filter(|t| !stopped.contains(t.task_arn().unwrap_or_default()))
            .collect();
        let mut per_lane: HashMap<&String, HashSet<&str>> = HashMap::new();
        for task in &running {
            let delivery = task
                .started_by()
                .unwrap_or_default()
                .trim_start_matches("kiln/");
            if let Some(lane) = lane_of.get(delivery) {
                per_lane.entry(lane).or_default().insert(delivery);
            }
        }
        for (lane, deliveries) in per_lane {
            if deliveries.len() > 1 {
                tally
                    .notes
                    .push(format!("{lane} runs {deliveries:?} at once"));
            }
        }
        if pending.is_empty() && running.is_empty() {
            break;
        }
        let send = !pending.is_empty() && (running.is_empty() || next_unit(&mut rng) < 0.6);
        if send {
            let Some(request) = pending.pop() else { break };
            let mark = emulator.mark();
            let event = sns_event(&[SnsNotification::new(
                "arn:aws:sns:us-east-1:123456789012:kiln-deploy",
                request.to_json(),
            )]);
            let (attempt, _) = invoke(event).await;
            succeeded.insert(request.delivery_id.clone(), attempt);
            faults_of.insert(request.delivery_id.clone(), emulator.faults_since(mark));
        } else {
            let task = running[(next_unit(&mut rng) * running.len() as f64) as usize];
            let arn = task.task_arn().unwrap_or_default().to_string();
            let started_by = task.started_by().unwrap_or_default().to_string();
            let delivery = started_by.trim_start_matches("kiln/").to_string();
            for same in running
                .iter()
                .filter(|t| t.started_by() == Some(started_by.as_str()))
            {
                let same_arn = same.task_arn().unwrap_or_default().to_string();
                aws.ecs
                    .stop_task()
                    .cluster(&stack.cluster_name)
                    .task(&same_arn)
                    .send()
                    .await
                    .unwrap();
                stopped.insert(same_arn);
            }
            let event = deploy_task_stopped_event(&stack, &arn, &delivery, "stack-updater", 0);
            // EventBridge retries a failed target, then Lambda retries:
            // modelled as up to three rounds of Lambda's attempts.
            for _ in 0..3 {
                if invoke(event.clone()).await.0.is_some() {
                    break;
                }
            }
        }
    }

    // What became of each delivery.
    let posts: Vec<RecordedRequest> = github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    let states_of = |sha: &str| -> Vec<String> {
        posts
            .iter()
            .filter(|r| r.path.ends_with(sha))
            .map(|r| r.json()["state"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let started: HashSet<String> = aws
        .describe_all_tasks(&stack.cluster_name)
        .await
        .iter()
        .map(|t| {
            t.started_by()
                .unwrap_or_default()
                .trim_start_matches("kiln/")
                .to_string()
        })
        .collect();
    tally.faults = emulator.faults_since(0);
    for (delivery, attempt) in &succeeded {
        let index: usize = delivery.trim_start_matches("lane-").parse().unwrap();
        let states = states_of(&format!("{:040x}", 0x1a2e_0000 + index));
        let deployed = started.contains(delivery) && states.iter().any(|s| s == "pending");
        let superseded = states.iter().any(|s| s == "error");
        if started.contains(delivery) && superseded {
            tally
                .notes
                .push(format!("{delivery}: started and superseded"));
        }
        if attempt.is_some() && !deployed && !superseded {
            let lane = deploy_exec::lanes::lane_key("Codertocat/Hello-World", &lane_of[delivery]);
            let state = aws
                .lane_item(TABLE, &lane)
                .await
                .map(|item| deploy_exec::lane_store::from_item(&item));
            tally.notes.push(format!(
                "{delivery}: neither deployed nor superseded ({states:?}); lane: {state:?}"
            ));
        }
        tally.count(fate_of(
            *attempt,
            deployed || superseded,
            faults_of[delivery],
        ));
    }
    assert_eq!(tally.sent, requests);
    tally
}

/// Deploy lanes: 200 requests over 5 lanes, stop events in random order,
/// 10% of DynamoDB and ECS calls failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_lanes_lose_nothing_under_ten_percent_faults() {
    let tally = deploy_lanes_stream(FAULT_RATE, 200, 5, 23).await;
    let table = format!(
        "function         sent  first try  retried inside  Lambda retry  surfaced  dropped  faults  repeats\n{}",
        row(&tally)
    );
    println!(
        "Nothing lost on deploy lanes, {:.0}% faults:\n{table}",
        FAULT_RATE * 100.0
    );
    assert!(tally.notes.is_empty(), "{:#?}\n{table}", tally.notes);
    assert_eq!(tally.handled() + tally.surfaced, tally.sent, "{table}");
    assert_eq!(tally.dropped, 0, "{table}");
    assert!(tally.faults > 20, "few faults were injected: {table}");
}

// --- watchdog -------------------------------------------------------------------

async fn watchdog_stream(rate: f64, events: usize, seed: u64) -> Tally {
    use kiln::Alert;
    use watchdog::crash_history::EcsTaskHistory;
    use watchdog::retry::{Backoff, Deadline};
    use watchdog::scaling::AsgClient;
    use watchdog::{Config, Outcome, Watchdog};

    const ASG: &str = "kiln-app";
    let emulator = Emulator::start(rate, seed).await;
    let aws = &emulator.aws;
    aws.create_asg(ASG, 0, 2, 2).await;
    let topic = aws.create_topic("kiln-alerts").await;
    let alerts = aws.subscribe_queue(&topic).await;
    let sdk = emulator.proxy.sdk_config().await;
    let function = Watchdog {
        config: Config::from_env(&Env::from_pairs([
            ("ASG_NAME", ASG),
            ("ALERT_TOPIC_ARN", topic.as_str()),
            ("SCALE_DOWN_ALARMS", "app-down"),
        ]))
        .unwrap(),
        autoscaling: AsgClient::new(aws_sdk_autoscaling::Client::new(&sdk)),
        history: EcsTaskHistory::new(aws_sdk_ecs::Client::new(&sdk)),
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
        metrics: Metrics::in_memory("watchdog"),
        backoff: Backoff::immediate(8),
        region: Some("us-east-1".into()),
    };
    let alarm = json!({
        "AlarmName": "app-down", "NewStateValue": "ALARM", "OldStateValue": "OK",
        "NewStateReason": "Threshold Crossed", "StateChangeTime": "2026-11-22T10:00:00.000+0000",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:app-down"
    })
    .to_string();
    let mut tally = Tally {
        name: "watchdog",
        ..Tally::default()
    };
    for i in 0..events {
        // The stack is back up (directly, not through the faults).
        aws.autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(ASG)
            .desired_capacity(2)
            .send()
            .await
            .unwrap();
        let event = if i % 2 == 0 {
            fixture_json("synthetic/ecs-task-stopped-essential-exit1.json")
        } else {
            sns_event(&[SnsNotification::new(
                "arn:aws:sns:us-east-1:123456789012:alarms",
                alarm.clone(),
            )])
        };
        let mark = emulator.mark();
        let now = time::OffsetDateTime::now_utc();
        let (succeeded, _) = lambda_attempts(|| {
            let event = event.clone();
            let function = &function;
            async move {
                match function.handle(event, Deadline::NONE, now).await {
                    Ok(Outcome::ScaledDown { .. } | Outcome::AlreadyZero { .. }) => Ok(()),
                    Ok(other) => Err(format!("unexpected outcome {other:?}")),
                    Err(err) => Err(err.to_string()),
                }
            }
        })
        .await;
        let at_zero = aws.asg_capacity(ASG).await.desired == 0;
        let sent = alerts
            .drain()
            .await
            .iter()
            .filter(|e| Alert::from_json(&e.message).is_ok())
            .count();
        tally.repeats += sent.saturating_sub(1);
        if succeeded.is_some() && at_zero && sent == 0 {
            tally
                .notes
                .push(format!("event {i}: scaled to zero, no alert"));
        }
        tally.count(fate_of(
            succeeded,
            at_zero && sent >= 1,
            emulator.faults_since(mark),
        ));
    }
    tally.faults = emulator.faults_since(0);
    tally
}

// --- alert-forwarder --------------------------------------------------------------

async fn alert_forwarder_stream(rate: f64, events: usize, seed: u64) -> Tally {
    use alert_forwarder::clock::SystemClock;
    use alert_forwarder::refire::CloudWatchAlarms;
    use alert_forwarder::slack::{ReqwestWebhook, RetryPolicy};
    use alert_forwarder::{Config, Forwarder};
    use lambda_runtime::{Context, LambdaEvent};

    let emulator = Emulator::start(rate, seed).await;
    let aws = &emulator.aws;
    let slack = FlakyServer::start(rate, seed ^ 0xa1e7, Reply::text(200, "ok"), |_| None).await;
    let secret_arn = aws
        .create_secret(
            "kiln/slack",
            &slack.server.url_for("/services/T0/B0/nothinglost"),
        )
        .await;
    let sdk = emulator.proxy.sdk_config().await;
    let mut forwarder = Forwarder::new(
        Config::from_env(&Env::from_pairs([(
            "SLACK_WEBHOOK_SECRET_ARN",
            secret_arn.as_str(),
        )]))
        .unwrap(),
        SecretCache::with_ttl(
            SecretsManagerFetcher::new(aws_sdk_secretsmanager::Client::new(&sdk)),
            Duration::from_millis(50),
        ),
        ReqwestWebhook::new(),
        CloudWatchAlarms::new(aws_sdk_cloudwatch::Client::new(&sdk)),
        SystemClock,
        Metrics::in_memory("alert-forwarder"),
    );
    forwarder.policy = RetryPolicy {
        attempts: 4,
        backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
        default_retry_after: Duration::from_millis(2),
        request_timeout: Duration::from_secs(5),
        reserve: Duration::ZERO,
    };
    let mut tally = Tally {
        name: "alert-forwarder",
        ..Tally::default()
    };
    for i in 0..events {
        let name = format!("nothing-lost-alarm-{i}");
        let alarm = json!({
            "AlarmName": name, "NewStateValue": "ALARM", "OldStateValue": "OK",
            "NewStateReason": "Threshold Crossed", "StateChangeTime": "2026-11-22T10:00:00.000+0000",
            "Region": "US East (N. Virginia)",
            "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")
        })
        .to_string();
        let event = sns_event(&[SnsNotification::new(
            "arn:aws:sns:us-east-1:123456789012:kiln-alerts",
            alarm,
        )]);
        let mark = emulator.mark();
        let slack_failed_before = *slack.failed.lock().unwrap();
        let slack_accepted_before = slack.accepted().len();
        let (succeeded, _) = lambda_attempts(|| {
            let event = event.clone();
            let forwarder = &forwarder;
            async move {
                forwarder
                    .handle(LambdaEvent::new(event, Context::default()))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        let posts = slack.accepted()[slack_accepted_before..]
            .iter()
            .filter(|r| r.body_text().contains(&name))
            .count();
        tally.repeats += posts.saturating_sub(1);
        let faults =
            emulator.faults_since(mark) + (*slack.failed.lock().unwrap() - slack_failed_before);
        tally.count(fate_of(succeeded, posts >= 1, faults));
    }
    tally.faults = emulator.faults_since(0) + *slack.failed.lock().unwrap();
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_is_handled_or_surfaced_under_ten_percent_faults() {
    let total = run_all(FAULT_RATE, event_count(), 11).await;
    assert!(total.faults > total.sent / 20, "few faults were injected");
}

/// The same accounting when a retry inside the invocation is often not
/// enough: failures must reach Lambda's retries and the dead-letter queue,
/// still with nothing dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_heavy_faults_failures_surface_and_nothing_is_dropped() {
    let total = run_all(HEAVY_FAULT_RATE, 100, 71).await;
    assert!(total.lambda_retry > 0, "no event needed Lambda's retry");
    assert!(total.surfaced > 0, "no event reached the dead-letter queue");
}

/// Runs the four streams in parallel, prints the table, checks the
/// accounting, and returns the totals.
async fn run_all(rate: f64, events: usize, seed: u64) -> Tally {
    let per_function = events.div_ceil(4);
    let (trigger, exec, dog, forwarder) = tokio::join!(
        deploy_trigger_stream(rate, per_function, seed),
        deploy_exec_stream(rate, per_function, seed + 1),
        watchdog_stream(rate, per_function, seed + 2),
        alert_forwarder_stream(rate, per_function, seed + 3),
    );
    let tallies = [trigger, exec, dog, forwarder];

    let mut table = String::from(
        "function         sent  first try  retried inside  Lambda retry  surfaced  dropped  faults  repeats\n",
    );
    let mut total = Tally {
        name: "total",
        ..Tally::default()
    };
    for t in &tallies {
        table.push_str(&row(t));
        total.sent += t.sent;
        total.first_try += t.first_try;
        total.retried_inside += t.retried_inside;
        total.lambda_retry += t.lambda_retry;
        total.surfaced += t.surfaced;
        total.dropped += t.dropped;
        total.faults += t.faults;
        total.repeats += t.repeats;
    }
    table.push_str(&row(&total));
    println!("Nothing lost, {:.0}% faults:\n{table}", rate * 100.0);
    let notes: Vec<String> = tallies
        .iter()
        .flat_map(|t| t.notes.iter().map(move |n| format!("{}: {n}", t.name)))
        .collect();
    for note in &notes {
        println!("{note}");
    }

    assert_eq!(total.sent, per_function * 4);
    assert_eq!(total.handled() + total.surfaced, total.sent, "{table}");
    assert_eq!(
        total.dropped, 0,
        "events reported handled whose effect is missing:\n{table}"
    );
    assert!(notes.is_empty(), "{notes:#?}");
    total
}

fn row(t: &Tally) -> String {
    format!(
        "{:<15} {:>5}  {:>9}  {:>14}  {:>12}  {:>8}  {:>7}  {:>6}  {:>7}\n",
        t.name,
        t.sent,
        t.first_try,
        t.retried_inside,
        t.lambda_retry,
        t.surfaced,
        t.dropped,
        t.faults,
        t.repeats
    )
}
