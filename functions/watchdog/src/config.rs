//! watchdog's configuration, parsed once at start-up.

use std::time::Duration;

use kiln::{ConfigError, Env};

/// ECS lists a stopped task for about an hour, so a longer window would
/// silently count fewer crashes than it promises.
pub const MAX_WINDOW_MINUTES: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Auto Scaling group to scale to zero.
    pub asg_name: String,
    /// Where the alert goes.
    pub alert_topic_arn: String,
    /// When set, task events from other clusters are ignored.
    pub cluster_arn: Option<String>,
    /// How many crashed tasks of one group, stopped within the window, make
    /// a crash loop. At least 1.
    pub crash_loop_threshold: u32,
    pub crash_loop_window: Duration,
    /// Alarms whose transition to ALARM also scales down.
    pub scale_down_alarms: Vec<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let asg_name = env.parse_required(
            "ASG_NAME",
            "the name of the Auto Scaling group to scale down",
            |raw| {
                if raw.chars().count() > 255 {
                    Err("an Auto Scaling group name of at most 255 characters".into())
                } else {
                    Ok(raw.to_string())
                }
            },
        )?;
        let alert_topic_arn = env.arn("ALERT_TOPIC_ARN", "sns")?;
        let cluster_arn = env.optional_arn("CLUSTER_ARN", "ecs")?;
        let crash_loop_threshold = env
            .parse_optional("CRASH_LOOP_THRESHOLD", |raw| match raw.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("a whole number of crashed tasks, at least 1".into()),
            })?
            .unwrap_or(1);
        let window_minutes = env
            .parse_optional("CRASH_LOOP_WINDOW_MINUTES", |raw| {
                match raw.parse::<u32>() {
                    Ok(n) if (1..=MAX_WINDOW_MINUTES).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "a whole number of minutes from 1 to {MAX_WINDOW_MINUTES} \
                     (ECS lists stopped tasks for about an hour)"
                    )),
                }
            })?
            .unwrap_or(10);
        let scale_down_alarms = env.list(
            "SCALE_DOWN_ALARMS",
            "a comma-separated list of CloudWatch alarm names",
        )?;
        Ok(Config {
            asg_name,
            alert_topic_arn,
            cluster_arn,
            crash_loop_threshold,
            crash_loop_window: Duration::from_secs(u64::from(window_minutes) * 60),
            scale_down_alarms,
        })
    }

    /// The window in whole minutes, for messages.
    pub fn window_minutes(&self) -> u64 {
        self.crash_loop_window.as_secs() / 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:kiln-alerts";

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![("ASG_NAME", "kiln-app"), ("ALERT_TOPIC_ARN", TOPIC)];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn defaults() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.asg_name, "kiln-app");
        assert_eq!(config.alert_topic_arn, TOPIC);
        assert_eq!(config.cluster_arn, None);
        assert_eq!(config.crash_loop_threshold, 1);
        assert_eq!(config.window_minutes(), 10);
        assert!(config.scale_down_alarms.is_empty());
    }

    #[test]
    fn everything_set() {
        let config = Config::from_env(&env(&[
            (
                "CLUSTER_ARN",
                "arn:aws:ecs:eu-west-1:123456789012:cluster/kiln",
            ),
            ("CRASH_LOOP_THRESHOLD", "3"),
            ("CRASH_LOOP_WINDOW_MINUTES", "15"),
            ("SCALE_DOWN_ALARMS", "kiln-idle, kiln-left-up"),
        ]))
        .unwrap();
        assert_eq!(
            config.cluster_arn.as_deref(),
            Some("arn:aws:ecs:eu-west-1:123456789012:cluster/kiln")
        );
        assert_eq!(config.crash_loop_threshold, 3);
        assert_eq!(config.crash_loop_window, Duration::from_secs(900));
        assert_eq!(config.scale_down_alarms, vec!["kiln-idle", "kiln-left-up"]);
    }

    #[test]
    fn errors_name_the_variable() {
        let missing = Config::from_env(&Env::from_pairs([("ALERT_TOPIC_ARN", TOPIC)]));
        assert_eq!(missing.unwrap_err().variable(), "ASG_NAME");
        let missing = Config::from_env(&Env::from_pairs([("ASG_NAME", "a")]));
        assert_eq!(missing.unwrap_err().variable(), "ALERT_TOPIC_ARN");
        for (variable, value) in [
            ("ALERT_TOPIC_ARN", "kiln-alerts"),
            ("CLUSTER_ARN", "kiln"),
            ("CRASH_LOOP_THRESHOLD", "0"),
            ("CRASH_LOOP_THRESHOLD", "-1"),
            ("CRASH_LOOP_THRESHOLD", "three"),
            ("CRASH_LOOP_WINDOW_MINUTES", "0"),
            ("CRASH_LOOP_WINDOW_MINUTES", "61"),
            ("SCALE_DOWN_ALARMS", "a,,b"),
            ("ASG_NAME", &"x".repeat(256)),
        ] {
            let err = Config::from_env(&env(&[(variable, value)])).unwrap_err();
            assert_eq!(err.variable(), variable, "{variable}={value}");
        }
        let err = Config::from_env(&env(&[("CRASH_LOOP_THRESHOLD", "0")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CRASH_LOOP_THRESHOLD is malformed: expected a whole number of crashed tasks, at least 1"
        );
    }
}
