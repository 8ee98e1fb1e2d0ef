//! A function's real binary under an emulated Lambda Runtime API.
//!
//! [`LambdaFunction`] serves the Runtime API (`/2018-06-01/runtime/...`) on
//! 127.0.0.1, spawns the binary with `AWS_LAMBDA_RUNTIME_API` and the
//! variables Lambda sets, and hands it one event per [`LambdaFunction::invoke`],
//! the way the Lambda service does: the binary polls `invocation/next`, then
//! posts a response or an error. The binary's stdout and stderr are captured
//! line by line (and echoed into the test's output, prefixed with the
//! function's name), and the time from spawn to the first poll (init) and to
//! the first answer (cold start) is recorded for the benchmarks.
//!
//! Binaries come from [`binary_path`]: the debug build, rebuilt when it is
//! older than its sources, or `$KILN_BIN_DIR/<name>` as is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::call_record::{self, CallRecorder};
use crate::faults::FaultProxy;
use crate::http_server::{self, Request, Response};
use crate::moto::{ACCOUNT_ID, REGION};
use crate::process::{isolate, kill_group, random_u64, uuid_like};
use crate::{HarnessError, target_dir, workspace_root};

/// An error a function reported, or one the emulated service made up when
/// the function crashed or timed out (`Runtime.ExitError`,
/// `Sandbox.Timedout`), as Lambda's `errorType` and `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaError {
    pub error_type: String,
    pub error_message: String,
}

impl std::fmt::Display for LambdaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for LambdaError {}

/// Which stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line the function wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub text: String,
}

/// Why a function did not get through init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    /// The exit code, if the process exited (None: killed by a signal, or
    /// still running).
    pub exit_code: Option<i32>,
    /// Whether the process has exited.
    pub exited: bool,
    /// What the function posted to `/runtime/init/error`, if anything.
    pub init_error: Option<LambdaError>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for InitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exited, self.exit_code) {
            (true, Some(code)) => write!(f, "exited with code {code}")?,
            (true, None) => write!(f, "was killed by a signal")?,
            (false, _) => write!(f, "did not exit")?,
        }
        if let Some(error) = &self.init_error {
            write!(f, "; init error {error}")?;
        }
        write!(f, "\nstderr:\n{}\nstdout:\n{}", self.stderr, self.stdout)
    }
}

/// Start-up timing marks, measured from spawning the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Spawn to the first `GET invocation/next`: the init phase.
    pub init: Option<Duration>,
    /// Spawn to the first answer (response or error): a cold start.
    pub cold_total: Option<Duration>,
}

type LineSink = Arc<dyn Fn(&str, &OutputLine) + Send + Sync>;

/// Options for starting a function; see [`LambdaFunction::builder`].
pub struct LambdaBuilder {
    name: String,
    binary: Option<PathBuf>,
    env: Vec<(String, String)>,
    removed: Vec<String>,
    memory_mb: u32,
    timeout: Duration,
    echo: bool,
    on_line: Option<LineSink>,
}

impl LambdaBuilder {
    /// Runs this binary instead of [`binary_path`]`(name)`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Adds environment variables (later ones win over earlier ones and over
    /// the Lambda defaults).
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Adds one environment variable.
    pub fn var(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env([(name.into(), value.into())])
    }

    /// Leaves a variable out, even one of the Lambda defaults.
    pub fn without(mut self, name: impl Into<String>) -> Self {
        self.removed.push(name.into());
        self
    }

    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (default 128).
    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
        self.memory_mb = memory_mb;
        self
    }

    /// The invocation timeout (default 30 s, generous for a loaded machine):
    /// sets the deadline the function sees and when `invoke` gives up.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to echo the function's output into the test's output (on by
    /// default; test runners show it only for failing tests).
    pub fn echo(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Calls `sink(function_name, line)` for every line the function writes.
    pub fn on_line(mut self, sink: impl Fn(&str, &OutputLine) + Send + Sync + 'static) -> Self {
        self.on_line = Some(Arc::new(sink));
        self
    }

    /// Starts the function; panics if it cannot be spawned.
    pub async fn start(self) -> LambdaFunction {
        match self.try_start().await {
            Ok(function) => function,
            Err(err) => panic!("{err}"),
        }
    }

    /// Starts the function: serves the Runtime API, then spawns the binary.
    pub async fn try_start(self) -> Result<LambdaFunction, HarnessError> {
        let binary = match self.binary.clone() {
            Some(binary) => binary,
            None => {
                let name = self.name.clone();
                tokio::task::spawn_blocking(move || try_binary_path(&name))
                    .await
                    .map_err(|e| HarnessError(format!("building {}: {e}", self.name)))??
            }
        };
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (status, status_rx) = watch::channel(Status::default());
        let shared = Arc::new(Shared {
            function_arn: format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}",
                self.name
            ),
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(HashMap::new()),
            status,
            spawned_at: OnceLock::new(),
            output: Mutex::new(Vec::new()),
        });

        let (listener, runtime_api) = http_server::bind_loopback()
            .await
            .map_err(|e| HarnessError(format!("binding the Runtime API: {e}")))?;
        let state = Arc::clone(&shared);
        let server = http_server::serve(listener, move |request| {
            runtime_api_call(Arc::clone(&state), request)
        });

        let mut env = lambda_env(&self, &binary, runtime_api);
        let aws_proxies = match record_aws_calls(&self.name, &mut env).await {
            Ok(proxies) => proxies,
            Err(err) => {
                server.abort();
                return Err(err);
            }
        };
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = binary.parent() {
            command.current_dir(dir);
        }
        isolate(&mut command);
        // Taken before the spawn: `spawn` returns only once the child has
        // exec'd, and a single-threaded child can get well into its init
        // before the parent is scheduled again.
        let spawning = Instant::now();
        let mut child = command.spawn().map_err(|e| {
            server.abort();
            HarnessError(format!("starting {}: {e}", binary.display()))
        })?;
        let _ = shared.spawned_at.set(spawning);
        let pid = child.id().unwrap_or_default();

        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(self.capture(stdout, Stream::Stdout, &shared));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(self.capture(stderr, Stream::Stderr, &shared));
        }
        let watcher = Arc::clone(&shared);
        tokio::spawn(async move {
            let exit = child.wait().await;
            // The readers end at EOF: after them, the output is complete.
            for reader in readers {
                let _ = reader.await;
            }
            if let Ok(exit) = exit {
                watcher.status.send_modify(|s| s.exit = Some(exit));
            }
        });

        Ok(LambdaFunction {
            name: self.name,
            pid,
            runtime_api,
            timeout: self.timeout,
            shared,
            status: status_rx,
            server,
            _aws_proxies: aws_proxies,
        })
    }

    fn capture(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        kind: Stream,
        shared: &Arc<Shared>,
    ) -> JoinHandle<()> {
        let shared = Arc::clone(shared);
        let name = self.name.clone();
        let echo = self.echo;
        let sink = self.on_line.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(text)) = lines.next_line().await {
                let line = OutputLine { stream: kind, text };
                if echo {
                    eprintln!("[{name}] {}", line.text);
                }
                if let Some(sink) = &sink {
                    sink(&name, &line);
                }
                if let Ok(mut output) = shared.output.lock() {
                    output.push(line);
                }
            }
        })
    }
}

/// The environment Lambda gives a `provided.al2023` function, plus the
/// caller's variables.
fn lambda_env(
    options: &LambdaBuilder,
    binary: &Path,
    runtime_api: SocketAddr,
) -> Vec<(String, String)> {
    let name = &options.name;
    let task_root = binary
        .parent()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            options.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("2024/01/01/[$LATEST]{:016x}", random_u64()),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("LAMBDA_TASK_ROOT", task_root),
        ("_HANDLER", "bootstrap".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        (
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(options.env.iter().cloned());
    env.retain(|(k, _)| !options.removed.contains(k));
    env
}

/// Points the process's AWS endpoints (`AWS_ENDPOINT_URL` and
/// `AWS_ENDPOINT_URL_<SERVICE>`, plain http: moto and the harness's proxies)
/// at recording proxies, so every AWS call of every function process is in
/// the record of calls ([`crate::call_record`]). HTTPS endpoints (the
/// trust-store tests' servers) are left alone: they are not AWS.
async fn record_aws_calls(
    name: &str,
    env: &mut [(String, String)],
) -> Result<Vec<FaultProxy>, HarnessError> {
    let is_endpoint = |key: &str, value: &str| {
        (key == "AWS_ENDPOINT_URL" || key.starts_with("AWS_ENDPOINT_URL_"))
            && value.starts_with("http://")
    };
    if !call_record::enabled() || !env.iter().any(|(k, v)| is_endpoint(k, v)) {
        return Ok(Vec::new());
    }
    let recorder = Arc::new(CallRecorder::create(name, env)?);
    let mut proxies = Vec::new();
    for (key, value) in env.iter_mut() {
        if is_endpoint(key, value) {
            let proxy = FaultProxy::start_recording(value, Arc::clone(&recorder)).await;
            *value = proxy.endpoint();
            proxies.push(proxy);
        }
    }
    Ok(proxies)
}

/// A running function binary with its Runtime API. Killed (with its process
/// group) on drop.
pub struct LambdaFunction {
    name: String,
    pid: u32,
    runtime_api: SocketAddr,
    timeout: Duration,
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    /// The recording proxies in front of AWS; they live as long as the
    /// process.
    _aws_proxies: Vec<FaultProxy>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for LambdaFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaFunction")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("runtime_api", &self.runtime_api)
            .finish_non_exhaustive()
    }
}

impl LambdaFunction {
    /// Options for running the function binary `name` (e.g.
    /// `deploy-trigger`).
    pub fn builder(name: &str) -> LambdaBuilder {
        LambdaBuilder {
            name: name.to_string(),
            binary: None,
            env: Vec::new(),
            removed: Vec::new(),
            memory_mb: 128,
            timeout: Duration::from_secs(30),
            echo: true,
            on_line: None,
        }
    }

    /// Starts the function binary `name` with these extra variables.
    pub async fn start<K: Into<String>, V: Into<String>>(
        name: &str,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> LambdaFunction {
        LambdaFunction::builder(name).env(env).start().await
    }

    /// Invokes the function with an event, as a synchronous Lambda invoke:
    /// its JSON response, or its error. A crash gives `Runtime.ExitError`, a
    /// failed init the function's init error, and no answer within the
    /// timeout `Sandbox.Timedout`.
    pub async fn invoke(&self, event: Value) -> Result<Value, LambdaError> {
        self.invoke_timed(event).await.0
    }

    /// [`LambdaFunction::invoke`], also returning the time from queueing the
    /// event to the answer.
    pub async fn invoke_timed(&self, event: Value) -> (Result<Value, LambdaError>, Duration) {
        let started = Instant::now();
        let request_id = uuid_like();
        let (reply, answer) = oneshot::channel();
        let deadline_ms = epoch_ms(SystemTime::now() + self.timeout);
        let pending = Pending {
            request_id: request_id.clone(),
            body: event.to_string().into_bytes(),
            deadline_ms,
            reply,
        };
        if self.shared.queue_tx.send(pending).is_err() {
            return (Err(self.exit_error(&request_id)), started.elapsed());
        }
        let result = tokio::select! {
            biased;
            answer = answer => match answer {
                Ok(answer) => answer,
                Err(_) => Err(self.exit_error(&request_id)),
            },
            _ = self.until(|s| s.exit.is_some() || s.init_error.is_some()) => {
                let init_error = self.status.borrow().init_error.clone();
                Err(init_error.unwrap_or_else(|| self.exit_error(&request_id)))
            }
            _ = tokio::time::sleep(self.timeout) => Err(LambdaError {
                error_type: "Sandbox.Timedout".into(),
                error_message: format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    self.timeout.as_secs_f64()
                ),
            }),
        };
        (result, started.elapsed())
    }

    /// Resolves once `done` holds for the status. The watch guard never
    /// outlives this call, so callers' futures stay `Send`.
    async fn until(&self, done: impl FnMut(&Status) -> bool) {
        let mut status = self.status.clone();
        let _ = status.wait_for(done).await.is_ok();
    }

    fn exit_error(&self, request_id: &str) -> LambdaError {
        let exit = self.status.borrow().exit;
        let how = match exit {
            Some(status) => match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "signal".to_string(),
            },
            None => "the runtime stopped answering".to_string(),
        };
        LambdaError {
            error_type: "Runtime.ExitError".into(),
            error_message: format!(
                "RequestId: {request_id} Error: Runtime exited with error: {how}"
            ),
        }
    }

    /// Waits (up to `timeout`) until the function polls for its first event:
    /// `Ok(init duration)`, or why it did not get there.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration, InitFailure> {
        let settled = tokio::time::timeout(
            timeout,
            self.until(|s| s.first_next.is_some() || s.exit.is_some() || s.init_error.is_some()),
        )
        .await
        .is_ok();
        if settled && self.status.borrow().first_next.is_some() {
            return Ok(self.timings().init.unwrap_or_default());
        }
        Err(self.init_failure().await)
    }

    /// Waits (up to `timeout`) for the function to fail its init: to exit or
    /// to post an init error. Panics if it instead polls for events and
    /// stays up, or if nothing happens in time.
    pub async fn expect_init_failure(&self, timeout: Duration) -> InitFailure {
        let failed = tokio::time::timeout(
            timeout,
            self.until(|s| s.exit.is_some() || s.init_error.is_some()),
        )
        .await
        .is_ok();
        if !failed {
            let polling = self.status.borrow().first_next.is_some();
            panic!(
                "{} did not fail its init within {timeout:?} ({}); stderr:\n{}",
                self.name,
                if polling {
                    "it is polling for events"
                } else {
                    "it neither exited nor polled for events"
                },
                self.stderr()
            );
        }
        self.init_failure().await
    }

    async fn init_failure(&self) -> InitFailure {
        // After an init error the runtime exits: give it a moment, so the
        // exit code and the last output are in.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.until(|s| s.exit.is_some())).await;
        let status = self.status.borrow().clone();
        InitFailure {
            exit_code: status.exit.and_then(|e| e.code()),
            exited: status.exit.is_some(),
            init_error: status.init_error,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    /// The start-up timing marks so far.
    pub fn timings(&self) -> Timings {
        let Some(spawned) = self.shared.spawned_at.get().copied() else {
            return Timings::default();
        };
        let status = self.status.borrow();
        Timings {
            init: status.first_next.map(|t| t.duration_since(spawned)),
            cold_total: status.first_response.map(|t| t.duration_since(spawned)),
        }
    }

    /// Every line the function wrote so far, in arrival order.
    pub fn output(&self) -> Vec<OutputLine> {
        self.shared
            .output
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    fn joined(&self, stream: Stream) -> String {
        self.output()
            .into_iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything on stdout so far.
    pub fn stdout(&self) -> String {
        self.joined(Stream::Stdout)
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.joined(Stream::Stderr)
    }

    /// The output lines that are JSON objects (kiln's structured logs and
    /// EMF metrics), parsed.
    pub fn json_lines(&self) -> Vec<Value> {
        self.output()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(&line.text).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The process's exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status.borrow().exit
    }

    /// Waits (up to `timeout`) for the process to exit; its output is then
    /// complete. `None` if it is still running.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let _ = tokio::time::timeout(timeout, self.until(|s| s.exit.is_some())).await;
        self.exit_status()
    }

    /// Kills the process (and its process group) now.
    pub fn kill(&self) {
        kill_group(self.pid);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The emulated Runtime API's address (`AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self) -> SocketAddr {
        self.runtime_api
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        if self.status.borrow().exit.is_none() {
            kill_group(self.pid);
        }
        self.server.abort();
    }
}

// --- The Runtime API --------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Status {
    first_next: Option<Instant>,
    first_response: Option<Instant>,
    init_error: Option<LambdaError>,
    exit: Option<ExitStatus>,
}

struct Pending {
    request_id: String,
    body: Vec<u8>,
    deadline_ms: u128,
    reply: oneshot::Sender<Result<Value, LambdaError>>,
}

struct Shared {
    function_arn: String,
    queue_tx: mpsc::UnboundedSender<Pending>,
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Result<Value, LambdaError>>>>,
    status: watch::Sender<Status>,
    spawned_at: OnceLock<Instant>,
    output: Mutex<Vec<OutputLine>>,
}

/// Routes one Runtime API call, answering as Lambda does.
async fn runtime_api_call(shared: Arc<Shared>, request: Request) -> Option<Response> {
    let call = request.path().strip_prefix("/2018-06-01/runtime/");
    let response = match (request.method.as_str(), call) {
        ("GET", Some("invocation/next")) => next_invocation(&shared).await,
        ("POST", Some("init/error")) => {
            let error = parse_error(&request);
            shared.status.send_modify(|s| s.init_error = Some(error));
            accepted()
        }
        ("POST", Some(call)) => match call
            .strip_prefix("invocation/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((request_id, "response")) => {
                // A handler's response is JSON; anything else is kept as a string.
                let value = serde_json::from_slice(&request.body).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&request.body).into_owned())
                });
                complete(&shared, request_id, Ok(value))
            }
            Some((request_id, "error")) => {
                complete(&shared, request_id, Err(parse_error(&request)))
            }
            _ => not_found(),
        },
        _ => not_found(),
    };
    Some(response)
}

fn accepted() -> Response {
    Response::json(202, &json!({"status": "OK"}))
}

fn not_found() -> Response {
    Response::json(
        404,
        &json!({"errorType": "NotFound", "errorMessage": "unknown Runtime API route"}),
    )
}

async fn next_invocation(shared: &Shared) -> Response {
    shared.status.send_modify(|s| {
        s.first_next.get_or_insert_with(Instant::now);
    });
    // One poller at a time, as in Lambda; the lock also keeps the receiver.
    let pending = shared.queue_rx.lock().await.recv().await;
    let Some(pending) = pending else {
        return Response::new(500);
    };
    if let Ok(mut in_flight) = shared.in_flight.lock() {
        in_flight.insert(pending.request_id.clone(), pending.reply);
    }
    let trace_id = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        epoch_ms(SystemTime::now()) / 1000,
        u128::from(random_u64()) << 32 | u128::from(random_u64() as u32),
        random_u64()
    );
    Response::new(200)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &pending.request_id)
        .header(
            "lambda-runtime-deadline-ms",
            &pending.deadline_ms.to_string(),
        )
        .header("lambda-runtime-invoked-function-arn", &shared.function_arn)
        .header("lambda-runtime-trace-id", &trace_id)
        .body(pending.body)
}

fn complete(shared: &Shared, request_id: &str, outcome: Result<Value, LambdaError>) -> Response {
    shared.status.send_modify(|s| {
        s.first_response.get_or_insert_with(Instant::now);
    });
    let reply = shared
        .in_flight
        .lock()
        .ok()
        .and_then(|mut in_flight| in_flight.remove(request_id));
    match reply {
        Some(reply) => {
            // The invoker may have timed out and gone: nothing to do then.
            let _ = reply.send(outcome);
            accepted()
        }
        None => Response::json(
            400,
            &json!({
                "errorType": "InvalidRequestID",
                "errorMessage": format!("unknown request id {request_id}"),
            }),
        ),
    }
}

/// `{"errorType", "errorMessage"}` from the body, falling back to the
/// `Lambda-Runtime-Function-Error-Type` header and the raw body.
fn parse_error(request: &Request) -> LambdaError {
    let body = &request.body;
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let header_type = request
        .header("lambda-runtime-function-error-type")
        .map(str::to_string);
    LambdaError {
        error_type: parsed
            .get("errorType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(header_type)
            .unwrap_or_else(|| "Unknown".into()),
        error_message: parsed
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

fn epoch_ms(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

// --- Binaries ------------------------------------------------------------------

/// `$KILN_BIN_DIR` (relative paths are taken from the workspace root), if
/// set: where benchmarks and `make run` take prebuilt (release) binaries.
pub fn bin_dir_override() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_BIN_DIR").filter(|d| !d.is_empty())?;
    let dir = PathBuf::from(dir);
    Some(if dir.is_absolute() {
        dir
    } else {
        workspace_root().join(dir)
    })
}

/// The binary of the function `name`: `$KILN_BIN_DIR/<name>` if that is set
/// (used as is), otherwise the debug build in the target directory. That one
/// is used as is when it is newer than everything it is built from (the
/// workspace manifest and lock, the manifests and sources of `shared` and
/// `functions/<name>`), as after `make test`; otherwise [`BUILD_BINARIES`]
/// runs, once per test process. Panics if it cannot be built.
pub fn binary_path(name: &str) -> PathBuf {
    match try_binary_path(name) {
        Ok(path) => path,
        Err(err) => panic!("{err}"),
    }
}

/// [`binary_path`], returning the build failure instead of panicking.
pub fn try_binary_path(name: &str) -> Result<PathBuf, HarnessError> {
    if let Some(dir) = bin_dir_override() {
        let path = dir.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError(format!(
                "{} does not exist (KILN_BIN_DIR={}): build it with `cargo build --release -p {name}`",
                path.display(),
                dir.display()
            )))
        };
    }
    type Built = Arc<OnceLock<Result<PathBuf, HarnessError>>>;
    static BUILT: OnceLock<Mutex<HashMap<String, Built>>> = OnceLock::new();
    let cell = {
        let mut built = BUILT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(built.entry(name.to_string()).or_default())
    };
    cell.get_or_init(|| {
        let path = target_dir().join("debug").join(name);
        if is_fresh(&path, name) {
            Ok(path)
        } else {
            build_debug_binary(name)
        }
    })
    .clone()
}

/// Whether `binary` is newer than every input of the function `name`, so
/// a test process need not even ask cargo (which would wait for the build
/// lock while another build runs).
fn is_fresh(binary: &Path, name: &str) -> bool {
    let root = workspace_root();
    let function = root.join("functions").join(name);
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    if !function.is_dir() {
        return false;
    }
    let inputs = [
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
        root.join("shared/Cargo.toml"),
        root.join("shared/src"),
        function.join("Cargo.toml"),
        function.join("src"),
    ];
    inputs
        .iter()
        .all(|input| newest_change(input).is_some_and(|t| t <= built))
}

/// The latest modification time of a file or of anything under a directory.
fn newest_change(path: &Path) -> Option<SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    let mut newest = metadata.modified().ok()?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).ok()? {
            let entry = entry.ok()?;
            newest = newest.max(newest_change(&entry.path())?);
        }
    }
    Some(newest)
}

/// The build that makes the function binaries: every binary of the
/// workspace, with the tests selected too, so cargo resolves features
/// exactly as for `cargo nextest run --workspace --lib --bins --tests` (what
/// `make test` runs) and reuses that build's dependencies instead of
/// compiling the SDK again with another feature set.
pub const BUILD_BINARIES: [&str; 5] = ["build", "--workspace", "--bins", "--tests", "--quiet"];

fn build_debug_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command = format!("cargo {}", BUILD_BINARIES.join(" "));
    let output = std::process::Command::new(cargo)
        .args(BUILD_BINARIES)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError(format!("running {command}: {e}")))?;
    if !output.status.success() {
        return Err(HarnessError(format!(
            "{command} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let path = target_dir().join("debug").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError(format!(
            "{command} succeeded but {} is missing",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_come_from_the_body_or_the_header() {
        let post = |headers: Vec<(String, String)>, body: &[u8]| Request {
            method: "POST".into(),
            target: "/2018-06-01/runtime/init/error".into(),
            headers,
            body: body.to_vec(),
            close: false,
        };
        let body = br#"{"errorType":"SignatureMismatch","errorMessage":"bad"}"#;
        assert_eq!(
            parse_error(&post(Vec::new(), body)),
            LambdaError {
                error_type: "SignatureMismatch".into(),
                error_message: "bad".into()
            }
        );
        let typed = vec![(
            "lambda-runtime-function-error-type".to_string(),
            "Runtime.InitError".to_string(),
        )];
        let error = parse_error(&post(typed, b"not json"));
        assert_eq!(error.error_type, "Runtime.InitError");
        assert_eq!(error.error_message, "not json");
    }
}
