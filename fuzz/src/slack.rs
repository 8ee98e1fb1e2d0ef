//! `slack_render`: classifying and rendering anything alert-forwarder can
//! receive, checked against Slack's limits and for injected mentions.

use alert_forwarder::classify::{self, Invocation, Message};
use alert_forwarder::config::NotifyOk;
use alert_forwarder::render::blocks::{self, Block, SlackMessage, Text};
use alert_forwarder::render::{self, Options, Origin, Payload, Rendered};

/// The mention configured for ALARM messages in half the runs.
const MENTION: &str = "<!subteam^S0123ABCD>";

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let with_mention = text.len() % 2 == 0;
    let options = Options {
        mention: with_mention.then_some(MENTION),
        notify_ok: NotifyOk::Always,
    };
    // As an SNS record's Message.
    check_message(&classify::message(text), &Origin::default(), &options);
    // As a whole invocation (SNS records, a direct event).
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        match classify::invocation(value) {
            Invocation::Sns(event) => {
                for record in event.records.iter().take(50) {
                    let origin = Origin {
                        topic_arn: record.sns.topic_arn.as_deref(),
                        subject: record.sns.subject.as_deref(),
                        timestamp: record.sns.timestamp.as_deref(),
                    };
                    check_message(&classify::message(&record.sns.message), &origin, &options);
                }
            }
            Invocation::Direct(message) => check_message(&message, &Origin::default(), &options),
            Invocation::Schedule(_) => {}
        }
    }
}

fn check_message(message: &Message, origin: &Origin<'_>, options: &Options<'_>) {
    match render::render(message, origin, options) {
        Rendered::Skip { reason } => assert!(!reason.is_empty()),
        // Already a Slack payload: posted as it is, by design.
        Rendered::Post(Payload::Passthrough(value)) => assert!(value.is_object()),
        Rendered::Post(Payload::Blocks(slack)) => {
            within_limits(&slack);
            let mention = options.mention.filter(|_| is_alarm(message));
            no_injected_markup(&slack, mention);
            let body = Payload::Blocks(slack).to_body();
            assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
        }
    }
}

fn is_alarm(message: &Message) -> bool {
    matches!(
        message,
        Message::Alarm(_) | Message::AlarmStateChange { .. }
    )
}

fn within_limits(slack: &SlackMessage) {
    assert!(
        blocks::slack_len(&slack.text) <= blocks::TEXT_MAX,
        "text too long"
    );
    assert!(
        slack.blocks.len() <= blocks::BLOCKS_MAX,
        "{} blocks",
        slack.blocks.len()
    );
    for block in &slack.blocks {
        match block {
            Block::Header { text } => assert!(len(text) <= blocks::HEADER_MAX, "header too long"),
            Block::Section { text, fields } => {
                if let Some(text) = text {
                    assert!(len(text) <= blocks::SECTION_MAX, "section too long");
                }
                assert!(text.is_some() || !fields.is_empty(), "empty section");
                assert!(
                    fields.len() <= blocks::FIELDS_MAX,
                    "{} fields",
                    fields.len()
                );
                for field in fields {
                    assert!(len(field) <= blocks::FIELD_MAX, "field too long");
                }
            }
            Block::Context { elements } => {
                assert!(!elements.is_empty(), "empty context");
                assert!(elements.len() <= blocks::CONTEXT_ELEMENTS_MAX);
                for element in elements {
                    assert!(len(element) <= blocks::CONTEXT_TEXT_MAX, "context too long");
                }
            }
            Block::Divider => {}
        }
    }
}

fn len(text: &Text) -> usize {
    let text = text.as_str();
    assert!(!text.is_empty(), "empty text object");
    blocks::slack_len(text)
}

/// Every `<` in the output opens a link kiln made (`<https://…|label>`) or
/// the configured mention: text from an event never mentions or links.
fn no_injected_markup(slack: &SlackMessage, mention: Option<&str>) {
    let mut texts = vec![slack.text.as_str()];
    for block in &slack.blocks {
        match block {
            Block::Header { text } => texts.push(text.as_str()),
            Block::Section { text, fields } => {
                texts.extend(text.iter().map(Text::as_str));
                texts.extend(fields.iter().map(Text::as_str));
            }
            Block::Context { elements } => texts.extend(elements.iter().map(Text::as_str)),
            Block::Divider => {}
        }
    }
    for text in texts {
        for (index, _) in text.match_indices('<') {
            let rest = &text[index..];
            let ours =
                rest.starts_with("<https://") || mention.is_some_and(|m| rest.starts_with(m));
            assert!(
                ours,
                "unescaped markup from an event: {:?}",
                &rest[..rest.len().min(40)]
            );
        }
    }
}
