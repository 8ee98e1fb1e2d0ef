//! The results, the targets they are held to, and their markdown.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::artefacts::{Artefact, mb};
use crate::hotpaths::{HotPaths, rate};
use crate::scenarios::BASELINE;
use crate::stats::{Sample, ms, ratio};

// The targets (medians on the 2-core reference machine; ratios are what
// matters).
const INIT_RATIO_MAX: f64 = 1.5;
const COLD_RATIO_MAX: f64 = 3.0;
const WARM_OWN_P99_MAX: Duration = Duration::from_millis(2);
const PEAK_RSS_MAX: u64 = 24_000_000;
const ZIP_MAX: u64 = 4_000_000;
const HMAC_RATIO_MIN: f64 = 0.8;

/// Where `--update` writes in a page, between these two lines.
pub const BLOCK_START: &str = "<!-- kiln-bench:start -->";
pub const BLOCK_END: &str = "<!-- kiln-bench:end -->";

/// One cold start.
#[derive(Debug, Clone, Copy)]
pub struct ColdRun {
    pub init: Duration,
    pub total: Duration,
    /// Time spent in downstream calls (union of their spans).
    pub downstream: Duration,
    pub calls: usize,
    /// CPU time of every thread of the process at the first `GET /next`
    /// and at the first answer.
    pub init_cpu: Option<Duration>,
    pub cold_cpu: Option<Duration>,
}

/// Everything measured for one function.
#[derive(Debug, Default)]
pub struct FunctionResult {
    pub function: String,
    pub work: String,
    pub cold: Vec<ColdRun>,
    pub warm_total: Sample,
    pub warm_own: Sample,
    pub warm_downstream: Sample,
    pub calls_per_invoke: f64,
    /// CPU time of each warm invocation (every thread of the process).
    pub warm_cpu: Sample,
    pub peak_rss: Option<u64>,
    pub error: Option<String>,
}

impl FunctionResult {
    pub fn new(function: &str, work: &str) -> FunctionResult {
        FunctionResult {
            function: function.to_string(),
            work: work.to_string(),
            ..FunctionResult::default()
        }
    }

    fn cold_sample(&self, f: impl Fn(&ColdRun) -> Duration) -> Sample {
        Sample::new(self.cold.iter().map(f).collect())
    }

    /// Downstream calls of the median cold start.
    fn cold_calls(&self) -> usize {
        let mut calls: Vec<usize> = self.cold.iter().map(|r| r.calls).collect();
        calls.sort_unstable();
        calls.get(calls.len() / 2).copied().unwrap_or_default()
    }

    fn init(&self) -> Sample {
        self.cold_sample(|r| r.init)
    }

    fn cold_total(&self) -> Sample {
        self.cold_sample(|r| r.total)
    }

    fn cold_own(&self) -> Sample {
        self.cold_sample(|r| r.total.saturating_sub(r.downstream))
    }

    fn init_cpu(&self) -> Sample {
        Sample::new(self.cold.iter().filter_map(|r| r.init_cpu).collect())
    }

    fn cold_cpu(&self) -> Sample {
        Sample::new(self.cold.iter().filter_map(|r| r.cold_cpu).collect())
    }
}

/// The machine and build the numbers come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
}

impl Machine {
    fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let run = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_default();
        Machine {
            date,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: run("rustc", &["--version"]),
            commit: run("git", &["rev-parse", "--short", "HEAD"]),
        }
    }
}

/// A target and whether it was met (`None`: not measured).
#[derive(Debug, Clone)]
struct Check {
    what: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    /// Where the measured binaries came from, for the reader.
    pub bin_dir: String,
    pub cold_runs: usize,
    pub warm_invokes: usize,
    pub functions: Vec<FunctionResult>,
    pub hotpaths: Option<HotPaths>,
    pub artefacts: Vec<Artefact>,
    pub skipped: Vec<String>,
}

fn times(r: f64) -> String {
    format!("{r:.2}×")
}

/// Milliseconds, without the unit (the table's heading says it).
fn num_ms(d: Duration) -> String {
    ms(d).trim_end_matches(" ms").to_string()
}

/// The median in milliseconds, or `–` when nothing was measured.
fn median_ms(sample: &Sample) -> String {
    sample.median().map_or("–".into(), num_ms)
}

/// `median (p10–p90)` in milliseconds.
fn spread(sample: &Sample) -> String {
    match (
        sample.median(),
        sample.percentile(10.0),
        sample.percentile(90.0),
    ) {
        (Some(m), Some(lo), Some(hi)) => {
            format!("{} ({}–{})", num_ms(m), num_ms(lo), num_ms(hi))
        }
        _ => "–".into(),
    }
}

impl Report {
    pub fn new(bin_dir: String, cold_runs: usize, warm_invokes: usize) -> Report {
        Report {
            machine: Machine::detect(),
            bin_dir,
            cold_runs,
            warm_invokes,
            functions: Vec::new(),
            hotpaths: None,
            artefacts: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn baseline(&self) -> Option<&FunctionResult> {
        self.functions
            .iter()
            .find(|f| f.function == BASELINE && f.error.is_none())
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let base_init = self.baseline().and_then(|b| b.init().median());
        let base_cold = self.baseline().and_then(|b| b.cold_total().median());
        for f in self.functions.iter().filter(|f| f.function != BASELINE) {
            let name = &f.function;
            if let Some(error) = &f.error {
                let first = error.lines().next().unwrap_or_default();
                checks.push(Check {
                    what: format!("{name} runs under the benchmark"),
                    measured: first.to_string(),
                    met: Some(false),
                });
                continue;
            }
            let init = f
                .init()
                .median()
                .zip(base_init)
                .and_then(|(a, b)| ratio(a, b));
            checks.push(Check {
                what: format!("{name}: init ≤ {INIT_RATIO_MAX}× baseline"),
                measured: init.map_or("–".into(), times),
                met: init.map(|r| r <= INIT_RATIO_MAX),
            });
            let cold = f
                .cold_own()
                .median()
                .zip(base_cold)
                .and_then(|(a, b)| ratio(a, b));
            checks.push(Check {
                what: format!("{name}: cold total (own time) ≤ {COLD_RATIO_MAX}× baseline"),
                measured: cold.map_or("–".into(), times),
                met: cold.map(|r| r <= COLD_RATIO_MAX),
            });
            let p99 = f.warm_own.percentile(99.0);
            checks.push(Check {
                what: format!("{name}: warm p99 (own time) < {}", ms(WARM_OWN_P99_MAX)),
                measured: p99.map_or("–".into(), ms),
                met: p99.map(|p| p < WARM_OWN_P99_MAX),
            });
            checks.push(Check {
                what: format!("{name}: peak RSS ≤ {}", mb(PEAK_RSS_MAX)),
                measured: f.peak_rss.map_or("–".into(), mb),
                met: f.peak_rss.map(|b| b <= PEAK_RSS_MAX),
            });
        }
        for a in self.artefacts.iter().filter(|a| a.function != BASELINE) {
            checks.push(Check {
                what: format!("{}: bootstrap.zip ≤ {}", a.function, mb(ZIP_MAX)),
                measured: a.zip.map_or("not built (`make build`)".into(), mb),
                met: a.zip.map(|z| z <= ZIP_MAX),
            });
        }
        if let Some(hot) = &self.hotpaths {
            checks.push(Check {
                what: format!(
                    "HMAC-SHA256 of 25 MiB ≥ {:.0}% of OpenSSL",
                    HMAC_RATIO_MIN * 100.0
                ),
                measured: hot
                    .hmac
                    .as_ref()
                    .map_or("–".into(), |h| format!("{:.0}%", h.ratio() * 100.0)),
                met: hot.hmac.as_ref().map(|h| h.ratio() >= HMAC_RATIO_MIN),
            });
            for failure in &hot.failures {
                checks.push(Check {
                    what: "hot-path benchmarks run".into(),
                    measured: failure.clone(),
                    met: Some(false),
                });
            }
        }
        checks
    }

    /// The targets missed, one line each.
    pub fn missed(&self) -> Vec<String> {
        self.checks()
            .into_iter()
            .filter(|c| c.met == Some(false))
            .map(|c| format!("{}: measured {}", c.what, c.measured))
            .collect()
    }

    /// The tables, without a top-level heading.
    pub fn tables(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Measured {} on {} × {} (Linux {}), {}, commit `{}`.\n",
            m.date, m.cpus, m.cpu_model, m.kernel, m.rustc, m.commit
        );
        let _ = writeln!(
            md,
            "Each function's host release binary (the release profile `make build` uses, from `{}`) runs under the \
emulated Lambda Runtime API; AWS is moto, and Slack and GitHub are local recording servers, each behind a \
timing proxy (the emulation and the proxies are built optimised). The baseline is an empty \
`lambda_runtime` function built the same way, on the same single-threaded tokio runtime. Cold: {} fresh \
processes per function, interleaved round by round with the baseline; init is spawn → first `GET /next`, \
cold total is spawn → first answer (both from just before the spawn). Warm: {} invocations in one process after its cold one. Cold times \
are median (p10–p90); *own* is the time less the time spent in downstream calls (as the proxies saw them). \
*CPU* is the time the process's threads spent on a CPU (`/proc/<pid>/task/*/schedstat`): the work the function \
did, without the waits for a core that moto and the runner share with it; warm, it is read before and after \
each invocation.\n",
            self.bin_dir, self.cold_runs, self.warm_invokes
        );
        let base_init = self.baseline().and_then(|b| b.init().median());
        let base_cold = self.baseline().and_then(|b| b.cold_total().median());
        let base_cold_cpu = self.baseline().and_then(|b| b.cold_cpu().median());
        let vs = |value: Option<Duration>, base: Option<Duration>| {
            value
                .zip(base)
                .and_then(|(a, b)| ratio(a, b))
                .map_or("–".into(), times)
        };
        md.push_str(
            "Cold start (ms):\n\n\
| function | init | ÷ baseline | cold total | cold own | ÷ baseline | downstream calls | init CPU | cold CPU | ÷ baseline |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for f in &self.functions {
            if let Some(error) = &f.error {
                let first = error.lines().next().unwrap_or_default();
                let _ = writeln!(md, "| {} | failed: {first} | | | | | | | | |", f.function);
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.function,
                spread(&f.init()),
                vs(f.init().median(), base_init),
                spread(&f.cold_total()),
                spread(&f.cold_own()),
                vs(f.cold_own().median(), base_cold),
                f.cold_calls(),
                median_ms(&f.init_cpu()),
                median_ms(&f.cold_cpu()),
                vs(f.cold_cpu().median(), base_cold_cpu),
            );
        }
        md.push_str(
            "\nWarm invocations (ms) and memory:\n\n\
| function | p50 | p99 | own p50 | own p99 | CPU p50 | CPU p99 | downstream calls | peak RSS |\n\
|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for f in self.functions.iter().filter(|f| f.error.is_none()) {
            let at = |s: &Sample, p: f64| s.percentile(p).map_or("–".into(), num_ms);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
                f.function,
                at(&f.warm_total, 50.0),
                at(&f.warm_total, 99.0),
                at(&f.warm_own, 50.0),
                at(&f.warm_own, 99.0),
                at(&f.warm_cpu, 50.0),
                at(&f.warm_cpu, 99.0),
                f.calls_per_invoke,
                f.peak_rss.map_or("–".into(), mb),
            );
        }
        md.push('\n');
        for f in &self.functions {
            let _ = writeln!(md, "- **{}**: {}", f.function, f.work);
        }
        for skipped in &self.skipped {
            let _ = writeln!(md, "- not measured: {skipped}");
        }
        md.push('\n');

        md.push_str("Artefacts (arm64, `make build`; MB are 10⁶ bytes):\n\n");
        md.push_str("| function | bootstrap | bootstrap.zip |\n|---|---:|---:|\n");
        for a in &self.artefacts {
            let size = |s: Option<u64>| s.map_or("not built".into(), mb);
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                a.function,
                size(a.bootstrap),
                size(a.zip)
            );
        }
        md.push('\n');

        if let Some(hot) = &self.hotpaths {
            md.push_str("Hot paths (criterion, in process, median per iteration):\n\n");
            md.push_str("| benchmark | median | throughput |\n|---|---:|---:|\n");
            for r in &hot.results {
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} |",
                    r.id,
                    micros(r.median),
                    r.bytes_per_second().map_or("–".into(), rate)
                );
            }
            md.push('\n');
            if let Some(h) = &hot.hmac {
                let _ = writeln!(
                    md,
                    "HMAC-SHA256 over 25 MiB: kiln {} against `openssl dgst -sha256 -hmac` {} ({}, \
start-up subtracted), measured in the same run: **{:.0}%**.\n",
                    rate(h.kiln),
                    rate(h.openssl),
                    h.openssl_version,
                    h.ratio() * 100.0
                );
            }
        }

        md.push_str("Targets:\n\n| target | measured | |\n|---|---:|---|\n");
        for c in self.checks() {
            let verdict = match c.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(md, "| {} | {} | {verdict} |", c.what, c.measured);
        }
        md
    }

    /// The whole file `make bench` writes.
    pub fn markdown(&self) -> String {
        format!("# kiln benchmarks\n\n{}", self.tables())
    }
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        ms(d)
    } else {
        format!("{us:.1} µs")
    }
}

/// Replaces what lies between [`BLOCK_START`] and [`BLOCK_END`] in a page.
pub fn update_marked_block(path: &Path, section: &str) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (Some(start), Some(end)) = (text.find(BLOCK_START), text.find(BLOCK_END)) else {
        return Err(format!(
            "{} has no {BLOCK_START} … {BLOCK_END} block to update",
            path.display()
        ));
    };
    if end < start {
        return Err(format!(
            "{}: the benchmark markers are out of order",
            path.display()
        ));
    }
    let head = &text[..start + BLOCK_START.len()];
    let tail = &text[end..];
    let updated = format!("{head}\n{}\n{tail}", section.trim_end());
    std::fs::write(path, updated).map_err(|e| format!("writing {}: {e}", path.display()))
}
