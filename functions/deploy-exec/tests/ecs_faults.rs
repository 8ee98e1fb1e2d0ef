//! RunTask's failure modes, which moto cannot produce, against SDK mocks:
//! placement failures, an already-used idempotency token, throttling, and
//! the idempotency token itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::error::ErrorMetadata;
use aws_sdk_ecs::operation::run_task::{RunTaskError, RunTaskOutput};
use aws_sdk_ecs::types::error::ConflictException;
use aws_sdk_ecs::types::{Failure, Task};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::runner::EcsTaskRunner;
use deploy_exec::{Config, Deps, handle};
use kiln::secrets::fake::FakeSecrets;
use kiln::{DeployEvent, DeployRequest, Env, KilnError, Metrics};
use serde_json::{Value, json};

const TASK_ARN: &str =
    "arn:aws:ecs:us-east-1:123456789012:task/kiln/0f9a1c2b3d4e5f60718293a4b5c6d7e8";

fn client(rules: &[&Rule]) -> Client {
    // Retries as in production (three attempts), without the waiting.
    mock_client!(aws_sdk_ecs, RuleMode::Sequential, rules, |builder| {
        builder.retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::ZERO)
                .with_max_backoff(Duration::ZERO),
        )
    })
}

fn deps(
    client: Client,
) -> Deps<
    EcsTaskRunner,
    GitHubReporter<FakeSecrets>,
    kiln::sns::fake::RecordingPublisher,
    deploy_exec::task_log::CloudWatchLogTail,
> {
    let config = Config::from_env(&Env::from_pairs([
        ("CLUSTER", "kiln"),
        ("TASK_DEFINITION", "kiln-stack-updater:3"),
        ("CONTAINER_NAME", "stack-updater"),
        ("SUBNETS", "subnet-1,subnet-2"),
        ("SECURITY_GROUPS", "sg-1"),
        ("CAPACITY_PROVIDER", "FARGATE_SPOT"),
        ("TASK_ENVIRONMENT", "FURNACE_INSTANCE=prod"),
    ]))
    .unwrap();
    Deps {
        reporter: GitHubReporter::new(&config.github_api_url, None, RetryPolicy::immediate(1)),
        runner: EcsTaskRunner::new(client),
        publisher: kiln::sns::fake::RecordingPublisher::new(),
        logs: deploy_exec::task_log::CloudWatchLogTail::new(
            aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::Config::builder()
                    .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
                    .build(),
            ),
        ),
        metrics: Metrics::in_memory("deploy-exec"),
        lanes: None,
        config,
    }
}

fn request(delivery_id: &str) -> DeployRequest {
    DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: delivery_id.into(),
        event: DeployEvent::Push,
        repository: "Codertocat/Hello-World".into(),
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        git_ref: "refs/heads/main".into(),
        sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
        environment: "production".into(),
        sender: "Codertocat".into(),
        deployment_id: None,
        requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
        event_at: None,
        before: None,
    }
}

fn sns_event(messages: &[String]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            json!({
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:kiln-deploy:3f7c",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": format!("95df01b4-ee98-5cb9-9903-4c221d41eb5{i}"),
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:kiln-deploy",
                    "Subject": null,
                    "Message": message,
                    "Timestamp": "2026-11-22T10:00:01.000Z",
                    "MessageAttributes": {}
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

fn started() -> RunTaskOutput {
    RunTaskOutput::builder()
        .tasks(
            Task::builder()
                .task_arn(TASK_ARN)
                .last_status("PROVISIONING")
                .build(),
        )
        .build()
}

#[tokio::test]
async fn run_task_input_carries_everything() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let rule = mock!(Client::run_task)
        .match_requests(move |input| {
            record.lock().unwrap().push(input.clone());
            true
        })
        .then_output(started);
    let deps = deps(client(&[&rule]));
    let out = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap();
    assert_eq!(out["started"][0]["task_arn"], TASK_ARN);
    let input = seen.lock().unwrap()[0].clone();
    assert_eq!(input.cluster(), Some("kiln"));
    assert_eq!(input.task_definition(), Some("kiln-stack-updater:3"));
    assert_eq!(input.count(), Some(1));
    assert_eq!(input.started_by(), Some("kiln/d-1"));
    assert_eq!(input.client_token().map(str::len), Some(64));
    assert_eq!(input.launch_type(), None);
    let strategy = input.capacity_provider_strategy();
    assert_eq!(strategy.len(), 1);
    assert_eq!(strategy[0].capacity_provider(), "FARGATE_SPOT");
    assert_eq!(
        input.propagate_tags(),
        Some(&aws_sdk_ecs::types::PropagateTags::TaskDefinition)
    );
    let vpc = input
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
        .unwrap();
    assert_eq!(vpc.subnets(), ["subnet-1", "subnet-2"]);
    assert_eq!(vpc.security_groups(), ["sg-1"]);
    assert_eq!(
        vpc.assign_public_ip(),
        Some(&aws_sdk_ecs::types::AssignPublicIp::Disabled)
    );
    let container = &input.overrides().unwrap().container_overrides()[0];
    assert_eq!(container.name(), Some("stack-updater"));
    let environment: Vec<(&str, &str)> = container
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(
        environment,
        [
            (
                "GIT_REMOTE",
                "https://github.com/Codertocat/Hello-World.git"
            ),
            ("GIT_SHA", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            ("GIT_REF", "refs/heads/main"),
            ("GIT_TAG", "main"),
            ("STACK_ENV", "production"),
            ("DELIVERY_ID", "d-1"),
            ("REPOSITORY", "Codertocat/Hello-World"),
            ("SENDER", "Codertocat"),
            ("FURNACE_INSTANCE", "prod"),
        ]
    );
    let tags: Vec<(&str, &str)> = input
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(
        tags,
        [
            ("kiln:repository", "Codertocat/Hello-World"),
            ("kiln:environment", "production"),
            ("kiln:sha", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            ("kiln:delivery", "d-1"),
            ("kiln:sender", "Codertocat"),
        ]
    );
}

#[tokio::test]
async fn the_same_delivery_twice_sends_the_same_client_token() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&tokens);
    let rule = mock!(Client::run_task)
        .match_requests(move |input| {
            record
                .lock()
                .unwrap()
                .push(input.client_token().unwrap_or_default().to_string());
            true
        })
        .sequence()
        .output(started)
        .times(3)
        .build();
    let deps = deps(client(&[&rule]));
    let event = sns_event(&[request("72d3162e-cc78-11e3-81ab-4c9367dc0958").to_json()]);
    handle(&deps, event.clone()).await.unwrap();
    handle(&deps, event).await.unwrap();
    handle(&deps, sns_event(&[request("another-delivery").to_json()]))
        .await
        .unwrap();
    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(rule.num_calls(), 3);
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[0], tokens[2]);
    assert_eq!(
        tokens[0],
        deploy_exec::task_request::client_token("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
}

#[tokio::test]
async fn failures_in_the_response_fail_the_invocation() {
    let rule = mock!(Client::run_task).then_output(|| {
        RunTaskOutput::builder()
            .failures(
                Failure::builder()
                    .arn("arn:aws:ecs:us-east-1:123456789012:container-instance/kiln/1")
                    .reason("RESOURCE:MEMORY")
                    .build(),
            )
            .build()
    });
    let deps = deps(client(&[&rule]));
    let err = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RunTaskFailed");
    assert_eq!(
        err.to_string(),
        "1 of 1 records failed: record 1 (SNS message 95df01b4-ee98-5cb9-9903-4c221d41eb50): RunTask started no task: RESOURCE:MEMORY for arn:aws:ecs:us-east-1:123456789012:container-instance/kiln/1"
    );
}

#[tokio::test]
async fn a_response_without_a_task_fails_the_invocation() {
    let rule = mock!(Client::run_task).then_output(|| RunTaskOutput::builder().build());
    let deps = deps(client(&[&rule]));
    let err = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("RunTask returned neither a task nor a failure"),
        "{err}"
    );
}

#[tokio::test]
async fn conflict_for_the_same_token_means_already_started() {
    let rule = mock!(Client::run_task).then_error(|| {
        RunTaskError::ConflictException(
            ConflictException::builder()
                .message("The clientToken is already in use with a different RunTask request")
                .resource_ids(TASK_ARN)
                .build(),
        )
    });
    let deps = deps(client(&[&rule]));
    let out = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap();
    assert_eq!(out["started"][0]["task_arn"], TASK_ARN);
    assert_eq!(out["started"][0]["already_started"], true);
    assert_eq!(deps.metrics.total("DeploysAlreadyStarted"), 1.0);
    assert_eq!(deps.metrics.total("DeploysStarted"), 0.0);
}

/// ECS's throttling error, which the SDK retries.
fn throttled() -> RunTaskError {
    RunTaskError::generic(
        ErrorMetadata::builder()
            .code("ThrottlingException")
            .message("Rate exceeded")
            .build(),
    )
}

#[tokio::test]
async fn throttling_then_success_succeeds() {
    let rule = mock!(Client::run_task)
        .sequence()
        .error(throttled)
        .output(started)
        .build();
    let deps = deps(client(&[&rule]));
    let out = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap();
    assert_eq!(out["started"][0]["task_arn"], TASK_ARN);
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn throttling_that_persists_fails_with_the_code() {
    let rule = mock!(Client::run_task)
        .sequence()
        .error(throttled)
        .times(3)
        .build();
    let deps = deps(client(&[&rule]));
    let err = handle(&deps, sns_event(&[request("d-1").to_json()]))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "RunTaskFailed");
    assert!(
        err.to_string()
            .ends_with("RunTask failed: ThrottlingException: Rate exceeded"),
        "{err}"
    );
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn malformed_messages_fail_naming_the_record_and_the_rest_start() {
    let rule = mock!(Client::run_task).then_output(started);
    let deps = deps(client(&[&rule]));
    let mut wrong_version: Value = serde_json::from_str(&request("d-2").to_json()).unwrap();
    wrong_version["version"] = 2.into();
    let event = sns_event(&[
        "Hello\r\nworld!".to_string(),
        wrong_version.to_string(),
        request("d-3").to_json(),
    ]);
    let err = handle(&deps, event).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidDeployRequest");
    let message = err.to_string();
    assert!(message.starts_with("2 of 3 records failed: record 1 (SNS message 95df01b4-ee98-5cb9-9903-4c221d41eb50): not a valid deploy request: "), "{message}");
    assert!(
        message.contains("; record 2 (SNS message 95df01b4-ee98-5cb9-9903-4c221d41eb51): not a valid deploy request: kiln.deploy.request version 2 is not supported"),
        "{message}"
    );
    // The valid third record still started its task.
    assert_eq!(rule.num_calls(), 1);
}
