use std::convert::Infallible;

use deploy_trigger::{Config, Deps, handle};
use kiln::secrets::SecretsManagerFetcher;
use kiln::sns::SnsPublisher;
use kiln::{Env, Metrics, SecretCache};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kiln::logging::init();
    let config = Config::from_env(&Env::process()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let sdk = kiln::aws::load_sdk_config().await;
    let deps = Deps {
        config,
        secrets: SecretCache::new(SecretsManagerFetcher::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
        )),
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
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
