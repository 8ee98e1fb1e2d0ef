//! The harness itself: the Runtime API emulation (with a tiny echo
//! function), the local API Gateway and the recording HTTP server.

use std::sync::Arc;
use std::time::Duration;

use kiln_tests::apigw::ApiGateway;
use kiln_tests::http::{RecordingServer, Reply};
use kiln_tests::lambda::{LambdaFunction, Stream};
use serde_json::json;

const ECHO: &str = env!("CARGO_BIN_EXE_echo-lambda");
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

fn echo() -> kiln_tests::lambda::LambdaBuilder {
    LambdaFunction::builder("echo-lambda").binary(ECHO)
}

async fn post(url: &str, content_type: &str, body: &'static str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn invoke_returns_the_response_with_lambda_context_and_env() {
    let function = echo().var("ECHO_EXTRA", "42").memory_mb(256).start().await;
    let answer = function.invoke(json!({"hello": "world"})).await.unwrap();

    assert_eq!(answer["echo"], json!({"hello": "world"}));
    assert_eq!(
        answer["function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo-lambda"
    );
    assert_eq!(answer["request_id"].as_str().unwrap().len(), 36);
    assert!(answer["trace_id"].as_str().unwrap().starts_with("Root=1-"));
    assert_eq!(answer["deadline_in_future"], true);
    assert_eq!(answer["env"]["function_name"], "echo-lambda");
    assert_eq!(answer["env"]["memory"], "256");
    assert_eq!(answer["env"]["log_group"], "/aws/lambda/echo-lambda");
    assert_eq!(answer["env"]["extra"], "42");

    let second = function.invoke(json!(2)).await.unwrap();
    assert_eq!(second["echo"], 2);
    assert_ne!(second["request_id"], answer["request_id"]);

    let timings = function.timings();
    let (init, cold) = (timings.init.unwrap(), timings.cold_total.unwrap());
    assert!(init <= cold, "{timings:?}");
}

#[tokio::test]
async fn handler_errors_keep_their_type_and_message() {
    let function = echo().start().await;
    let error = function
        .invoke(json!({"fail": "no such environment"}))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "EchoFailure");
    assert_eq!(error.error_message, "no such environment");
    // The function keeps serving after an error.
    assert!(function.invoke(json!({})).await.is_ok());
}

#[tokio::test]
async fn a_crash_is_a_runtime_exit_error() {
    let function = echo().start().await;
    let error = function.invoke(json!({"exit": 3})).await.unwrap_err();
    assert_eq!(error.error_type, "Runtime.ExitError");
    assert!(error.error_message.contains("exit status 3"), "{error}");
    assert_eq!(function.exit_status().and_then(|s| s.code()), Some(3));
    // Later invocations fail the same way instead of hanging.
    let again = function.invoke(json!({})).await.unwrap_err();
    assert_eq!(again.error_type, "Runtime.ExitError");
}

#[tokio::test]
async fn a_slow_function_times_out() {
    let function = echo().timeout(Duration::from_millis(300)).start().await;
    function.wait_ready(INIT_TIMEOUT).await.unwrap();
    let error = function
        .invoke(json!({"sleep_ms": 5_000}))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "Sandbox.Timedout");
}

#[tokio::test]
async fn output_is_captured_per_stream() {
    let function = echo().echo(false).start().await;
    function
        .invoke(json!({"print": "{\"level\":\"INFO\",\"msg\":\"hi\"}"}))
        .await
        .unwrap();
    // Output arrives through pipes: the process exiting flushes it all.
    function.kill();
    assert!(function.wait_exit(INIT_TIMEOUT).await.is_some());
    let lines = function.output();
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stdout && l.text.contains("\"hi\""))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.text.contains("\"hi\""))
    );
    assert!(function.json_lines().iter().any(|v| v["msg"] == "hi"));
}

#[tokio::test]
async fn init_failure_reports_exit_code_and_stderr() {
    let function = echo().var("ECHO_FAIL_INIT", "bad config").start().await;
    let failure = function.expect_init_failure(INIT_TIMEOUT).await;
    assert_eq!(failure.exit_code, Some(1), "{failure}");
    assert!(failure.stderr.contains("ECHO_FAIL_INIT"), "{failure}");
    assert!(function.wait_ready(INIT_TIMEOUT).await.is_err());
    let error = function.invoke(json!({})).await.unwrap_err();
    assert_eq!(error.error_type, "Runtime.ExitError");
}

#[tokio::test]
async fn wait_ready_measures_init() {
    let function = echo().start().await;
    let init = function.wait_ready(INIT_TIMEOUT).await.unwrap();
    assert_eq!(function.timings().init, Some(init));
    assert_eq!(function.timings().cold_total, None);
}

#[tokio::test]
async fn api_gateway_turns_http_into_payload_2_events() {
    let function = Arc::new(echo().start().await);
    let gateway = ApiGateway::start("/webhook", Arc::clone(&function))
        .await
        .unwrap();
    let response = post(&gateway.url(), "application/json", "{\"a\":1}").await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.text().await.unwrap(), "{\"a\":1}");

    // Not text: base64 on the way in, decoded on the way out.
    let form = post(
        &gateway.url(),
        "application/x-www-form-urlencoded",
        "payload=%7B%7D",
    )
    .await;
    assert_eq!(form.status(), 201);
    assert_eq!(form.text().await.unwrap(), "payload=%7B%7D");

    let missing = reqwest::Client::new()
        .get(format!("http://{}/nope", gateway.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn api_gateway_answers_500_when_the_function_fails() {
    let function = Arc::new(echo().start().await);
    let gateway = ApiGateway::start("/webhook", Arc::clone(&function))
        .await
        .unwrap();
    let response = post(&gateway.url(), "application/json", "{}").await;
    assert_eq!(response.status(), 201);
    function.kill();
    let response = post(&gateway.url(), "application/json", "{}").await;
    assert_eq!(response.status(), 500);
}

#[tokio::test]
async fn recording_server_records_and_follows_its_script() {
    let server = RecordingServer::start().await;
    server.push(Reply::text(429, "slow down").header("retry-after", "7"));
    server.push(Reply::json(500, &json!({"error": "boom"})));
    let client = reqwest::Client::new();

    let first = client
        .post(server.url_for("/services/T/B/X?x=1"))
        .header("content-type", "application/json")
        .body("{\"text\":\"hi\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "7");
    assert_eq!(first.text().await.unwrap(), "slow down");
    let second = client.get(server.url()).send().await.unwrap();
    assert_eq!(second.status(), 500);
    let third = client.get(server.url()).send().await.unwrap();
    assert_eq!(third.status(), 200);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/services/T/B/X");
    assert_eq!(requests[0].query.as_deref(), Some("x=1"));
    assert_eq!(requests[0].header("Content-Type"), Some("application/json"));
    assert_eq!(requests[0].json(), json!({"text": "hi"}));
    assert_eq!(requests[1].method, "GET");
}

#[tokio::test]
async fn recording_server_responder_and_default() {
    let server = RecordingServer::start().await;
    server.set_default(Reply::text(200, "ok"));
    server.respond_with(|request| {
        (request.path == "/repos/o/r/deployments").then(|| Reply::json(201, &json!({"id": 7})))
    });
    let client = reqwest::Client::new();
    let created = client
        .post(server.url_for("/repos/o/r/deployments"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.json::<serde_json::Value>().await.unwrap()["id"], 7);
    let other = client.post(server.url_for("/other")).send().await.unwrap();
    assert_eq!(other.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn recording_server_can_drop_the_connection() {
    let server = RecordingServer::start().await;
    server.push(Reply::drop_connection());
    let client = reqwest::Client::new();
    let error = client
        .post(server.url())
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_status(), "{error:?}");
    // The request was still recorded, and the next one is answered.
    assert_eq!(server.request_count(), 1);
    let ok = client.post(server.url()).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn recording_server_delays_and_waits_for_requests() {
    let server = Arc::new(RecordingServer::start().await);
    server.push(Reply::status(204).delay(Duration::from_millis(50)));
    let url = server.url();
    let sender = tokio::spawn(async move { reqwest::Client::new().get(url).send().await });
    let requests = server.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(sender.await.unwrap().unwrap().status(), 204);
}
