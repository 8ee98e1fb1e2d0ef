//! CloudWatch alarms, whatever brought them: the SNS notification, the
//! EventBridge state change (or the alarm's Lambda action), or the
//! "still in ALARM" re-post. Each becomes an [`AlarmView`], and one function
//! renders that.
//!
//! Rules: `SLACK_MENTION` goes on ALARM messages only; OK messages follow
//! `NOTIFY_OK` (`after-alarm`: only when the previous state was ALARM);
//! INSUFFICIENT_DATA is always posted. The region code comes from the
//! alarm's ARN (the SNS message's `Region` is a display name), falling back
//! to the SNS topic's ARN.

use kiln::events::cloudwatch::{
    self, AlarmNotification, AlarmStateChange, Dimension, MetricDataQuery, StateChangeMetric,
    Trigger,
};
use kiln::events::eventbridge::EventBridgeEvent;
use serde_json::Value;

use super::blocks::{Block, SlackMessage, Text, escape, field, link, truncate_plain};
use super::console::{alarm_url, arn_account, arn_region, is_region_code};
use super::{
    Options, Origin, Payload, Rendered, format_minutes, format_number, format_seconds, format_time,
};
use crate::config::NotifyOk;

/// Everything the message shows about an alarm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmView {
    pub name: String,
    pub description: Option<String>,
    pub old_state: Option<String>,
    pub new_state: String,
    pub reason: Option<String>,
    /// When the state changed, for people.
    pub time: Option<String>,
    /// The region code, when known.
    pub region: Option<String>,
    /// The display name ("EU - Ireland"), when that is all there is.
    pub region_name: Option<String>,
    pub account: Option<String>,
    /// What the alarm watches, one metric or expression a line.
    pub metric: Option<String>,
    pub threshold: Option<String>,
    pub recent_datapoints: Option<String>,
    /// Composite alarms: the rule, and the alarms that tripped it.
    pub rule: Option<String>,
    pub triggered_by: Vec<String>,
    pub actions_suppressed: Option<String>,
    /// Set on a re-post: how long the alarm has been in ALARM.
    pub in_alarm_for_minutes: Option<u64>,
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl AlarmView {
    /// From the SNS notification an alarm action publishes.
    pub fn from_notification(alarm: &AlarmNotification, origin: &Origin<'_>) -> Self {
        let region = alarm
            .alarm_arn
            .as_deref()
            .and_then(arn_region)
            .or_else(|| origin.topic_arn.and_then(arn_region))
            .map(str::to_string);
        AlarmView {
            name: alarm.alarm_name.clone(),
            description: non_empty(alarm.alarm_description.as_deref()),
            old_state: non_empty(alarm.old_state_value.as_deref()),
            new_state: alarm.new_state_value.trim().to_string(),
            reason: non_empty(alarm.new_state_reason.as_deref()),
            time: non_empty(alarm.state_change_time.as_deref()).map(|t| format_time(&t)),
            region_name: non_empty(alarm.region.as_deref()).filter(|_| region.is_none()),
            region,
            account: non_empty(alarm.aws_account_id.as_deref()).or_else(|| {
                alarm
                    .alarm_arn
                    .as_deref()
                    .and_then(arn_account)
                    .map(str::to_string)
            }),
            metric: alarm.trigger.as_ref().and_then(trigger_metric),
            threshold: alarm.trigger.as_ref().and_then(trigger_threshold),
            recent_datapoints: None,
            rule: non_empty(alarm.alarm_rule.as_deref()),
            triggered_by: Vec::new(),
            actions_suppressed: None,
            in_alarm_for_minutes: None,
        }
    }

    /// From an EventBridge "CloudWatch Alarm State Change" (or the alarm's
    /// Lambda action, which carries the same detail).
    pub fn from_state_change(event: &EventBridgeEvent, change: &AlarmStateChange) -> Self {
        let arn = event.resources.first().map(String::as_str);
        let region = arn
            .and_then(arn_region)
            .or(event.region.as_deref().filter(|r| is_region_code(r)))
            .map(str::to_string);
        let configuration = change.configuration.clone().unwrap_or_default();
        let reason_data: Option<Value> = change
            .state
            .reason_data
            .as_deref()
            .and_then(|data| serde_json::from_str(data).ok());
        let datum = |key: &str| reason_data.as_ref().and_then(|d| d.get(key));
        let threshold = datum("threshold").and_then(Value::as_f64).map(|threshold| {
            let mut text = format_number(threshold);
            let statistic = datum("statistic").and_then(Value::as_str);
            let period = datum("period").and_then(Value::as_i64);
            match (statistic, period) {
                (Some(stat), Some(period)) => text.push_str(&format!(
                    " · {} over {}",
                    title_case(stat),
                    format_seconds(period)
                )),
                (None, Some(period)) => {
                    text.push_str(&format!(" · over {}", format_seconds(period)))
                }
                _ => {}
            }
            text
        });
        let recent_datapoints = datum("recentDatapoints")
            .and_then(Value::as_array)
            .filter(|points| !points.is_empty())
            .map(|points| {
                points
                    .iter()
                    .filter_map(Value::as_f64)
                    .map(format_datapoint)
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        let triggered_by = datum("triggeringAlarms")
            .and_then(Value::as_array)
            .map(|alarms| {
                alarms
                    .iter()
                    .filter_map(|a| a.get("arn").and_then(Value::as_str))
                    .map(|arn| arn.rsplit(":alarm:").next().unwrap_or(arn).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let actions_suppressed =
            non_empty(change.state.actions_suppressed_by.as_deref()).map(|by| {
                match non_empty(change.state.actions_suppressed_reason.as_deref()) {
                    // AWS's reason usually says it all ("Actions suppressed
                    // by WaitPeriod").
                    Some(reason) if reason.contains(&by) => reason,
                    Some(reason) => format!("suppressed by {by}: {reason}"),
                    None => format!("suppressed by {by}"),
                }
            });
        AlarmView {
            name: change.alarm_name.clone(),
            description: non_empty(configuration.description.as_deref()),
            old_state: change
                .previous_state
                .as_ref()
                .and_then(|s| non_empty(Some(&s.value))),
            new_state: change.state.value.trim().to_string(),
            reason: non_empty(change.state.reason.as_deref()),
            time: non_empty(change.state.timestamp.as_deref())
                .or_else(|| non_empty(event.time.as_deref()))
                .map(|t| format_time(&t)),
            region_name: None,
            region,
            account: non_empty(event.account.as_deref())
                .or_else(|| arn.and_then(arn_account).map(str::to_string)),
            metric: state_change_metric(&configuration.metrics),
            threshold,
            recent_datapoints,
            rule: non_empty(configuration.alarm_rule.as_deref()),
            triggered_by,
            actions_suppressed,
            in_alarm_for_minutes: None,
        }
    }

    fn is_alarm(&self) -> bool {
        self.new_state == cloudwatch::ALARM
    }
}

/// Renders an alarm, or says why it is not posted.
pub fn render(view: &AlarmView, options: &Options<'_>) -> Rendered {
    if view.new_state == cloudwatch::OK {
        let after_alarm = view
            .old_state
            .as_deref()
            .is_none_or(|old| old == cloudwatch::ALARM);
        let post = match options.notify_ok {
            NotifyOk::Always => true,
            NotifyOk::Never => false,
            NotifyOk::AfterAlarm => after_alarm,
        };
        if !post {
            let setting = match options.notify_ok {
                NotifyOk::Never => "never",
                _ => "after-alarm",
            };
            return Rendered::Skip {
                reason: format!(
                    "{} → OK is not posted (NOTIFY_OK={setting})",
                    view.old_state.as_deref().unwrap_or("?")
                ),
            };
        }
    }
    Rendered::Post(Payload::Blocks(message(view, options)))
}

fn message(view: &AlarmView, options: &Options<'_>) -> SlackMessage {
    let emoji = state_emoji(&view.new_state);
    let title = match view.in_alarm_for_minutes {
        Some(minutes) => format!(
            "{emoji} Still in ALARM for {}: {}",
            format_minutes(minutes),
            view.name
        ),
        None => format!("{emoji} {}: {}", view.new_state, view.name),
    };
    let mention = options.mention.filter(|_| view.is_alarm());
    let place = view.region.as_deref().or(view.region_name.as_deref());

    // The notification text: mention, title, place, the start of the reason.
    let mut text = String::new();
    if let Some(mention) = mention {
        text.push_str(mention);
        text.push(' ');
    }
    text.push_str(&escape(&title));
    if let Some(place) = place {
        text.push_str(&format!(" in {}", escape(place)));
    }
    if let Some(reason) = &view.reason {
        text.push_str(&format!(" — {}", escape(&truncate_plain(reason, 200))));
    }

    let mut blocks = vec![Block::header(&title)];
    let intro: Vec<String> = mention
        .map(str::to_string)
        .into_iter()
        .chain(view.description.as_deref().map(escape))
        .collect();
    if !intro.is_empty() {
        blocks.push(Block::text(intro.join("\n")));
    }
    if let Some(reason) = &view.reason {
        blocks.push(Block::text(format!("*Reason*\n{}", escape(reason))));
    }

    let mut fields = Vec::new();
    let state = match (&view.old_state, view.in_alarm_for_minutes) {
        (_, Some(_)) => view.time.as_ref().map_or_else(
            || view.new_state.clone(),
            |since| format!("{} since {since}", view.new_state),
        ),
        (Some(old), None) => format!("{old} → {}", view.new_state),
        (None, None) => view.new_state.clone(),
    };
    fields.push(field("State", &state));
    if let Some(metric) = &view.metric {
        fields.push(field("Metric", metric));
    }
    if let Some(threshold) = &view.threshold {
        fields.push(field("Threshold", threshold));
    }
    if let Some(points) = &view.recent_datapoints {
        fields.push(field("Recent datapoints", points));
    }
    if let Some(rule) = &view.rule {
        fields.push(field("Rule", rule));
    }
    if !view.triggered_by.is_empty() {
        fields.push(field("Triggered by", &view.triggered_by.join("\n")));
    }
    if let Some(suppressed) = &view.actions_suppressed {
        fields.push(field("Actions", suppressed));
    }
    if let Some(place) = place {
        fields.push(field("Region", place));
    }
    if let Some(account) = &view.account {
        fields.push(field("Account", account));
    }
    blocks.push(Block::fields(fields));

    let mut context = Vec::new();
    if let Some(time) = &view.time {
        context.push(format!("🕒 {}", escape(time)));
    }
    if let Some(url) = view
        .region
        .as_deref()
        .and_then(|r| alarm_url(r, &view.name))
    {
        context.push(link(&url, "Open in CloudWatch"));
    }
    if !context.is_empty() {
        blocks.push(Block::context(vec![Text::mrkdwn(context.join("  ·  "))]));
    }
    SlackMessage::new(text, blocks)
}

/// The emoji for an alarm state.
pub fn state_emoji(state: &str) -> &'static str {
    match state {
        cloudwatch::ALARM => "🔴",
        cloudwatch::OK => "🟢",
        cloudwatch::INSUFFICIENT_DATA => "⚪",
        _ => "🔵",
    }
}

/// `AVERAGE` → `Average`; `p99` stays.
fn title_case(statistic: &str) -> String {
    if statistic.bytes().all(|b| b.is_ascii_uppercase()) {
        let lower = statistic.to_ascii_lowercase();
        let mut chars = lower.chars();
        chars
            .next()
            .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default()
    } else {
        statistic.to_string()
    }
}

/// A datapoint with at most four decimals: `99.50160229693434` → `99.5016`.
fn format_datapoint(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn operator_symbol(operator: &str) -> &str {
    match operator {
        "GreaterThanOrEqualToThreshold" => "≥",
        "GreaterThanThreshold" => ">",
        "LessThanThreshold" => "<",
        "LessThanOrEqualToThreshold" => "≤",
        "LessThanLowerOrGreaterThanUpperThreshold" => "outside the band",
        "GreaterThanUpperThreshold" => "above the band",
        "LessThanLowerThreshold" => "below the band",
        other => other,
    }
}

fn dimensions_text(dimensions: impl Iterator<Item = (String, String)>) -> String {
    dimensions
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn metric_line(namespace: Option<&str>, name: Option<&str>, dimensions: String) -> Option<String> {
    let head = [namespace, name]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match (head.is_empty(), dimensions.is_empty()) {
        (true, _) => None,
        (false, true) => Some(head),
        (false, false) => Some(format!("{head} ({dimensions})")),
    }
}

fn sns_dimensions(dimensions: &[Dimension]) -> String {
    dimensions_text(
        dimensions
            .iter()
            .map(|d| (d.name.clone(), d.value.clone().unwrap_or_default())),
    )
}

pub(crate) fn trigger_metric(trigger: &Trigger) -> Option<String> {
    if !trigger.metrics.is_empty() {
        return query_lines(trigger.metrics.iter().map(sns_query));
    }
    metric_line(
        trigger.namespace.as_deref(),
        trigger.metric_name.as_deref(),
        sns_dimensions(&trigger.dimensions),
    )
}

/// One metric-math query: `id = expression (label)` or `id = metric`.
struct Query {
    id: Option<String>,
    expression: Option<String>,
    label: Option<String>,
    metric: Option<String>,
}

impl Query {
    /// A query; the metric line, if any, gets its statistic appended.
    fn new(
        id: &Option<String>,
        expression: &Option<String>,
        label: &Option<String>,
        metric: Option<String>,
        stat: Option<&str>,
    ) -> Self {
        Query {
            id: id.clone(),
            expression: expression.clone(),
            label: label.clone(),
            metric: metric.map(|line| match stat {
                Some(stat) => format!("{line}, {stat}"),
                None => line,
            }),
        }
    }
}

fn sns_query(query: &MetricDataQuery) -> Query {
    let stat = query.metric_stat.as_ref();
    let line = stat.and_then(|s| s.metric.as_ref()).and_then(|metric| {
        metric_line(
            metric.namespace.as_deref(),
            metric.metric_name.as_deref(),
            sns_dimensions(&metric.dimensions),
        )
    });
    let stat = stat.and_then(|s| s.stat.as_deref());
    Query::new(&query.id, &query.expression, &query.label, line, stat)
}

fn state_change_query(query: &StateChangeMetric) -> Query {
    let stat = query.metric_stat.as_ref();
    let line = stat.and_then(|s| s.metric.as_ref()).and_then(|metric| {
        let dimensions = dimensions_text(metric.dimensions.iter().map(|(name, value)| {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            (name.clone(), value)
        }));
        metric_line(
            metric.namespace.as_deref(),
            metric.name.as_deref(),
            dimensions,
        )
    });
    let stat = stat.and_then(|s| s.stat.as_deref());
    Query::new(&query.id, &query.expression, &query.label, line, stat)
}

fn query_lines(queries: impl Iterator<Item = Query>) -> Option<String> {
    let lines: Vec<String> = queries
        .filter_map(|q| {
            let body = match (&q.expression, &q.metric) {
                (Some(expression), _) => match &q.label {
                    Some(label) => format!("{expression} ({label})"),
                    None => expression.clone(),
                },
                (None, Some(metric)) => metric.clone(),
                (None, None) => return None,
            };
            // A single plain metric needs no id (it is a generated UUID).
            Some(match &q.id {
                Some(id) if q.expression.is_some() || id.len() <= 8 => format!("{id} = {body}"),
                _ => body,
            })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn state_change_metric(metrics: &[StateChangeMetric]) -> Option<String> {
    query_lines(metrics.iter().map(state_change_query))
}

pub(crate) fn trigger_threshold(trigger: &Trigger) -> Option<String> {
    let threshold = trigger.threshold?;
    let mut text = match trigger.comparison_operator.as_deref() {
        Some(op) => format!("{} {}", operator_symbol(op), format_number(threshold)),
        None => format_number(threshold),
    };
    if let Some(unit) = trigger
        .unit
        .as_deref()
        .filter(|u| !u.is_empty() && *u != "None")
    {
        text.push_str(&format!(" {unit}"));
    }
    let statistic = trigger
        .extended_statistic
        .as_deref()
        .or(trigger.statistic.as_deref())
        .map(title_case);
    match (statistic, trigger.period) {
        (Some(stat), Some(period)) => {
            text.push_str(&format!(" · {stat} over {}", format_seconds(period)))
        }
        (None, Some(period)) => text.push_str(&format!(" · over {}", format_seconds(period))),
        _ => {}
    }
    if let Some(evaluation) = trigger.evaluation_periods {
        let datapoints = trigger.datapoints_to_alarm.unwrap_or(evaluation);
        text.push_str(&format!(" · {datapoints} of {evaluation} periods"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(old: Option<&str>, new: &str) -> AlarmView {
        AlarmView {
            name: "api-5xx".into(),
            old_state: old.map(str::to_string),
            new_state: new.into(),
            ..AlarmView::default()
        }
    }

    fn options(notify_ok: NotifyOk) -> Options<'static> {
        Options {
            mention: Some("<!here>"),
            notify_ok,
        }
    }

    fn posted(rendered: Rendered) -> serde_json::Value {
        match rendered {
            Rendered::Post(payload) => payload.to_json(),
            Rendered::Skip { reason } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn ok_messages_follow_notify_ok() {
        let after_alarm = view(Some("ALARM"), "OK");
        let after_missing_data = view(Some("INSUFFICIENT_DATA"), "OK");
        for (v, setting, post) in [
            (&after_alarm, NotifyOk::AfterAlarm, true),
            (&after_missing_data, NotifyOk::AfterAlarm, false),
            (&after_missing_data, NotifyOk::Always, true),
            (&after_alarm, NotifyOk::Never, false),
        ] {
            let rendered = render(v, &options(setting));
            assert_eq!(
                matches!(rendered, Rendered::Post(_)),
                post,
                "{setting:?} {v:?}"
            );
        }
        let Rendered::Skip { reason } = render(&after_missing_data, &options(NotifyOk::AfterAlarm))
        else {
            panic!()
        };
        assert_eq!(
            reason,
            "INSUFFICIENT_DATA → OK is not posted (NOTIFY_OK=after-alarm)"
        );
        // Other states are never held back.
        assert!(matches!(
            render(
                &view(Some("OK"), "INSUFFICIENT_DATA"),
                &options(NotifyOk::Never)
            ),
            Rendered::Post(_)
        ));
    }

    #[test]
    fn mention_only_on_alarm() {
        let alarm = posted(render(
            &view(Some("OK"), "ALARM"),
            &options(NotifyOk::Always),
        ));
        assert!(
            alarm["text"]
                .as_str()
                .unwrap()
                .starts_with("<!here> 🔴 ALARM: api-5xx")
        );
        assert!(alarm.to_string().matches("<!here>").count() == 2);
        let ok = posted(render(
            &view(Some("ALARM"), "OK"),
            &options(NotifyOk::Always),
        ));
        assert!(!ok.to_string().contains("<!here>"));
    }

    #[test]
    fn alarm_names_cannot_mention_or_link() {
        let mut v = view(Some("OK"), "ALARM");
        v.name = "<!channel> & <https://evil.example|click>".into();
        v.region = Some("eu-west-1".into());
        v.reason = Some("<!everyone>".into());
        let json = posted(render(&v, &Options::default()));
        let text = json.to_string();
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(!text.contains("<!everyone>"), "{text}");
        assert!(text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
        assert_eq!(
            json["blocks"][0]["text"]["text"],
            "🔴 ALARM: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
        );
        // The console link encodes the name so it can't close the link.
        assert!(text.contains("alarm/%3C%21channel%3E%20%26%20%3Chttps%3A%2F%2Fevil.example%7Cclick%3E|Open in CloudWatch>"));
    }

    #[test]
    fn refire_title() {
        let mut v = view(None, "ALARM");
        v.in_alarm_for_minutes = Some(75);
        v.time = Some("2026-11-22 10:00:00 UTC".into());
        let json = posted(render(&v, &Options::default()));
        assert_eq!(
            json["blocks"][0]["text"]["text"],
            "🔴 Still in ALARM for 1 h 15 min: api-5xx"
        );
        assert!(
            json.to_string()
                .contains("ALARM since 2026-11-22 10:00:00 UTC")
        );
    }

    #[test]
    fn thresholds_read_like_sentences() {
        let trigger = Trigger {
            comparison_operator: Some("GreaterThanOrEqualToThreshold".into()),
            threshold: Some(1000.0),
            statistic: Some("SUM".into()),
            period: Some(300),
            evaluation_periods: Some(3),
            datapoints_to_alarm: Some(2),
            ..Trigger::default()
        };
        assert_eq!(
            trigger_threshold(&trigger).unwrap(),
            "≥ 1000 · Sum over 5 min · 2 of 3 periods"
        );
        assert_eq!(format_datapoint(99.50160229693434), "99.5016");
        assert_eq!(format_datapoint(45628.0), "45628");
    }
}
