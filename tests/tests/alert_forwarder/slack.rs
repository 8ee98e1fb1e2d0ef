//! alert-forwarder against a local Slack webhook: the real reqwest adapter
//! posting to a recording server that answers like Slack (`200 ok`, `429`
//! with `Retry-After`, `500`, `400 invalid_payload`, `404
//! channel_not_found`, `410 channel_is_archived`), with virtual time for
//! the waits, so the retry behaviour is asserted exactly and nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use alert_forwarder::clock::ManualClock;
use alert_forwarder::refire::NoAlarms;
use alert_forwarder::slack::ReqwestWebhook;
use alert_forwarder::{Config, Forwarder, HandlerError, Outcome};
use kiln::secrets::VersionStage;
use kiln::secrets::fake::FakeSecrets;
use kiln::{Alert, Env, KilnError, Metrics, SecretCache, Severity};
use kiln_tests::fixtures::{SnsNotification, fixture_json, sns_event};
use kiln_tests::http::{RecordedRequest, RecordingServer, Reply};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/slack-AbCdEf";
/// The credential part of the webhook URL: it must never show up.
const WEBHOOK_PATH: &str = "/services/T0KILN/B0KILN/xoxSECRETtoken42";
const TOKEN: &str = "xoxSECRETtoken42";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:kiln-alerts";

struct Setup {
    slack: RecordingServer,
    secrets: Arc<FakeSecrets>,
    clock: ManualClock,
    forwarder: Forwarder<ReqwestWebhook, Arc<FakeSecrets>, NoAlarms, ManualClock>,
}

async fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
    let secrets = Arc::new(FakeSecrets::new().with(
        SECRET_ARN,
        VersionStage::Current,
        &json!({ "url": slack.url_for(WEBHOOK_PATH) }).to_string(),
    ));
    let mut env = vec![("SLACK_WEBHOOK_SECRET_ARN", SECRET_ARN)];
    env.extend_from_slice(extra_env);
    let config = Config::from_env(&Env::from_pairs(env)).unwrap();
    let clock = ManualClock::at(time::macros::datetime!(2026-11-22 10:00:00 UTC));
    let forwarder = Forwarder::new(
        config,
        SecretCache::new(Arc::clone(&secrets)),
        ReqwestWebhook::new(),
        NoAlarms,
        clock.clone(),
        Metrics::in_memory("alert-forwarder"),
    );
    Setup {
        slack,
        secrets,
        clock,
        forwarder,
    }
}

fn invoke_event(payload: Value) -> LambdaEvent<Value> {
    LambdaEvent::new(payload, Context::default())
}

/// One SNS record carrying `message`.
fn sns(message: &str) -> Value {
    sns_event(&[SnsNotification::new(TOPIC, message)])
}

fn alarm_message(name: &str, old: &str, new: &str) -> String {
    json!({
        "AlarmName": name,
        "AlarmDescription": null,
        "AWSAccountId": "123456789012",
        "NewStateValue": new,
        "NewStateReason": "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).",
        "StateChangeTime": "2026-11-22T09:59:00.000+0000",
        "Region": "EU (Ireland)",
        "AlarmArn": format!("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}"),
        "OldStateValue": old,
        "Trigger": {
            "MetricName": "HTTPCode_Target_5XX_Count", "Namespace": "AWS/ApplicationELB",
            "Statistic": "SUM", "Unit": null, "Dimensions": [], "Period": 60,
            "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": 5.0
        }
    })
    .to_string()
}

async fn run(setup: &Setup, payload: Value) -> Result<Outcome, HandlerError> {
    setup.forwarder.handle(invoke_event(payload)).await
}

fn assert_is_slack_post(request: &RecordedRequest) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, WEBHOOK_PATH);
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert!(
        body["text"].as_str().is_some_and(|t| !t.is_empty()),
        "every post has a top-level text: {body}"
    );
}

#[tokio::test]
async fn ok_is_one_post_per_record() {
    let setup = setup(&[]).await;
    // Four plain-text AWS Backup notifications in one SNS event.
    let outcome = run(
        &setup,
        fixture_json("aws/notify-slack/messages/backup.json"),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Outcome {
            posted: 4,
            skipped: 0
        }
    );
    let requests = setup.slack.requests();
    assert_eq!(requests.len(), 4, "one HTTP call per record");
    for request in &requests {
        assert_is_slack_post(request);
    }
    assert!(
        requests[1].json()["text"]
            .as_str()
            .unwrap()
            .contains("AWS Backup job failed")
    );
    assert!(setup.clock.sleeps().is_empty());
    assert_eq!(setup.forwarder.metrics.total("SlackDeliveries"), 4.0);
}

#[tokio::test]
async fn rate_limit_waits_retry_after_then_posts() {
    let setup = setup(&[]).await;
    setup
        .slack
        .push(Reply::text(429, "rate_limited").header("retry-after", "3"));
    let outcome = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap();
    assert_eq!(outcome.posted, 1);
    let requests = setup.slack.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same message is retried"
    );
    assert_eq!(setup.clock.sleeps(), vec![Duration::from_secs(3)]);
    assert_eq!(setup.forwarder.metrics.total("SlackRetries"), 1.0);
}

#[tokio::test]
async fn rate_limit_longer_than_the_invocation_fails_without_waiting() {
    let setup = setup(&[]).await;
    setup
        .slack
        .push(Reply::text(429, "rate_limited").header("retry-after", "600"));
    let err = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SlackRateLimited");
    assert!(err.to_string().contains("Retry-After 600s"), "{err}");
    assert_eq!(setup.slack.request_count(), 1);
    assert!(setup.clock.sleeps().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_fail_the_invocation() {
    let setup = setup(&[]).await;
    setup.slack.set_default(Reply::text(500, "rollup_error"));
    let err = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SlackUnavailable");
    let message = err.to_string();
    assert!(
        message.starts_with("1 of 1 record(s) failed: record 1 (SNS message "),
        "{message}"
    );
    assert!(
        message.ends_with("Slack is unavailable after 4 attempt(s): HTTP 500 rollup_error"),
        "{message}"
    );
    assert_eq!(setup.slack.request_count(), 4);
    assert_eq!(
        setup.clock.sleeps(),
        vec![
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
    let diagnostic = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "SlackUnavailable");
}

#[tokio::test]
async fn a_server_error_then_ok_is_delivered() {
    let setup = setup(&[]).await;
    setup.slack.push(Reply::text(503, "service_unavailable"));
    let outcome = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap();
    assert_eq!(outcome.posted, 1);
    assert_eq!(setup.slack.request_count(), 2);
    assert_eq!(setup.clock.sleeps(), vec![Duration::from_millis(500)]);
}

#[tokio::test]
async fn network_errors_are_retried_then_fail_without_the_url() {
    let setup = setup(&[]).await;
    setup.slack.set_default(Reply::drop_connection());
    let err = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SlackUnavailable");
    assert_eq!(setup.slack.request_count(), 4);
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains(&setup.slack.url()), "{text}");
}

#[tokio::test]
async fn configuration_errors_fail_at_once_with_slacks_error() {
    for (status, error) in [
        (400, "invalid_payload"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
        (403, "action_prohibited"),
        (404, "no_service"),
    ] {
        let setup = setup(&[]).await;
        setup.slack.push(Reply::text(status, error));
        let err = run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "SlackRejected", "{error}");
        assert!(
            err.to_string().contains(&format!(
                "Slack rejected the message: HTTP {status} {error}"
            )),
            "{err}"
        );
        assert_eq!(setup.slack.request_count(), 1, "{error}: no retry");
        assert!(setup.clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn a_gone_webhook_makes_the_next_invocation_read_the_secret_again() {
    let setup = setup(&[]).await;
    setup.slack.push(Reply::text(404, "no_service"));
    run(&setup, sns("first")).await.unwrap_err();
    assert_eq!(setup.secrets.fetches(), 1);
    // The secret was rotated to a new webhook meanwhile.
    let new_path = "/services/T0KILN/B0NEW/rotated";
    setup.secrets.set(
        SECRET_ARN,
        VersionStage::Current,
        &setup.slack.url_for(new_path),
    );
    run(&setup, sns("second")).await.unwrap();
    assert_eq!(setup.secrets.fetches(), 2);
    assert_eq!(setup.slack.requests()[1].path, new_path);
    // An invalid payload says nothing about the webhook: the cache is kept.
    setup.slack.push(Reply::text(400, "invalid_payload"));
    run(&setup, sns("third")).await.unwrap_err();
    run(&setup, sns("fourth")).await.unwrap();
    assert_eq!(setup.secrets.fetches(), 2);
}

#[tokio::test]
async fn a_batch_posts_every_record_and_names_the_failed_one() {
    let setup = setup(&[]).await;
    setup.slack.push_all([
        Reply::text(200, "ok"),
        Reply::text(400, "invalid_payload"),
        Reply::text(200, "ok"),
    ]);
    let event = sns_event(&[
        SnsNotification::new(TOPIC, "one"),
        SnsNotification::new(TOPIC, "two"),
        SnsNotification::new(TOPIC, "three"),
    ]);
    let ids: Vec<String> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Sns"]["MessageId"].as_str().unwrap().to_string())
        .collect();
    let err = run(&setup, event).await.unwrap_err();
    assert_eq!(
        setup.slack.request_count(),
        3,
        "the failure did not stop the batch"
    );
    assert_eq!(err.error_type(), "SlackRejected");
    assert_eq!(
        err.to_string(),
        format!(
            "1 of 3 record(s) failed: record 2 (SNS message {}): Slack rejected the message: \
             HTTP 400 invalid_payload (the message is not valid Block Kit; it is kept in the \
             dead-letter queue)",
            ids[1]
        )
    );
}

#[tokio::test]
async fn ok_after_insufficient_data_is_not_posted_by_default() {
    let setup = setup(&[]).await;
    let outcome = run(
        &setup,
        sns(&alarm_message("api-5xx", "INSUFFICIENT_DATA", "OK")),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Outcome {
            posted: 0,
            skipped: 1
        }
    );
    assert_eq!(setup.slack.request_count(), 0);
    // After ALARM it is, and without the mention.
    let setup = self::setup(&[("SLACK_MENTION", "<!here>")]).await;
    run(&setup, sns(&alarm_message("api-5xx", "ALARM", "OK")))
        .await
        .unwrap();
    let body = setup.slack.requests()[0].body_text();
    assert!(body.contains("🟢 OK: api-5xx"));
    assert!(!body.contains("<!here>"));
    run(&setup, sns(&alarm_message("api-5xx", "OK", "ALARM")))
        .await
        .unwrap();
    let body = setup.slack.requests()[1].json();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("<!here> 🔴 ALARM: api-5xx")
    );
}

/// Slack's limits, checked the way Slack would: the fake answers
/// `400 invalid_payload` to a payload over any of them.
fn over_a_limit(body: &Value) -> Option<String> {
    let len = |v: &Value| v.as_str().map_or(0, |s| s.encode_utf16().count());
    let blocks = body["blocks"].as_array()?;
    if blocks.len() > 50 {
        return Some(format!("{} blocks", blocks.len()));
    }
    for block in blocks {
        match block["type"].as_str() {
            Some("header") if len(&block["text"]["text"]) > 150 => return Some("header".into()),
            Some("section") => {
                if len(&block["text"]["text"]) > 3000 {
                    return Some("section text".into());
                }
                let fields = block["fields"].as_array().cloned().unwrap_or_default();
                if fields.len() > 10 || fields.iter().any(|f| len(&f["text"]) > 2000) {
                    return Some("fields".into());
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().cloned().unwrap_or_default();
                if elements.len() > 10 || elements.iter().any(|e| len(&e["text"]) > 3000) {
                    return Some("context".into());
                }
            }
            _ => {}
        }
    }
    None
}

#[tokio::test]
async fn a_message_over_every_limit_is_truncated_and_accepted() {
    let setup = setup(&[]).await;
    setup.slack.respond_with(|request| {
        Some(match over_a_limit(&request.json()) {
            Some(_) => Reply::text(400, "invalid_payload"),
            None => Reply::text(200, "ok"),
        })
    });
    let huge = "x".repeat(5_000);
    let mut alert = Alert::new(
        "watchdog",
        Severity::Critical,
        format!("Title {huge}"),
        format!("Summary & <details> {huge}"),
        time::macros::datetime!(2026-11-22 10:00:00 UTC),
    );
    for i in 0..700 {
        alert = alert.field(
            format!("Field {i}"),
            if i % 2 == 0 {
                "short".into()
            } else {
                huge.clone()
            },
        );
    }
    let alarm = json!({
        "AlarmName": format!("alarm-{huge}"),
        "AlarmDescription": huge,
        "NewStateValue": "ALARM",
        "OldStateValue": "OK",
        "NewStateReason": huge,
        "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:x",
        "Trigger": {"Metrics": (0..300).map(|i| json!({"Id": format!("m{i}"), "Expression": huge})).collect::<Vec<_>>()}
    });
    let event = sns_event(&[
        SnsNotification::new(TOPIC, alert.to_json()),
        SnsNotification::new(TOPIC, alarm.to_string()),
        SnsNotification::new(TOPIC, format!("plain {huge}{huge}")),
        SnsNotification::new(
            TOPIC,
            json!({"big": huge, "list": [huge, huge]}).to_string(),
        ),
    ]);
    let outcome = run(&setup, event).await.unwrap();
    assert_eq!(outcome.posted, 4);
    let requests = setup.slack.requests();
    assert_eq!(requests.len(), 4, "accepted at the first attempt");
    for request in &requests {
        let body = request.json();
        assert_eq!(over_a_limit(&body), None);
        assert!(
            body.to_string().contains("(truncated)"),
            "the cut is visible"
        );
    }
    let alert_body = requests[0].json();
    assert_eq!(alert_body["blocks"].as_array().unwrap().len(), 50);
    assert!(alert_body.to_string().contains("more blocks left out"));
    assert!(
        alert_body
            .to_string()
            .contains("Summary &amp; &lt;details&gt;")
    );
}

#[tokio::test]
async fn kiln_alert_and_eventbridge_events_are_posted() {
    let setup = setup(&[]).await;
    let alert = Alert::new(
        "watchdog",
        Severity::Warning,
        "Alarm kiln-app-5xx: kiln-app scaled to 0",
        "Alarm kiln-app-5xx went to ALARM.",
        time::macros::datetime!(2026-11-22 10:00:00 UTC),
    )
    .field("Auto Scaling group", "kiln-app");
    run(&setup, sns(&alert.to_json())).await.unwrap();
    // An EventBridge rule targeting the function directly.
    run(
        &setup,
        fixture_json("aws/lambda-dotnet/ecs-task-state-change-event.json"),
    )
    .await
    .unwrap();
    run(
        &setup,
        fixture_json("aws/cloudwatch-docs/alarm-state-change-single-metric.json"),
    )
    .await
    .unwrap();
    let texts: Vec<String> = setup
        .slack
        .requests()
        .iter()
        .map(|r| {
            r.json()["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "⚠️ Alarm kiln-app-5xx: kiln-app scaled to 0",
            "🟢 ECS task RUNNING: sample-fargate:1",
            "🔴 ALARM: ServerCpuTooHigh",
        ]
    );
}

#[tokio::test]
async fn the_webhook_url_never_appears_in_logs() {
    let (_guard, logs) = kiln::logging::capture::json_subscriber();
    let setup = setup(&[]).await;
    setup.slack.push_all([
        Reply::text(200, "ok"),
        Reply::text(429, "rate_limited").header("retry-after", "1"),
        Reply::text(200, "ok"),
        Reply::text(500, "rollup_error"),
        Reply::drop_connection(),
        Reply::text(200, "ok"),
        Reply::text(404, "channel_not_found"),
    ]);
    for message in ["one", "two", "three", "four"] {
        let result = run(&setup, sns(message)).await;
        if let Err(err) = result {
            let text = format!("{err} {err:?}");
            assert!(!text.contains(TOKEN), "{text}");
        }
    }
    assert_eq!(setup.slack.request_count(), 7);
    let logs = logs.contents();
    assert!(
        logs.contains("posted to Slack"),
        "the logs were captured: {logs}"
    );
    assert!(logs.contains("Slack delivery failed"));
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(!logs.contains(WEBHOOK_PATH), "{logs}");
    assert!(!logs.contains(&setup.slack.url()), "{logs}");
}
