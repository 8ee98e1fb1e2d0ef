//! Re-posting alarms that stay in ALARM ("refire"), with no storage.
//!
//! An EventBridge schedule invokes the function every
//! `REFIRE_SCHEDULE_MINUTES`. Each run lists the alarms in ALARM
//! (DescribeAlarms, `StateValue=ALARM`, `REFIRE_ALARM_PREFIX`) and re-posts
//! an alarm when the time it has spent in ALARM crossed a multiple of
//! `REFIRE_AFTER_MINUTES` since the previous run: with the defaults, at
//! 60, 120, 180, ... minutes, each exactly once. Consecutive runs' windows
//! `(now − schedule, now]` tile the time line, so no state needs keeping.
//!
//! "Now" is the scheduled event's `time` (the tick the schedule fired for),
//! not the wall clock: ticks are then exactly one period apart, and a
//! retried invocation makes the same decision. The clock is the fallback.

use kiln::aws::LazyClient;
use std::future::Future;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use kiln::events::cloudwatch::{Dimension, Metric, MetricDataQuery, MetricStat, Trigger};
use time::OffsetDateTime;

use crate::render::alarm::{AlarmView, trigger_metric, trigger_threshold};
use crate::render::console::{arn_account, arn_region};
use crate::render::format_datetime;

/// An alarm in ALARM, as DescribeAlarms reports it.
#[derive(Debug, Clone, Default)]
pub struct AlarmInAlarm {
    pub name: String,
    pub arn: Option<String>,
    pub description: Option<String>,
    pub reason: Option<String>,
    pub state_updated: Option<OffsetDateTime>,
    /// Metric alarms: what they watch (same shape as the SNS notification's).
    pub trigger: Option<Trigger>,
    /// Composite alarms: the rule.
    pub rule: Option<String>,
}

/// DescribeAlarms failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listing the alarms in ALARM (DescribeAlarms) failed: {0}")]
pub struct AlarmSourceError(pub String);

/// The port: the alarms currently in ALARM.
pub trait AlarmSource: Send + Sync {
    fn alarms_in_alarm(
        &self,
        name_prefix: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AlarmInAlarm>, AlarmSourceError>> + Send;
}

/// An account with no alarm in ALARM, for tests that never re-post.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAlarms;

#[cfg(any(test, feature = "test-util"))]
impl AlarmSource for NoAlarms {
    async fn alarms_in_alarm(
        &self,
        _name_prefix: Option<&str>,
    ) -> Result<Vec<AlarmInAlarm>, AlarmSourceError> {
        Ok(Vec::new())
    }
}

/// Whether an alarm that has been in ALARM for `elapsed` is re-posted by
/// the run at the end of a `schedule`-long window: when the window crossed
/// a multiple of `every`.
pub fn due(elapsed: Duration, every: Duration, schedule: Duration) -> bool {
    let every = every.as_millis();
    if every == 0 || elapsed.as_millis() < every {
        return false;
    }
    let now = elapsed.as_millis();
    let previous = elapsed.saturating_sub(schedule).as_millis();
    now / every > previous / every
}

/// The alarms to re-post at `now`, each as the view to render.
pub fn select(
    alarms: &[AlarmInAlarm],
    now: OffsetDateTime,
    every: Duration,
    schedule: Duration,
) -> Vec<AlarmView> {
    alarms
        .iter()
        .filter_map(|alarm| {
            let since = alarm.state_updated?;
            let elapsed: Duration = (now - since).try_into().ok()?;
            due(elapsed, every, schedule).then(|| view(alarm, elapsed))
        })
        .collect()
}

fn view(alarm: &AlarmInAlarm, elapsed: Duration) -> AlarmView {
    let arn = alarm.arn.as_deref();
    AlarmView {
        name: alarm.name.clone(),
        description: alarm.description.clone().filter(|d| !d.trim().is_empty()),
        old_state: None,
        new_state: kiln::events::cloudwatch::ALARM.to_string(),
        reason: alarm.reason.clone(),
        time: alarm.state_updated.map(format_datetime),
        region: arn.and_then(arn_region).map(str::to_string),
        region_name: None,
        account: arn.and_then(arn_account).map(str::to_string),
        metric: alarm.trigger.as_ref().and_then(trigger_metric),
        threshold: alarm.trigger.as_ref().and_then(trigger_threshold),
        recent_datapoints: None,
        rule: alarm.rule.clone(),
        triggered_by: Vec::new(),
        actions_suppressed: None,
        in_alarm_for_minutes: Some(elapsed.as_secs() / 60),
    }
}

/// The CloudWatch adapter.
#[derive(Debug, Clone)]
pub struct CloudWatchAlarms {
    client: LazyClient<aws_sdk_cloudwatch::Client>,
}

impl CloudWatchAlarms {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_cloudwatch::Client>>) -> Self {
        CloudWatchAlarms {
            client: client.into(),
        }
    }
}

fn to_time(value: Option<&aws_smithy_types::DateTime>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(value?.as_nanos()).ok()
}

fn dimensions(dimensions: &[aws_sdk_cloudwatch::types::Dimension]) -> Vec<Dimension> {
    dimensions
        .iter()
        .map(|d| Dimension {
            name: d.name().unwrap_or_default().to_string(),
            value: d.value().map(str::to_string),
        })
        .collect()
}

fn metric_alarm(alarm: &aws_sdk_cloudwatch::types::MetricAlarm) -> AlarmInAlarm {
    let queries = alarm
        .metrics()
        .iter()
        .map(|q| MetricDataQuery {
            id: q.id().map(str::to_string),
            expression: q.expression().map(str::to_string),
            label: q.label().map(str::to_string),
            return_data: q.return_data(),
            metric_stat: q.metric_stat().map(|stat| MetricStat {
                metric: stat.metric().map(|m| Metric {
                    metric_name: m.metric_name().map(str::to_string),
                    namespace: m.namespace().map(str::to_string),
                    dimensions: dimensions(m.dimensions()),
                }),
                period: stat.period().map(i64::from),
                stat: stat.stat().map(str::to_string),
                unit: stat.unit().map(|u| u.as_str().to_string()),
            }),
        })
        .collect();
    AlarmInAlarm {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        arn: alarm.alarm_arn().map(str::to_string),
        description: alarm.alarm_description().map(str::to_string),
        reason: alarm.state_reason().map(str::to_string),
        state_updated: to_time(alarm.state_updated_timestamp()),
        trigger: Some(Trigger {
            metric_name: alarm.metric_name().map(str::to_string),
            namespace: alarm.namespace().map(str::to_string),
            statistic: alarm.statistic().map(|s| s.as_str().to_string()),
            extended_statistic: alarm.extended_statistic().map(str::to_string),
            unit: alarm.unit().map(|u| u.as_str().to_string()),
            dimensions: dimensions(alarm.dimensions()),
            period: alarm.period().map(i64::from),
            evaluation_periods: alarm.evaluation_periods().map(i64::from),
            datapoints_to_alarm: alarm.datapoints_to_alarm().map(i64::from),
            comparison_operator: alarm.comparison_operator().map(|c| c.as_str().to_string()),
            threshold: alarm.threshold(),
            treat_missing_data: alarm.treat_missing_data().map(str::to_string),
            metrics: queries,
        }),
        rule: None,
    }
}

fn composite_alarm(alarm: &aws_sdk_cloudwatch::types::CompositeAlarm) -> AlarmInAlarm {
    AlarmInAlarm {
        name: alarm.alarm_name().unwrap_or_default().to_string(),
        arn: alarm.alarm_arn().map(str::to_string),
        description: alarm.alarm_description().map(str::to_string),
        reason: alarm.state_reason().map(str::to_string),
        state_updated: to_time(alarm.state_updated_timestamp()),
        trigger: None,
        rule: alarm.alarm_rule().map(str::to_string),
    }
}

impl AlarmSource for CloudWatchAlarms {
    async fn alarms_in_alarm(
        &self,
        name_prefix: Option<&str>,
    ) -> Result<Vec<AlarmInAlarm>, AlarmSourceError> {
        use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
        let mut alarms = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let output = self
                .client
                .get()
                .await
                .describe_alarms()
                .state_value(StateValue::Alarm)
                .set_alarm_name_prefix(name_prefix.map(str::to_string))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .max_records(100)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|err| {
                    AlarmSourceError(match (err.code(), err.message()) {
                        (Some(code), Some(message)) => format!("{code}: {message}"),
                        _ => kiln::aws::error_chain(&err),
                    })
                })?;
            // The state is checked here as well: not every implementation of
            // the API applies StateValue together with AlarmNamePrefix.
            alarms.extend(
                output
                    .metric_alarms()
                    .iter()
                    .filter(|a| a.state_value() == Some(&StateValue::Alarm))
                    .map(metric_alarm),
            );
            alarms.extend(
                output
                    .composite_alarms()
                    .iter()
                    .filter(|a| a.state_value() == Some(&StateValue::Alarm))
                    .map(composite_alarm),
            );
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(alarms),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn minutes(n: u64) -> Duration {
        MIN * n as u32
    }

    #[test]
    fn due_once_per_interval() {
        let every = minutes(60);
        let schedule = minutes(15);
        assert!(!due(minutes(59), every, schedule));
        assert!(due(minutes(60), every, schedule));
        assert!(due(minutes(74), every, schedule));
        assert!(!due(minutes(75), every, schedule));
        assert!(!due(minutes(119), every, schedule));
        assert!(due(minutes(120), every, schedule));
        assert!(!due(Duration::ZERO, every, schedule));
        assert!(!due(minutes(60), Duration::ZERO, schedule));
    }

    #[test]
    fn consecutive_ticks_post_each_crossing_exactly_once() {
        // An alarm that went off at an arbitrary second, seen by ticks every
        // 15 minutes for a day: re-posted at 60, 120, ... minutes, once each.
        let every = minutes(60);
        let schedule = minutes(15);
        let offset = Duration::from_secs(7 * 60 + 13);
        let posts: Vec<u64> = (1..=96u32)
            .map(|tick| schedule * tick)
            .filter(|&t| t > offset)
            .map(|t| t - offset)
            .filter(|&elapsed| due(elapsed, every, schedule))
            .map(|elapsed| elapsed.as_secs() / 60)
            .collect();
        assert_eq!(posts.len(), 23, "{posts:?}");
        for (i, minute) in posts.iter().enumerate() {
            let multiple = (i as u64 + 1) * 60;
            assert!((multiple..multiple + 15).contains(minute), "{posts:?}");
        }
    }

    #[test]
    fn an_interval_shorter_than_the_schedule_posts_every_tick() {
        assert!(due(minutes(20), minutes(5), minutes(15)));
        assert!(due(minutes(35), minutes(5), minutes(15)));
    }

    #[test]
    fn select_only_old_enough_alarms() {
        let now = time::macros::datetime!(2026-11-22 12:00:00 UTC);
        let old = AlarmInAlarm {
            name: "old".into(),
            arn: Some("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:old".into()),
            state_updated: Some(now - time::Duration::minutes(65)),
            ..AlarmInAlarm::default()
        };
        let recent = AlarmInAlarm {
            name: "recent".into(),
            state_updated: Some(now - time::Duration::minutes(10)),
            ..AlarmInAlarm::default()
        };
        let unknown = AlarmInAlarm {
            name: "no timestamp".into(),
            ..AlarmInAlarm::default()
        };
        let views = select(&[old, recent, unknown], now, minutes(60), minutes(15));
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].name, "old");
        assert_eq!(views[0].in_alarm_for_minutes, Some(65));
        assert_eq!(views[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(views[0].account.as_deref(), Some("123456789012"));
    }
}
