use alert_forwarder::clock::SystemClock;
use alert_forwarder::refire::CloudWatchAlarms;
use alert_forwarder::slack::ReqwestWebhook;
use alert_forwarder::{Config, Forwarder};
use kiln::aws::LazySdkConfig;
use kiln::secrets::SecretsManagerFetcher;
use kiln::{Metrics, SecretCache};
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: Lambda hands a function one event at a time, and a runtime
// with worker threads would only add thread start-up at init and a
// cross-thread wake-up on every network read.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kiln::logging::init();
    let env = kiln::Env::process();
    let config = kiln::config::or_exit(Config::from_env(&env));
    // Nothing is loaded or connected until the first event needs it.
    let (sdk, roots) = kiln::config::or_exit(LazySdkConfig::from_env(&env));
    let forwarder = Forwarder::new(
        config,
        SecretCache::new(SecretsManagerFetcher::new(
            sdk.client(aws_sdk_secretsmanager::Client::new),
        )),
        ReqwestWebhook::trusting(&roots),
        CloudWatchAlarms::new(sdk.client(aws_sdk_cloudwatch::Client::new)),
        SystemClock,
        Metrics::new("alert-forwarder"),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        forwarder.handle(event)
    }))
    .await
}
