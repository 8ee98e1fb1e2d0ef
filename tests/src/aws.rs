//! Provisioning on the emulator with the real Rust SDK, and reading back
//! what functions published.
//!
//! [`Aws`] holds one client per service kiln uses. Its helpers create the
//! resources kiln's SAM template declares (topics, secrets, the ECS cluster
//! and stack-updater task definition, the Auto Scaling group) and an SQS
//! queue subscribed to a topic, which is how tests read what a function
//! published ([`SnsQueue`]). Helpers panic with the SDK's error chain: they
//! are test set-up, and a failure there is a broken emulator, not a result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, LogConfiguration,
    LogDriver, NetworkConfiguration, NetworkMode,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;

use crate::moto::{ACCOUNT_ID, Moto, REGION};
use crate::process::random_u64;

/// One client per service kiln uses, all pointed at the same emulator.
#[derive(Clone, Debug)]
pub struct Aws {
    pub config: SdkConfig,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    endpoint: String,
    http: reqwest::Client,
}

impl Moto {
    /// Clients for this server (see [`Aws`]).
    pub async fn aws(&self) -> Aws {
        Aws::new(&self.sdk_config().await)
    }
}

/// Panics with the whole error chain: SDK errors keep the useful part
/// ("connection refused", the service's message) several sources down.
fn check<T, E: std::error::Error + 'static>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {}", kiln::aws::error_chain(&err)),
    }
}

fn required<T>(what: &str, value: Option<T>) -> T {
    match value {
        Some(value) => value,
        None => panic!("{what}: the emulator's answer lacks it"),
    }
}

impl Aws {
    /// Clients built from `config` (normally [`Moto::sdk_config`]).
    pub fn new(config: &SdkConfig) -> Aws {
        Aws {
            config: config.clone(),
            sns: aws_sdk_sns::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            endpoint: config.endpoint_url().unwrap_or_default().to_string(),
            http: reqwest::Client::new(),
        }
    }

    // --- DynamoDB --------------------------------------------------------

    /// Creates the deploy lanes table as the template does (partition key
    /// `lane`, on-demand, TTL on `expires_at`); returns its name.
    pub async fn create_lanes_table(&self, name: &str) -> String {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        fn build<T>(what: &str, r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> T {
            check(what, r)
        }
        check(
            "DynamoDB CreateTable",
            self.dynamodb
                .create_table()
                .table_name(name)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(build(
                    "attribute",
                    AttributeDefinition::builder()
                        .attribute_name("lane")
                        .attribute_type(ScalarAttributeType::S)
                        .build(),
                ))
                .key_schema(build(
                    "key",
                    KeySchemaElement::builder()
                        .attribute_name("lane")
                        .key_type(KeyType::Hash)
                        .build(),
                ))
                .send()
                .await,
        );
        check(
            "DynamoDB UpdateTimeToLive",
            self.dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(build(
                    "ttl",
                    TimeToLiveSpecification::builder()
                        .attribute_name("expires_at")
                        .enabled(true)
                        .build(),
                ))
                .send()
                .await,
        );
        name.to_string()
    }

    /// One lane's item, as deploy-exec stored it (`None` when absent).
    pub async fn lane_item(
        &self,
        table: &str,
        lane: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        check(
            "DynamoDB GetItem",
            self.dynamodb
                .get_item()
                .table_name(table)
                .key(
                    "lane",
                    aws_sdk_dynamodb::types::AttributeValue::S(lane.to_string()),
                )
                .consistent_read(true)
                .send()
                .await,
        )
        .item
    }

    // --- SNS -------------------------------------------------------------

    /// Creates a standard topic; returns its ARN.
    pub async fn create_topic(&self, name: &str) -> String {
        let out = check(
            &format!("CreateTopic {name}"),
            self.sns.create_topic().name(name).send().await,
        );
        required("CreateTopic TopicArn", out.topic_arn)
    }

    /// Creates a FIFO topic (`.fifo` is appended if missing), without
    /// content-based deduplication, so publishers must send a deduplication
    /// id; returns its ARN.
    pub async fn create_fifo_topic(&self, name: &str) -> String {
        let name = fifo_name(name);
        let out = check(
            &format!("CreateTopic {name}"),
            self.sns
                .create_topic()
                .name(&name)
                .attributes("FifoTopic", "true")
                .attributes("ContentBasedDeduplication", "false")
                .send()
                .await,
        );
        required("CreateTopic TopicArn", out.topic_arn)
    }

    /// Creates an SQS queue (FIFO for a FIFO topic) subscribed to the topic
    /// with raw message delivery off, so every message is the SNS envelope a
    /// Lambda subscriber would see.
    pub async fn subscribe_queue(&self, topic_arn: &str) -> SnsQueue {
        let topic_name = topic_arn.rsplit(':').next().unwrap_or("topic");
        let fifo = kiln::sns::is_fifo_topic(topic_arn);
        let base = format!(
            "{}-reader-{:08x}",
            topic_name.trim_end_matches(".fifo"),
            random_u64() as u32
        );
        let queue_name = if fifo { fifo_name(&base) } else { base };
        let mut create = self.sqs.create_queue().queue_name(&queue_name);
        if fifo {
            create = create.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let queue_url = required(
            "CreateQueue QueueUrl",
            check(&format!("CreateQueue {queue_name}"), create.send().await).queue_url,
        );
        let attributes = check(
            "GetQueueAttributes QueueArn",
            self.sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await,
        );
        let queue_arn = required(
            "GetQueueAttributes QueueArn",
            attributes
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)),
        );
        let subscription = check(
            &format!("Subscribe {queue_arn} to {topic_arn}"),
            self.sns
                .subscribe()
                .topic_arn(topic_arn)
                .protocol("sqs")
                .endpoint(&queue_arn)
                .attributes("RawMessageDelivery", "false")
                .return_subscription_arn(true)
                .send()
                .await,
        );
        SnsQueue {
            sqs: self.sqs.clone(),
            queue_url,
            queue_arn,
            subscription_arn: subscription.subscription_arn.unwrap_or_default(),
        }
    }

    // --- Secrets Manager ---------------------------------------------------

    /// Creates a secret with a string value; returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        let out = check(
            &format!("CreateSecret {name}"),
            self.secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await,
        );
        required("CreateSecret ARN", out.arn)
    }

    /// Rotates a secret: `value` becomes `AWSCURRENT` and the old current
    /// version becomes `AWSPREVIOUS`. Returns the new version id.
    pub async fn put_secret_version(&self, secret_id: &str, value: &str) -> String {
        let out = check(
            &format!("PutSecretValue {secret_id}"),
            self.secrets
                .put_secret_value()
                .secret_id(secret_id)
                .secret_string(value)
                .send()
                .await,
        );
        required("PutSecretValue VersionId", out.version_id)
    }

    // --- EC2 (moto's default VPC) --------------------------------------------

    /// The subnet ids of moto's default VPC. ECS RunTask in moto needs real
    /// subnet ids; this asks EC2 over its query protocol rather than pulling
    /// in the large EC2 SDK crate for one call.
    pub async fn default_subnets(&self) -> Vec<String> {
        let xml = self
            .ec2_query(&[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "default-for-az"),
                ("Filter.1.Value.1", "true"),
            ])
            .await;
        let subnets = xml_values(&xml, "subnetId");
        assert!(!subnets.is_empty(), "moto has no default subnets:\n{xml}");
        subnets
    }

    /// The id of the default VPC's `default` security group.
    pub async fn default_security_group(&self) -> String {
        let xml = self
            .ec2_query(&[
                ("Action", "DescribeSecurityGroups"),
                ("Filter.1.Name", "group-name"),
                ("Filter.1.Value.1", "default"),
            ])
            .await;
        required(
            "DescribeSecurityGroups groupId",
            xml_values(&xml, "groupId").into_iter().next(),
        )
    }

    async fn ec2_query(&self, params: &[(&str, &str)]) -> String {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .append_pair("Version", "2016-11-15")
            .finish();
        // moto routes query-protocol requests by the service named in the
        // credential scope, and does not check the signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/{REGION}/ec2/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let response = check(
            "EC2 query",
            self.http
                .post(format!("{}/", self.endpoint))
                .header("Authorization", authorization)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await,
        );
        let status = response.status();
        let body = check("EC2 query body", response.text().await);
        assert!(
            status.is_success(),
            "EC2 {params:?} answered {status}: {body}"
        );
        body
    }

    // --- ECS -----------------------------------------------------------------

    /// Creates an ECS cluster and a Fargate-compatible (awsvpc) task
    /// definition whose one container is named after the family, and finds
    /// the default VPC's subnets and security group for RunTask.
    pub async fn create_ecs(&self, cluster: &str, family: &str) -> EcsStack {
        self.create_ecs_with_container(cluster, family, family)
            .await
    }

    /// [`Aws::create_ecs`] with the container named `container` (the SAM
    /// template names it `stack-updater` in the `<stack>-stack-updater`
    /// family).
    pub async fn create_ecs_with_container(
        &self,
        cluster: &str,
        family: &str,
        container: &str,
    ) -> EcsStack {
        let cluster_out = check(
            &format!("CreateCluster {cluster}"),
            self.ecs.create_cluster().cluster_name(cluster).send().await,
        );
        let cluster_arn = required(
            "CreateCluster clusterArn",
            cluster_out.cluster.and_then(|c| c.cluster_arn),
        );
        // The container logs as the SAM template's does: awslogs, to a log
        // group of its own, streams `<prefix>/<container>/<task id>`.
        let log_group = format!("/ecs/{family}");
        check(
            &format!("CreateLogGroup {log_group}"),
            self.logs
                .create_log_group()
                .log_group_name(&log_group)
                .send()
                .await,
        );
        let log_configuration = check(
            "LogConfiguration",
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", &log_group)
                .options("awslogs-region", REGION)
                .options("awslogs-stream-prefix", LOG_STREAM_PREFIX)
                .build(),
        );
        // moto answers RunTask with a 500 unless every container sets memory.
        let container_definition = ContainerDefinition::builder()
            .name(container)
            .image("public.ecr.aws/docker/library/alpine:3")
            .essential(true)
            .memory(512)
            .command("true")
            .log_configuration(log_configuration)
            .build();
        let definition = check(
            &format!("RegisterTaskDefinition {family}"),
            self.ecs
                .register_task_definition()
                .family(family)
                .network_mode(NetworkMode::Awsvpc)
                .requires_compatibilities(Compatibility::Fargate)
                .cpu("256")
                .memory("512")
                .container_definitions(container_definition)
                // Roles like the template's: RunTask passes them, so the
                // record of calls shows deploy-exec's iam:PassRole. Named
                // after the template's logical ids, which is how
                // `make check-iam` names roles CloudFormation would name.
                .task_role_arn(format!(
                    "arn:aws:iam::{ACCOUNT_ID}:role/StackUpdaterTaskRole"
                ))
                .execution_role_arn(format!(
                    "arn:aws:iam::{ACCOUNT_ID}:role/StackUpdaterExecutionRole"
                ))
                .send()
                .await,
        );
        let task_definition_arn = required(
            "RegisterTaskDefinition taskDefinitionArn",
            definition
                .task_definition
                .and_then(|t| t.task_definition_arn),
        );
        EcsStack {
            cluster_name: cluster.to_string(),
            cluster_arn,
            family: family.to_string(),
            task_definition_arn,
            container_name: container.to_string(),
            log_group,
            subnets: self.default_subnets().await,
            security_groups: vec![self.default_security_group().await],
        }
    }

    /// Every task of a cluster, described (moto advances a task's status on
    /// each describe unless [`Moto::freeze_ecs_tasks`] was called).
    pub async fn describe_all_tasks(&self, cluster: &str) -> Vec<aws_sdk_ecs::types::Task> {
        let list = check(
            &format!("ListTasks {cluster}"),
            self.ecs.list_tasks().cluster(cluster).send().await,
        );
        let arns = list.task_arns.unwrap_or_default();
        if arns.is_empty() {
            return Vec::new();
        }
        let described = check(
            &format!("DescribeTasks {cluster}"),
            self.ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(arns))
                .send()
                .await,
        );
        described.tasks.unwrap_or_default()
    }

    // --- CloudWatch Logs -------------------------------------------------------

    /// Writes `lines` to a log stream as a container would, one event per
    /// line, a millisecond apart; creates the stream first.
    pub async fn write_log(&self, group: &str, stream: &str, lines: &[String]) {
        check(
            &format!("CreateLogStream {stream}"),
            self.logs
                .create_log_stream()
                .log_group_name(group)
                .log_stream_name(stream)
                .send()
                .await,
        );
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let events: Vec<_> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                check(
                    "InputLogEvent",
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .timestamp(start + i as i64)
                        .message(line)
                        .build(),
                )
            })
            .collect();
        check(
            &format!("PutLogEvents {stream}"),
            self.logs
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(events))
                .send()
                .await,
        );
    }

    // --- Auto Scaling ----------------------------------------------------------

    /// Creates an Auto Scaling group (with a launch configuration of the same
    /// name) in us-east-1a. moto does not enforce min/max on later changes.
    pub async fn create_asg(&self, name: &str, min: i32, desired: i32, max: i32) {
        check(
            &format!("CreateLaunchConfiguration {name}"),
            self.autoscaling
                .create_launch_configuration()
                .launch_configuration_name(name)
                .image_id("ami-12c6146b")
                .instance_type("t3.micro")
                .send()
                .await,
        );
        check(
            &format!("CreateAutoScalingGroup {name}"),
            self.autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(name)
                .launch_configuration_name(name)
                .min_size(min)
                .desired_capacity(desired)
                .max_size(max)
                .availability_zones(format!("{REGION}a"))
                .send()
                .await,
        );
    }

    /// An Auto Scaling group's (min, desired, max).
    pub async fn asg_capacity(&self, name: &str) -> AsgCapacity {
        let out = check(
            &format!("DescribeAutoScalingGroups {name}"),
            self.autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send()
                .await,
        );
        let group = required(
            &format!("DescribeAutoScalingGroups {name}"),
            out.auto_scaling_groups.and_then(|g| g.into_iter().next()),
        );
        AsgCapacity {
            min: group.min_size.unwrap_or_default(),
            desired: group.desired_capacity.unwrap_or_default(),
            max: group.max_size.unwrap_or_default(),
        }
    }
}

/// An Auto Scaling group's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsgCapacity {
    pub min: i32,
    pub desired: i32,
    pub max: i32,
}

/// An ECS cluster with a stack-updater task definition, and the network
/// configuration RunTask needs on moto.
#[derive(Debug, Clone)]
pub struct EcsStack {
    pub cluster_name: String,
    pub cluster_arn: String,
    pub family: String,
    pub task_definition_arn: String,
    pub container_name: String,
    /// The container's awslogs log group (prefix [`LOG_STREAM_PREFIX`]).
    pub log_group: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// The `awslogs-stream-prefix` of the task definitions [`Aws::create_ecs`]
/// registers.
pub const LOG_STREAM_PREFIX: &str = "deploy";

impl EcsStack {
    /// The log stream ECS gives a task's container:
    /// `<prefix>/<container>/<task id>`.
    pub fn log_stream(&self, task_arn: &str) -> String {
        let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
        format!("{LOG_STREAM_PREFIX}/{}/{task_id}", self.container_name)
    }

    /// The awsvpc configuration for RunTask (moto needs subnets of the
    /// default VPC and explicit security groups).
    pub fn network_configuration(&self) -> NetworkConfiguration {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.subnets.clone()))
            .set_security_groups(Some(self.security_groups.clone()))
            .assign_public_ip(AssignPublicIp::Disabled)
            .build();
        match vpc {
            Ok(vpc) => NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
            Err(err) => panic!("awsvpc configuration: {err}"),
        }
    }

    /// `subnets` joined by commas, the form kiln's configuration takes.
    pub fn subnets_csv(&self) -> String {
        self.subnets.join(",")
    }

    /// `security_groups` joined by commas.
    pub fn security_groups_csv(&self) -> String {
        self.security_groups.join(",")
    }
}

/// An SQS queue subscribed to a topic: what a function published, as the
/// SNS envelopes a subscriber receives.
#[derive(Debug, Clone)]
pub struct SnsQueue {
    sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub subscription_arn: String,
}

/// One SNS notification as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsEnvelope {
    /// The published message body.
    pub message: String,
    pub subject: Option<String>,
    /// String message attributes (binary ones keep their base64 text).
    pub message_attributes: BTreeMap<String, String>,
    pub message_id: String,
    pub topic_arn: String,
    pub timestamp: String,
    /// FIFO topics: the message group and deduplication id the publisher
    /// set (carried by SQS as system attributes).
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
    /// The whole envelope as received.
    pub raw: Value,
}

impl SnsEnvelope {
    /// Decodes an SNS envelope (the body of an SQS message when raw message
    /// delivery is off).
    pub fn from_body(body: &str) -> Result<SnsEnvelope, String> {
        let raw: Value =
            serde_json::from_str(body).map_err(|e| format!("not an SNS envelope ({e}): {body}"))?;
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string);
        let message = text("Message").ok_or_else(|| format!("envelope without Message: {body}"))?;
        let message_attributes = raw
            .get("MessageAttributes")
            .and_then(Value::as_object)
            .map(|attributes| {
                attributes
                    .iter()
                    .map(|(name, value)| {
                        let value = value
                            .get("Value")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        (name.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SnsEnvelope {
            message,
            subject: text("Subject"),
            message_attributes,
            message_id: text("MessageId").unwrap_or_default(),
            topic_arn: text("TopicArn").unwrap_or_default(),
            timestamp: text("Timestamp").unwrap_or_default(),
            group_id: None,
            deduplication_id: None,
            raw,
        })
    }

    /// The message parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.message) {
            Ok(value) => value,
            Err(err) => panic!("SNS message is not JSON ({err}): {}", self.message),
        }
    }

    /// One string message attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.message_attributes.get(name).map(String::as_str)
    }
}

impl SnsQueue {
    /// One receive: waits up to `wait` (at most 20 s, SQS's limit) for
    /// messages, returns what arrived (up to 10) and deletes it.
    pub async fn receive(&self, wait: Duration) -> Vec<SnsEnvelope> {
        let wait_seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let out = check(
            "ReceiveMessage",
            self.sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await,
        );
        let mut envelopes = Vec::new();
        for message in out.messages.unwrap_or_default() {
            let body = message.body.as_deref().unwrap_or_default();
            let mut envelope = match SnsEnvelope::from_body(body) {
                Ok(envelope) => envelope,
                Err(err) => panic!("{err}"),
            };
            if let Some(attributes) = &message.attributes {
                envelope.group_id = attributes
                    .get(&MessageSystemAttributeName::MessageGroupId)
                    .cloned();
                envelope.deduplication_id = attributes
                    .get(&MessageSystemAttributeName::MessageDeduplicationId)
                    .cloned();
            }
            if let Some(handle) = &message.receipt_handle {
                check(
                    "DeleteMessage",
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await,
                );
            }
            envelopes.push(envelope);
        }
        envelopes
    }

    /// Whatever is in the queue now, without waiting. moto delivers SNS to
    /// SQS during Publish, so after a publish returned this sees its message.
    pub async fn drain(&self) -> Vec<SnsEnvelope> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive(Duration::ZERO).await;
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// The messages that arrive within `timeout`, stopping early once
    /// `count` have arrived (fewer or more are returned as they are).
    pub async fn receive_up_to(&self, count: usize, timeout: Duration) -> Vec<SnsEnvelope> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        while all.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            all.extend(self.receive(left.min(Duration::from_secs(1))).await);
        }
        all.extend(self.drain().await);
        all
    }

    /// Exactly `count` messages, waiting up to `timeout` for them; panics if
    /// fewer or more arrive.
    pub async fn expect(&self, count: usize, timeout: Duration) -> Vec<SnsEnvelope> {
        let all = self.receive_up_to(count, timeout).await;
        assert_eq!(
            all.len(),
            count,
            "expected {count} SNS message(s) on {}, got {}: {:#?}",
            self.queue_url,
            all.len(),
            all.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
        all
    }

    /// Exactly one message (waiting up to 10 s).
    pub async fn expect_one(&self) -> SnsEnvelope {
        let mut all = self.expect(1, Duration::from_secs(10)).await;
        all.remove(0)
    }

    /// Asserts the queue is empty now (see [`SnsQueue::drain`] for why no
    /// waiting is needed).
    pub async fn expect_none(&self) {
        let all = self.drain().await;
        assert!(
            all.is_empty(),
            "expected no SNS message, got {:#?}",
            all.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
    }
}

fn fifo_name(name: &str) -> String {
    if name.ends_with(".fifo") {
        name.to_string()
    } else {
        format!("{name}.fifo")
    }
}

/// The text of every `<tag>…</tag>` element, in order (enough XML for
/// moto's flat EC2 answers).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(rest[..end].to_string());
        rest = &rest[end + close.len()..];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_reads_every_element() {
        let xml = "<a><subnetId>s-1</subnetId><x/><subnetId>s-2</subnetId></a>";
        assert_eq!(xml_values(xml, "subnetId"), vec!["s-1", "s-2"]);
        assert!(xml_values(xml, "groupId").is_empty());
    }

    #[test]
    fn envelope_decodes_message_subject_and_attributes() {
        let body = r#"{"Type":"Notification","MessageId":"m-1","TopicArn":"arn:t",
            "Subject":"s","Message":"{\"a\":1}","Timestamp":"2024-01-01T00:00:00.000Z",
            "MessageAttributes":{"environment":{"Type":"String","Value":"production"}}}"#;
        let envelope = SnsEnvelope::from_body(body).unwrap();
        assert_eq!(envelope.json(), serde_json::json!({"a": 1}));
        assert_eq!(envelope.subject.as_deref(), Some("s"));
        assert_eq!(envelope.attribute("environment"), Some("production"));
        assert_eq!(envelope.message_id, "m-1");
        assert!(SnsEnvelope::from_body("{}").is_err());
    }
}
