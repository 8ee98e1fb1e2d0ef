//! Test inputs: fixture files, GitHub signatures, and the Lambda events AWS
//! would build around them (API Gateway HTTP API payload 2.0, SNS).
//!
//! Fixtures are signed over the exact bytes loaded from the file, never a
//! re-serialisation: that is what GitHub signs, and what the function must
//! verify.

use std::path::PathBuf;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::moto::{ACCOUNT_ID, REGION};
use crate::process::uuid_like;

/// `<workspace>/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    crate::workspace_root().join("tests/fixtures")
}

/// The bytes of a fixture, by path relative to `tests/fixtures`, e.g.
/// `github/push/with-new-branch.payload.json`.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => panic!("reading fixture {}: {err}", path.display()),
    }
}

/// A fixture parsed as JSON.
pub fn fixture_json(relative: &str) -> Value {
    match serde_json::from_slice(&fixture_bytes(relative)) {
        Ok(value) => value,
        Err(err) => panic!("fixture {relative} is not JSON: {err}"),
    }
}

/// GitHub's `X-Hub-Signature-256` value for a body: `sha256=<hex>`.
pub fn github_signature(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_ref()) {
        Ok(mac) => mac,
        Err(err) => panic!("HMAC key: {err}"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers GitHub sends with a webhook delivery (JSON content type),
/// signed with `secret`.
pub fn github_headers(
    event: &str,
    delivery_id: &str,
    secret: impl AsRef<[u8]>,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), "GitHub-Hookshot/c9a4a2d".into()),
        ("x-github-event".into(), event.into()),
        ("x-github-delivery".into(), delivery_id.into()),
        ("x-github-hook-id".into(), "292430182".into()),
        ("x-hub-signature-256".into(), github_signature(secret, body)),
    ]
}

/// A signed GitHub delivery of a fixture, as the API Gateway event that
/// reaches deploy-trigger.
pub fn github_webhook_event(
    event: &str,
    fixture: &str,
    delivery_id: &str,
    secret: impl AsRef<[u8]>,
) -> Value {
    let body = fixture_bytes(fixture);
    let headers = github_headers(event, delivery_id, secret, &body);
    apigw_v2_event(headers, &body, false)
}

/// An API Gateway HTTP API (payload format 2.0) event for `POST /webhook`,
/// shaped like AWS's (see `aws/rust-runtime/apigw_v2_proxy_request.json`).
/// Header names are lower-cased as API Gateway does; with `base64` the body
/// is sent base64-encoded with `isBase64Encoded: true`.
pub fn apigw_v2_event<K, V>(
    headers: impl IntoIterator<Item = (K, V)>,
    body: &[u8],
    base64: bool,
) -> Value
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    apigw_v2_request("POST", "/webhook", "", headers, body, base64)
}

/// An API Gateway HTTP API (payload format 2.0) event for any request.
/// Repeated headers are joined with commas, as API Gateway does; an empty
/// body leaves `body` out.
pub fn apigw_v2_request<K, V>(
    method: &str,
    path: &str,
    raw_query: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &[u8],
    base64: bool,
) -> Value
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut header_map = Map::new();
    for (name, value) in headers {
        let name = name.as_ref().to_ascii_lowercase();
        let value = value.as_ref();
        let joined = match header_map.get(&name).and_then(Value::as_str) {
            Some(existing) => format!("{existing},{value}"),
            None => value.to_string(),
        };
        header_map.insert(name, Value::String(joined));
    }
    let user_agent = header_map
        .get("user-agent")
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    let mut query = Map::new();
    for (key, value) in form_pairs(raw_query) {
        let joined = match query.get(&key).and_then(Value::as_str) {
            Some(existing) => format!("{existing},{value}"),
            None => value,
        };
        query.insert(key, Value::String(joined));
    }
    let now = time::OffsetDateTime::now_utc();
    let request_time = now
        .format(time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    let route_key = format!("{method} {path}");
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "kilnlocal",
            "domainName": format!("kilnlocal.execute-api.{REGION}.amazonaws.com"),
            "domainPrefix": "kilnlocal",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": uuid_like(),
            "routeKey": route_key,
            "stage": "$default",
            "time": request_time,
            "timeEpoch": now.unix_timestamp_nanos() / 1_000_000,
        },
        "isBase64Encoded": base64,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !body.is_empty() {
        event["body"] = Value::String(if base64 {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            String::from_utf8_lossy(body).into_owned()
        });
    }
    event
}

fn form_pairs(raw_query: &str) -> Vec<(String, String)> {
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect()
}

/// One notification for [`sns_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsNotification {
    pub topic_arn: String,
    pub message: String,
    pub subject: Option<String>,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
    /// Defaults to a fresh id.
    pub message_id: Option<String>,
}

impl SnsNotification {
    pub fn new(topic_arn: impl Into<String>, message: impl Into<String>) -> Self {
        SnsNotification {
            topic_arn: topic_arn.into(),
            message: message.into(),
            subject: None,
            attributes: Vec::new(),
            message_id: None,
        }
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }
}

impl From<&crate::aws::SnsEnvelope> for SnsNotification {
    /// What a function published (read back through SQS), ready to be
    /// delivered to a subscribing function.
    fn from(envelope: &crate::aws::SnsEnvelope) -> Self {
        SnsNotification {
            topic_arn: envelope.topic_arn.clone(),
            message: envelope.message.clone(),
            subject: envelope.subject.clone(),
            attributes: envelope
                .message_attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            message_id: Some(envelope.message_id.clone()).filter(|id| !id.is_empty()),
        }
    }
}

/// The Lambda event SNS delivers to a subscribed function: one record per
/// notification, shaped like the real thing (`SigningCertUrl`,
/// `UnsubscribeUrl`, `Subject: null` when absent).
pub fn sns_event(notifications: &[SnsNotification]) -> Value {
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    let records: Vec<Value> = notifications
        .iter()
        .map(|n| {
            let subscription_arn = format!("{}:{}", n.topic_arn, uuid_like());
            let attributes: Map<String, Value> = n
                .attributes
                .iter()
                .map(|(name, value)| (name.clone(), json!({"Type": "String", "Value": value})))
                .collect();
            json!({
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": n.message_id.clone().unwrap_or_else(uuid_like),
                    "TopicArn": n.topic_arn,
                    "Subject": n.subject,
                    "Message": n.message,
                    "Timestamp": timestamp,
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": format!("https://sns.{REGION}.amazonaws.com/SimpleNotificationService-local.pem"),
                    "UnsubscribeUrl": format!("https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}"),
                    "MessageAttributes": attributes,
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The ECS Task State Change of a deploy task on `ecs` that stopped with
/// `exit_code` (0 or 1), as EventBridge delivers it. The event carries no
/// overrides, so deploy-exec reads the deployment back from the task's
/// tags (DescribeTasks).
pub fn deploy_task_stopped_event(
    ecs: &crate::aws::EcsStack,
    task_arn: &str,
    delivery_id: &str,
    container_name: &str,
    exit_code: u8,
) -> Value {
    let fixture = if exit_code == 0 {
        "synthetic/deploy-task-stopped-exit0.json"
    } else {
        "synthetic/deploy-task-stopped-exit1.json"
    };
    let text = fixture_json(fixture)
        .to_string()
        .replace("us-west-2", REGION)
        .replace("111122223333", ACCOUNT_ID);
    let mut event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    event["resources"] = json!([task_arn]);
    let detail = &mut event["detail"];
    detail["taskArn"] = task_arn.into();
    detail["clusterArn"] = ecs.cluster_arn.clone().into();
    detail["taskDefinitionArn"] = ecs.task_definition_arn.clone().into();
    detail["startedBy"] = format!("kiln/{delivery_id}").into();
    detail["overrides"] = Value::Null;
    if let Some(containers) = detail["containers"].as_array_mut() {
        for container in containers {
            container["taskArn"] = task_arn.into();
            container["name"] = container_name.into();
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_documented_test_vector() {
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn apigw_event_has_the_payload_2_shape() {
        let event = apigw_v2_event(
            [("X-GitHub-Event", "push"), ("Accept", "a"), ("accept", "b")],
            b"{}",
            false,
        );
        let model = fixture_json("aws/rust-runtime/apigw_v2_proxy_request.json");
        assert_eq!(event["version"], model["version"]);
        for key in [
            "rawPath",
            "rawQueryString",
            "headers",
            "requestContext",
            "body",
        ] {
            assert!(event.get(key).is_some(), "{key} missing");
        }
        for key in [
            "accountId",
            "apiId",
            "http",
            "requestId",
            "stage",
            "timeEpoch",
        ] {
            assert!(event["requestContext"].get(key).is_some(), "{key} missing");
        }
        assert_eq!(event["headers"]["x-github-event"], "push");
        assert_eq!(event["headers"]["accept"], "a,b");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["rawPath"], "/webhook");
        assert_eq!(event["body"], "{}");
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn apigw_event_base64_encodes_the_exact_bytes() {
        let event = apigw_v2_event(Vec::<(String, String)>::new(), &[0xff, 0x00, b'a'], true);
        assert_eq!(event["body"], "/wBh");
        assert_eq!(event["isBase64Encoded"], true);
        let empty = apigw_v2_event(Vec::<(String, String)>::new(), b"", false);
        assert!(empty.get("body").is_none());
    }

    #[test]
    fn signed_fixture_event_carries_the_file_bytes() {
        let event = github_webhook_event(
            "push",
            "github/push/with-new-branch.payload.json",
            "d-1",
            "s3cret",
        );
        let bytes = fixture_bytes("github/push/with-new-branch.payload.json");
        assert_eq!(event["body"].as_str().unwrap().as_bytes(), bytes.as_slice());
        assert_eq!(
            event["headers"]["x-hub-signature-256"],
            github_signature("s3cret", &bytes)
        );
    }

    #[test]
    fn sns_event_looks_like_a_lambda_sns_event() {
        let event = sns_event(&[SnsNotification::new("arn:aws:sns:us-east-1:1:t", "hi")
            .subject("s")
            .attribute("environment", "production")]);
        let model = fixture_json("aws/rust-runtime/example-sns-event.json");
        let record = &event["Records"][0];
        assert_eq!(record["EventSource"], model["Records"][0]["EventSource"]);
        assert_eq!(record["Sns"]["Message"], "hi");
        assert_eq!(record["Sns"]["Subject"], "s");
        assert_eq!(
            record["Sns"]["MessageAttributes"]["environment"]["Value"],
            "production"
        );
        let plain = sns_event(&[SnsNotification::new("arn:t", "x")]);
        assert!(plain["Records"][0]["Sns"]["Subject"].is_null());
    }
}
