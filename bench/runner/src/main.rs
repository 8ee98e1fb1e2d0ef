//! `kiln-bench`: measures kiln's functions against the Rust floor and
//! writes the markdown table `make bench` shows.
//!
//! Per function (the host release binaries, `--bin-dir`):
//! - cold start over `--cold` fresh processes, interleaved round by round
//!   with the empty-function baseline so both see the same machine load:
//!   init (spawn → first `GET /next`) and cold total (spawn → first answer);
//! - warm latency over `--warm` invocations in one process, split into the
//!   time downstream calls took (measured by timing proxies in front of
//!   moto and the HTTP sinks) and the function's own;
//! - peak RSS (`VmHWM`) after that cold start and those invocations.
//!
//! Then the criterion hot paths, the HMAC comparison with OpenSSL, and the
//! arm64 artefact sizes from `make build`. Exits 1 when a target is missed
//! (and says which), 2 when the benchmark itself cannot run.

mod artefacts;
mod hotpaths;
mod memory;
mod proxy;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiln_tests::lambda::LambdaFunction;

use crate::report::{ColdRun, FunctionResult, Report};
use crate::scenarios::{BASELINE, Downstream, FUNCTIONS, Scenario};
use crate::stats::Sample;

const USAGE: &str = "usage: kiln-bench [--cold N] [--warm N] [--functions a,b] [--bin-dir DIR] \
[--lambda-dir DIR] [--env NAME=VALUE]... [--out FILE] [--no-hotpaths] [--update FILE]

  --out FILE     where the whole report is written (default target/bench/performance.md)
  --update FILE  also replace the tables between the kiln-bench markers in FILE
                 (make bench: docs/performance.md)";

/// How long a function may take to reach its first poll, on a loaded
/// machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Options {
    cold_runs: usize,
    warm_invokes: usize,
    functions: Vec<String>,
    bin_dir: PathBuf,
    lambda_dir: PathBuf,
    out: PathBuf,
    hotpaths: bool,
    /// A page whose marked block gets the tables (`make bench`:
    /// docs/performance.md).
    update: Option<PathBuf>,
    /// Extra variables for every function process (experiments).
    env: Vec<(String, String)>,
}

fn parse_options() -> Result<Options, String> {
    let target = kiln_tests::target_dir();
    let mut options = Options {
        cold_runs: 20,
        warm_invokes: 200,
        functions: FUNCTIONS.iter().map(|f| f.to_string()).collect(),
        bin_dir: target.join("release"),
        lambda_dir: target.join("lambda"),
        out: target.join("bench/performance.md"),
        hotpaths: true,
        update: None,
        env: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--cold" => options.cold_runs = count(&arg, &value()?)?,
            "--warm" => options.warm_invokes = count(&arg, &value()?)?,
            "--functions" => {
                options.functions = value()?.split(',').map(|f| f.trim().to_string()).collect();
                if !options.functions.iter().any(|f| f == BASELINE) {
                    options.functions.insert(0, BASELINE.to_string());
                }
            }
            "--bin-dir" => options.bin_dir = absolute(value()?),
            "--lambda-dir" => options.lambda_dir = absolute(value()?),
            "--out" => options.out = value()?.into(),
            "--env" => {
                let pair = value()?;
                let (name, val) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--env takes NAME=VALUE, not {pair:?}"))?;
                options.env.push((name.to_string(), val.to_string()));
            }
            "--no-hotpaths" => options.hotpaths = false,
            "--update" => options.update = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A path as given, taken from the current directory when relative (the
/// emulator starts each binary in its own directory).
fn absolute(raw: String) -> PathBuf {
    std::path::absolute(&raw).unwrap_or_else(|_| PathBuf::from(raw))
}

fn count(flag: &str, raw: &str) -> Result<usize, String> {
    match raw.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} takes a positive number, not {raw:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Every hop is timed here: no recording proxy in front of AWS.
    kiln_tests::call_record::disable();
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&options).await {
        Ok(report) => {
            let markdown = report.markdown();
            println!("{markdown}");
            if let Err(e) = write(&options, &report, &markdown) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let missed = report.missed();
            if missed.is_empty() {
                eprintln!("kiln-bench: every measured target met");
                ExitCode::SUCCESS
            } else {
                eprintln!("kiln-bench: {} target(s) missed:", missed.len());
                for miss in missed {
                    eprintln!("  - {miss}");
                }
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn write(options: &Options, report: &Report, markdown: &str) -> Result<(), String> {
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&options.out, markdown)
        .map_err(|e| format!("writing {}: {e}", options.out.display()))?;
    eprintln!("kiln-bench: wrote {}", options.out.display());
    if let Some(page) = &options.update {
        report::update_marked_block(page, &report.tables())?;
        eprintln!("kiln-bench: updated {}", page.display());
    }
    Ok(())
}

async fn run(options: &Options) -> Result<Report, String> {
    let root = kiln_tests::workspace_root();
    let bin_dir = options
        .bin_dir
        .strip_prefix(&root)
        .unwrap_or(&options.bin_dir);
    let mut report = Report::new(
        bin_dir.display().to_string(),
        options.cold_runs,
        options.warm_invokes,
    );

    let down = Downstream::start().await?;
    let mut scenarios = Vec::new();
    for function in &options.functions {
        let binary = options.bin_dir.join(function);
        if !binary.is_file() {
            report.skipped.push(format!(
                "{function}: no release binary at {} (`cargo build --release -p {function}`)",
                binary.display()
            ));
            continue;
        }
        match scenarios::prepare(function, &down).await {
            Ok(mut scenario) => {
                scenario.env.extend(options.env.iter().cloned());
                scenarios.push((scenario, binary));
            }
            Err(e) => report.skipped.push(format!("{function}: {e}")),
        }
    }
    if !scenarios.iter().any(|(s, _)| s.function == BASELINE) {
        return Err(format!(
            "the baseline binary is missing from {}: `cargo build --release -p {BASELINE}`",
            options.bin_dir.display()
        ));
    }

    let mut results: Vec<FunctionResult> = scenarios
        .iter()
        .map(|(s, _)| FunctionResult::new(s.function, s.work))
        .collect();

    // One discarded round first: page cache, moto's lazy imports.
    eprintln!(
        "==> cold starts: 1 warm-up round, then {} rounds",
        options.cold_runs
    );
    for round in 0..=options.cold_runs {
        for ((scenario, binary), result) in scenarios.iter().zip(results.iter_mut()) {
            if result.error.is_some() {
                continue;
            }
            match cold_start(scenario, binary, &down).await {
                Ok(run) if round > 0 => result.cold.push(run),
                Ok(_) => {}
                Err(e) => result.error = Some(e),
            }
        }
        down.clear_sinks();
    }

    for ((scenario, binary), result) in scenarios.iter().zip(results.iter_mut()) {
        if result.error.is_some() {
            continue;
        }
        eprintln!(
            "==> {}: {} warm invocations",
            scenario.function, options.warm_invokes
        );
        if let Err(e) = warm(scenario, binary, &down, options.warm_invokes, result).await {
            result.error = Some(e);
        }
        down.clear_sinks();
    }
    report.functions = results;
    drop(down);

    if options.hotpaths {
        report.hotpaths = Some(hotpaths::run(
            &kiln_tests::workspace_root(),
            &kiln_tests::target_dir(),
        ));
    }
    let mut sized = options.functions.clone();
    sized.retain(|f| f != BASELINE);
    sized.insert(0, BASELINE.to_string());
    report.artefacts = sized
        .iter()
        .map(|f| artefacts::measure(&options.lambda_dir, f))
        .collect();
    Ok(report)
}

async fn start(
    scenario: &Scenario,
    binary: &std::path::Path,
) -> Result<(LambdaFunction, Duration), String> {
    let function = LambdaFunction::builder(scenario.function)
        .binary(binary)
        .env(scenario.env.iter().cloned())
        .echo(false)
        .try_start()
        .await
        .map_err(|e| e.to_string())?;
    let init = function
        .wait_ready(READY_TIMEOUT)
        .await
        .map_err(|failure| format!("{} did not start: {failure}", scenario.function))?;
    Ok((function, init))
}

/// Restores the scenario's state (untimed), then invokes once: the time
/// from queueing the event to the answer.
async fn invoke(
    function: &LambdaFunction,
    scenario: &Scenario,
    down: &Downstream,
) -> Result<Duration, String> {
    if let Some(before) = &scenario.before {
        down.restore(before).await?;
    }
    let (result, elapsed) = function.invoke_timed(scenario.event.clone()).await;
    check(function, scenario, result).map(|()| elapsed)
}

/// Whether the answer is the scenario's successful one.
fn check(
    function: &LambdaFunction,
    scenario: &Scenario,
    result: Result<serde_json::Value, kiln_tests::lambda::LambdaError>,
) -> Result<(), String> {
    let output = || tail(&function.output_text());
    match result {
        Ok(response) => (scenario.check)(&response)
            .map_err(|why| format!("{}: {why}\noutput:\n{}", scenario.function, output())),
        Err(error) => Err(format!(
            "{} answered with an error: {error}\noutput:\n{}",
            scenario.function,
            output()
        )),
    }
}

async fn cold_start(
    scenario: &Scenario,
    binary: &std::path::Path,
    down: &Downstream,
) -> Result<ColdRun, String> {
    if let Some(before) = &scenario.before {
        down.restore(before).await?;
    }
    down.recorder.take();
    let (function, init) = start(scenario, binary).await?;
    let init_cpu = memory::cpu_time(function.pid());
    let (result, _) = function.invoke_timed(scenario.event.clone()).await;
    let cold_cpu = memory::cpu_time(function.pid());
    check(&function, scenario, result)?;
    let total = function
        .timings()
        .cold_total
        .ok_or_else(|| format!("{}: no cold-start mark", scenario.function))?;
    let (downstream, calls) = down.recorder.take();
    function.kill();
    Ok(ColdRun {
        init,
        total,
        downstream,
        calls,
        init_cpu,
        cold_cpu,
    })
}

async fn warm(
    scenario: &Scenario,
    binary: &std::path::Path,
    down: &Downstream,
    invokes: usize,
    result: &mut FunctionResult,
) -> Result<(), String> {
    let (function, _) = start(scenario, binary).await?;
    invoke(&function, scenario, down).await?;
    down.recorder.take();
    let (mut total, mut own, mut waited, mut cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut calls = 0;
    // One reading per invocation, each the start of the next: what the
    // function does after answering (its next `GET /next`) counts in the
    // following invocation instead of falling between two readings.
    let mut cpu_before = memory::cpu_time(function.pid());
    for _ in 0..invokes {
        let elapsed = invoke(&function, scenario, down).await?;
        let (downstream, n) = down.recorder.take();
        calls += n;
        total.push(elapsed);
        waited.push(downstream);
        own.push(elapsed.saturating_sub(downstream));
        let cpu_after = memory::cpu_time(function.pid());
        if let Some((after, before)) = cpu_after.zip(cpu_before) {
            cpu.push(after.saturating_sub(before));
        }
        cpu_before = cpu_after;
    }
    result.warm_cpu = Sample::new(cpu);
    result.peak_rss = memory::peak_rss(function.pid());
    function.kill();
    result.warm_total = Sample::new(total);
    result.warm_own = Sample::new(own);
    result.warm_downstream = Sample::new(waited);
    result.calls_per_invoke = calls as f64 / invokes as f64;
    Ok(())
}

/// The last lines of a function's output, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

trait OutputText {
    fn output_text(&self) -> String;
}

impl OutputText for LambdaFunction {
    fn output_text(&self) -> String {
        self.output()
            .into_iter()
            .map(|line| line.text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
