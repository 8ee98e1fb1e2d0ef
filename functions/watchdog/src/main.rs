use kiln::sns::SnsPublisher;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use watchdog::crash_history::EcsTaskHistory;
use watchdog::retry::{Backoff, Deadline};
use watchdog::scaling::AsgClient;
use watchdog::{Config, Watchdog};

#[tokio::main]
async fn main() -> Result<(), Error> {
    kiln::logging::init();
    let config = match Config::from_env(&kiln::Env::process()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    let sdk = kiln::aws::load_sdk_config().await;
    let watchdog = Watchdog {
        config,
        autoscaling: AsgClient::new(aws_sdk_autoscaling::Client::new(&sdk)),
        history: EcsTaskHistory::new(aws_sdk_ecs::Client::new(&sdk)),
        publisher: SnsPublisher::new(aws_sdk_sns::Client::new(&sdk)),
        metrics: kiln::Metrics::new("watchdog"),
        backoff: Backoff::default(),
        region: sdk.region().map(|r| r.to_string()),
    };
    let watchdog = &watchdog;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let deadline = Deadline::from_epoch_millis(event.context.deadline);
        // Boxed: the SDK futures inside are deep, and the runtime's own
        // future would otherwise have to lay them all out.
        Box::pin(watchdog.handle(event.payload, deadline, time::OffsetDateTime::now_utc()))
    }))
    .await
}
