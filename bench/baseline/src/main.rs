//! An empty Lambda function: the runtime, the tokio executor and JSON in and
//! out, nothing else. Its cold start and memory are the floor kiln's
//! functions are compared with, so it runs on the same single-threaded tokio
//! runtime they do (a multi-threaded one starts a worker per core first:
//! about 0.3 ms more init here).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(Value::Object(Default::default()))
    }))
    .await
}
