//! A tiny function for testing the harness's Runtime API emulation and the
//! local API Gateway. It echoes its event, and its event can make it fail,
//! crash, sleep or print. `ECHO_FAIL_INIT=<text>` makes it fail its init the
//! way kiln's functions do on a bad configuration.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    if let Some(text) = payload.get("print").and_then(Value::as_str) {
        println!("{text}");
        eprintln!("{text}");
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if let Some(text) = payload.get("fail").and_then(Value::as_str) {
        return Err(Diagnostic {
            error_type: "EchoFailure".into(),
            error_message: text.into(),
        });
    }
    if payload.get("requestContext").is_some() {
        // An API Gateway event: answer with its body, as a full response.
        return Ok(json!({
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-echo-method": payload["requestContext"]["http"]["method"]},
            "body": payload.get("body").cloned().unwrap_or(Value::Null),
            "isBase64Encoded": payload.get("isBase64Encoded").cloned().unwrap_or(Value::Bool(false)),
        }));
    }
    Ok(json!({
        "echo": payload,
        "request_id": context.request_id,
        "function_arn": context.invoked_function_arn,
        "trace_id": context.xray_trace_id,
        "deadline_in_future": context.deadline().duration_since(std::time::SystemTime::now()).is_ok(),
        "env": {
            "function_name": std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
            "memory": std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok(),
            "log_group": std::env::var("AWS_LAMBDA_LOG_GROUP_NAME").ok(),
            "extra": std::env::var("ECHO_EXTRA").ok(),
        },
    }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    if let Ok(reason) = std::env::var("ECHO_FAIL_INIT") {
        eprintln!("error: ECHO_FAIL_INIT is set: {reason}");
        std::process::exit(1);
    }
    lambda_runtime::run(service_fn(handle)).await
}
