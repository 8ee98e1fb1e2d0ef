use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::lane_store::DynamoLaneStore;
use deploy_exec::runner::EcsTaskRunner;
use deploy_exec::task_log::CloudWatchLogTail;
use deploy_exec::{Config, Deps, handle};
use kiln::aws::LazySdkConfig;
use kiln::secrets::{SecretCache, SecretsManagerFetcher};
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: Lambda hands a function one event at a time, and a runtime
// with worker threads would only add thread start-up at init and a
// cross-thread wake-up on every network read.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kiln::logging::init();
    let env = kiln::Env::process();
    let config = kiln::config::or_exit(Config::from_env(&env));
    if !config.task_definition_is_pinned() {
        tracing::warn!(task_definition = %config.task_definition, "TASK_DEFINITION names no revision: each deployment runs the latest registered one");
    }
    // Nothing is loaded or connected until the first event needs it.
    let (sdk, roots) = kiln::config::or_exit(LazySdkConfig::from_env(&env));
    let token = config.github_token_secret_arn.clone().map(|arn| {
        let fetcher = SecretsManagerFetcher::new(sdk.client(aws_sdk_secretsmanager::Client::new));
        (arn, SecretCache::new(fetcher))
    });
    let lanes = config
        .lanes_table
        .as_deref()
        .map(|table| DynamoLaneStore::new(sdk.client(aws_sdk_dynamodb::Client::new), table));
    let deps = Deps {
        lanes,
        reporter: GitHubReporter::trusting(
            &config.github_api_url,
            token,
            RetryPolicy::default(),
            &roots,
        ),
        runner: EcsTaskRunner::new(sdk.client(aws_sdk_ecs::Client::new)),
        publisher: kiln::sns::SnsPublisher::new(sdk.client(aws_sdk_sns::Client::new)),
        logs: CloudWatchLogTail::new(sdk.client(aws_sdk_cloudwatchlogs::Client::new)),
        metrics: kiln::Metrics::new("deploy-exec"),
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(deps, event.payload).await
    }))
    .await
}
