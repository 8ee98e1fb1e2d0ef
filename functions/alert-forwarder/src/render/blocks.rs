//! Block Kit primitives: the payload types, escaping, and Slack's limits.
//!
//! Every message leaves through [`SlackMessage::new`], which enforces the
//! limits on the whole payload (header 150 characters, section text 3,000,
//! at most 10 fields of 2,000 each, at most 10 context elements, at most 50
//! blocks). Whatever is cut is cut *visibly*: text ends in
//! [`TRUNCATED`], and dropped blocks are replaced by a context line saying
//! how many were left out. Slack rejects an over-limit payload with
//! `invalid_payload`, which would lose the message; a shortened message is
//! always better.
//!
//! Lengths are counted in UTF-16 code units, which is never less than the
//! character count Slack applies, so an emoji can't push a text over.

use serde::Serialize;

/// Slack's limit on a header's text.
pub const HEADER_MAX: usize = 150;
/// Slack's limit on a section's text.
pub const SECTION_MAX: usize = 3_000;
/// Slack's limit on one field of a section.
pub const FIELD_MAX: usize = 2_000;
/// Slack's limit on the number of fields in a section.
pub const FIELDS_MAX: usize = 10;
/// Slack's limit on the elements of a context block.
pub const CONTEXT_ELEMENTS_MAX: usize = 10;
/// Slack's limit on the text of a context element (same as a section's).
pub const CONTEXT_TEXT_MAX: usize = 3_000;
/// Slack's limit on the number of blocks in a message.
pub const BLOCKS_MAX: usize = 50;
/// Our cap on the top-level `text`: it is what mobile notifications show,
/// and Slack truncates long ones anyway.
pub const TEXT_MAX: usize = 3_000;

/// The visible mark at the end of cut mrkdwn text.
pub const TRUNCATED: &str = "… _(truncated)_";
/// The visible mark at the end of cut plain text (headers).
const TRUNCATED_PLAIN: &str = "…";

/// A message for an incoming webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlackMessage {
    /// The notification text; shown alone on mobile and in the sidebar.
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
}

/// The blocks kiln uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header {
        text: Text,
    },
    Section {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Context {
        elements: Vec<Text>,
    },
    Divider,
}

/// A text object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Text {
    PlainText { text: String, emoji: bool },
    Mrkdwn { text: String },
}

impl Text {
    pub fn plain(text: impl Into<String>) -> Self {
        Text::PlainText {
            text: text.into(),
            emoji: true,
        }
    }

    /// mrkdwn that is already formatted: anything taken from an event must
    /// have gone through [`escape`] first.
    pub fn mrkdwn(text: impl Into<String>) -> Self {
        Text::Mrkdwn { text: text.into() }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::PlainText { text, .. } | Text::Mrkdwn { text } => text,
        }
    }

    fn truncated(self, max: usize) -> Self {
        match self {
            Text::PlainText { text, emoji } => Text::PlainText {
                text: truncate_plain(&text, max),
                emoji,
            },
            Text::Mrkdwn { text } => Text::Mrkdwn {
                text: truncate_mrkdwn(&text, max),
            },
        }
    }
}

impl Block {
    /// A header (plain text; Slack shows it large and bold). The text is
    /// escaped here like any other: Slack asks for `&`, `<` and `>` to be
    /// escaped in every text, and an alarm called `<!channel>` must not
    /// reach Slack as the raw sequence anywhere.
    pub fn header(raw: &str) -> Self {
        Block::Header {
            text: Text::plain(escape(raw)),
        }
    }

    /// A section of formatted text.
    pub fn text(mrkdwn: impl Into<String>) -> Self {
        Block::Section {
            text: Some(Text::mrkdwn(mrkdwn)),
            fields: Vec::new(),
        }
    }

    /// A section of labelled fields, shown in two columns.
    pub fn fields(fields: Vec<Text>) -> Self {
        Block::Section { text: None, fields }
    }

    /// A context line (small grey text).
    pub fn context(elements: Vec<Text>) -> Self {
        Block::Context { elements }
    }

    /// Applies Slack's per-block limits.
    fn within_limits(self) -> Vec<Block> {
        match self {
            Block::Header { text } => vec![Block::Header {
                text: text.truncated(HEADER_MAX),
            }],
            Block::Section { text, fields } => {
                let text = text.map(|t| t.truncated(SECTION_MAX));
                let mut fields: Vec<Text> =
                    fields.into_iter().map(|f| f.truncated(FIELD_MAX)).collect();
                if fields.len() <= FIELDS_MAX {
                    return vec![Block::Section { text, fields }];
                }
                // More than ten fields: the text keeps the first ten, and the
                // rest follow in sections of their own rather than being lost.
                let rest = fields.split_off(FIELDS_MAX);
                let mut blocks = vec![Block::Section { text, fields }];
                blocks.extend(
                    rest.chunks(FIELDS_MAX)
                        .map(|chunk| Block::fields(chunk.to_vec())),
                );
                blocks
            }
            Block::Context { mut elements } => {
                if elements.len() > CONTEXT_ELEMENTS_MAX {
                    let dropped = elements.len() - (CONTEXT_ELEMENTS_MAX - 1);
                    elements.truncate(CONTEXT_ELEMENTS_MAX - 1);
                    elements.push(Text::mrkdwn(format!("_…{dropped} more left out_")));
                }
                vec![Block::Context {
                    elements: elements
                        .into_iter()
                        .map(|e| e.truncated(CONTEXT_TEXT_MAX))
                        .collect(),
                }]
            }
            Block::Divider => vec![Block::Divider],
        }
    }
}

impl SlackMessage {
    /// A message within every Slack limit. `text` is mrkdwn (escaped where
    /// it came from an event).
    pub fn new(text: impl Into<String>, blocks: Vec<Block>) -> Self {
        let mut blocks: Vec<Block> = blocks.into_iter().flat_map(Block::within_limits).collect();
        if blocks.len() > BLOCKS_MAX {
            let dropped = blocks.len() - (BLOCKS_MAX - 1);
            blocks.truncate(BLOCKS_MAX - 1);
            blocks.push(Block::context(vec![Text::mrkdwn(format!(
                "_…{dropped} more blocks left out (Slack shows at most {BLOCKS_MAX})_"
            ))]));
        }
        SlackMessage {
            text: truncate_mrkdwn(&text.into(), TEXT_MAX),
            blocks,
        }
    }

    /// The JSON body to post.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Escapes the three characters Slack's mrkdwn gives meaning to, so text
/// from an event can't make links or mentions (`<!channel>` in an alarm
/// name stays text).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A labelled field: `*Label*` over the value. The label is ours; the value
/// is escaped here.
pub fn field(label: &str, value: &str) -> Text {
    Text::mrkdwn(format!("*{label}*\n{}", escape(value)))
}

/// A field whose value is already mrkdwn (a link, say).
pub fn field_mrkdwn(label: &str, value_mrkdwn: &str) -> Text {
    Text::mrkdwn(format!("*{label}*\n{value_mrkdwn}"))
}

/// A code block of `raw` text, escaped and cut to fit in `max` with the
/// fences still closed.
pub fn code_block(raw: &str, max: usize) -> String {
    const FENCES: usize = 8; // "```\n" + "\n```"
    let inner = escape(raw.trim_end());
    let inner = truncate_mrkdwn(&inner.replace("```", "` ` `"), max.saturating_sub(FENCES));
    format!("```\n{inner}\n```")
}

/// A Slack link `<url|label>`. The url must already be percent-encoded; the
/// label is escaped here.
pub fn link(url: &str, label: &str) -> String {
    format!("<{url}|{}>", escape(label))
}

/// The length Slack's limits are checked against (UTF-16 code units, an
/// upper bound on the character count).
pub fn slack_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The longest prefix of `text` that is at most `max` long.
fn prefix(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (index, c) in text.char_indices() {
        used += c.len_utf16();
        if used > max {
            return &text[..index];
        }
    }
    text
}

/// A half entity (`&am`) would show as garbage: cut before its `&`.
fn without_partial_entity(text: &str) -> &str {
    match text.rfind('&') {
        Some(amp) if !text[amp..].contains(';') => &text[..amp],
        _ => text,
    }
}

/// Cuts plain text to `max`, ending in `…`.
pub fn truncate_plain(text: &str, max: usize) -> String {
    if slack_len(text) <= max {
        return text.to_string();
    }
    let kept = without_partial_entity(prefix(text, max.saturating_sub(slack_len(TRUNCATED_PLAIN))));
    format!("{}{TRUNCATED_PLAIN}", kept.trim_end())
}

/// Cuts mrkdwn to `max`, visibly, without breaking what the cut would
/// corrupt: an `&amp;`-style entity, a `<link|label>` or mention, or a code
/// block (closed again before the mark).
pub fn truncate_mrkdwn(text: &str, max: usize) -> String {
    if slack_len(text) <= max {
        return text.to_string();
    }
    const CLOSE_FENCE: &str = "\n```";
    let budget = max.saturating_sub(slack_len(TRUNCATED) + slack_len(CLOSE_FENCE) + 1);
    let mut kept = without_partial_entity(prefix(text, budget));
    // A half `<url|label>` would show raw: cut before its `<`.
    if let Some(open) = kept.rfind('<')
        && !kept[open..].contains('>')
    {
        kept = &kept[..open];
    }
    let mut out = kept.trim_end().to_string();
    if out.matches("```").count() % 2 == 1 {
        out.push_str(CLOSE_FENCE);
        out.push('\n');
    } else {
        out.push(' ');
    }
    out.push_str(TRUNCATED);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_mentions_and_links() {
        assert_eq!(
            escape("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn short_text_is_untouched() {
        assert_eq!(truncate_mrkdwn("abc", 3), "abc");
        assert_eq!(truncate_plain("abc", 3), "abc");
    }

    #[test]
    fn truncation_is_visible_and_within_the_limit() {
        let long = "x".repeat(5_000);
        let cut = truncate_mrkdwn(&long, SECTION_MAX);
        assert!(slack_len(&cut) <= SECTION_MAX);
        assert!(cut.ends_with(TRUNCATED));
        let header = truncate_plain(&long, HEADER_MAX);
        assert_eq!(slack_len(&header), HEADER_MAX);
        assert!(header.ends_with('…'));
    }

    #[test]
    fn truncation_counts_utf16_units() {
        let emoji = "🔥".repeat(100); // 200 UTF-16 units
        let cut = truncate_plain(&emoji, HEADER_MAX);
        assert!(slack_len(&cut) <= HEADER_MAX);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn truncation_never_splits_an_entity_or_a_link() {
        let text = format!("{}&amp;{}", "a".repeat(30), "tail".repeat(20));
        // A budget that lands inside "&amp;".
        let cut = truncate_mrkdwn(&text, 30 + 2 + slack_len(TRUNCATED) + 5);
        assert!(!cut.contains("&am "), "{cut}");
        assert!(!cut.contains('&'), "{cut}");
        assert!(cut.ends_with(TRUNCATED));
        let header = truncate_plain(&format!("{}&amp;xyz", "h".repeat(146)), HEADER_MAX);
        assert_eq!(header, format!("{}…", "h".repeat(146)));
        let text = format!("{}<https://example.com/x|label> tail", "a".repeat(30));
        let cut = truncate_mrkdwn(&text, 30 + 10 + slack_len(TRUNCATED) + 5);
        assert!(!cut.contains('<'), "{cut}");
    }

    #[test]
    fn a_cut_code_block_is_closed() {
        let text = format!("intro\n```\n{}\n```", "line\n".repeat(1_000));
        let cut = truncate_mrkdwn(&text, 500);
        assert!(slack_len(&cut) <= 500);
        assert_eq!(cut.matches("```").count() % 2, 0, "{cut}");
        assert!(cut.ends_with(TRUNCATED));
        let block = code_block(&"y".repeat(10_000), SECTION_MAX);
        assert!(slack_len(&block) <= SECTION_MAX);
        assert!(block.starts_with("```\n") && block.ends_with("\n```"));
        assert!(block.contains(TRUNCATED));
    }

    #[test]
    fn code_blocks_escape_and_defuse_fences() {
        assert_eq!(code_block("a<b```c", 100), "```\na&lt;b` ` `c\n```");
    }

    #[test]
    fn message_enforces_every_limit() {
        let big = "z".repeat(10_000);
        let blocks: Vec<Block> = std::iter::once(Block::header(&big))
            .chain(std::iter::once(Block::fields(
                (0..25).map(|i| field(&format!("f{i}"), &big)).collect(),
            )))
            .chain((0..60).map(|_| Block::text(big.clone())))
            .chain(std::iter::once(Block::context(
                (0..12).map(|_| Text::mrkdwn(big.clone())).collect(),
            )))
            .collect();
        let message = SlackMessage::new(big.clone(), blocks);
        assert!(slack_len(&message.text) <= TEXT_MAX);
        assert_eq!(message.blocks.len(), BLOCKS_MAX);
        for block in &message.blocks {
            match block {
                Block::Header { text } => assert!(slack_len(text.as_str()) <= HEADER_MAX),
                Block::Section { text, fields } => {
                    assert!(text.iter().all(|t| slack_len(t.as_str()) <= SECTION_MAX));
                    assert!(fields.len() <= FIELDS_MAX);
                    assert!(fields.iter().all(|f| slack_len(f.as_str()) <= FIELD_MAX));
                }
                Block::Context { elements } => {
                    assert!(elements.len() <= CONTEXT_ELEMENTS_MAX);
                    assert!(
                        elements
                            .iter()
                            .all(|e| slack_len(e.as_str()) <= CONTEXT_TEXT_MAX)
                    );
                }
                Block::Divider => {}
            }
        }
        // 25 fields became three sections (10 + 10 + 5), nothing silently lost
        // before the block cap, and the cap itself is announced.
        let Block::Context { elements } = message.blocks.last().unwrap() else {
            panic!("last block is the note");
        };
        assert!(elements[0].as_str().contains("more blocks left out"));
    }

    #[test]
    fn serialises_as_block_kit() {
        let message = SlackMessage::new(
            "t",
            vec![
                Block::header("h"),
                Block::fields(vec![field("State", "OK → ALARM")]),
                Block::Divider,
            ],
        );
        assert_eq!(
            message.to_json(),
            serde_json::json!({
                "text": "t",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "h", "emoji": true}},
                    {"type": "section", "fields": [{"type": "mrkdwn", "text": "*State*\nOK → ALARM"}]},
                    {"type": "divider"}
                ]
            })
        );
    }
}
