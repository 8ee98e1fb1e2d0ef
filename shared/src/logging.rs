//! Structured logs through `tracing`.
//!
//! [`init`] honours the variables that SAM's `LoggingConfig` sets:
//! `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`) and `AWS_LAMBDA_LOG_LEVEL`
//! (`TRACE` … `FATAL`); `RUST_LOG` still works as a finer filter when the
//! former is unset. In JSON mode every line carries the fields of the spans
//! it sits in: the runtime's span gives `requestId`, and handlers open spans
//! with domain ids (`delivery_id`, `task_arn`, `alarm`), so every line of an
//! invocation can be correlated.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The format and filter chosen from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

impl LogSettings {
    /// Reads `AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL` and `RUST_LOG`.
    pub fn from_env(env: &crate::config::Env) -> Self {
        let format = match env.optional("AWS_LAMBDA_LOG_FORMAT") {
            Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        };
        let filter = match env.optional("AWS_LAMBDA_LOG_LEVEL") {
            Some(level) => lambda_level_to_filter(&level).to_string(),
            None => env.optional("RUST_LOG").unwrap_or_else(|| "info".into()),
        };
        LogSettings { format, filter }
    }
}

/// Maps Lambda's level names (which include `FATAL`) to a tracing filter.
/// The AWS SDK's own crates are held at `warn` unless tracing is asked for,
/// because their `info` lines are noise in a function's log.
fn lambda_level_to_filter(level: &str) -> &'static str {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug,aws_smithy_runtime=info,aws_config=info,hyper=info,rustls=info",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info,aws_config=warn,aws_smithy_runtime=warn",
    }
}

/// Installs the global subscriber, writing to stdout. Call once, first thing
/// in `main`.
pub fn init() {
    let settings = LogSettings::from_env(&crate::config::Env::process());
    // A second init (tests) keeps the first subscriber: that's fine.
    let _ = build(&settings, std::io::stdout).map(tracing::subscriber::set_global_default);
}

/// Builds a subscriber for the given settings and writer. Tests use it with
/// an in-memory writer to assert on log output.
pub fn build<W>(
    settings: &LogSettings,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|e| format!("bad log filter {:?}: {e}", settings.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    Ok(match settings.format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
    })
}

/// An in-memory log sink for tests: everything logged through it can be
/// read back, e.g. to assert that no secret ever appears.
#[cfg(any(test, feature = "test-util"))]
pub mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl LogBuffer {
        pub fn contents(&self) -> String {
            self.0
                .lock()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
    }

    impl Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
        type Writer = LogBuffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Runs `f` with a JSON subscriber at `trace` that writes into the
    /// returned buffer (for the current thread only).
    pub fn json_subscriber() -> (tracing::subscriber::DefaultGuard, LogBuffer) {
        let buffer = LogBuffer::default();
        let settings = super::LogSettings {
            format: super::LogFormat::Json,
            filter: "trace".into(),
        };
        let subscriber = match super::build(&settings, buffer.clone()) {
            Ok(s) => s,
            Err(e) => panic!("test subscriber: {e}"),
        };
        (tracing::subscriber::set_default(subscriber), buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    #[test]
    fn lambda_variables_choose_format_and_level() {
        let s = LogSettings::from_env(&Env::from_pairs([
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
        ]));
        assert_eq!(s.format, LogFormat::Text);
        assert_eq!(s.filter, "error");
        let d = LogSettings::from_env(&Env::from_pairs([("RUST_LOG", "debug")]));
        assert_eq!(d.format, LogFormat::Json);
        assert_eq!(d.filter, "debug");
    }

    #[test]
    fn json_lines_carry_span_fields() {
        let (_guard, buffer) = capture::json_subscriber();
        let span = tracing::info_span!("invocation", requestId = "req-1", delivery_id = "d-1");
        let _entered = span.enter();
        tracing::info!(environment = "production", "deploy requested");
        let line = buffer.contents();
        let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["message"], "deploy requested");
        assert_eq!(value["environment"], "production");
        assert_eq!(value["spans"][0]["requestId"], "req-1");
        assert_eq!(value["spans"][0]["delivery_id"], "d-1");
    }
}
