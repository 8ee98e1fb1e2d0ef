//! kiln's own alerts (`kiln.alert`), e.g. from watchdog.

use kiln::{Alert, Severity};

use super::blocks::{Block, SlackMessage, Text, escape, field_mrkdwn, truncate_plain};
use super::format_datetime;

/// Values up to this many characters sit in the two-column fields.
const SHORT_VALUE: usize = 60;

/// A field's value as mrkdwn; an AWS CLI command is shown as code, ready to
/// copy.
fn value(raw: &str) -> String {
    let raw = raw.trim();
    if raw.starts_with("aws ") && !raw.contains('`') && !raw.contains('\n') {
        format!("`{}`", escape(raw))
    } else {
        escape(raw)
    }
}

pub fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "🚨",
        Severity::Warning => "⚠️",
        Severity::Info => "ℹ️",
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

pub fn render(alert: &Alert) -> SlackMessage {
    let title = format!("{} {}", severity_emoji(alert.severity), alert.title);
    let mut text = escape(&title);
    if !alert.summary.trim().is_empty() {
        text.push_str(&format!(
            " — {}",
            escape(&truncate_plain(alert.summary.trim(), 200))
        ));
    }
    let mut blocks = vec![Block::header(&title)];
    if !alert.summary.trim().is_empty() {
        blocks.push(Block::text(escape(alert.summary.trim())));
    }
    // Short values side by side; long ones (ARNs, commands, reasons) each
    // get the full width, where they don't wrap into a narrow column.
    let (short, long): (Vec<_>, Vec<_>) = alert
        .fields
        .iter()
        .partition(|f| f.value.chars().count() <= SHORT_VALUE && !f.value.contains('\n'));
    if !short.is_empty() {
        blocks.push(Block::fields(
            short
                .iter()
                .map(|f| field_mrkdwn(&escape(&f.name), &value(&f.value)))
                .collect(),
        ));
    }
    for f in long {
        blocks.push(Block::text(format!(
            "*{}*\n{}",
            escape(&f.name),
            value(&f.value)
        )));
    }
    blocks.push(Block::context(vec![Text::mrkdwn(format!(
        "🕒 {}  ·  {}  ·  kiln {}",
        format_datetime(alert.raised_at),
        severity_name(alert.severity),
        escape(&alert.source)
    ))]));
    SlackMessage::new(text, blocks)
}
