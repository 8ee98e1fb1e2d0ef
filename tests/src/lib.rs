//! The local AWS harness.
//!
//! What lives here: everything kiln's integration tests, the end-to-end run
//! (`kiln-local`) and the benchmarks need to run kiln on this machine with no
//! AWS account.
//! - [`moto`]: a private moto server per test, reached by the real Rust SDK.
//! - [`aws`]: provisioning (topics, SQS read-back of SNS, secrets, ECS, ASG).
//! - [`lambda`]: a function's real binary under an emulated Lambda Runtime API.
//! - [`http`]: a scriptable HTTP server recording every request (Slack and
//!   GitHub fakes build on it).
//! - [`apigw`]: a local API Gateway HTTP API endpoint in front of a function.
//! - [`faults`]: a fault-injecting proxy between the SDK and moto.
//! - [`call_record`]: every AWS call of every function process, as IAM would
//!   authorise it (what `make check-iam` checks against the templates).
//! - [`fixtures`]: fixture bytes, GitHub signatures, API Gateway and SNS
//!   events.
//! - [`local`]: kiln wired together on this machine, as `kiln-local` runs it.
//!
//! Helpers meant for tests panic with a descriptive message when the
//! emulator misbehaves; the few that `kiln-local` needs to report gracefully
//! also come in a `try_` form returning [`HarnessError`].

pub mod apigw;
pub mod aws;
pub mod call_record;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod http_server;
pub mod lambda;
pub mod local;
pub mod moto;
mod process;

use std::path::{Path, PathBuf};

/// A harness failure, described for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative paths are taken
/// from the workspace root), or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}
