//! What each function is benchmarked doing: the environment it starts
//! with, the event every invocation gets, and how to tell its answer is the
//! successful one (a benchmark of an error path would measure nothing
//! useful). AWS is moto and the HTTP sinks are recording servers, all
//! behind timing proxies.

use std::sync::Arc;

use kiln::{DeployEvent, DeployRequest};
use kiln_tests::aws::Aws;
use kiln_tests::fixtures::{self, SnsNotification};
use kiln_tests::http::{RecordedRequest, RecordingServer, Reply};
use kiln_tests::moto::Moto;
use serde_json::{Value, json};

use crate::proxy::{Recorder, TimedProxy};

/// The empty function every other one is compared with.
pub const BASELINE: &str = "bench-baseline";

/// Functions in the order they are reported.
pub const FUNCTIONS: &[&str] = &[
    BASELINE,
    "deploy-trigger",
    "deploy-exec",
    "watchdog",
    "alert-forwarder",
];

/// One function's benchmark set-up.
pub struct Scenario {
    pub function: &'static str,
    pub env: Vec<(String, String)>,
    pub event: Value,
    /// What one invocation does, for the report.
    pub work: &'static str,
    pub check: fn(&Value) -> Result<(), String>,
    /// Restores the state the invocation changes, before each one (not
    /// timed), so every invocation does the same work.
    pub before: Option<Before>,
}

/// State to restore before an invocation.
#[derive(Debug, Clone)]
pub enum Before {
    /// Sets an Auto Scaling group's desired capacity.
    DesiredCapacity { asg: String, desired: i32 },
}

/// The local services the functions talk to, each behind a timing proxy
/// that reports to one [`Recorder`].
pub struct Downstream {
    pub moto: Moto,
    pub aws: Aws,
    pub recorder: Arc<Recorder>,
    pub aws_proxy: TimedProxy,
    pub slack: RecordingServer,
    pub slack_proxy: TimedProxy,
    pub github: RecordingServer,
    pub github_proxy: TimedProxy,
}

impl Downstream {
    pub async fn start() -> Result<Downstream, String> {
        let moto = Moto::try_start().await.map_err(|e| e.to_string())?;
        let aws = moto.aws().await;
        let recorder = Arc::new(Recorder::default());
        let aws_proxy = TimedProxy::start(moto.endpoint(), Arc::clone(&recorder)).await?;
        let slack = RecordingServer::start().await;
        let slack_proxy = TimedProxy::start(&slack.url(), Arc::clone(&recorder)).await?;
        let github = RecordingServer::start().await;
        let github_proxy = TimedProxy::start(&github.url(), Arc::clone(&recorder)).await?;
        Ok(Downstream {
            moto,
            aws,
            recorder,
            aws_proxy,
            slack,
            slack_proxy,
            github,
            github_proxy,
        })
    }

    /// The AWS variables of a function process, with every service reached
    /// through the timing proxy.
    fn aws_env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.child_env();
        env.push(("AWS_ENDPOINT_URL".into(), self.aws_proxy.url().to_string()));
        env
    }

    /// Restores what `before` names.
    pub async fn restore(&self, before: &Before) -> Result<(), String> {
        match before {
            Before::DesiredCapacity { asg, desired } => self
                .aws
                .autoscaling
                .set_desired_capacity()
                .auto_scaling_group_name(asg)
                .desired_capacity(*desired)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("SetDesiredCapacity {asg}: {}", kiln::aws::error_chain(&e))),
        }
    }

    /// Forgets what the sinks recorded (they keep every request).
    pub fn clear_sinks(&self) {
        self.slack.clear();
        self.github.clear();
    }
}

/// Sets up `function`'s scenario; `Err` if kiln-bench does not know it.
pub async fn prepare(function: &str, down: &Downstream) -> Result<Scenario, String> {
    match function {
        BASELINE => Ok(baseline()),
        "deploy-trigger" => Ok(deploy_trigger(down).await),
        "deploy-exec" => Ok(deploy_exec(down).await),
        "watchdog" => Ok(watchdog(down).await),
        "alert-forwarder" => Ok(alert_forwarder(down).await),
        other => Err(format!("no benchmark scenario for {other}")),
    }
}

fn baseline() -> Scenario {
    Scenario {
        function: BASELINE,
        env: Vec::new(),
        event: json!({}),
        work: "returns `{}`",
        check: |response| match response {
            Value::Object(map) if map.is_empty() => Ok(()),
            other => Err(format!("expected {{}}, got {other}")),
        },
        before: None,
    }
}

const WEBHOOK_SECRET: &str = "kiln-bench-webhook-secret";

async fn deploy_trigger(down: &Downstream) -> Scenario {
    let secret_arn = down
        .aws
        .create_secret("kiln-bench/webhook", WEBHOOK_SECRET)
        .await;
    let topic_arn = down.aws.create_topic("kiln-bench-deploy").await;
    let event = fixtures::github_webhook_event(
        "push",
        "github/push/with-new-branch.payload.json",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        WEBHOOK_SECRET,
    );
    let mut env = down.aws_env();
    env.extend(
        [
            ("WEBHOOK_SECRET_ARN", secret_arn),
            ("DEPLOY_TOPIC_ARN", topic_arn),
            ("DEPLOY_BRANCHES", "master=production".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    Scenario {
        function: "deploy-trigger",
        env,
        event,
        work: "verifies a signed 8.8 KB push (API Gateway v2 event), fetches the webhook secret once (then cached), publishes one deploy request to SNS",
        check: |response| {
            let status = response.get("statusCode").and_then(Value::as_i64);
            let body = response
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match status {
                Some(200) if body.contains(r#""status":"queued""#) => Ok(()),
                _ => Err(format!("expected 200 and a queued deploy, got {response}")),
            }
        },
        before: None,
    }
}

/// The deploy request deploy-trigger publishes for the push above.
fn deploy_request() -> DeployRequest {
    DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        event: DeployEvent::Push,
        repository: "Codertocat/Hello-World".into(),
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        git_ref: "refs/heads/master".into(),
        sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".into(),
        environment: "production".into(),
        sender: "Codertocat".into(),
        deployment_id: None,
        requested_at: time::OffsetDateTime::now_utc(),
        event_at: None,
        before: None,
    }
}

/// GitHub's commit status API, as far as deploy-exec uses it: no status
/// yet on any commit, and every status posted is created.
fn fake_github(server: &RecordingServer) {
    server.respond_with(|request: &RecordedRequest| match request.method.as_str() {
        "GET" => Some(Reply::json(200, &json!([]))),
        "POST" => Some(Reply::json(201, &json!({"id": 1, "state": "pending"}))),
        _ => None,
    });
}

async fn deploy_exec(down: &Downstream) -> Scenario {
    let ecs = down
        .aws
        .create_ecs("kiln-bench", "kiln-bench-stack-updater")
        .await;
    let token_arn = down
        .aws
        .create_secret("kiln-bench/github-token", "ghp_kilnBenchToken0123456789")
        .await;
    fake_github(&down.github);
    let topic_arn = format!(
        "arn:aws:sns:{}:{}:kiln-bench-deploy",
        kiln_tests::moto::REGION,
        kiln_tests::moto::ACCOUNT_ID
    );
    let event = fixtures::sns_event(&[SnsNotification::new(topic_arn, deploy_request().to_json())]);
    let mut env = down.aws_env();
    env.extend(
        [
            ("CLUSTER", ecs.cluster_name.clone()),
            ("TASK_DEFINITION", format!("{}:1", ecs.family)),
            ("CONTAINER_NAME", ecs.container_name.clone()),
            ("SUBNETS", ecs.subnets_csv()),
            ("SECURITY_GROUPS", ecs.security_groups_csv()),
            ("GITHUB_TOKEN_SECRET_ARN", token_arn),
            ("GITHUB_API_URL", down.github_proxy.url().to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    Scenario {
        function: "deploy-exec",
        env,
        event,
        work: "takes one deploy request (SNS event), starts the ECS task (RunTask), fetches the GitHub token once (then cached), reads the commit's statuses and posts a pending one",
        check: |response| match response.pointer("/started/0/task_arn") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(format!("expected a started task, got {response}")),
        },
        before: None,
    }
}

const WATCHED_ASG: &str = "kiln-bench-app";

async fn watchdog(down: &Downstream) -> Scenario {
    down.aws.create_asg(WATCHED_ASG, 0, 1, 2).await;
    let topic_arn = down.aws.create_topic("kiln-bench-alerts").await;
    let event = fixtures::fixture_json("synthetic/ecs-task-stopped-essential-exit1.json");
    let cluster = event
        .pointer("/detail/clusterArn")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut env = down.aws_env();
    env.extend(
        [
            ("ASG_NAME", WATCHED_ASG.to_string()),
            ("ALERT_TOPIC_ARN", topic_arn),
            ("CLUSTER_ARN", cluster),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    Scenario {
        function: "watchdog",
        env,
        event,
        work: "takes a crashed task (ECS Task State Change, exit 1), scales the Auto Scaling group from 1 to 0, publishes one alert to SNS (the group is set back to 1 before each invocation, untimed)",
        check: |response| match response.get("action").and_then(Value::as_str) {
            Some("scaled_down") => Ok(()),
            _ => Err(format!("expected action scaled_down, got {response}")),
        },
        before: Some(Before::DesiredCapacity {
            asg: WATCHED_ASG.to_string(),
            desired: 1,
        }),
    }
}

async fn alert_forwarder(down: &Downstream) -> Scenario {
    let webhook = format!("{}/services/T000/B000/kilnbench", down.slack_proxy.url());
    let secret_arn = down
        .aws
        .create_secret("kiln-bench/slack-webhook", &webhook)
        .await;
    let event = fixtures::fixture_json(
        "aws/rust-runtime/example-cloudwatch-alarm-sns-payload-single-metric.json",
    );
    let mut env = down.aws_env();
    env.push(("SLACK_WEBHOOK_SECRET_ARN".into(), secret_arn));
    Scenario {
        function: "alert-forwarder",
        env,
        event,
        work: "takes a CloudWatch alarm notification (SNS event), fetches the Slack webhook URL once (then cached), renders Block Kit and posts it",
        check: |response| match response {
            Value::Null => Err("no response".into()),
            _ => Ok(()),
        },
        before: None,
    }
}
