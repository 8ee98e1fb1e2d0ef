//! A private moto server: AWS on 127.0.0.1, one per test.
//!
//! [`Moto::start`] spawns `$KILN_MOTO_SERVER` (default
//! `<workspace>/.venv/bin/moto_server`, installed by `make venv`) on a free
//! port and waits until it listens. Each test owns its server, so tests run
//! in parallel without sharing state. Dropping the [`Moto`] kills the server
//! (its PID and its process group).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sns::config::Credentials;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::process::{free_port, isolate, kill_group};
use crate::{HarnessError, workspace_root};

/// The region every harness client and child process uses.
pub const REGION: &str = "us-east-1";
/// moto's account id.
pub const ACCOUNT_ID: &str = "123456789012";
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

/// How long moto may take to listen. It needs about half a second alone;
/// parallel test processes on two cores make it several times that.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 5;
const LOG_LINES_KEPT: usize = 300;

/// A running moto server, killed on drop.
pub struct Moto {
    child: Option<Child>,
    pid: u32,
    endpoint: String,
    http: reqwest::Client,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid)
            .finish()
    }
}

/// The moto_server executable: `$KILN_MOTO_SERVER`, or the project venv's.
pub fn moto_server_path() -> PathBuf {
    match std::env::var_os("KILN_MOTO_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join(".venv/bin/moto_server"),
    }
}

impl Moto {
    /// Starts a private moto server. Panics (with moto's own output) if it
    /// cannot start.
    pub async fn start() -> Moto {
        match Moto::try_start().await {
            Ok(moto) => moto,
            Err(err) => panic!("{err}"),
        }
    }

    /// Starts a private moto server, retrying on a new port when another
    /// process took the chosen one first.
    pub async fn try_start() -> Result<Moto, HarnessError> {
        let program = moto_server_path();
        if !program.exists() {
            return Err(HarnessError(format!(
                "moto_server not found at {}: run `make venv` (or set KILN_MOTO_SERVER)",
                program.display()
            )));
        }
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match Moto::spawn(&program, port).await {
                Ok(moto) => return Ok(moto),
                Err(Spawn::PortTaken(err)) => last_error = Some(err),
                Err(Spawn::Failed(err)) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError("moto did not start".into())))
    }

    async fn spawn(program: &PathBuf, port: u16) -> Result<Moto, Spawn> {
        let mut command = Command::new(program);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        isolate(&mut command);
        let mut child = command.spawn().map_err(|e| {
            Spawn::Failed(HarnessError(format!(
                "starting {} failed: {e}",
                program.display()
            )))
        })?;
        let pid = child.id().unwrap_or_default();

        // moto (werkzeug) logs " * Running on http://127.0.0.1:<port>" on
        // stderr once it has bound the port. Waiting for that line from our
        // own child, rather than probing the port, means a port race can
        // never hand us another test's server.
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, mut ready_rx) = watch::channel(false);
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let banner = format!("Running on http://127.0.0.1:{port}");
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains(&banner) {
                        let _ = ready_tx.send(true);
                    }
                    if let Ok(mut log) = log.lock() {
                        if log.len() == LOG_LINES_KEPT {
                            log.pop_front();
                        }
                        log.push_back(line);
                    }
                }
            });
        }

        let endpoint = format!("http://127.0.0.1:{port}");
        let outcome = tokio::time::timeout(START_TIMEOUT, async {
            tokio::select! {
                ready = ready_rx.wait_for(|ready| *ready) => ready.is_ok(),
                _ = child.wait() => false,
            }
        })
        .await;
        let tail = || {
            log.lock()
                .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        };
        match outcome {
            Ok(true) => Ok(Moto {
                child: Some(child),
                pid,
                endpoint,
                http: reqwest::Client::new(),
                log,
            }),
            Ok(false) => {
                // Give the reader a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let output = tail();
                let err = HarnessError(format!(
                    "moto_server on port {port} exited before listening:\n{output}"
                ));
                if output.contains("in use") {
                    Err(Spawn::PortTaken(err))
                } else {
                    Err(Spawn::Failed(err))
                }
            }
            Err(_) => {
                kill_group(pid);
                Err(Spawn::Failed(HarnessError(format!(
                    "moto_server on port {port} did not listen within {START_TIMEOUT:?}:\n{}",
                    tail()
                ))))
            }
        }
    }

    /// The server's base URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for this server: region us-east-1, static dummy
    /// credentials and the endpoint set explicitly, so nothing is read from
    /// the environment and the instance metadata service is never asked.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// Environment for a child process (a function binary) that should talk
    /// to this server: `AWS_ENDPOINT_URL`, region, dummy keys and
    /// `AWS_EC2_METADATA_DISABLED`.
    pub fn child_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Clears every resource on the server.
    pub async fn reset(&self) {
        self.post("/moto-api/reset", None).await;
    }

    /// Stops ECS tasks from advancing: by default moto moves a task one
    /// status further on every DescribeTasks call, until STOPPED.
    pub async fn freeze_ecs_tasks(&self) {
        let body = serde_json::json!({
            "model_name": "ecs::task",
            "transition": {"progression": "manual", "times": 1_000_000},
        });
        self.post("/moto-api/state-manager/set-transition", Some(body))
            .await;
    }

    /// The last lines moto logged (startup messages and one line per
    /// request), for failure messages.
    pub fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Kills the server now (the endpoint then refuses connections), e.g. to
    /// test what a function does when AWS is unreachable. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            let _ = child.wait().await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn post(&self, path: &str, body: Option<serde_json::Value>) {
        let mut request = self.http.post(format!("{}{path}", self.endpoint));
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => panic!(
                "moto {path} answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(err) => panic!("moto {path} failed: {}", kiln::aws::error_chain(&err)),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.child.take().is_some() {
            // The Child's own kill_on_drop only signals the leader; the group
            // kill also takes anything moto started. tokio reaps the process.
            kill_group(self.pid);
        }
    }
}

enum Spawn {
    PortTaken(HarnessError),
    Failed(HarnessError),
}

/// SDK configuration for an emulator at `endpoint` (see
/// [`Moto::sdk_config`]).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "kiln-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}
