//! The last lines of the stack updater's log: where the log is (from the
//! task definition's `awslogs` configuration), the [`LogTail`] port that
//! reads it and its CloudWatch Logs adapter, and the limits applied to what
//! is read.
//!
//! ECS names an `awslogs` stream `<prefix>/<container>/<task id>`. The
//! adapter reads the end of that stream with `GetLogEvents`; throttling and
//! 5xx answers are retried by the SDK (standard mode, three attempts), and
//! what still fails becomes a [`LogUnavailable`] reason. A log that can't be
//! read never fails a notification: the notification says why the lines
//! are missing instead.

use std::collections::HashMap;
use std::future::Future;

use kiln::aws::LazyClient;
use kiln::messages::LogLocation;
use kiln::messages::deployment::{LOG_CHARS_MAX, LOG_LINES_MAX};

/// A container's `awslogs` log configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogsConfig {
    pub group: String,
    /// `awslogs-region`; when unset, the task's own region.
    pub region: Option<String>,
    /// `awslogs-stream-prefix`; without it ECS names the stream after the
    /// Docker container id, which kiln cannot know.
    pub stream_prefix: Option<String>,
}

impl AwsLogsConfig {
    /// From a container's `logConfiguration`: `None` unless the driver is
    /// `awslogs` with a group.
    pub fn from_driver(driver: &str, options: &HashMap<String, String>) -> Option<Self> {
        if driver != "awslogs" {
            return None;
        }
        let option = |name: &str| {
            options
                .get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Some(AwsLogsConfig {
            group: option("awslogs-group")?,
            region: option("awslogs-region"),
            stream_prefix: option("awslogs-stream-prefix"),
        })
    }

    /// The stream of one task's container, or why it can't be named.
    pub fn location(
        &self,
        container_name: &str,
        task_arn: &str,
        task_region: Option<&str>,
    ) -> Result<LogLocation, String> {
        let region = self
            .region
            .clone()
            .or_else(|| task_region.map(str::to_string))
            .ok_or_else(|| {
                "the log's region is unknown (no awslogs-region, and the task ARN names none)"
                    .to_string()
            })?;
        let Some(prefix) = &self.stream_prefix else {
            return Err(format!(
                "the awslogs configuration of container {container_name} has no awslogs-stream-prefix, so the stream is named after the Docker container id, which kiln cannot know; set awslogs-stream-prefix in the task definition"
            ));
        };
        let task_id = task_arn
            .rsplit('/')
            .next()
            .filter(|id| !id.is_empty() && task_arn.contains(":task/"))
            .ok_or_else(|| format!("{task_arn:?} is not a task ARN"))?;
        Ok(LogLocation {
            group: self.group.clone(),
            stream: format!("{prefix}/{container_name}/{task_id}"),
            region,
        })
    }
}

/// The region in an ARN (`arn:aws:ecs:eu-west-1:…` → `eu-west-1`).
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// Why the log's lines are missing, said for the people reading the
/// notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LogUnavailable(pub String);

/// The port: the last events of a log stream, oldest first.
pub trait LogTail: Send + Sync {
    fn last_events(
        &self,
        location: &LogLocation,
        count: usize,
    ) -> impl Future<Output = Result<Vec<String>, LogUnavailable>> + Send;
}

/// The newest lines of `events` (each event may hold several lines), oldest
/// first: at most [`LOG_LINES_MAX`] lines and [`LOG_CHARS_MAX`]
/// characters, newlines between them counted. A single newest line longer
/// than that keeps its end, after `…`.
pub fn last_lines(events: &[String]) -> Vec<String> {
    let lines: Vec<&str> = events
        .iter()
        .flat_map(|event| event.trim_end_matches(['\n', '\r']).split('\n'))
        .map(|line| line.trim_end_matches('\r'))
        .collect();
    let mut kept: Vec<String> = Vec::new();
    let mut chars = 0;
    for line in lines.iter().rev().take(LOG_LINES_MAX) {
        let cost = line.chars().count() + usize::from(!kept.is_empty());
        if chars + cost > LOG_CHARS_MAX {
            if kept.is_empty() {
                let tail: String = {
                    let count = line.chars().count();
                    line.chars().skip(count - (LOG_CHARS_MAX - 1)).collect()
                };
                kept.push(format!("…{tail}"));
            }
            break;
        }
        chars += cost;
        kept.push(line.to_string());
    }
    kept.reverse();
    kept
}

/// The CloudWatch Logs adapter.
#[derive(Clone, Debug)]
pub struct CloudWatchLogTail {
    client: LazyClient<aws_sdk_cloudwatchlogs::Client>,
}

impl CloudWatchLogTail {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_cloudwatchlogs::Client>>) -> Self {
        CloudWatchLogTail {
            client: client.into(),
        }
    }
}

impl LogTail for CloudWatchLogTail {
    async fn last_events(
        &self,
        location: &LogLocation,
        count: usize,
    ) -> Result<Vec<String>, LogUnavailable> {
        use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
        use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsError;

        let client = self.client.get().await;
        let call = client
            .get_log_events()
            .log_group_name(&location.group)
            .log_stream_name(&location.stream)
            .start_from_head(false)
            .limit(i32::try_from(count).unwrap_or(i32::MAX));
        // The awslogs region may not be the function's.
        let result =
            if client.config().region().map(|r| r.as_ref()) == Some(location.region.as_str()) {
                call.send().await
            } else {
                call.customize()
                    .config_override(aws_sdk_cloudwatchlogs::config::Builder::default().region(
                        aws_sdk_cloudwatchlogs::config::Region::new(location.region.clone()),
                    ))
                    .send()
                    .await
            };
        match result {
            Ok(output) => Ok(output
                .events()
                .iter()
                .filter_map(|e| e.message().map(str::to_string))
                .collect()),
            Err(err) => {
                let stream = format!("log stream {} in {}", location.stream, location.group);
                let reason = match err.as_service_error() {
                    Some(GetLogEventsError::ResourceNotFoundException(_)) => format!(
                        "The {stream} does not exist (the container may have written nothing, or the log group's retention removed it)."
                    ),
                    Some(service) if service.code() == Some("AccessDeniedException") => format!(
                        "deploy-exec may not read the {stream} (access denied): {}",
                        service.message().unwrap_or("no detail")
                    ),
                    Some(service) => format!(
                        "Reading the {stream} failed after retries: {}",
                        match (service.code(), service.message()) {
                            (Some(code), Some(message)) => format!("{code}: {message}"),
                            (Some(code), None) => code.to_string(),
                            _ => kiln::aws::error_chain(&err),
                        }
                    ),
                    None => format!(
                        "Reading the {stream} failed after retries: {}",
                        kiln::aws::error_chain(&err)
                    ),
                };
                Err(LogUnavailable(reason))
            }
        }
    }
}

/// An in-memory log for tests.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeLogTail {
        answer: Mutex<Option<Result<Vec<String>, LogUnavailable>>>,
        reads: Mutex<Vec<LogLocation>>,
    }

    impl FakeLogTail {
        pub fn new() -> Self {
            Self::default()
        }

        /// What every read answers (by default: no events).
        pub fn answer(&self, answer: Result<Vec<String>, LogUnavailable>) {
            if let Ok(mut a) = self.answer.lock() {
                *a = Some(answer);
            }
        }

        pub fn reads(&self) -> Vec<LogLocation> {
            self.reads.lock().map(|r| r.clone()).unwrap_or_default()
        }
    }

    impl LogTail for FakeLogTail {
        async fn last_events(
            &self,
            location: &LogLocation,
            count: usize,
        ) -> Result<Vec<String>, LogUnavailable> {
            if let Ok(mut reads) = self.reads.lock() {
                reads.push(location.clone());
            }
            let answer = self
                .answer
                .lock()
                .ok()
                .and_then(|a| a.clone())
                .unwrap_or(Ok(Vec::new()));
            answer.map(|events| {
                let skip = events.len().saturating_sub(count);
                events.into_iter().skip(skip).collect()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/kiln/0f4b2c1d";

    #[test]
    fn the_stream_is_prefix_container_task_id() {
        let config = AwsLogsConfig::from_driver(
            "awslogs",
            &options(&[
                ("awslogs-group", "/ecs/kiln-stack-updater"),
                ("awslogs-region", "eu-west-1"),
                ("awslogs-stream-prefix", "deploy"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.location("stack-updater", TASK, None).unwrap(),
            LogLocation {
                group: "/ecs/kiln-stack-updater".into(),
                stream: "deploy/stack-updater/0f4b2c1d".into(),
                region: "eu-west-1".into(),
            }
        );
        let no_region = AwsLogsConfig {
            region: None,
            ..config.clone()
        };
        assert_eq!(
            no_region
                .location("c", TASK, arn_region(TASK))
                .unwrap()
                .region,
            "eu-west-1"
        );
        assert!(no_region.location("c", TASK, None).is_err());
        let no_prefix = AwsLogsConfig {
            stream_prefix: None,
            ..config.clone()
        };
        let why = no_prefix.location("c", TASK, None).unwrap_err();
        assert!(why.contains("no awslogs-stream-prefix"), "{why}");
        assert!(config.location("c", "not-an-arn", None).is_err());
    }

    #[test]
    fn other_drivers_and_groupless_configurations_are_not_awslogs() {
        assert_eq!(
            AwsLogsConfig::from_driver("splunk", &options(&[("awslogs-group", "g")])),
            None
        );
        assert_eq!(AwsLogsConfig::from_driver("awslogs", &options(&[])), None);
    }

    #[test]
    fn at_most_thirty_lines_oldest_first() {
        let events: Vec<String> = (1..=100).map(|i| format!("line {i}")).collect();
        let lines = last_lines(&events);
        assert_eq!(lines.len(), 30);
        assert_eq!(lines[0], "line 71");
        assert_eq!(lines[29], "line 100");
        // Events holding several lines count as several.
        let lines = last_lines(&["a\r\nb\n".into(), "c".into()]);
        assert_eq!(lines, ["a", "b", "c"]);
    }

    #[test]
    fn at_most_three_thousand_characters() {
        let events: Vec<String> = (0..30)
            .map(|i| format!("{i:02}{}", "x".repeat(198)))
            .collect();
        let lines = last_lines(&events);
        let chars = lines.iter().map(|l| l.chars().count()).sum::<usize>() + lines.len() - 1;
        assert!(chars <= LOG_CHARS_MAX, "{chars}");
        assert_eq!(lines.len(), 14);
        assert!(lines[13].starts_with("29"));
        let huge = last_lines(&[format!("start{}end", "é".repeat(5_000))]);
        assert_eq!(huge.len(), 1);
        assert_eq!(huge[0].chars().count(), LOG_CHARS_MAX);
        assert!(huge[0].starts_with('…') && huge[0].ends_with("end"));
        assert!(last_lines(&[]).is_empty());
    }
}
