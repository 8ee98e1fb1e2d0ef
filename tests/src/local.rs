//! kiln on this machine: the emulated AWS, the resources, the four
//! functions behind their local front doors, the scripted demo, and the
//! story printed while it runs.
//!
//! `kiln-local run` and `kiln-local dev` (what `make run` and `make dev`
//! call) drive it, and the end-to-end tests use the same wiring.
//! [`LocalKiln`] owns everything it starts and stops it all when dropped:
//! - moto, with the resources the SAM template declares, under its names;
//! - deploy-trigger behind a local API Gateway HTTP API endpoint;
//! - deploy-exec and alert-forwarder subscribed to their topics through
//!   moto's SNS-to-HTTP subscriptions ([`sns_bridge`]);
//! - deploy-exec's ECS calls through [`ecs_tokens`], which keeps the
//!   `clientToken` moto ignores;
//! - a GitHub status API fake and a Slack webhook sink.
//!
//! watchdog and deploy-exec's task-stopped path are EventBridge targets in
//! AWS: here they are invoked with the event EventBridge would deliver.

pub mod demo;
pub mod ecs_tokens;
pub mod sns_bridge;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{Task, TaskField};
use serde_json::{Value, json};

use crate::HarnessError;
use crate::apigw::ApiGateway;
use crate::aws::{AsgCapacity, Aws, EcsStack, SnsEnvelope, SnsQueue};
use crate::fixtures::{fixture_bytes, fixture_json, github_headers, github_signature};
use crate::http::{RecordedRequest, RecordingServer, Reply};
use crate::lambda::{LambdaFunction, OutputLine, Stream, bin_dir_override, try_binary_path};
use crate::moto::{ACCOUNT_ID, Moto, REGION};
use ecs_tokens::EcsTokens;
use sns_bridge::SnsBridge;

/// Names of the local resources: the names the SAM template gives them for
/// a stack called `kiln`, as far as they apply (secrets get names here;
/// CloudFormation generates theirs).
pub mod names {
    pub const DEPLOY_TOPIC: &str = "kiln-deploy";
    pub const ALERT_TOPIC: &str = "kiln-alerts";
    pub const WEBHOOK_SECRET: &str = "kiln/webhook-secret";
    pub const SLACK_SECRET: &str = "kiln/slack-webhook";
    pub const GITHUB_TOKEN_SECRET: &str = "kiln/github-token";
    pub const DEPLOY_CLUSTER: &str = "kiln-deploy";
    pub const STACK_UPDATER_FAMILY: &str = "kiln-stack-updater";
    pub const CONTAINER_NAME: &str = "stack-updater";
    /// The application the watchdog guards: an ECS-on-EC2 cluster and its
    /// Auto Scaling group.
    pub const APP_CLUSTER: &str = "kiln-app";
    pub const APP_ASG: &str = "kiln-app";
    pub const WEBHOOK_ROUTE: &str = "/webhook";
    /// One of the template's alarms, notifying the alert topic.
    pub const DEAD_LETTERS_ALARM: &str = "kiln-deploy-exec-dead-letters";
    pub const DEAD_LETTER_QUEUE: &str = "kiln-deploy-exec-dlq";
    /// The deploy lanes table (`LANES_TABLE`).
    pub const LANES_TABLE: &str = "kiln-deploy-lanes";
}

/// The four functions, in the order they are started.
pub const FUNCTIONS: [&str; 4] = [
    "deploy-trigger",
    "deploy-exec",
    "watchdog",
    "alert-forwarder",
];

/// With [`Options::deploy_trigger_only`], the SNS bridge's name for what
/// the deploy topic delivered.
pub const DEPLOY_TOPIC_RECORDER: &str = "deploy-topic";

/// The push `kiln-local` delivers: Codertocat/Hello-World's `master`.
pub const PUSH_FIXTURE: &str = "github/push/with-new-branch.payload.json";

/// Where the function binaries come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binaries {
    /// Prebuilt binaries in this directory, used as they are.
    Dir(PathBuf),
    /// The harness's debug builds ([`crate::lambda::binary_path`]), as every
    /// other test uses them.
    Debug,
}

impl Binaries {
    /// `$KILN_BIN_DIR`, else the directory of the running program:
    /// `kiln-local` is built into the same directory as the functions.
    pub fn beside_this_program() -> Binaries {
        if let Some(dir) = bin_dir_override() {
            return Binaries::Dir(dir);
        }
        match std::env::current_exe() {
            Ok(exe) => Binaries::Dir(
                exe.parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| crate::target_dir().join("release")),
            ),
            Err(_) => Binaries::Dir(crate::target_dir().join("release")),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Binaries::Dir(dir) => dir.display().to_string(),
            Binaries::Debug => crate::target_dir().join("debug").display().to_string(),
        }
    }

    async fn path(&self, name: &str) -> Result<PathBuf, HarnessError> {
        match self {
            Binaries::Dir(dir) => {
                let path = dir.join(name);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(HarnessError(format!(
                        "{} is missing: build it with `cargo build --release -p {name}` (make run does)",
                        path.display()
                    )))
                }
            }
            Binaries::Debug => {
                let name = name.to_string();
                tokio::task::spawn_blocking(move || try_binary_path(&name))
                    .await
                    .map_err(|e| HarnessError(format!("building a function binary: {e}")))?
            }
        }
    }
}

type LineSink = Arc<dyn Fn(&str, &OutputLine) + Send + Sync>;
type SlackSink = Arc<dyn Fn(&Value) + Send + Sync>;

/// How to start the local kiln.
#[derive(Clone)]
pub struct Options {
    pub binaries: Binaries,
    /// Every line a function writes.
    pub on_function_line: Option<LineSink>,
    /// Every message posted to the Slack sink (its JSON body).
    pub on_slack_message: Option<SlackSink>,
    /// Start deploy-trigger alone: nothing consumes the deploy topic but the
    /// SNS bridge's record (for tests of the webhook side only).
    pub deploy_trigger_only: bool,
    /// Extra variables for every function (the last word over the defaults).
    pub extra_env: Vec<(String, String)>,
}

impl Options {
    /// Quiet, with the harness's debug binaries: what tests use.
    pub fn for_tests() -> Options {
        Options {
            binaries: Binaries::Debug,
            on_function_line: None,
            on_slack_message: None,
            deploy_trigger_only: false,
            extra_env: Vec::new(),
        }
    }
}

/// The resources provisioned on the emulator.
#[derive(Debug, Clone)]
pub struct Resources {
    pub deploy_topic_arn: String,
    pub alert_topic_arn: String,
    pub webhook_secret_arn: String,
    /// The webhook secret's value, for signing local deliveries.
    pub webhook_secret: String,
    pub slack_secret_arn: String,
    pub github_token_secret_arn: String,
    /// The deploy cluster and the stack-updater task definition.
    pub ecs: EcsStack,
    pub app_cluster_arn: String,
}

/// A webhook delivery's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 0 when the request got no HTTP answer at all.
    pub status: u16,
    pub body: String,
}

/// The running local kiln.
pub struct LocalKiln {
    pub resources: Resources,
    /// Every message published to the deploy topic, read back through SQS.
    pub deploy_requests: SnsQueue,
    /// Every message published to the alert topic, read back through SQS.
    pub alerts: SnsQueue,
    /// SNS deliveries to the functions.
    pub sns: SnsBridge,
    /// deploy-exec's RunTask calls.
    pub ecs_tokens: EcsTokens,
    /// GitHub's status APIs, as deploy-exec sees them.
    pub github: RecordingServer,
    /// The Slack incoming webhook, as alert-forwarder sees it.
    pub slack: RecordingServer,
    pub webhook_url: String,
    /// Each started function and its init time.
    pub functions: Vec<(Arc<LambdaFunction>, Duration)>,
    gateway: ApiGateway,
    http: reqwest::Client,
    pub aws: Aws,
    pub moto: Moto,
}

impl std::fmt::Debug for LocalKiln {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKiln")
            .field("moto", &self.moto)
            .field("webhook_url", &self.webhook_url)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl LocalKiln {
    /// Starts moto, provisions kiln's resources, starts the functions and
    /// wires them up.
    pub async fn start(options: Options) -> Result<LocalKiln, HarnessError> {
        let moto = Moto::try_start().await?;
        // Tasks stay as RunTask left them: moto would otherwise move them
        // on at every DescribeTasks.
        moto.freeze_ecs_tasks().await;
        let aws = moto.aws().await;
        let resources = provision(&aws).await?;
        let deploy_requests = aws.subscribe_queue(&resources.deploy_topic_arn).await;
        let alerts = aws.subscribe_queue(&resources.alert_topic_arn).await;

        let github = github_fake().await;
        let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
        if let Some(print) = options.on_slack_message.clone() {
            slack.respond_with(move |request: &RecordedRequest| {
                if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
                    print(&body);
                }
                None
            });
        }
        aws.secrets
            .put_secret_value()
            .secret_id(&resources.slack_secret_arn)
            .secret_string(
                json!({"url": slack.url_for("/services/T0LOCAL/B0LOCAL/local")}).to_string(),
            )
            .send()
            .await
            .map_err(|e| {
                HarnessError(format!(
                    "setting the Slack secret: {}",
                    kiln::aws::error_chain(&e)
                ))
            })?;
        let ecs_tokens = EcsTokens::start(moto.endpoint()).await?;
        let sns = SnsBridge::start().await?;

        let starter = Starter {
            options: &options,
            moto_env: moto.child_env(),
        };
        let mut functions = Vec::new();
        let deploy_trigger = starter
            .start("deploy-trigger", deploy_trigger_env(&resources))
            .await?;
        functions.push(deploy_trigger.clone());
        let gateway =
            ApiGateway::start(names::WEBHOOK_ROUTE, Arc::clone(&deploy_trigger.0)).await?;
        let webhook_url = gateway.url();
        if !options.deploy_trigger_only {
            let mut env = deploy_exec_env(&resources, &github);
            env.push(("AWS_ENDPOINT_URL_ECS".into(), ecs_tokens.endpoint()));
            let deploy_exec = starter.start("deploy-exec", env).await?;
            let watchdog = starter.start("watchdog", watchdog_env(&resources)).await?;
            let forwarder = starter
                .start("alert-forwarder", forwarder_env(&resources))
                .await?;
            sns.subscribe(
                &aws,
                &resources.deploy_topic_arn,
                Arc::clone(&deploy_exec.0),
            )
            .await?;
            sns.subscribe(&aws, &resources.alert_topic_arn, Arc::clone(&forwarder.0))
                .await?;
            functions.extend([deploy_exec, watchdog, forwarder]);
        } else {
            sns.subscribe_recorder(&aws, &resources.deploy_topic_arn, DEPLOY_TOPIC_RECORDER)
                .await?;
        }
        Ok(LocalKiln {
            resources,
            deploy_requests,
            alerts,
            sns,
            ecs_tokens,
            github,
            slack,
            webhook_url,
            functions,
            gateway,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| HarnessError(format!("HTTP client: {e}")))?,
            aws,
            moto,
        })
    }

    /// The running function `name`.
    pub fn function(&self, name: &str) -> Option<&Arc<LambdaFunction>> {
        self.functions
            .iter()
            .map(|(function, _)| function)
            .find(|f| f.name() == name)
    }

    /// Posts a GitHub delivery of `body` to the webhook URL, signed with
    /// `secret`.
    pub async fn deliver(
        &self,
        event: &str,
        delivery_id: &str,
        body: &[u8],
        secret: &str,
    ) -> Answer {
        let mut request = self
            .http
            .post(&self.webhook_url)
            .timeout(Duration::from_secs(60))
            .body(body.to_vec());
        for (name, value) in github_headers(event, delivery_id, secret, body) {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                Answer {
                    status,
                    body: response.text().await.unwrap_or_default(),
                }
            }
            Err(err) => Answer {
                status: 0,
                body: kiln::aws::error_chain(&err),
            },
        }
    }

    /// [`LocalKiln::deliver`], signed with the webhook secret.
    pub async fn deliver_signed(&self, event: &str, delivery_id: &str, body: &[u8]) -> Answer {
        let secret = self.resources.webhook_secret.clone();
        self.deliver(event, delivery_id, body, &secret).await
    }

    /// The deploy cluster's tasks started for a delivery, with their tags.
    pub async fn tasks_of_delivery(&self, delivery_id: &str) -> Result<Vec<Task>, HarnessError> {
        let cluster = &self.resources.ecs.cluster_name;
        let listed = self
            .aws
            .ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(format!("kiln/{delivery_id}"))
            .send()
            .await
            .map_err(|e| HarnessError(format!("ListTasks: {}", kiln::aws::error_chain(&e))))?;
        let arns = listed.task_arns.unwrap_or_default();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let described = self
            .aws
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| HarnessError(format!("DescribeTasks: {}", kiln::aws::error_chain(&e))))?;
        Ok(described.tasks.unwrap_or_default())
    }

    /// Every task on the deploy cluster.
    pub async fn deploy_tasks(&self) -> Vec<Task> {
        self.aws
            .describe_all_tasks(&self.resources.ecs.cluster_name)
            .await
    }

    /// The application's Auto Scaling group sizes.
    pub async fn asg_capacity(&self) -> AsgCapacity {
        self.aws.asg_capacity(names::APP_ASG).await
    }

    /// Invokes a function directly, as an EventBridge rule does.
    pub async fn invoke(&self, function: &str, event: Value) -> Result<Value, String> {
        match self.function(function) {
            Some(f) => f.invoke(event).await.map_err(|e| e.to_string()),
            None => Err(format!("{function} is not running")),
        }
    }

    /// An ECS Task State Change of an application task whose essential
    /// container exited with code 1 (the synthetic fixture, moved to the
    /// local account, region and application cluster).
    pub fn crash_event(&self) -> Value {
        let text = fixture_json("synthetic/ecs-task-stopped-essential-exit1.json")
            .to_string()
            .replace("us-west-2", REGION)
            .replace("111122223333", ACCOUNT_ID)
            .replace("FargateCluster", names::APP_CLUSTER)
            .replace("sample-fargate", "kiln-app-web");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The ECS Task State Change of a deploy task that stopped with
    /// `exit_code` (0 or 1), as EventBridge delivers it. The event carries
    /// no overrides, so deploy-exec reads the deployment back from the
    /// task's tags on moto.
    pub fn deploy_task_stopped_event(
        &self,
        task_arn: &str,
        delivery_id: &str,
        exit_code: u8,
    ) -> Value {
        crate::fixtures::deploy_task_stopped_event(
            &self.resources.ecs,
            task_arn,
            delivery_id,
            names::CONTAINER_NAME,
            exit_code,
        )
    }

    /// Puts the dead-letter alarm in ALARM on moto's CloudWatch and
    /// publishes the notification CloudWatch would send to its action, the
    /// alert topic (moto keeps alarm states but never runs alarm actions).
    /// Returns the SNS message id.
    pub async fn raise_alarm(&self) -> Result<String, HarnessError> {
        let alarm = names::DEAD_LETTERS_ALARM;
        let topic = &self.resources.alert_topic_arn;
        let reason = "Threshold Crossed: 1 out of the last 1 datapoints [3.0] was greater than the threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition).";
        self.cloudwatch(&[
            ("Action", "PutMetricAlarm"),
            ("AlarmName", alarm),
            (
                "AlarmDescription",
                "Deploy requests that deploy-exec could not start wait in kiln-deploy-exec-dlq.",
            ),
            ("Namespace", "AWS/SQS"),
            ("MetricName", "ApproximateNumberOfMessagesVisible"),
            ("Dimensions.member.1.Name", "QueueName"),
            ("Dimensions.member.1.Value", names::DEAD_LETTER_QUEUE),
            ("Statistic", "Maximum"),
            ("Period", "60"),
            ("EvaluationPeriods", "1"),
            ("Threshold", "0"),
            ("ComparisonOperator", "GreaterThanThreshold"),
            ("TreatMissingData", "notBreaching"),
            ("AlarmActions.member.1", topic),
        ])
        .await?;
        self.cloudwatch(&[
            ("Action", "SetAlarmState"),
            ("AlarmName", alarm),
            ("StateValue", "ALARM"),
            ("StateReason", reason),
        ])
        .await?;
        let described = self
            .cloudwatch(&[("Action", "DescribeAlarms"), ("AlarmNames.member.1", alarm)])
            .await?;
        let state = xml_text(&described, "StateValue").unwrap_or_default();
        if state != "ALARM" {
            return Err(HarnessError(format!(
                "moto's alarm {alarm} is in {state:?}, not ALARM"
            )));
        }
        let now = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
            ))
            .unwrap_or_default();
        let message = json!({
            "AlarmName": alarm,
            "AlarmDescription": xml_text(&described, "AlarmDescription"),
            "AWSAccountId": ACCOUNT_ID,
            "AlarmConfigurationUpdatedTimestamp": now,
            "NewStateValue": "ALARM",
            "NewStateReason": reason,
            "StateChangeTime": now,
            "Region": "US East (N. Virginia)",
            "AlarmArn": format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{alarm}"),
            "OldStateValue": "OK",
            "OKActions": [],
            "AlarmActions": [topic],
            "InsufficientDataActions": [],
            "Trigger": {
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Namespace": "AWS/SQS",
                "StatisticType": "Statistic",
                "Statistic": "MAXIMUM",
                "Unit": null,
                "Dimensions": [{"value": names::DEAD_LETTER_QUEUE, "name": "QueueName"}],
                "Period": 60,
                "EvaluationPeriods": 1,
                "DatapointsToAlarm": 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 0.0,
                "TreatMissingData": "notBreaching",
                "EvaluateLowSampleCountPercentile": ""
            }
        });
        let published = self
            .aws
            .sns
            .publish()
            .topic_arn(topic)
            .subject(format!("ALARM: \"{alarm}\" in US East (N. Virginia)"))
            .message(message.to_string())
            .send()
            .await
            .map_err(|e| HarnessError(format!("Publish: {}", kiln::aws::error_chain(&e))))?;
        Ok(published.message_id.unwrap_or_default())
    }

    /// One CloudWatch call over the query protocol, which moto speaks (the
    /// Rust SDK's CloudWatch client speaks CBOR, which it does not).
    async fn cloudwatch(&self, params: &[(&str, &str)]) -> Result<String, HarnessError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .append_pair("Version", "2010-08-01")
            .finish();
        // moto routes query calls by the credential scope's service and
        // does not check the signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/monitoring/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let what = params.first().map(|(_, v)| *v).unwrap_or("CloudWatch");
        let response = self
            .http
            .post(format!("{}/", self.moto.endpoint()))
            .header("Authorization", authorization)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| HarnessError(format!("{what}: {}", kiln::aws::error_chain(&e))))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(HarnessError(format!("{what} answered {status}: {body}")))
        }
    }

    /// A `curl` command that sends the fixture `fixture` as a signed push
    /// (the signature is over the file's bytes, which `--data-binary @`
    /// sends unchanged).
    pub fn curl_command(&self, fixture: &str, delivery_id: &str) -> String {
        let path = crate::fixtures::fixtures_dir().join(fixture);
        let body = fixture_bytes(fixture);
        let signature = github_signature(&self.resources.webhook_secret, &body);
        format!(
            "curl -sS -i -X POST '{}' \\\n  -H 'content-type: application/json' \\\n  -H 'x-github-event: push' \\\n  -H 'x-github-delivery: {delivery_id}' \\\n  -H 'x-hub-signature-256: {signature}' \\\n  --data-binary @{}",
            self.webhook_url,
            path.display()
        )
    }
}

/// The SNS messages a queue receives within `timeout`, stopping early once
/// `count` have arrived (fewer or more are returned as they are).
pub async fn receive(queue: &SnsQueue, count: usize, timeout: Duration) -> Vec<SnsEnvelope> {
    queue.receive_up_to(count, timeout).await
}

struct Starter<'a> {
    options: &'a Options,
    moto_env: Vec<(String, String)>,
}

impl Starter<'_> {
    /// Starts one function binary and waits until it polls for events.
    async fn start(
        &self,
        name: &str,
        env: Vec<(String, String)>,
    ) -> Result<(Arc<LambdaFunction>, Duration), HarnessError> {
        let mut builder = LambdaFunction::builder(name)
            .binary(self.options.binaries.path(name).await?)
            .env(self.moto_env.clone())
            .env(env)
            .env(self.options.extra_env.clone())
            .echo(false);
        if let Some(sink) = self.options.on_function_line.clone() {
            builder =
                builder.on_line(move |function: &str, line: &OutputLine| sink(function, line));
        }
        let function = Arc::new(builder.try_start().await?);
        match function.wait_ready(Duration::from_secs(60)).await {
            Ok(init) => Ok((function, init)),
            Err(failure) => Err(HarnessError(format!("{name} {failure}"))),
        }
    }
}

async fn provision(aws: &Aws) -> Result<Resources, HarnessError> {
    let deploy_topic_arn = aws.create_topic(names::DEPLOY_TOPIC).await;
    let alert_topic_arn = aws.create_topic(names::ALERT_TOPIC).await;
    let webhook_secret = format!("local-{:016x}", crate::process::random_u64());
    let webhook_secret_arn = aws
        .create_secret(names::WEBHOOK_SECRET, &webhook_secret)
        .await;
    // The URL is put in once the sink listens.
    let slack_secret_arn = aws.create_secret(names::SLACK_SECRET, "{}").await;
    let github_token_secret_arn = aws
        .create_secret(
            names::GITHUB_TOKEN_SECRET,
            &format!("ghp_local{:016x}", crate::process::random_u64()),
        )
        .await;
    let ecs = aws
        .create_ecs_with_container(
            names::DEPLOY_CLUSTER,
            names::STACK_UPDATER_FAMILY,
            names::CONTAINER_NAME,
        )
        .await;
    let app_cluster = aws
        .ecs
        .create_cluster()
        .cluster_name(names::APP_CLUSTER)
        .send()
        .await
        .map_err(|e| HarnessError(format!("CreateCluster: {}", kiln::aws::error_chain(&e))))?;
    let app_cluster_arn = app_cluster
        .cluster
        .and_then(|c| c.cluster_arn)
        .ok_or_else(|| HarnessError("CreateCluster returned no cluster ARN".into()))?;
    aws.create_asg(names::APP_ASG, 0, 1, 2).await;
    aws.create_lanes_table(names::LANES_TABLE).await;
    Ok(Resources {
        deploy_topic_arn,
        alert_topic_arn,
        webhook_secret_arn,
        webhook_secret,
        slack_secret_arn,
        github_token_secret_arn,
        ecs,
        app_cluster_arn,
    })
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn deploy_trigger_env(resources: &Resources) -> Vec<(String, String)> {
    pairs(&[
        ("WEBHOOK_SECRET_ARN", resources.webhook_secret_arn.clone()),
        ("DEPLOY_TOPIC_ARN", resources.deploy_topic_arn.clone()),
        // The fixtures push to `master`.
        (
            "DEPLOY_BRANCHES",
            "main=production,master=production".into(),
        ),
    ])
}

fn deploy_exec_env(resources: &Resources, github: &RecordingServer) -> Vec<(String, String)> {
    let ecs = &resources.ecs;
    pairs(&[
        ("CLUSTER", ecs.cluster_name.clone()),
        // The template passes family:revision.
        ("TASK_DEFINITION", format!("{}:1", ecs.family)),
        ("CONTAINER_NAME", ecs.container_name.clone()),
        ("SUBNETS", ecs.subnets_csv()),
        ("SECURITY_GROUPS", ecs.security_groups_csv()),
        (
            "GITHUB_TOKEN_SECRET_ARN",
            resources.github_token_secret_arn.clone(),
        ),
        ("GITHUB_API_URL", github.url()),
        ("LANES_TABLE", names::LANES_TABLE.into()),
        // Failed deployments are announced on the alert topic.
        ("NOTIFY_TOPIC_ARN", resources.alert_topic_arn.clone()),
        ("NOTIFY_DEPLOYS", "failures".into()),
    ])
}

fn watchdog_env(resources: &Resources) -> Vec<(String, String)> {
    pairs(&[
        ("ASG_NAME", names::APP_ASG.into()),
        ("ALERT_TOPIC_ARN", resources.alert_topic_arn.clone()),
        ("CLUSTER_ARN", resources.app_cluster_arn.clone()),
    ])
}

fn forwarder_env(resources: &Resources) -> Vec<(String, String)> {
    pairs(&[(
        "SLACK_WEBHOOK_SECRET_ARN",
        resources.slack_secret_arn.clone(),
    )])
}

/// GitHub's commit and deployment status APIs: what is posted is listed
/// back, newest first, as GitHub does.
async fn github_fake() -> RecordingServer {
    let server = RecordingServer::start().await;
    let posted: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    server.respond_with(move |request: &RecordedRequest| {
        let mut posted = posted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match request.method.as_str() {
            "POST" => {
                let mut status: Value = serde_json::from_slice(&request.body).unwrap_or(json!({}));
                status["id"] = (posted.len() + 1).into();
                posted.push((request.path.clone(), status.clone()));
                Some(Reply::json(201, &status))
            }
            "GET" => {
                // GET .../commits/SHA/statuses lists what was posted to
                // .../statuses/SHA; deployments use one path for both.
                let posted_to = request.path.replace("/commits/", "/statuses/");
                let posted_to = posted_to.trim_end_matches("/statuses");
                let listed: Vec<Value> = posted
                    .iter()
                    .rev()
                    .filter(|(path, _)| *path == request.path || path == posted_to)
                    .map(|(_, status)| status.clone())
                    .collect();
                Some(Reply::json(200, &Value::Array(listed)))
            }
            _ => None,
        }
    });
    server
}

/// The text of the first `<tag>…</tag>`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

/// One checked step of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub expected: String,
    pub observed: String,
    pub ok: bool,
}

/// The readable story `kiln-local` prints: narration, checked steps, and a
/// summary table at the end.
#[derive(Debug)]
pub struct Story {
    steps: Vec<Step>,
    started: Instant,
}

impl Default for Story {
    fn default() -> Self {
        Story::new()
    }
}

impl Story {
    pub fn new() -> Story {
        Story {
            steps: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A heading for what happens next.
    pub fn chapter(&self, title: &str) {
        println!("\n==> {title}");
    }

    /// One line of narration.
    pub fn say(&self, text: &str) {
        println!("    {text}");
        let _ = std::io::stdout().flush();
    }

    /// Records and prints a checked step.
    pub fn check(&mut self, name: &str, expected: &str, observed: &str, ok: bool) -> bool {
        println!("    {} {name}: {observed}", mark(ok));
        self.steps.push(Step {
            name: name.to_string(),
            expected: expected.to_string(),
            observed: observed.to_string(),
            ok,
        });
        ok
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether every step passed (and there was at least one).
    pub fn all_ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    /// The summary table.
    pub fn summary(&self) -> String {
        let width = |f: fn(&Step) -> &str, title: &str| {
            self.steps
                .iter()
                .map(|s| f(s).chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
                .min(60)
        };
        let (w_step, w_expected, w_observed) = (
            width(|s| &s.name, "step"),
            width(|s| &s.expected, "expected"),
            width(|s| &s.observed, "observed"),
        );
        let mut out = format!(
            "{:<w_step$}  {:<w_expected$}  {:<w_observed$}  \n",
            "step", "expected", "observed"
        );
        out.push_str(&format!(
            "{}  {}  {}  -\n",
            "-".repeat(w_step),
            "-".repeat(w_expected),
            "-".repeat(w_observed)
        ));
        for step in &self.steps {
            out.push_str(&format!(
                "{:<w_step$}  {:<w_expected$}  {:<w_observed$}  {}\n",
                clip(&step.name, w_step),
                clip(&step.expected, w_expected),
                clip(&step.observed, w_observed),
                mark(step.ok)
            ));
        }
        let passed = self.steps.iter().filter(|s| s.ok).count();
        out.push_str(&format!(
            "\n{passed}/{} steps passed in {:.1} s\n",
            self.steps.len(),
            self.started.elapsed().as_secs_f64()
        ));
        out
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn clip(text: &str, width: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() <= width {
        first_line.to_string()
    } else {
        let mut clipped: String = first_line.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

/// Prints a function's output line in the story, indented and named.
/// JSON log lines are shortened to level, message and fields; metric lines
/// (EMF) are left out.
pub fn print_function_line(function: &str, line: &OutputLine) {
    let text = match serde_json::from_str::<Value>(&line.text) {
        Ok(log) if log.get("_aws").is_some() => return,
        Ok(log) if log.is_object() => log_summary(&log),
        _ => line.text.clone(),
    };
    let stream = match line.stream {
        Stream::Stdout => "",
        Stream::Stderr => " (stderr)",
    };
    println!("      │ {function}{stream}: {text}");
    let _ = std::io::stdout().flush();
}

/// `LEVEL message key=value …` from one of kiln's JSON log lines (events
/// flattened: the message and fields at the top, the spans in a list).
fn log_summary(log: &Value) -> String {
    const NOT_FIELDS: [&str; 8] = [
        "timestamp",
        "level",
        "message",
        "target",
        "spans",
        "filename",
        "line_number",
        "threadId",
    ];
    let level = log["level"].as_str().unwrap_or("?");
    let message = log["message"].as_str().unwrap_or_default();
    let mut text = format!("{level} {message}");
    let span_fields = log["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|span| span.iter())
        .filter(|(key, _)| !matches!(key.as_str(), "name" | "requestId" | "xrayTraceId"));
    let own_fields = log
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !NOT_FIELDS.contains(&key.as_str()));
    for (key, value) in span_fields.chain(own_fields) {
        let value = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(" {key}={value}"));
    }
    text
}

/// Prints a Slack message readably: its Block Kit blocks as lines of text.
pub fn print_slack_message(body: &Value) {
    println!("      ┌─ Slack message");
    for line in slack_lines(body) {
        println!("      │ {line}");
    }
    println!("      └─");
    let _ = std::io::stdout().flush();
}

/// A Slack message as text: the header, the sections (field titles become
/// `Title: value`), the context line; the fallback text if it has no
/// blocks.
pub fn slack_lines(body: &Value) -> Vec<String> {
    let mrkdwn = |text: &str| match text.strip_prefix('*').and_then(|t| t.split_once("*\n")) {
        Some((title, value)) => format!("{title}: {}", value.replace('\n', " ")),
        None => text.replace('\n', " "),
    };
    let mut lines = Vec::new();
    for block in body["blocks"].as_array().into_iter().flatten() {
        match block["type"].as_str().unwrap_or_default() {
            "header" => lines.push(
                block["text"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            "section" => {
                match block["text"]["text"].as_str() {
                    // A preformatted block (log lines) keeps its lines.
                    Some(text) if text.contains("```") => lines.extend(
                        text.lines()
                            .filter(|line| *line != "```")
                            .map(|line| line.trim_matches('*').to_string()),
                    ),
                    Some(text) => lines.push(mrkdwn(text)),
                    None => {}
                }
                for field in block["fields"].as_array().into_iter().flatten() {
                    lines.push(format!(
                        "  {}",
                        mrkdwn(field["text"].as_str().unwrap_or_default())
                    ));
                }
            }
            "context" => {
                let parts: Vec<&str> = block["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["text"].as_str())
                    .collect();
                lines.push(parts.join(" "));
            }
            "divider" => lines.push("—".into()),
            _ => {}
        }
    }
    if lines.is_empty() {
        lines.push(body["text"].as_str().unwrap_or_default().to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_step_with_its_mark() {
        let mut story = Story::new();
        story.check("signed push", "200", "200", true);
        story.check("bad signature", "401", "500 Internal Server Error", false);
        let summary = story.summary();
        assert!(summary.contains("signed push"));
        assert!(summary.contains("✓"));
        assert!(summary.contains("✗"));
        assert!(summary.contains("1/2 steps passed"));
        assert!(!story.all_ok());
    }

    #[test]
    fn slack_messages_read_as_lines() {
        let body = serde_json::json!({
            "text": "fallback",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "🚨 Crash loop"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "A task stopped."}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Exit code*\n1"}]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "critical"}]}
            ]
        });
        assert_eq!(
            slack_lines(&body),
            vec![
                "🚨 Crash loop",
                "A task stopped.",
                "  Exit code: 1",
                "critical"
            ]
        );
        assert_eq!(
            slack_lines(&serde_json::json!({"text": "plain"})),
            vec!["plain"]
        );
    }

    #[test]
    fn json_log_lines_are_summarised() {
        let log = serde_json::json!({
            "timestamp": "2026-11-22T10:00:00Z",
            "level": "INFO",
            "message": "deploy task started",
            "task_arn": "arn:t",
            "target": "deploy_exec::handler",
            "spans": [{"name": "deploy_request", "delivery_id": "d-1"}]
        });
        assert_eq!(
            log_summary(&log),
            "INFO deploy task started delivery_id=d-1 task_arn=arn:t"
        );
    }

    #[test]
    fn long_observations_are_clipped_to_one_line() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ab\ncd", 10), "ab");
    }
}
