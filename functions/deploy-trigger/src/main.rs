use std::convert::Infallible;

use deploy_trigger::{Config, Deps, handle};
use kiln::aws::LazySdkConfig;
use kiln::secrets::SecretsManagerFetcher;
use kiln::sns::SnsPublisher;
use kiln::{Env, Metrics, SecretCache};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: Lambda hands a function one event at a time, and a runtime
// with worker threads would only add thread start-up at init and a
// cross-thread wake-up on every network read.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kiln::logging::init();
    let env = Env::process();
    let config = kiln::config::or_exit(Config::from_env(&env));
    // Nothing is loaded or connected until the first event needs it.
    let (sdk, _roots) = kiln::config::or_exit(LazySdkConfig::from_env(&env));
    let deps = Deps {
        config,
        secrets: SecretCache::new(SecretsManagerFetcher::new(
            sdk.client(aws_sdk_secretsmanager::Client::new),
        )),
        publisher: SnsPublisher::new(sdk.client(aws_sdk_sns::Client::new)),
        metrics: Metrics::new("deploy-trigger"),
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            // Boxed: the SDK futures inside are deep enough to overflow the
            // compiler's layout depth limit when nested in the runtime's.
            Ok::<_, Infallible>(Box::pin(handle(deps, event.payload)).await)
        },
    ))
    .await
}
