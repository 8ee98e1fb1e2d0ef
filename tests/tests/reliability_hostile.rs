//! Hostile input, beyond deploy-trigger's own cases: huge SNS batches,
//! deeply nested JSON, invalid UTF-8, 10,000 fields, Slack control
//! sequences in an alarm name, ECS events from another cluster. Each gets a
//! clear answer of bounded size, with no panic: a handled event, a 4xx, or
//! a failed invocation that names the problem.

use std::sync::Mutex;
use std::time::Duration;

use kiln::secrets::fake::FakeSecrets;
use kiln::sns::fake::RecordingPublisher;
use kiln::{Env, KilnError, Metrics, SecretCache, VersionStage};
use kiln_tests::fixtures::{
    SnsNotification, apigw_v2_event, fixture_json, github_headers, sns_event,
};
use kiln_tests::http::{RecordingServer, Reply};
use serde_json::{Value, json};

/// The most an answer or error message may hold: well under Lambda's
/// 256 KB async payload and the Runtime API's error limits.
const ANSWER_MAX: usize = 64 * 1024;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:kiln-alerts";

/// `[[[...]]]` nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

// --- deploy-trigger -------------------------------------------------------------

mod deploy_trigger_hostile {
    use super::*;
    use deploy_trigger::{Config, Deps, handle};
    use lambda_http::Body;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;

    const SECRET: &str = "hostile-webhook-secret";
    const SECRET_ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/webhook-AbCdEf";

    fn deps() -> Deps<FakeSecrets, RecordingPublisher> {
        let config = Config::from_env(&Env::from_pairs([
            ("WEBHOOK_SECRET_ARN", SECRET_ARN),
            (
                "DEPLOY_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo",
            ),
            ("DEPLOY_BRANCHES", "master=production"),
        ]))
        .unwrap();
        Deps {
            config,
            secrets: SecretCache::new(FakeSecrets::new().with(
                SECRET_ARN,
                VersionStage::Current,
                SECRET,
            )),
            publisher: RecordingPublisher::new(),
            metrics: Metrics::in_memory("deploy-trigger"),
        }
    }

    /// A correctly signed delivery of `body`, so it reaches the parser.
    async fn deliver(
        deps: &Deps<FakeSecrets, RecordingPublisher>,
        body: &[u8],
        base64: bool,
    ) -> (i64, String) {
        let headers = github_headers("push", "hostile-1", SECRET, body);
        let event: ApiGatewayV2httpRequest =
            serde_json::from_value(apigw_v2_event(headers, body, base64)).unwrap();
        let response = handle(deps, event).await;
        let text = match response.body {
            Some(Body::Text(text)) => text,
            other => format!("{other:?}"),
        };
        assert!(text.len() < ANSWER_MAX, "answer of {} bytes", text.len());
        (response.status_code, text)
    }

    #[tokio::test]
    async fn signed_garbage_gets_a_bounded_400() {
        let deps = deps();
        // Deep nesting where a string is expected, and in a field that is
        // skipped (which serde still has to walk).
        for deep in [
            format!("{{\"ref\":{}}}", nested(100_000)),
            format!("{{\"ignored\":{}}}", nested(100_000)),
        ] {
            let (status, text) = deliver(&deps, deep.as_bytes(), false).await;
            assert_eq!(status, 400, "{text}");
        }

        let invalid_utf8 = [
            b"{\"ref\":\"refs/heads/master\xff\xfe\"}".as_slice(),
            &[0xc3, 0x28],
        ]
        .concat();
        let (status, text) = deliver(&deps, &invalid_utf8, true).await;
        assert_eq!(status, 400, "{text}");

        // 10,000 unknown fields are skipped: the push still deploys.
        let mut push = fixture_json("github/push/with-new-branch.payload.json");
        for i in 0..10_000 {
            push[format!("field_{i}")] = json!({"nested": [i, "x"]});
        }
        let (status, text) = deliver(&deps, push.to_string().as_bytes(), false).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(deps.publisher.published().len(), 1);
    }
}

// --- deploy-exec ----------------------------------------------------------------

mod deploy_exec_hostile {
    use super::*;
    use deploy_exec::github::{GitHubReporter, RetryPolicy};
    use deploy_exec::runner::fake::FakeRunner;
    use deploy_exec::{Config, Deps, handle};

    fn deps() -> Deps<
        FakeRunner,
        GitHubReporter<FakeSecrets>,
        kiln::sns::fake::RecordingPublisher,
        deploy_exec::task_log::fake::FakeLogTail,
    > {
        let config = Config::from_env(&Env::from_pairs([
            ("CLUSTER", "kiln"),
            ("TASK_DEFINITION", "kiln-stack-updater:3"),
            ("CONTAINER_NAME", "stack-updater"),
            ("SUBNETS", "subnet-1"),
            ("SECURITY_GROUPS", "sg-1"),
        ]))
        .unwrap();
        Deps {
            reporter: GitHubReporter::new(&config.github_api_url, None, RetryPolicy::immediate(1)),
            runner: FakeRunner::new(),
            publisher: kiln::sns::fake::RecordingPublisher::new(),
            logs: deploy_exec::task_log::fake::FakeLogTail::new(),
            metrics: Metrics::in_memory("deploy-exec"),
            lanes: deploy_exec::lane_store::NO_LANES,
            config,
        }
    }

    fn answer_size(result: &Result<Value, deploy_exec::HandlerError>) -> usize {
        match result {
            Ok(value) => value.to_string().len(),
            Err(err) => kiln::error::diagnostic(err).error_message.len(),
        }
    }

    /// Lambda delivers one SNS record per invocation, but a direct invoke
    /// can carry any number: each failure is named in one error message.
    ///
    /// 10,000 bad records once gave a 3.3 MB error message (over
    /// CloudWatch Logs' 256 KB event limit); the message names the first
    /// few failures and counts the rest, each logged on its own.
    #[tokio::test]
    async fn a_huge_batch_of_bad_records_fails_with_a_bounded_message() {
        let deps = deps();
        let records: Vec<SnsNotification> = (0..10_000)
            .map(|i| {
                SnsNotification::new(
                    TOPIC,
                    format!("{{\"kind\":\"kiln.deploy.request\",\"version\":1,\"n\":{i}}}"),
                )
            })
            .collect();
        let result = handle(&deps, sns_event(&records)).await;
        let err = result
            .as_ref()
            .expect_err("invalid requests fail the invocation");
        assert_eq!(err.error_type(), "InvalidDeployRequest");
        assert!(
            answer_size(&result) < ANSWER_MAX,
            "the error message is {} bytes for 10,000 bad records",
            answer_size(&result)
        );
        let message = err.to_string();
        assert!(
            message.starts_with("10000 of 10000 records failed: record 1 "),
            "{message}"
        );
        assert!(
            message.ends_with("; and 9995 more (each is in the log)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn deep_nesting_and_odd_text_in_a_record_are_refused_by_name() {
        let deps = deps();
        let cases = [
            nested(100_000),
            "\u{feff}{\"kind\":\"kiln.deploy.request\"}".into(),
            "\0\u{1}\u{7f}".into(),
        ];
        for message in cases {
            let result = handle(&deps, sns_event(&[SnsNotification::new(TOPIC, message)])).await;
            let err = result.as_ref().expect_err("refused");
            assert_eq!(err.error_type(), "InvalidDeployRequest", "{err}");
            assert!(answer_size(&result) < ANSWER_MAX);
        }
        assert!(deps.runner.requests().is_empty(), "nothing started");
    }
}

// --- watchdog -------------------------------------------------------------------

mod watchdog_hostile {
    use super::*;
    use std::collections::BTreeSet;
    use watchdog::crash_history::{EcsError, TaskHistory};
    use watchdog::retry::{Backoff, Deadline};
    use watchdog::scaling::{self, AutoScaling, Capacity, ScalingError};
    use watchdog::trigger::StoppedTask;
    use watchdog::{Config, Outcome, Watchdog};

    /// Auto Scaling in memory: one group, counting changes.
    #[derive(Default)]
    struct Group(Mutex<GroupState>);

    #[derive(Default)]
    struct GroupState {
        desired: i32,
        changes: usize,
        alert_pending: Option<Capacity>,
    }

    impl AutoScaling for Group {
        async fn describe(&self, _group: &str) -> Result<Option<scaling::Group>, ScalingError> {
            let state = self.0.lock().unwrap();
            Ok(Some(scaling::Group {
                capacity: Capacity {
                    min_size: 0,
                    desired: state.desired,
                    max_size: 2,
                },
                alert_pending: state.alert_pending,
            }))
        }
        async fn mark_alert_pending(
            &self,
            _group: &str,
            before: Capacity,
        ) -> Result<(), ScalingError> {
            self.0.lock().unwrap().alert_pending = Some(before);
            Ok(())
        }
        async fn clear_alert_pending(&self, _group: &str) -> Result<(), ScalingError> {
            self.0.lock().unwrap().alert_pending = None;
            Ok(())
        }
        async fn set_desired_zero(&self, _group: &str) -> Result<(), ScalingError> {
            let mut state = self.0.lock().unwrap();
            state.desired = 0;
            state.changes += 1;
            Ok(())
        }
        async fn set_min_and_desired_zero(&self, group: &str) -> Result<(), ScalingError> {
            self.set_desired_zero(group).await
        }
    }

    struct NoHistory;

    impl TaskHistory for NoHistory {
        async fn stopped_tasks(
            &self,
            _cluster: Option<&str>,
            _group: &str,
        ) -> Result<Vec<StoppedTask>, EcsError> {
            Ok(Vec::new())
        }
        async fn essential_containers(&self, _arn: &str) -> Result<BTreeSet<String>, EcsError> {
            Ok(BTreeSet::new())
        }
    }

    fn watchdog(extra: &[(&str, &str)]) -> Watchdog<Group, NoHistory, RecordingPublisher> {
        let mut pairs = vec![("ASG_NAME", "kiln-app"), ("ALERT_TOPIC_ARN", TOPIC)];
        pairs.extend_from_slice(extra);
        let watchdog = Watchdog {
            config: Config::from_env(&Env::from_pairs(pairs)).unwrap(),
            autoscaling: Group::default(),
            history: NoHistory,
            publisher: RecordingPublisher::new(),
            metrics: Metrics::in_memory("watchdog"),
            backoff: Backoff::immediate(2),
            region: None,
        };
        watchdog.autoscaling.0.lock().unwrap().desired = 2;
        watchdog
    }

    const CRASH: &str = "synthetic/ecs-task-stopped-essential-exit1.json";

    #[tokio::test]
    async fn a_crash_in_another_cluster_changes_nothing() {
        let watchdog = watchdog(&[(
            "CLUSTER_ARN",
            "arn:aws:ecs:us-east-1:123456789012:cluster/kiln",
        )]);
        let now = time::OffsetDateTime::now_utc();
        let outcome = watchdog
            .handle(fixture_json(CRASH), Deadline::NONE, now)
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
        assert_eq!(
            watchdog.autoscaling.0.lock().unwrap().changes,
            0,
            "no scaling"
        );
        assert!(watchdog.publisher.published().is_empty(), "no alert");
    }

    #[tokio::test]
    async fn ten_thousand_containers_and_a_mention_in_the_alarm_stay_bounded() {
        let watchdog = watchdog(&[("SCALE_DOWN_ALARMS", "<!channel> wake up")]);
        let now = time::OffsetDateTime::now_utc();
        let mut crash = fixture_json(CRASH);
        let container = crash["detail"]["containers"][0].clone();
        crash["detail"]["containers"] = Value::Array(vec![container; 10_000]);
        let outcome = watchdog.handle(crash, Deadline::NONE, now).await.unwrap();
        assert!(matches!(outcome, Outcome::ScaledDown { .. }), "{outcome:?}");
        let published = watchdog.publisher.published();
        assert_eq!(published.len(), 1);
        assert!(
            published[0].1.body.len() < ANSWER_MAX,
            "alert of {} bytes",
            published[0].1.body.len()
        );
        // SNS Subject: at most 100 characters, no line breaks.
        let subject = published[0].1.subject.clone().unwrap_or_default();
        assert!(
            subject.chars().count() <= 100 && !subject.contains('\n'),
            "{subject}"
        );
    }

    #[tokio::test]
    async fn a_huge_batch_of_alarms_acts_once() {
        let watchdog = watchdog(&[("SCALE_DOWN_ALARMS", "app-down")]);
        let alarm = json!({
            "AlarmName": "app-down", "NewStateValue": "ALARM", "OldStateValue": "OK",
            "NewStateReason": "x", "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:app-down"
        })
        .to_string();
        let records: Vec<SnsNotification> = (0..10_000)
            .map(|_| SnsNotification::new(TOPIC, alarm.clone()))
            .collect();
        let now = time::OffsetDateTime::now_utc();
        let outcome = watchdog
            .handle(sns_event(&records), Deadline::NONE, now)
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::ScaledDown { .. }), "{outcome:?}");
        assert_eq!(watchdog.autoscaling.0.lock().unwrap().changes, 1);
        assert_eq!(watchdog.publisher.published().len(), 1);

        // Deep nesting in a record: refused by name, bounded.
        let err = watchdog
            .handle(
                sns_event(&[SnsNotification::new(TOPIC, nested(100_000))]),
                Deadline::NONE,
                now,
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "UnrecognisedEvent");
        assert!(err.to_string().len() < ANSWER_MAX);
    }
}

// --- alert-forwarder ------------------------------------------------------------

mod alert_forwarder_hostile {
    use super::*;
    use alert_forwarder::clock::SystemClock;
    use alert_forwarder::refire::NoAlarms;
    use alert_forwarder::slack::{ReqwestWebhook, RetryPolicy};
    use alert_forwarder::{Config, Forwarder};
    use lambda_runtime::{Context, LambdaEvent};

    const WEBHOOK_ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/slack-AbCdEf";

    type Function = Forwarder<ReqwestWebhook, FakeSecrets, NoAlarms, SystemClock>;

    fn forwarder(slack: &RecordingServer, extra: &[(&str, &str)]) -> Function {
        let mut pairs = vec![
            ("SLACK_WEBHOOK_SECRET_ARN", WEBHOOK_ARN),
            ("NOTIFY_OK", "always"),
        ];
        pairs.extend_from_slice(extra);
        let secrets = FakeSecrets::new().with(
            WEBHOOK_ARN,
            VersionStage::Current,
            &slack.url_for("/services/T0/B0/x"),
        );
        let mut forwarder = Forwarder::new(
            Config::from_env(&Env::from_pairs(pairs)).unwrap(),
            SecretCache::new(secrets),
            ReqwestWebhook::new(),
            NoAlarms,
            SystemClock,
            Metrics::in_memory("alert-forwarder"),
        );
        forwarder.policy = RetryPolicy {
            attempts: 2,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            default_retry_after: Duration::from_millis(1),
            request_timeout: Duration::from_secs(5),
            reserve: Duration::ZERO,
        };
        forwarder
    }

    async fn invoke(forwarder: &Function, event: Value) -> Result<Value, String> {
        forwarder
            .handle(LambdaEvent::new(event, Context::default()))
            .await
            .map(|outcome| serde_json::to_value(outcome).unwrap())
            .map_err(|e| format!("{}: {e}", e.error_type()))
    }

    fn alarm(name: &str, state: &str) -> String {
        json!({
            "AlarmName": name, "AlarmDescription": "<!here> described", "NewStateValue": state, "OldStateValue": "OK",
            "NewStateReason": "Threshold Crossed: <@U123> <https://evil.example|click>",
            "StateChangeTime": "2026-11-22T10:00:00.000+0000", "Region": "US East (N. Virginia)",
            "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"),
        })
        .to_string()
    }

    /// Every `<` in what was posted opens kiln's own link or mention.
    fn assert_no_injected_markup(body: &str, mention: Option<&str>) {
        let value: Value = serde_json::from_str(body).unwrap();
        let mut texts = Vec::new();
        collect_text(&value, &mut texts);
        for text in texts {
            for (index, _) in text.match_indices('<') {
                let rest = &text[index..];
                let ours = rest.starts_with("<https://") && !rest.starts_with("<https://evil")
                    || mention.is_some_and(|m| rest.starts_with(m));
                assert!(ours, "markup from the event reached Slack: {text}");
            }
        }
    }

    fn collect_text(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
            Value::Object(map) => map.values().for_each(|v| collect_text(v, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn slack_control_sequences_in_an_alarm_are_escaped() {
        let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
        let mention = "<!subteam^S0123ABCD>";
        let forwarder = forwarder(&slack, &[("SLACK_MENTION", mention)]);
        for name in [
            "<!channel>",
            "<!everyone> & <@U0001>",
            "db <https://evil.example|login>",
        ] {
            let event = sns_event(&[SnsNotification::new(TOPIC, alarm(name, "ALARM"))]);
            invoke(&forwarder, event).await.unwrap();
        }
        let requests = slack.requests();
        assert_eq!(requests.len(), 3);
        for request in requests {
            let body = request.body_text();
            assert!(
                !body.contains("<!channel>")
                    && !body.contains("<!everyone>")
                    && !body.contains("<!here>"),
                "{body}"
            );
            assert_no_injected_markup(&body, Some(mention));
            assert!(
                body.contains("&lt;!channel&gt;")
                    || body.contains("&lt;!everyone&gt;")
                    || body.contains("&lt;https://evil"),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn huge_deep_and_wide_messages_post_within_slack_limits() {
        let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
        let forwarder = forwarder(&slack, &[]);
        let mut alert = kiln::Alert::new(
            "watchdog",
            kiln::Severity::Critical,
            "x".repeat(10_000),
            "y".repeat(100_000),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        for i in 0..10_000 {
            alert = alert.field(format!("field {i}"), "<!channel>".repeat(10));
        }
        let mut wide = serde_json::Map::new();
        for i in 0..10_000 {
            wide.insert(format!("k{i}"), json!(i));
        }
        let messages = [
            alert.to_json(),
            nested(100_000),
            Value::Object(wide).to_string(),
            "\u{1F525}".repeat(50_000),
            "bad \u{fffd} utf8 \0 control".into(),
            alarm(&"<!channel>".repeat(1_000), "ALARM"),
        ];
        for message in &messages {
            let answer = invoke(
                &forwarder,
                sns_event(&[SnsNotification::new(TOPIC, message.clone())]),
            )
            .await;
            assert!(answer.is_ok(), "{answer:?}");
        }
        let requests = slack.requests();
        assert_eq!(requests.len(), messages.len());
        for request in &requests {
            let body = request.body_text();
            // Slack's documented limits, checked on what was sent.
            let value: Value = serde_json::from_str(&body).unwrap();
            let blocks = value["blocks"].as_array().map(Vec::len).unwrap_or(0);
            assert!(blocks <= 50, "{blocks} blocks");
            assert!(value["text"].as_str().unwrap_or_default().chars().count() <= 3_000);
            assert!(body.len() < 200 * 1024, "a {} byte post", body.len());
            assert_no_injected_markup(&body, None);
        }
    }

    #[tokio::test]
    async fn a_huge_sns_batch_is_posted_record_by_record_and_answers_briefly() {
        let slack = RecordingServer::start_with_default(Reply::text(200, "ok")).await;
        let forwarder = forwarder(&slack, &[]);
        let records: Vec<SnsNotification> = (0..500)
            .map(|i| SnsNotification::new(TOPIC, format!("plain text {i}")))
            .collect();
        let answer = invoke(&forwarder, sns_event(&records)).await.unwrap();
        assert_eq!(answer["posted"], 500);
        assert!(answer.to_string().len() < ANSWER_MAX);
        assert_eq!(slack.request_count(), 500);

        // The same batch with Slack down: one failed invocation, bounded.
        slack.set_default(Reply::text(500, "internal_error"));
        let answer = invoke(&forwarder, sns_event(&records)).await.unwrap_err();
        assert!(
            answer.len() < ANSWER_MAX,
            "an error of {} bytes",
            answer.len()
        );
    }
}
