use deploy_exec::github::{GitHubReporter, RetryPolicy};
use deploy_exec::runner::EcsTaskRunner;
use deploy_exec::{Config, Deps, handle};
use kiln::secrets::{SecretCache, SecretsManagerFetcher};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kiln::logging::init();
    let config = match Config::from_env(&kiln::Env::process()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    if !config.task_definition_is_pinned() {
        tracing::warn!(task_definition = %config.task_definition, "TASK_DEFINITION names no revision: each deployment runs the latest registered one");
    }
    let sdk = kiln::aws::load_sdk_config().await;
    let token = config.github_token_secret_arn.clone().map(|arn| {
        let fetcher = SecretsManagerFetcher::new(aws_sdk_secretsmanager::Client::new(&sdk));
        (arn, SecretCache::new(fetcher))
    });
    let deps = Deps {
        reporter: GitHubReporter::new(&config.github_api_url, token, RetryPolicy::default())?,
        runner: EcsTaskRunner::new(aws_sdk_ecs::Client::new(&sdk)),
        metrics: kiln::Metrics::new("deploy-exec"),
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(deps, event.payload).await
    }))
    .await
}
