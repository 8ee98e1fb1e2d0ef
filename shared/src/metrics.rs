//! Metrics in the CloudWatch Embedded Metric Format (EMF).
//!
//! A metric is one JSON line on stdout; CloudWatch Logs extracts it, so
//! counting deploys, signature failures, scale-downs or Slack deliveries
//! costs no API call and no latency. Every metric carries the dimension
//! `Function`, under the `kiln` namespace; a counter may also be broken
//! down by one more dimension ([`Metrics::count_by`]), whose values must be
//! a small fixed set (each value is a metric of its own in CloudWatch).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every kiln metric.
pub const NAMESPACE: &str = "kiln";

/// A metric unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

#[derive(Clone)]
enum Sink {
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Emits EMF lines for one function. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    function: &'static str,
    sink: Sink,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("function", &self.function)
            .finish()
    }
}

impl Metrics {
    /// Metrics for `function`, written to stdout.
    pub fn new(function: &'static str) -> Self {
        Metrics {
            function,
            sink: Sink::Stdout,
        }
    }

    /// Metrics kept in memory, readable with [`Metrics::lines`] (for tests).
    pub fn in_memory(function: &'static str) -> Self {
        Metrics {
            function,
            sink: Sink::Memory(Arc::default()),
        }
    }

    /// Adds `value` to a counter.
    pub fn count(&self, name: &str, value: u64) {
        self.record(name, value as f64, Unit::Count);
    }

    /// Adds `value` to a counter that is also broken down by one more
    /// dimension, e.g. `("Rule", "skip-marker")`. The total stays readable
    /// under `Function` alone, and each value under `Function` and the
    /// dimension. `value` of the dimension must come from a small fixed set:
    /// never a repository, a branch or an id.
    pub fn count_by(&self, name: &str, value: u64, dimension: (&'static str, &str)) {
        let line = emf_line_by(
            self.function,
            name,
            value as f64,
            Unit::Count,
            now_millis(),
            Some(dimension),
        );
        self.write(line);
    }

    /// Records one value of a metric.
    pub fn record(&self, name: &str, value: f64, unit: Unit) {
        self.write(emf_line(self.function, name, value, unit, now_millis()));
    }

    fn write(&self, line: String) {
        match &self.sink {
            Sink::Stdout => {
                // One write per line keeps lines whole when logs interleave.
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(format!("{line}\n").as_bytes());
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }

    /// The lines an in-memory sink has collected (empty for stdout).
    pub fn lines(&self) -> Vec<String> {
        match &self.sink {
            Sink::Stdout => Vec::new(),
            Sink::Memory(lines) => lines.lock().map(|l| l.clone()).unwrap_or_default(),
        }
    }

    /// The total recorded for `name` in an in-memory sink.
    pub fn total(&self, name: &str) -> f64 {
        self.total_where(name, |_| true)
    }

    /// The total recorded for `name` with `dimension` at `value` (see
    /// [`Metrics::count_by`]) in an in-memory sink.
    pub fn total_by(&self, name: &str, dimension: &str, value: &str) -> f64 {
        self.total_where(name, |doc| {
            doc.get(dimension).and_then(|v| v.as_str()) == Some(value)
        })
    }

    fn total_where(&self, name: &str, keep: impl Fn(&serde_json::Value) -> bool) -> f64 {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| keep(v))
            .filter_map(|v| v.get(name).and_then(|n| n.as_f64()))
            .sum()
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One EMF document for one metric value.
pub fn emf_line(function: &str, name: &str, value: f64, unit: Unit, timestamp_ms: u64) -> String {
    emf_line_by(function, name, value, unit, timestamp_ms, None)
}

/// One EMF document for one metric value, optionally broken down by one more
/// dimension. With one, the document declares two dimension sets,
/// `[Function]` and `[Function, <dimension>]`, so CloudWatch keeps both the
/// total and the breakdown from the same line.
pub fn emf_line_by(
    function: &str,
    name: &str,
    value: f64,
    unit: Unit,
    timestamp_ms: u64,
    dimension: Option<(&str, &str)>,
) -> String {
    let dimensions = match dimension {
        None => serde_json::json!([["Function"]]),
        Some((key, _)) => serde_json::json!([["Function"], ["Function", key]]),
    };
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": [{ "Name": name, "Unit": unit.as_str() }],
            }],
        },
        "Function": function,
    });
    if let Some((key, dimension_value)) = dimension {
        doc[key] = serde_json::json!(dimension_value);
    }
    doc[name] = serde_json::json!(value);
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_has_the_documented_shape() {
        let line = emf_line(
            "watchdog",
            "ScaleDowns",
            1.0,
            Unit::Count,
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "kiln");
        assert_eq!(directive["Dimensions"][0][0], "Function");
        assert_eq!(directive["Metrics"][0]["Name"], "ScaleDowns");
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        assert_eq!(v["Function"], "watchdog");
        assert_eq!(v["ScaleDowns"], 1.0);
    }

    #[test]
    fn a_breakdown_keeps_the_total_and_adds_one_dimension_set() {
        let line = emf_line_by(
            "deploy-trigger",
            "DeploysSkipped",
            1.0,
            Unit::Count,
            1_700_000_000_000,
            Some(("Rule", "path-filter")),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Function"], ["Function", "Rule"]])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "DeploysSkipped");
        assert_eq!(v["Function"], "deploy-trigger");
        assert_eq!(v["Rule"], "path-filter");
        assert_eq!(v["DeploysSkipped"], 1.0);

        let m = Metrics::in_memory("deploy-trigger");
        m.count_by("DeploysSkipped", 1, ("Rule", "skip-marker"));
        m.count_by("DeploysSkipped", 1, ("Rule", "path-filter"));
        m.count_by("DeploysSkipped", 1, ("Rule", "path-filter"));
        assert_eq!(m.total("DeploysSkipped"), 3.0);
        assert_eq!(m.total_by("DeploysSkipped", "Rule", "path-filter"), 2.0);
        assert_eq!(m.total_by("DeploysSkipped", "Rule", "skip-marker"), 1.0);
    }

    #[test]
    fn in_memory_sink_totals() {
        let m = Metrics::in_memory("deploy-trigger");
        m.count("DeploysRequested", 1);
        m.count("DeploysRequested", 2);
        m.count("SignatureFailures", 1);
        assert_eq!(m.total("DeploysRequested"), 3.0);
        assert_eq!(m.lines().len(), 3);
    }
}
