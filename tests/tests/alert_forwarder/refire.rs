//! Re-posting alarms that stay in ALARM, against moto's CloudWatch (which
//! speaks the awsQuery protocol of the pinned aws-sdk-cloudwatch) and a
//! local Slack webhook.
//!
//! moto stamps `StateUpdatedTimestamp` with the real time of SetAlarmState,
//! so "long ago" is made by putting one alarm in ALARM, waiting two seconds,
//! putting the other in ALARM, and running the check at the moment the
//! first has been in ALARM for exactly 60 minutes and one second: the
//! second has then been in ALARM for less than 60 minutes.

use std::sync::Arc;
use std::time::Duration;

use alert_forwarder::clock::ManualClock;
use alert_forwarder::refire::CloudWatchAlarms;
use alert_forwarder::slack::ReqwestWebhook;
use alert_forwarder::{Config, Forwarder, Outcome};
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use kiln::secrets::VersionStage;
use kiln::secrets::fake::FakeSecrets;
use kiln::{Env, Metrics, SecretCache};
use kiln_tests::http::{RecordingServer, Reply};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WEBHOOK_PATH: &str = "/services/T0KILN/B0KILN/refireSECRET";

struct Alarms {
    moto: Moto,
    cloudwatch: aws_sdk_cloudwatch::Client,
    /// When `kiln-old` went to ALARM.
    old_since: OffsetDateTime,
}

async fn put_alarm(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str) {
    cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .alarm_description(format!("{name} fails"))
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
}

async fn set_state(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str, state: StateValue) {
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason(format!("Threshold Crossed: {name}"))
        .send()
        .await
        .unwrap();
}

async fn state_updated(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str) -> OffsetDateTime {
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .unwrap();
    let stamp = out.metric_alarms()[0].state_updated_timestamp().unwrap();
    OffsetDateTime::from_unix_timestamp_nanos(stamp.as_nanos()).unwrap()
}

/// `kiln-old` in ALARM two seconds before `kiln-new`; `kiln-ok` back to OK
/// (with an old timestamp) and `other-old` in ALARM but outside the prefix.
async fn alarms() -> Alarms {
    let moto = Moto::start().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    for name in ["kiln-old", "kiln-new", "kiln-ok", "other-old"] {
        put_alarm(&cloudwatch, name).await;
    }
    set_state(&cloudwatch, "other-old", StateValue::Alarm).await;
    set_state(&cloudwatch, "kiln-old", StateValue::Alarm).await;
    set_state(&cloudwatch, "kiln-ok", StateValue::Alarm).await;
    set_state(&cloudwatch, "kiln-ok", StateValue::Ok).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    set_state(&cloudwatch, "kiln-new", StateValue::Alarm).await;
    let old_since = state_updated(&cloudwatch, "kiln-old").await;
    let new_since = state_updated(&cloudwatch, "kiln-new").await;
    assert!(new_since - old_since >= time::Duration::seconds(2));
    Alarms {
        moto,
        cloudwatch,
        old_since,
    }
}

/// The scheduled event EventBridge sends for a tick at `time` (or without
/// a time, to make the function use its clock).
fn scheduled_event(time: Option<OffsetDateTime>) -> Value {
    let mut event = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/kiln-alert-forwarder-refire"],
        "detail": {}
    });
    if let Some(time) = time {
        event["time"] = json!(time.format(&Rfc3339).unwrap());
    }
    event
}

fn config(env: &[(&str, &str)]) -> Config {
    let mut all = vec![(
        "SLACK_WEBHOOK_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/slack-AbCdEf",
    )];
    all.extend_from_slice(env);
    Config::from_env(&Env::from_pairs(all)).unwrap()
}

fn posted_titles(slack: &RecordingServer) -> Vec<String> {
    slack
        .requests()
        .iter()
        .map(|r| {
            r.json()["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_scheduled_check_reposts_only_the_alarm_in_alarm_long_enough() {
    let alarms = alarms().await;
    let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
    let config = config(&[
        ("REFIRE_ALARM_PREFIX", "kiln-"),
        ("SLACK_MENTION", "<!here>"),
    ]);
    let secrets = FakeSecrets::new().with(
        &config.webhook_secret_arn,
        VersionStage::Current,
        &slack.url_for(WEBHOOK_PATH),
    );
    // No time in the event: "now" is the injected clock.
    let now = alarms.old_since + time::Duration::seconds(3601);
    let forwarder = Forwarder::new(
        config,
        SecretCache::new(Arc::new(secrets)),
        ReqwestWebhook::new(),
        CloudWatchAlarms::new(alarms.cloudwatch.clone()),
        ManualClock::at(now),
        Metrics::in_memory("alert-forwarder"),
    );
    let outcome = forwarder
        .handle(LambdaEvent::new(scheduled_event(None), Context::default()))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Outcome {
            posted: 1,
            skipped: 0
        }
    );
    assert_eq!(
        posted_titles(&slack),
        ["🔴 Still in ALARM for 1 h: kiln-old"]
    );
    let body = slack.requests()[0].json();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("<!here> 🔴 Still in ALARM")
    );
    assert!(
        body.to_string()
            .contains("AWS/ApplicationELB HTTPCode_Target_5XX_Count")
    );
    assert!(
        body.to_string()
            .contains("region=us-east-1#alarmsV2:alarm/kiln-old")
    );
    assert_eq!(forwarder.metrics.total("AlarmsReposted"), 1.0);

    // The next tick, 15 minutes on: kiln-old crossed no multiple of the
    // hour, kiln-new (two seconds younger) crossed its first.
    let tick = |minutes: i64| {
        let event = scheduled_event(Some(now + time::Duration::minutes(minutes)));
        LambdaEvent::new(event, Context::default())
    };
    let outcome = forwarder.handle(tick(15)).await.unwrap();
    assert_eq!(
        outcome,
        Outcome {
            posted: 1,
            skipped: 0
        }
    );
    assert_eq!(
        posted_titles(&slack)[1..],
        ["🔴 Still in ALARM for 1 h 14 min: kiln-new"]
    );
    // And the one after re-posts nothing: each crossing is posted once.
    let outcome = forwarder.handle(tick(30)).await.unwrap();
    assert_eq!(outcome, Outcome::default());
    assert_eq!(slack.request_count(), 2);
}

#[tokio::test]
async fn the_function_binary_reposts_on_its_schedule() {
    let alarms = alarms().await;
    let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
    let aws = alarms.moto.aws().await;
    let secret_arn = aws
        .create_secret(
            "kiln/slack-webhook",
            &json!({ "url": slack.url_for(WEBHOOK_PATH) }).to_string(),
        )
        .await;
    let mut env = alarms.moto.child_env();
    env.push(("SLACK_WEBHOOK_SECRET_ARN".into(), secret_arn));
    env.push(("REFIRE_ALARM_PREFIX".into(), "kiln-".into()));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let function = LambdaFunction::start("alert-forwarder", env).await;

    // The tick's own time says when "now" is.
    let tick = alarms.old_since + time::Duration::seconds(3601);
    let response = function.invoke(scheduled_event(Some(tick))).await.unwrap();
    assert_eq!(response, json!({"posted": 1, "skipped": 0}));
    assert_eq!(
        posted_titles(&slack),
        ["🔴 Still in ALARM for 1 h: kiln-old"]
    );

    // An hour later: kiln-old's second hour falls in this tick's window;
    // kiln-new's is still two seconds away.
    let later = alarms.old_since + time::Duration::seconds(2 * 3600 + 1);
    let response = function.invoke(scheduled_event(Some(later))).await.unwrap();
    assert_eq!(response, json!({"posted": 1, "skipped": 0}));
    assert_eq!(
        posted_titles(&slack)[1],
        "🔴 Still in ALARM for 2 h: kiln-old"
    );

    let output = format!("{}{}", function.stdout(), function.stderr());
    assert!(output.contains("re-post check"), "{output}");
    assert!(!output.contains("refireSECRET"), "{output}");
}
