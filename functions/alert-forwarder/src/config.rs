//! alert-forwarder's configuration, parsed once at start-up.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SLACK_WEBHOOK_SECRET_ARN` | required | Secrets Manager secret holding the webhook URL |
//! | `SLACK_MENTION` | none | mention(s) added to ALARM messages, e.g. `<!here>` |
//! | `NOTIFY_OK` | `after-alarm` | `after-alarm`, `always` or `never` |
//! | `REFIRE_AFTER_MINUTES` | `60` | re-post alarms in ALARM this long; `0` turns re-posting off |
//! | `REFIRE_ALARM_PREFIX` | none | only alarms whose name starts with this are re-posted |
//! | `REFIRE_SCHEDULE_MINUTES` | `15` | the period of the schedule that invokes the re-post check |

use std::time::Duration;

use kiln::{ConfigError, Env};

/// When to post an alarm's return to OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOk {
    /// Only when the previous state was ALARM (the default): an alarm that
    /// wobbles between OK and INSUFFICIENT_DATA stays quiet.
    AfterAlarm,
    Always,
    Never,
}

impl NotifyOk {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "after-alarm" => Ok(NotifyOk::AfterAlarm),
            "always" => Ok(NotifyOk::Always),
            "never" => Ok(NotifyOk::Never),
            _ => Err("one of after-alarm, always, never".into()),
        }
    }
}

/// Re-notification of alarms that stay in ALARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refire {
    /// Re-post an alarm after it has been in ALARM this long, and again at
    /// every multiple of it. `None`: re-posting is off.
    pub after: Option<Duration>,
    /// The period of the schedule that invokes the check.
    pub schedule: Duration,
    /// Only alarms whose name starts with this.
    pub alarm_prefix: Option<String>,
}

impl Default for Refire {
    fn default() -> Self {
        Refire {
            after: Some(Duration::from_secs(60 * 60)),
            schedule: Duration::from_secs(15 * 60),
            alarm_prefix: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The secret holding the webhook URL (as a string or `{"url": ...}`).
    pub webhook_secret_arn: String,
    /// Mention(s) for ALARM messages, exactly as Slack wants them.
    pub mention: Option<String>,
    pub notify_ok: NotifyOk,
    pub refire: Refire,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let webhook_secret_arn = env.arn("SLACK_WEBHOOK_SECRET_ARN", "secretsmanager")?;
        let mention = env.parse_optional("SLACK_MENTION", parse_mention)?;
        let notify_ok = env
            .parse_optional("NOTIFY_OK", NotifyOk::parse)?
            .unwrap_or(NotifyOk::AfterAlarm);
        let after_minutes: u64 = env.parsed_or(
            "REFIRE_AFTER_MINUTES",
            60,
            "a whole number of minutes (0 turns re-posting off)",
        )?;
        let schedule_minutes: u64 = env.parsed_or(
            "REFIRE_SCHEDULE_MINUTES",
            15,
            "a whole number of minutes, at least 1",
        )?;
        if schedule_minutes == 0 {
            return Err(ConfigError::malformed(
                "REFIRE_SCHEDULE_MINUTES",
                "a whole number of minutes, at least 1",
            ));
        }
        Ok(Config {
            webhook_secret_arn,
            mention,
            notify_ok,
            refire: Refire {
                after: (after_minutes > 0).then(|| minutes(after_minutes)),
                schedule: minutes(schedule_minutes),
                alarm_prefix: env.optional("REFIRE_ALARM_PREFIX"),
            },
        })
    }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(60))
}

/// Mentions must be in Slack's own syntax (`<!here>`, `<!channel>`,
/// `<@U123>`, `<!subteam^S123>`), or Slack shows them as text and nobody is
/// notified. Several may be given, separated by spaces.
fn parse_mention(raw: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "Slack mention syntax such as <!here>, <!channel>, <@U0123ABCD> or <!subteam^S0123ABCD>";
    let valid = raw.split_whitespace().all(|token| {
        token.len() > 3
            && token.starts_with('<')
            && token.ends_with('>')
            && matches!(token.as_bytes()[1], b'!' | b'@')
            && !token[1..token.len() - 1].contains(['<', '>'])
    });
    if valid {
        Ok(raw.split_whitespace().collect::<Vec<_>>().join(" "))
    } else {
        Err(EXPECTED.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kiln/slack-AbCdEf";

    #[test]
    fn defaults() {
        let config =
            Config::from_env(&Env::from_pairs([("SLACK_WEBHOOK_SECRET_ARN", ARN)])).unwrap();
        assert_eq!(config.webhook_secret_arn, ARN);
        assert_eq!(config.mention, None);
        assert_eq!(config.notify_ok, NotifyOk::AfterAlarm);
        assert_eq!(config.refire, Refire::default());
    }

    #[test]
    fn everything_set() {
        let config = Config::from_env(&Env::from_pairs([
            ("SLACK_WEBHOOK_SECRET_ARN", ARN),
            ("SLACK_MENTION", "<!subteam^S012>  <@U34>"),
            ("NOTIFY_OK", "Always"),
            ("REFIRE_AFTER_MINUTES", "30"),
            ("REFIRE_ALARM_PREFIX", "kiln-"),
            ("REFIRE_SCHEDULE_MINUTES", "5"),
        ]))
        .unwrap();
        assert_eq!(config.mention.as_deref(), Some("<!subteam^S012> <@U34>"));
        assert_eq!(config.notify_ok, NotifyOk::Always);
        assert_eq!(
            config.refire,
            Refire {
                after: Some(Duration::from_secs(1800)),
                schedule: Duration::from_secs(300),
                alarm_prefix: Some("kiln-".into()),
            }
        );
    }

    #[test]
    fn zero_turns_refire_off() {
        let config = Config::from_env(&Env::from_pairs([
            ("SLACK_WEBHOOK_SECRET_ARN", ARN),
            ("REFIRE_AFTER_MINUTES", "0"),
        ]))
        .unwrap();
        assert_eq!(config.refire.after, None);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            (vec![], "SLACK_WEBHOOK_SECRET_ARN"),
            (
                vec![(
                    "SLACK_WEBHOOK_SECRET_ARN",
                    "https://hooks.slack.com/services/T/B/x",
                )],
                "SLACK_WEBHOOK_SECRET_ARN",
            ),
            (vec![("SLACK_MENTION", "@here")], "SLACK_MENTION"),
            (vec![("SLACK_MENTION", "<here>")], "SLACK_MENTION"),
            (vec![("NOTIFY_OK", "sometimes")], "NOTIFY_OK"),
            (vec![("REFIRE_AFTER_MINUTES", "1h")], "REFIRE_AFTER_MINUTES"),
            (
                vec![("REFIRE_SCHEDULE_MINUTES", "0")],
                "REFIRE_SCHEDULE_MINUTES",
            ),
        ];
        for (pairs, variable) in cases {
            let mut all = vec![("SLACK_WEBHOOK_SECRET_ARN", ARN)];
            all.retain(|(k, _)| !pairs.iter().any(|(p, _)| p == k));
            all.extend(pairs.iter().copied());
            if variable == "SLACK_WEBHOOK_SECRET_ARN" && pairs.is_empty() {
                all.clear();
            }
            let err = Config::from_env(&Env::from_pairs(all)).unwrap_err();
            assert_eq!(err.variable(), variable, "{err}");
        }
    }

    #[test]
    fn a_bad_webhook_arn_is_not_echoed() {
        let url = "https://hooks.slack.com/services/T000/B000/secretpart";
        let err =
            Config::from_env(&Env::from_pairs([("SLACK_WEBHOOK_SECRET_ARN", url)])).unwrap_err();
        assert!(!err.to_string().contains("secretpart"), "{err}");
    }
}
