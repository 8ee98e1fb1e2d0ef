use alert_forwarder::clock::SystemClock;
use alert_forwarder::refire::CloudWatchAlarms;
use alert_forwarder::slack::ReqwestWebhook;
use alert_forwarder::{Config, Forwarder};
use kiln::secrets::SecretsManagerFetcher;
use kiln::{Metrics, SecretCache};
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
    let sdk = kiln::aws::load_sdk_config().await;
    let forwarder = Forwarder::new(
        config,
        SecretCache::new(SecretsManagerFetcher::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
        )),
        ReqwestWebhook::new()?,
        CloudWatchAlarms::new(aws_sdk_cloudwatch::Client::new(&sdk)),
        SystemClock,
        Metrics::new("alert-forwarder"),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        forwarder.handle(event)
    }))
    .await
}
