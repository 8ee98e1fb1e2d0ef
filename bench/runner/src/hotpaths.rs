//! The in-process hot paths: runs the criterion benchmarks, reads their
//! results, and times `openssl dgst -sha256 -hmac` on the same 25 MiB body
//! right after, so the HMAC throughput is compared on the same machine in
//! the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kiln_hotpaths::{HMAC_BODY_LEN, HMAC_GROUP, HMAC_KEY, large_json_body};
use serde_json::Value;

use crate::stats::Sample;

/// The criterion benchmarks `make bench` runs: (package, bench target).
/// They build in one cargo invocation, so their dependencies are resolved
/// and compiled once.
pub const BENCHES: &[(&str, &str)] =
    &[("deploy-trigger", "webhook"), ("kiln-hotpaths", "hotpaths")];

/// One criterion benchmark's result.
#[derive(Debug, Clone)]
pub struct Measured {
    pub id: String,
    /// Criterion's median estimate of one iteration.
    pub median: Duration,
    /// Bytes processed per iteration, when the benchmark declares it.
    pub bytes: Option<u64>,
}

impl Measured {
    /// Bytes per second, when the benchmark declares its throughput.
    pub fn bytes_per_second(&self) -> Option<f64> {
        let seconds = self.median.as_secs_f64();
        self.bytes
            .filter(|_| seconds > 0.0)
            .map(|b| b as f64 / seconds)
    }
}

/// HMAC-SHA256 of the same 25 MiB, kiln against OpenSSL.
#[derive(Debug, Clone)]
pub struct HmacComparison {
    pub kiln: f64,
    pub openssl: f64,
    pub openssl_version: String,
}

impl HmacComparison {
    pub fn ratio(&self) -> f64 {
        self.kiln / self.openssl
    }
}

#[derive(Debug, Default)]
pub struct HotPaths {
    pub results: Vec<Measured>,
    pub failures: Vec<String>,
    pub hmac: Option<HmacComparison>,
}

/// Runs every benchmark in [`BENCHES`] with `cargo bench`, then OpenSSL.
pub fn run(workspace: &Path, target_dir: &Path) -> HotPaths {
    let criterion_home = target_dir.join("criterion");
    let started = SystemTime::now();
    let mut hot = HotPaths::default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["bench"];
    for (package, bench) in BENCHES {
        args.extend(["-p", package, "--bench", bench]);
    }
    let command = format!("cargo {}", args.join(" "));
    eprintln!("==> {command}");
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CRITERION_HOME", &criterion_home)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => hot.failures.push(format!("`{command}` failed ({status})")),
        Err(e) => hot.failures.push(format!("`{command}` could not run: {e}")),
    }
    hot.results = read_criterion(&criterion_home, started);
    let kiln = hot
        .results
        .iter()
        .find(|m| m.id.starts_with(&format!("{HMAC_GROUP}/")))
        .and_then(Measured::bytes_per_second);
    match (kiln, openssl_hmac(target_dir)) {
        (Some(kiln), Ok((openssl, openssl_version))) => {
            hot.hmac = Some(HmacComparison {
                kiln,
                openssl,
                openssl_version,
            })
        }
        (None, _) => hot
            .failures
            .push(format!("no {HMAC_GROUP} result from criterion in this run")),
        (_, Err(e)) => hot.failures.push(e),
    }
    hot
}

/// Every criterion result written since `since`, sorted by id.
fn read_criterion(home: &Path, since: SystemTime) -> Vec<Measured> {
    let mut found = Vec::new();
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some(measured) = read_result(&path, since) {
                        found.push(measured);
                    }
                } else {
                    dirs.push(path);
                }
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn read_result(new_dir: &Path, since: SystemTime) -> Option<Measured> {
    let estimates_path = new_dir.join("estimates.json");
    let fresh = std::fs::metadata(&estimates_path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let read = |path: PathBuf| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let benchmark = read(new_dir.join("benchmark.json"))?;
    let estimates = read(estimates_path)?;
    let median_ns = estimates.pointer("/median/point_estimate")?.as_f64()?;
    Some(Measured {
        id: benchmark.get("full_id")?.as_str()?.to_string(),
        median: Duration::from_secs_f64(median_ns / 1e9),
        bytes: benchmark
            .pointer("/throughput/Bytes")
            .or_else(|| benchmark.pointer("/throughput/BytesDecimal"))
            .and_then(Value::as_u64),
    })
}

/// OpenSSL's HMAC-SHA256 throughput over the same 25 MiB, in bytes per
/// second: the median time of `openssl dgst -sha256 -hmac` on the body,
/// less the median time on an empty file (process start-up).
fn openssl_hmac(target_dir: &Path) -> Result<(f64, String), String> {
    let dir = target_dir.join("kiln-bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let body = dir.join("hmac-body-25MiB.json");
    let empty = dir.join("hmac-body-empty.json");
    std::fs::write(&body, large_json_body(HMAC_BODY_LEN))
        .and_then(|()| std::fs::write(&empty, b""))
        .map_err(|e| format!("writing the HMAC bodies under {}: {e}", dir.display()))?;
    let version = Command::new("openssl")
        .arg("version")
        .output()
        .map_err(|e| format!("openssl is needed for the HMAC comparison: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let time = |file: &Path| -> Result<Duration, String> {
        let started = Instant::now();
        let output = Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", HMAC_KEY])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running openssl dgst: {e}"))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            return Err(format!(
                "openssl dgst failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(elapsed)
    };
    // Warm the page cache and the binary first.
    time(&body)?;
    let (mut full, mut startup) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        full.push(time(&body)?);
        startup.push(time(&empty)?);
    }
    let full = Sample::new(full).median().unwrap_or_default();
    let startup = Sample::new(startup).median().unwrap_or_default();
    let hashing = full.saturating_sub(startup);
    if hashing.is_zero() {
        return Err("openssl dgst took no measurable time".into());
    }
    Ok((HMAC_BODY_LEN as f64 / hashing.as_secs_f64(), version))
}

/// Bytes per second as GiB/s or MiB/s.
pub fn rate(bytes_per_second: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes_per_second >= 1024.0 * MIB {
        format!("{:.2} GiB/s", bytes_per_second / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB/s", bytes_per_second / MIB)
    }
}
