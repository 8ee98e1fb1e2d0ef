//! Deployment notifications from deploy-exec: a header with the outcome,
//! the repository, environment, commit, pusher and duration as fields, the
//! stop reason, the last lines of the stack updater's log in a
//! preformatted block (or why there are none), and links to the task and
//! to its full log in the console.
//!
//! The log block keeps the *newest* lines: when Slack's section limit
//! forces a cut, the oldest lines go, and the label says how many are
//! shown of how many.

use kiln::messages::deployment::{DeployOutcome, DeploymentLog, DeploymentNotice, short_sha};

use super::blocks::{
    Block, SECTION_MAX, SlackMessage, Text, escape, field, field_mrkdwn, link, slack_len,
    truncate_plain,
};
use super::console::{console_base, ecs_task_url, is_region_code, percent_encode};
use super::format_datetime;

pub fn outcome_emoji(outcome: DeployOutcome) -> &'static str {
    match outcome {
        DeployOutcome::Started => "🚀",
        DeployOutcome::Succeeded => "✅",
        DeployOutcome::Failed => "🔴",
        DeployOutcome::Superseded => "⏭️",
    }
}

pub fn render(notice: &DeploymentNotice) -> SlackMessage {
    let title = format!("{} {}", outcome_emoji(notice.outcome), notice.title());
    let summary = notice.summary.trim();
    let mut text = escape(&title);
    if !summary.is_empty() {
        let flat = summary.split_whitespace().collect::<Vec<_>>().join(" ");
        text.push_str(&format!(" — {}", escape(&truncate_plain(&flat, 200))));
    }
    let mut blocks = vec![Block::header(&title)];
    if !summary.is_empty() {
        blocks.push(Block::text(escape(summary)));
    }

    let mut fields = vec![
        field("Repository", &notice.repository),
        field("Environment", &notice.environment),
        field_mrkdwn("Commit", &code(short_sha(&notice.sha))),
    ];
    if let Some(sender) = &notice.sender {
        fields.push(field("Pushed by", sender));
    }
    if let Some(duration) = &notice.duration {
        fields.push(field("Duration", duration));
    }
    if let Some(exit_code) = notice.exit_code {
        fields.push(field("Exit code", &exit_code.to_string()));
    }
    if let Some(stop_code) = &notice.stop_code {
        fields.push(field("Stop code", stop_code));
    }
    if let Some(newer) = &notice.superseded_by {
        fields.push(field_mrkdwn("Superseded by", &code(short_sha(newer))));
    }
    blocks.push(Block::fields(fields));
    if let Some(reason) = &notice.stopped_reason {
        blocks.push(Block::text(format!("*Stopped reason*\n{}", escape(reason))));
    }

    let log_url = match &notice.log {
        DeploymentLog::NotIncluded => None,
        DeploymentLog::Lines { location, lines } => {
            blocks.push(Block::text(log_section(lines, SECTION_MAX)));
            log_stream_url(&location.region, &location.group, &location.stream)
        }
        DeploymentLog::Unavailable { location, reason } => {
            blocks.push(Block::text(format!(
                "*Log unavailable*\n{}",
                escape(reason)
            )));
            location
                .as_ref()
                .and_then(|l| log_stream_url(&l.region, &l.group, &l.stream))
        }
    };

    let mut links = Vec::new();
    if let Some(url) = notice.task_arn.as_deref().and_then(task_url) {
        links.push(link(&url, "ECS task"));
    }
    if let Some(url) = log_url {
        links.push(link(&url, "Full log in CloudWatch"));
    }
    if !links.is_empty() {
        blocks.push(Block::context(vec![Text::mrkdwn(links.join("  ·  "))]));
    }
    blocks.push(Block::context(vec![Text::mrkdwn(format!(
        "🕒 {}  ·  kiln deploy-exec",
        format_datetime(notice.at)
    ))]));
    SlackMessage::new(text, blocks)
}

fn code(text: &str) -> String {
    format!("`{}`", escape(&text.replace('`', "'")))
}

/// `*Last N log lines*` over a preformatted block of the newest lines that
/// fit in `max`. Lines are escaped and can't close the block; when lines
/// had to go, the label says so.
pub fn log_section(lines: &[String], max: usize) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|line| escape(line.trim_end()).replace("```", "` ` `"))
        .collect();
    let total = escaped.len();
    let label = |shown: usize| {
        if shown == total {
            format!(
                "*Last {total} log line{}*",
                if total == 1 { "" } else { "s" }
            )
        } else {
            format!("*Last {shown} of {total} log lines* _(truncated to fit Slack)_")
        }
    };
    let frame = |label: &str, body: &str| format!("{label}\n```\n{body}\n```");
    // Drop the oldest lines until the block fits.
    let mut start = 0;
    while start < total {
        let shown = total - start;
        let section = frame(&label(shown), &escaped[start..].join("\n"));
        if slack_len(&section) <= max {
            return section;
        }
        start += 1;
    }
    // Not even the newest line fits: keep its end.
    let label = label(usize::from(total > 0));
    let budget = max.saturating_sub(slack_len(&frame(&label, "")) + 1);
    let newest = escaped.last().map(String::as_str).unwrap_or_default();
    frame(&label, &format!("…{}", tail(newest, budget)))
}

/// The longest suffix of `text` at most `max` long (UTF-16 units), never
/// starting inside an `&amp;`-style entity.
fn tail(text: &str, max: usize) -> &str {
    let mut used = 0;
    let mut start = text.len();
    for (index, c) in text.char_indices().rev() {
        used += c.len_utf16();
        if used > max {
            break;
        }
        start = index;
    }
    let kept = &text[start..];
    match (kept.find(';'), kept.find('&')) {
        (Some(semicolon), amp) if amp.is_none_or(|a| a > semicolon) => &kept[semicolon + 1..],
        _ => kept,
    }
}

/// The ECS console page of a task, from its ARN
/// (`arn:PARTITION:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
fn task_url(task_arn: &str) -> Option<String> {
    let parts: Vec<&str> = task_arn.splitn(6, ':').collect();
    let [_, _, "ecs", region, _, resource] = parts.as_slice() else {
        return None;
    };
    let (cluster, id) = resource.strip_prefix("task/")?.split_once('/')?;
    ecs_task_url(region, cluster, id)
}

/// The CloudWatch console page of a log stream. The console's fragment
/// takes names percent-encoded twice, with `$` for `%`.
pub fn log_stream_url(region: &str, group: &str, stream: &str) -> Option<String> {
    let encode = |name: &str| percent_encode(&percent_encode(name)).replace('%', "$");
    is_region_code(region).then(|| {
        format!(
            "{}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
            console_base(region),
            encode(group),
            encode(stream)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_stream_links_per_partition() {
        assert_eq!(
            log_stream_url(
                "eu-west-1",
                "/ecs/kiln-stack-updater",
                "deploy/stack-updater/0f4b"
            )
            .unwrap(),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fecs$252Fkiln-stack-updater/log-events/deploy$252Fstack-updater$252F0f4b"
        );
        assert!(
            log_stream_url("cn-north-1", "g", "s")
                .unwrap()
                .starts_with("https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1#")
        );
        assert!(
            log_stream_url("us-gov-west-1", "g", "s")
                .unwrap()
                .starts_with("https://console.amazonaws-us-gov.com/")
        );
        assert_eq!(log_stream_url("nowhere", "g", "s"), None);
        assert_eq!(
            task_url("arn:aws:ecs:eu-west-1:123456789012:task/kiln/0f4b").unwrap(),
            "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/kiln/tasks/0f4b?region=eu-west-1"
        );
        assert_eq!(task_url("arn:aws:ecs:eu-west-1:1:task/0f4b"), None);
    }

    #[test]
    fn the_log_block_keeps_the_newest_lines_and_says_so() {
        let lines: Vec<String> = (1..=30)
            .map(|i| format!("{i:03} {}", "x".repeat(150)))
            .collect();
        let section = log_section(&lines, SECTION_MAX);
        assert!(slack_len(&section) <= SECTION_MAX);
        assert!(section.contains("030 "), "the newest line is kept");
        assert!(!section.contains("001 "), "the oldest line went");
        assert!(section.starts_with("*Last 18 of 30 log lines* _(truncated to fit Slack)_\n```\n"));
        assert!(section.ends_with("\n```"));
        let few = log_section(&["a <b> & c".into(), "```".into()], SECTION_MAX);
        assert_eq!(
            few,
            "*Last 2 log lines*\n```\na &lt;b&gt; &amp; c\n` ` `\n```"
        );
    }

    #[test]
    fn one_huge_line_keeps_its_end() {
        let line = format!("start{}&end", "y".repeat(5_000));
        let section = log_section(&[line], 500);
        assert!(slack_len(&section) <= 500);
        assert!(section.ends_with("&amp;end\n```"), "{section}");
        assert!(section.contains("```\n…"));
        assert_eq!(tail("ab&amp;cd", 6), "cd");
        assert_eq!(tail("ab&amp;cd", 7), "&amp;cd");
    }
}
