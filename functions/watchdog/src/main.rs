use kiln::aws::LazySdkConfig;
use kiln::sns::SnsPublisher;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use watchdog::crash_history::EcsTaskHistory;
use watchdog::retry::{Backoff, Deadline};
use watchdog::scaling::AsgClient;
use watchdog::{Config, Watchdog};

// One thread: Lambda hands a function one event at a time, and a runtime
// with worker threads would only add thread start-up at init and a
// cross-thread wake-up on every network read.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    kiln::logging::init();
    let env = kiln::Env::process();
    let config = kiln::config::or_exit(Config::from_env(&env));
    // Nothing is loaded or connected until the first event needs it.
    let (sdk, _roots) = kiln::config::or_exit(LazySdkConfig::from_env(&env));
    let watchdog = Watchdog {
        config,
        autoscaling: AsgClient::new(sdk.client(aws_sdk_autoscaling::Client::new)),
        history: EcsTaskHistory::new(sdk.client(aws_sdk_ecs::Client::new)),
        publisher: SnsPublisher::new(sdk.client(aws_sdk_sns::Client::new)),
        metrics: kiln::Metrics::new("watchdog"),
        backoff: Backoff::default(),
        // Lambda sets AWS_REGION; the SDK reads the same variable.
        region: env
            .optional("AWS_REGION")
            .or_else(|| env.optional("AWS_DEFAULT_REGION")),
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
