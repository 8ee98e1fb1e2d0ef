//! The record of AWS calls: what each function process asks of AWS, written
//! down the way IAM would authorise it.
//!
//! Every function that [`crate::lambda`] starts reaches AWS through a
//! recording [`FaultProxy`] (no faults, transparent): each `AWS_ENDPOINT_URL`
//! and `AWS_ENDPOINT_URL_<SERVICE>` (http) of the process is pointed at one.
//! For each call the proxy sees, [`CallRecorder`] writes one JSON line per IAM
//! authorisation the call needs:
//!
//! ```json
//! {"record":"call","function":"deploy-exec","service":"ecs","operation":"RunTask",
//!  "action":"ecs:RunTask","resources":["arn:aws:ecs:us-east-1:123456789012:task-definition/kiln-stack-updater:1"],
//!  "context":{"ecs:cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/kiln-deploy"},"status":200}
//! ```
//!
//! Some calls need more than their own action: RunTask also needs
//! `iam:PassRole` on the task definition's roles and, with tags,
//! `ecs:TagResource` on the new task; DescribeTasks with `include: TAGS`
//! also needs `ecs:ListTagsForResource` on the tasks. Resources named by name are turned into
//! ARNs (an Auto Scaling group's ARN and a secret's full ARN are asked of
//! moto). A call this module cannot map is recorded with `"action": null` and
//! the reason, and `make check-iam` fails on it: a new call must be mapped
//! here before it can be checked.
//!
//! One file per process, `<record dir>/<function>-<test pid>-<n>.jsonl`, whose
//! first line is the process's configuration (its environment, without
//! credentials): the checker uses it to match the test's resources to the
//! template's. The record directory is `$KILN_CALL_RECORD_DIR`, or
//! `<target>/iam-calls` (`make test` empties it first).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::faults::Protocol;
use crate::moto::{ACCOUNT_ID, REGION};
use crate::{HarnessError, target_dir};

static RECORDING: AtomicBool = AtomicBool::new(true);

/// Turns recording off for this process (`kiln-local` and the benchmarks:
/// they are not tests, and the benchmarks time every hop).
pub fn disable() {
    RECORDING.store(false, Ordering::SeqCst);
}

/// Whether function processes started from now on are recorded.
pub fn enabled() -> bool {
    RECORDING.load(Ordering::SeqCst)
}

/// Where the records go: `$KILN_CALL_RECORD_DIR` or `<target>/iam-calls`.
pub fn record_dir() -> PathBuf {
    match std::env::var_os("KILN_CALL_RECORD_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => target_dir().join("iam-calls"),
    }
}

/// Environment variables that are the Lambda runtime's or credentials, not
/// the function's configuration.
fn is_configuration(name: &str) -> bool {
    !(name.starts_with("AWS_")
        || name.starts_with("LAMBDA_")
        || name.starts_with('_')
        || matches!(name, "PATH" | "TZ" | "LANG"))
}

/// One call as the proxy saw it.
pub(crate) struct ObservedCall<'a> {
    /// The signing name (`sns`, `ecs`, `monitoring`, ...).
    pub service: &'a str,
    pub operation: &'a str,
    pub protocol: Protocol,
    pub body: &'a [u8],
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    pub response: Option<&'a [u8]>,
}

/// One IAM authorisation a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// `service:Action`, IAM's spelling.
    pub action: String,
    /// The ARNs IAM checks (each on its own), or `*` for actions without
    /// resource-level permissions.
    pub resources: Vec<String>,
    /// The condition keys kiln's policies use, with the call's values.
    pub context: BTreeMap<String, String>,
}

impl Authorization {
    fn new(action: &str, resources: Vec<String>) -> Authorization {
        Authorization {
            action: action.to_string(),
            resources,
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<String>) -> Authorization {
        self.context.insert(key.to_string(), value.into());
        self
    }
}

/// Writes one function process's calls (see the module docs).
pub struct CallRecorder {
    function: String,
    file: Mutex<std::fs::File>,
    upstream: Mutex<Option<String>>,
    lookups: Lookups,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl CallRecorder {
    /// Opens a new record file for one process of `function`, and writes its
    /// configuration (the environment, without credentials and runtime
    /// variables) as the first line.
    pub fn create(
        function: &str,
        environment: &[(String, String)],
    ) -> Result<CallRecorder, HarnessError> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let dir = record_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| HarnessError(format!("creating {}: {e}", dir.display())))?;
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
        let path = dir.join(format!("{function}-{}-{n}.jsonl", std::process::id()));
        let mut file = std::fs::File::create(&path)
            .map_err(|e| HarnessError(format!("creating {}: {e}", path.display())))?;
        let configuration: BTreeMap<&str, &str> = environment
            .iter()
            .filter(|(name, _)| is_configuration(name))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let header = json!({
            "record": "process",
            "function": function,
            "environment": configuration,
        });
        writeln!(file, "{header}")
            .map_err(|e| HarnessError(format!("writing {}: {e}", path.display())))?;
        Ok(CallRecorder {
            function: function.to_string(),
            file: Mutex::new(file),
            upstream: Mutex::new(None),
            lookups: Lookups::default(),
        })
    }

    /// Where the lookups (an Auto Scaling group's ARN, a task definition's
    /// roles) are asked: the endpoint the proxy forwards to.
    pub(crate) fn set_upstream(&self, upstream: &str) {
        if let Ok(mut slot) = self.upstream.lock() {
            slot.get_or_insert_with(|| upstream.to_string());
        }
    }

    /// Records one call: one line per authorisation it needs, or one line
    /// saying why it could not be mapped.
    pub(crate) async fn observe(&self, call: &ObservedCall<'_>) {
        let upstream = self.upstream.lock().ok().and_then(|u| u.clone());
        let mapped = authorizations(call, &self.lookups, upstream.as_deref()).await;
        let base = json!({
            "record": "call",
            "function": self.function,
            "service": call.service,
            "operation": call.operation,
            "status": call.status,
        });
        let lines: Vec<Value> = match mapped {
            Ok(authorizations) => authorizations
                .into_iter()
                .map(|a| {
                    let mut line = base.clone();
                    line["action"] = json!(a.action);
                    line["resources"] = json!(a.resources);
                    line["context"] = json!(a.context);
                    line
                })
                .collect(),
            Err(reason) => {
                let mut line = base.clone();
                line["action"] = Value::Null;
                line["unmapped"] = json!(reason);
                vec![line]
            }
        };
        // One write per call, so a test process that dies leaves whole lines.
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        if let Ok(mut file) = self.file.lock()
            && let Err(err) = file.write_all(text.as_bytes())
        {
            // A lost line would hide a call from the check: fail loudly.
            panic!("writing the call record of {}: {err}", self.function);
        }
    }
}

// --- From a call to IAM authorisations --------------------------------------

/// A call's parameters: the JSON body (awsJson) or the form (awsQuery).
enum Params {
    Json(Value),
    Form(Vec<(String, String)>),
}

impl Params {
    fn parse(call: &ObservedCall<'_>) -> Params {
        match call.protocol {
            Protocol::Query => Params::Form(
                form_urlencoded::parse(call.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
            _ => Params::Json(serde_json::from_slice(call.body).unwrap_or(Value::Null)),
        }
    }

    /// A top-level string parameter.
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Params::Json(value) => value.get(name)?.as_str().map(str::to_string),
            Params::Form(pairs) => pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
        }
    }

    /// A list parameter: a JSON array of strings, or the form's
    /// `Name.member.1`, `Name.member.2`, ...
    fn list(&self, name: &str) -> Vec<String> {
        match self {
            Params::Json(value) => value
                .get(name)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            Params::Form(pairs) => {
                let prefix = format!("{name}.member.");
                pairs
                    .iter()
                    .filter(|(k, _)| {
                        k.strip_prefix(&prefix)
                            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
                    })
                    .map(|(_, v)| v.clone())
                    .collect()
            }
        }
    }

    fn json(&self) -> &Value {
        match self {
            Params::Json(value) => value,
            Params::Form(_) => &Value::Null,
        }
    }

    fn required(&self, name: &str, call: &ObservedCall<'_>) -> Result<String, String> {
        self.get(name)
            .ok_or_else(|| format!("{} without {name}", call.operation))
    }
}

/// IAM's service prefix for a signing name.
fn iam_prefix(signing_name: &str) -> &str {
    match signing_name {
        "monitoring" => "cloudwatch",
        other => other,
    }
}

fn arn(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}")
}

fn ecs_cluster_arn(cluster: Option<&str>) -> String {
    match cluster {
        Some(arn) if arn.starts_with("arn:") => arn.to_string(),
        Some(name) => arn("ecs", &format!("cluster/{name}")),
        None => arn("ecs", "cluster/default"),
    }
}

fn ecs_task_arn(cluster_arn: &str, task: &str) -> String {
    if task.starts_with("arn:") {
        return task.to_string();
    }
    let cluster_name = cluster_arn.rsplit('/').next().unwrap_or("default");
    arn("ecs", &format!("task/{cluster_name}/{task}"))
}

fn ecs_task_definition_arn(task_definition: &str) -> String {
    if task_definition.starts_with("arn:") {
        task_definition.to_string()
    } else {
        arn("ecs", &format!("task-definition/{task_definition}"))
    }
}

/// The authorisations one call needs. `Err` names what is not mapped.
async fn authorizations(
    call: &ObservedCall<'_>,
    lookups: &Lookups,
    upstream: Option<&str>,
) -> Result<Vec<Authorization>, String> {
    let params = Params::parse(call);
    let action = format!("{}:{}", iam_prefix(call.service), call.operation);
    let one = |resources: Vec<String>| Ok(vec![Authorization::new(&action, resources)]);
    let any = || vec!["*".to_string()];
    match (iam_prefix(call.service), call.operation) {
        ("sns", "Publish" | "PublishBatch") => {
            let topic = params
                .get("TopicArn")
                .or_else(|| params.get("TargetArn"))
                .ok_or_else(|| format!("{} without TopicArn", call.operation))?;
            one(vec![topic])
        }
        ("secretsmanager", "GetSecretValue" | "DescribeSecret") => {
            let id = params.required("SecretId", call)?;
            one(vec![lookups.secret_arn(upstream, &id).await])
        }
        ("ecs", "RunTask") => {
            let cluster = ecs_cluster_arn(params.get("cluster").as_deref());
            let definition = params.required("taskDefinition", call)?;
            let mut needed = vec![
                Authorization::new(&action, vec![ecs_task_definition_arn(&definition)])
                    .with("ecs:cluster", &cluster),
            ];
            // ECS passes the task definition's roles (and any overrides) to
            // the task with the caller's permissions.
            let mut roles = lookups.task_definition_roles(upstream, &definition).await;
            let overrides = params.json().get("overrides");
            for key in ["taskRoleArn", "executionRoleArn"] {
                if let Some(role) = overrides.and_then(|o| o.get(key)).and_then(Value::as_str) {
                    roles.push(role.to_string());
                }
            }
            roles.sort();
            roles.dedup();
            if !roles.is_empty() {
                needed.push(
                    Authorization::new("iam:PassRole", roles)
                        .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
                );
            }
            // Tagging at creation is authorised as ecs:TagResource on each
            // new task.
            let tagged = params
                .json()
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|tags| !tags.is_empty());
            let started = started_tasks(call.response);
            if tagged && !started.is_empty() {
                needed.push(
                    Authorization::new("ecs:TagResource", started)
                        .with("ecs:CreateAction", "RunTask")
                        .with("ecs:cluster", &cluster),
                );
            }
            Ok(needed)
        }
        ("ecs", "DescribeTasks" | "StopTask") => {
            let cluster = ecs_cluster_arn(params.get("cluster").as_deref());
            let mut tasks = params.list("tasks");
            tasks.extend(params.get("task"));
            if tasks.is_empty() {
                return Err(format!("{} without tasks", call.operation));
            }
            let resources: Vec<String> = tasks.iter().map(|t| ecs_task_arn(&cluster, t)).collect();
            let mut needed =
                vec![Authorization::new(&action, resources.clone()).with("ecs:cluster", &cluster)];
            // Tags in the answer are read with ecs:ListTagsForResource.
            let with_tags = params
                .json()
                .get("include")
                .and_then(Value::as_array)
                .is_some_and(|fields| fields.iter().any(|f| f == "TAGS"));
            if with_tags {
                needed.push(
                    Authorization::new("ecs:ListTagsForResource", resources)
                        .with("ecs:cluster", cluster),
                );
            }
            Ok(needed)
        }
        ("ecs", "ListTasks") => {
            let cluster = ecs_cluster_arn(params.get("cluster").as_deref());
            Ok(vec![
                Authorization::new(&action, any()).with("ecs:cluster", cluster),
            ])
        }
        ("ecs", "DescribeTaskDefinition") => one(any()),
        ("ecs", "ListTagsForResource" | "TagResource" | "UntagResource") => {
            one(vec![params.required("resourceArn", call)?])
        }
        ("autoscaling", "DescribeAutoScalingGroups" | "DescribeScalingActivities") => one(any()),
        ("autoscaling", "SetDesiredCapacity" | "UpdateAutoScalingGroup") => {
            let group = params.required("AutoScalingGroupName", call)?;
            one(vec![lookups.asg_arn(upstream, &group).await])
        }
        ("autoscaling", "CreateOrUpdateTags" | "DeleteTags") => {
            let mut groups = Vec::new();
            for n in 1.. {
                let Some(id) = params.get(&format!("Tags.member.{n}.ResourceId")) else {
                    break;
                };
                groups.push(lookups.asg_arn(upstream, &id).await);
            }
            if groups.is_empty() {
                return Err(format!("{} without Tags", call.operation));
            }
            groups.sort();
            groups.dedup();
            one(groups)
        }
        ("cloudwatch", "DescribeAlarms") => {
            let names = params.list("AlarmNames");
            let resources = if !names.is_empty() {
                names
                    .iter()
                    .map(|n| arn("cloudwatch", &format!("alarm:{n}")))
                    .collect()
            } else if let Some(prefix) = params.get("AlarmNamePrefix") {
                vec![arn("cloudwatch", &format!("alarm:{prefix}*"))]
            } else {
                vec![arn("cloudwatch", "alarm:*")]
            };
            one(resources)
        }
        (
            "dynamodb",
            "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan"
            | "DescribeTable",
        ) => {
            let table = params.required("TableName", call)?;
            let resource = if table.starts_with("arn:") {
                table
            } else {
                arn("dynamodb", &format!("table/{table}"))
            };
            one(vec![resource])
        }
        ("logs", "GetLogEvents") => {
            let group = log_group(&params, call)?;
            let stream = params.required("logStreamName", call)?;
            one(vec![arn(
                "logs",
                &format!("log-group:{group}:log-stream:{stream}"),
            )])
        }
        ("logs", "FilterLogEvents" | "DescribeLogStreams") => {
            let group = log_group(&params, call)?;
            one(vec![arn("logs", &format!("log-group:{group}:*"))])
        }
        (service, operation) => Err(format!(
            "no IAM mapping for {service}:{operation}: add one to tests/src/call_record.rs"
        )),
    }
}

/// `logGroupName`, or the name in `logGroupIdentifier` (a name or an ARN).
fn log_group(params: &Params, call: &ObservedCall<'_>) -> Result<String, String> {
    if let Some(name) = params.get("logGroupName") {
        return Ok(name);
    }
    let identifier = params.required("logGroupIdentifier", call)?;
    Ok(match identifier.split_once(":log-group:") {
        Some((_, rest)) => rest.trim_end_matches(":*").to_string(),
        None => identifier,
    })
}

/// The task ARNs in a RunTask answer.
fn started_tasks(response: Option<&[u8]>) -> Vec<String> {
    let Some(body) = response else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    value
        .get("tasks")
        .and_then(Value::as_array)
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|t| t.get("taskArn")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// --- Lookups: what IAM knows and the request does not say -------------------

/// Answers asked of the upstream (moto) with the harness's own clients,
/// cached per process. They go straight to the upstream, not through the
/// proxy, so they are not recorded.
#[derive(Default)]
struct Lookups {
    config: OnceCell<aws_config::SdkConfig>,
    cache: Mutex<HashMap<String, Arc<Vec<String>>>>,
}

impl Lookups {
    async fn config(&self, upstream: &str) -> &aws_config::SdkConfig {
        self.config
            .get_or_init(|| crate::moto::sdk_config_for(upstream))
            .await
    }

    async fn cached<F, Fut>(&self, key: String, fetch: F) -> Arc<Vec<String>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Vec<String>>>,
    {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let value = fetch().await;
        // Only answers are kept: a resource created later is looked up again.
        let found = value.is_some();
        let value = Arc::new(value.unwrap_or_default());
        if found && let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, Arc::clone(&value));
        }
        value
    }

    /// The group's ARN (it holds a UUID only AWS knows); if the group does
    /// not exist, the ARN with `*` for that UUID.
    async fn asg_arn(&self, upstream: Option<&str>, name: &str) -> String {
        let fallback = arn(
            "autoscaling",
            &format!("autoScalingGroup:*:autoScalingGroupName/{name}"),
        );
        let Some(upstream) = upstream else {
            return fallback;
        };
        let found = self
            .cached(format!("asg {name}"), || async {
                let client = aws_sdk_autoscaling::Client::new(self.config(upstream).await);
                let output = client
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(name)
                    .send()
                    .await
                    .ok()?;
                let arn = output
                    .auto_scaling_groups()
                    .iter()
                    .find(|g| g.auto_scaling_group_name() == Some(name))?
                    .auto_scaling_group_arn()?
                    .to_string();
                Some(vec![arn])
            })
            .await;
        found.first().cloned().unwrap_or(fallback)
    }

    /// A secret's full ARN (with AWS's random suffix) from its name or ARN.
    async fn secret_arn(&self, upstream: Option<&str>, id: &str) -> String {
        let fallback = if id.starts_with("arn:") {
            id.to_string()
        } else {
            arn("secretsmanager", &format!("secret:{id}"))
        };
        let Some(upstream) = upstream else {
            return fallback;
        };
        if id.starts_with("arn:") {
            return fallback;
        }
        let found = self
            .cached(format!("secret {id}"), || async {
                let client = aws_sdk_secretsmanager::Client::new(self.config(upstream).await);
                let output = client.describe_secret().secret_id(id).send().await.ok()?;
                Some(vec![output.arn()?.to_string()])
            })
            .await;
        found.first().cloned().unwrap_or(fallback)
    }

    /// The task role and execution role of a task definition, if it has
    /// them (none if it does not exist: RunTask then fails before any role
    /// is passed).
    async fn task_definition_roles(&self, upstream: Option<&str>, definition: &str) -> Vec<String> {
        let Some(upstream) = upstream else {
            return Vec::new();
        };
        let roles = self
            .cached(format!("task-definition {definition}"), || async {
                let client = aws_sdk_ecs::Client::new(self.config(upstream).await);
                let output = client
                    .describe_task_definition()
                    .task_definition(definition)
                    .send()
                    .await
                    .ok()?;
                let definition = output.task_definition()?;
                Some(
                    [definition.task_role_arn(), definition.execution_role_arn()]
                        .into_iter()
                        .flatten()
                        .map(str::to_string)
                        .collect(),
                )
            })
            .await;
        roles.as_ref().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(
        service: &'a str,
        operation: &'a str,
        protocol: Protocol,
        body: &'a [u8],
    ) -> ObservedCall<'a> {
        ObservedCall {
            service,
            operation,
            protocol,
            body,
            status: Some(200),
            response: None,
        }
    }

    async fn map(call: &ObservedCall<'_>) -> Result<Vec<Authorization>, String> {
        authorizations(call, &Lookups::default(), None).await
    }

    #[tokio::test]
    async fn query_calls_name_their_resources() {
        let body = b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Adeploy&Message=x";
        let mapped = map(&call("sns", "Publish", Protocol::Query, body))
            .await
            .unwrap();
        assert_eq!(
            mapped,
            vec![Authorization::new(
                "sns:Publish",
                vec!["arn:aws:sns:us-east-1:123456789012:deploy".into()]
            )]
        );

        let body = b"Action=DeleteTags&Tags.member.1.ResourceId=app&Tags.member.1.ResourceType=auto-scaling-group&Tags.member.1.Key=k";
        let mapped = map(&call("autoscaling", "DeleteTags", Protocol::Query, body))
            .await
            .unwrap();
        assert_eq!(
            mapped[0].resources,
            vec![
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/app"
            ]
        );

        let body = b"Action=DescribeAlarms&StateValue=ALARM&AlarmNamePrefix=kiln-";
        let mapped = map(&call("monitoring", "DescribeAlarms", Protocol::Query, body))
            .await
            .unwrap();
        assert_eq!(mapped[0].action, "cloudwatch:DescribeAlarms");
        assert_eq!(
            mapped[0].resources,
            vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:kiln-*"]
        );
    }

    #[tokio::test]
    async fn ecs_calls_carry_the_cluster_condition_key() {
        let body = br#"{"cluster":"deploys","tasks":["abc","arn:aws:ecs:us-east-1:123456789012:task/deploys/def"]}"#;
        let mapped = map(&call("ecs", "DescribeTasks", Protocol::Json, body))
            .await
            .unwrap();
        assert_eq!(
            mapped[0].resources,
            vec![
                "arn:aws:ecs:us-east-1:123456789012:task/deploys/abc",
                "arn:aws:ecs:us-east-1:123456789012:task/deploys/def"
            ]
        );
        assert_eq!(
            mapped[0].context["ecs:cluster"],
            "arn:aws:ecs:us-east-1:123456789012:cluster/deploys"
        );

        let mapped = map(&call("ecs", "ListTasks", Protocol::Json, b"{}"))
            .await
            .unwrap();
        assert_eq!(mapped[0].resources, vec!["*"]);
        assert_eq!(
            mapped[0].context["ecs:cluster"],
            "arn:aws:ecs:us-east-1:123456789012:cluster/default"
        );
    }

    #[tokio::test]
    async fn run_task_with_tags_also_needs_tag_resource_on_the_new_task() {
        let body =
            br#"{"cluster":"deploys","taskDefinition":"updater:3","tags":[{"key":"k","value":"v"}],
            "overrides":{"taskRoleArn":"arn:aws:iam::123456789012:role/override"}}"#;
        let response = br#"{"tasks":[{"taskArn":"arn:aws:ecs:us-east-1:123456789012:task/deploys/t1"}],"failures":[]}"#;
        let observed = ObservedCall {
            response: Some(response),
            ..call("ecs", "RunTask", Protocol::Json, body)
        };
        let mapped = map(&observed).await.unwrap();
        let actions: Vec<&str> = mapped.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["ecs:RunTask", "iam:PassRole", "ecs:TagResource"]);
        assert_eq!(
            mapped[0].resources,
            vec!["arn:aws:ecs:us-east-1:123456789012:task-definition/updater:3"]
        );
        assert_eq!(
            mapped[1].context["iam:PassedToService"],
            "ecs-tasks.amazonaws.com"
        );
        assert_eq!(
            mapped[2].resources,
            vec!["arn:aws:ecs:us-east-1:123456789012:task/deploys/t1"]
        );
        assert_eq!(mapped[2].context["ecs:CreateAction"], "RunTask");
    }

    #[tokio::test]
    async fn json_calls_of_the_lanes_and_the_log_lines_are_mapped() {
        let mapped = map(&call(
            "dynamodb",
            "UpdateItem",
            Protocol::Json,
            br#"{"TableName":"kiln-lanes"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(
            mapped[0].resources,
            vec!["arn:aws:dynamodb:us-east-1:123456789012:table/kiln-lanes"]
        );
        let mapped = map(&call(
            "logs",
            "GetLogEvents",
            Protocol::Json,
            br#"{"logGroupName":"/ecs/kiln-stack-updater","logStreamName":"stack-updater/c/1"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(
            mapped[0].resources,
            vec![
                "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/kiln-stack-updater:log-stream:stack-updater/c/1"
            ]
        );
        let mapped = map(&call(
            "logs",
            "FilterLogEvents",
            Protocol::Json,
            br#"{"logGroupIdentifier":"arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:*"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(
            mapped[0].resources,
            vec!["arn:aws:logs:us-east-1:123456789012:log-group:/ecs/u:*"]
        );
    }

    #[tokio::test]
    async fn an_unknown_call_is_reported_not_dropped() {
        let err = map(&call("ecs", "DeleteCluster", Protocol::Json, b"{}"))
            .await
            .unwrap_err();
        assert!(
            err.contains("no IAM mapping for ecs:DeleteCluster"),
            "{err}"
        );
    }

    #[test]
    fn credentials_and_runtime_variables_stay_out_of_the_record() {
        assert!(is_configuration("DEPLOY_TOPIC_ARN"));
        assert!(!is_configuration("AWS_SECRET_ACCESS_KEY"));
        assert!(!is_configuration("AWS_LAMBDA_RUNTIME_API"));
        assert!(!is_configuration("_HANDLER"));
    }
}
