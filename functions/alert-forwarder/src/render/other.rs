//! Everything that is not an alarm, an ECS task or a kiln alert: any other
//! EventBridge event, other JSON, plain text, and Slack payloads, which are
//! passed through. Readable rather than clever: a header from the SNS
//! subject (or the event's `detail-type`), the content, and where it came
//! from.

use kiln::events::eventbridge::EventBridgeEvent;
use serde_json::Value;

use super::blocks::{
    Block, SECTION_MAX, SlackMessage, Text, code_block, escape, field, truncate_plain,
};
use super::{Origin, format_time};

/// A short header for a message without one of its own.
fn title_from(origin: &Origin<'_>) -> String {
    match (origin.subject(), origin.topic_name()) {
        (Some(subject), _) => subject.to_string(),
        (None, Some(topic)) => format!("Message from {topic}"),
        (None, None) => "Message".to_string(),
    }
}

/// Where it came from and when: the context line.
fn origin_context(origin: &Origin<'_>, time: Option<&str>) -> Option<Block> {
    let mut parts = Vec::new();
    if let Some(time) = time.or(origin.timestamp) {
        parts.push(format!("🕒 {}", escape(&format_time(time))));
    }
    if let Some(topic) = origin.topic_name() {
        parts.push(format!("SNS topic {}", escape(topic)));
    }
    (!parts.is_empty()).then(|| Block::context(vec![Text::mrkdwn(parts.join("  ·  "))]))
}

/// The notification text: the title and the start of the content.
fn notification(title: &str, content: Option<&str>) -> String {
    let mut text = escape(title);
    if let Some(content) = content.map(str::trim).filter(|c| !c.is_empty()) {
        // One line: notifications don't keep line breaks.
        let flat = content.split_whitespace().collect::<Vec<_>>().join(" ");
        text.push_str(&format!(" — {}", escape(&truncate_plain(&flat, 200))));
    }
    text
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

/// Any EventBridge event without a renderer of its own.
pub fn event(event: &EventBridgeEvent, origin: &Origin<'_>) -> SlackMessage {
    let detail_type = event.detail_type.trim();
    let title = format!(
        "📣 {}",
        if detail_type.is_empty() {
            "EventBridge event"
        } else {
            detail_type
        }
    );
    let headline = event.detail.get("title").and_then(Value::as_str);
    let description = event.detail.get("description").and_then(Value::as_str);

    let mut text = notification(&title, headline.or(description));
    if !event.source.is_empty() {
        text = format!("{text} ({})", escape(&event.source));
    }
    let mut blocks = vec![Block::header(&title)];
    let intro: Vec<String> = headline
        .map(|h| format!("*{}*", escape(h.trim())))
        .into_iter()
        .chain(description.map(|d| escape(d.trim())))
        .collect();
    if !intro.is_empty() {
        blocks.push(Block::text(intro.join("\n")));
    }
    let mut fields = Vec::new();
    if !event.source.is_empty() {
        fields.push(field("Source", &event.source));
    }
    if let Some(region) = event.region.as_deref().filter(|r| !r.is_empty()) {
        fields.push(field("Region", region));
    }
    if let Some(account) = event
        .account
        .as_deref()
        .or(event.detail.get("accountId").and_then(Value::as_str))
    {
        fields.push(field("Account", account));
    }
    if let Some(severity) = event.detail.get("severity").and_then(scalar_text) {
        fields.push(field("Severity", &severity));
    }
    if !event.resources.is_empty() {
        let mut resources: Vec<&str> = event.resources.iter().take(5).map(String::as_str).collect();
        let more = event.resources.len().saturating_sub(5);
        let more_line = format!("…and {more} more");
        if more > 0 {
            resources.push(&more_line);
        }
        fields.push(field("Resources", &resources.join("\n")));
    }
    if !fields.is_empty() {
        blocks.push(Block::fields(fields));
    }
    if !event.detail.is_null() {
        blocks.push(Block::text(format!(
            "*Detail*\n{}",
            code_block(&pretty(&event.detail), SECTION_MAX - 20)
        )));
    }
    blocks.extend(origin_context(origin, event.time.as_deref()));
    SlackMessage::new(text, blocks)
}

/// JSON that is none of the known kinds. A flat object of at most ten
/// values becomes fields; anything else is shown as formatted JSON.
pub fn json(value: &Value, origin: &Origin<'_>) -> SlackMessage {
    let title = format!("📨 {}", title_from(origin));
    let flat: Option<Vec<(String, String)>> = value.as_object().and_then(|object| {
        (!object.is_empty() && object.len() <= 10)
            .then(|| {
                object
                    .iter()
                    .map(|(k, v)| scalar_text(v).map(|v| (k.clone(), v)))
                    .collect()
            })
            .flatten()
    });
    let mut blocks = vec![Block::header(&title)];
    let text = match &flat {
        Some(pairs) => {
            blocks.push(Block::fields(
                pairs
                    .iter()
                    .map(|(k, v)| super::blocks::field_mrkdwn(&escape(k), &escape(v)))
                    .collect(),
            ));
            let first = pairs
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            notification(&title, Some(&first))
        }
        None => {
            blocks.push(Block::text(code_block(&pretty(value), SECTION_MAX)));
            notification(&title, None)
        }
    };
    blocks.extend(origin_context(origin, None));
    SlackMessage::new(text, blocks)
}

/// Text that is not JSON.
pub fn plain_text(text: &str, origin: &Origin<'_>) -> SlackMessage {
    let title = format!("📨 {}", title_from(origin));
    let mut blocks = vec![Block::header(&title)];
    let body = text.trim();
    if !body.is_empty() {
        blocks.push(Block::text(escape(body)));
    }
    blocks.extend(origin_context(origin, None));
    SlackMessage::new(notification(&title, Some(body)), blocks)
}

/// A message that says it is one of kiln's but does not decode: shown with
/// the reason, so the producer can be fixed.
pub fn invalid_kiln_message(value: &Value, error: &str, origin: &Origin<'_>) -> SlackMessage {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("kiln message");
    let title = format!("⚠️ Unreadable {kind}");
    let blocks = vec![
        Block::header(&title),
        Block::text(format!(
            "This message says it is a `{}` but could not be read: {}",
            escape(kind),
            escape(error)
        )),
        Block::text(code_block(&pretty(value), SECTION_MAX)),
    ]
    .into_iter()
    .chain(origin_context(origin, None))
    .collect();
    SlackMessage::new(notification(&title, Some(error)), blocks)
}

/// A message that already is a Slack payload, posted as it is; only a
/// missing top-level `text` is filled in, because notifications need it.
pub fn passthrough(payload: &serde_json::Map<String, Value>, origin: &Origin<'_>) -> Value {
    let mut payload = payload.clone();
    let has_text = payload
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    if !has_text {
        payload.insert("text".into(), Value::from(escape(&title_from(origin))));
    }
    Value::Object(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_keeps_the_payload_and_fills_text() {
        let origin = Origin {
            subject: Some("Deploy <done>"),
            ..Origin::default()
        };
        let given = serde_json::json!({"blocks": [{"type": "divider"}], "unfurl_links": false});
        let out = passthrough(given.as_object().unwrap(), &origin);
        assert_eq!(out["text"], "Deploy &lt;done&gt;");
        assert_eq!(out["blocks"], given["blocks"]);
        assert_eq!(out["unfurl_links"], false);
        let with_text = serde_json::json!({"text": "as is <!here>"});
        assert_eq!(
            passthrough(with_text.as_object().unwrap(), &origin),
            with_text
        );
    }

    #[test]
    fn plain_text_is_escaped() {
        let message = plain_text("a <!channel> b", &Origin::default());
        let json = message.to_json().to_string();
        assert!(!json.contains("<!channel>"));
        assert!(json.contains("a &lt;!channel&gt; b"));
    }
}
