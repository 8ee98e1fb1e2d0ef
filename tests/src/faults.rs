//! A fault-injecting HTTP proxy between the AWS SDK and moto.
//!
//! [`FaultProxy::start`] listens on 127.0.0.1 and forwards each request to
//! the upstream (moto), unless its [`FaultPlan`] says to fail that call.
//! The faults are the ones AWS clients meet in production:
//!
//! - answers that never reach AWS: throttling (400 with the service's own
//!   error body: `<ErrorResponse>` XML for the awsQuery services, SNS,
//!   Auto Scaling and CloudWatch; `{"__type": ...}` JSON for the awsJson
//!   services, ECS and Secrets Manager), 500 `InternalFailure`, 503
//!   `ServiceUnavailable`, a connection reset, a stall;
//! - failures *after* AWS acted: the request is forwarded, then the reply
//!   is lost (reset), cut short (truncated body) or held (stall). These are
//!   the ones that test idempotency: the side effect happened, the caller
//!   doesn't know.
//!
//! Faults hit the first N matching calls or a seeded fraction of them, so a
//! run is repeatable. Every call is recorded ([`ProxyCall`]): service,
//! operation, request body, the fault applied and whether moto saw it.
//!
//! The same proxy, with no faults and a [`CallRecorder`], is how the
//! harness records every AWS call of every function process
//! ([`crate::call_record`]); it is then transparent: when the upstream does
//! not answer, the connection is reset, as if there were no proxy.
//!
//! The proxy reads requests with the harness's HTTP/1.1 server
//! ([`crate::http_server`]) and writes on the raw socket, which is what makes
//! resets and truncated replies possible.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::call_record::{CallRecorder, ObservedCall};
use crate::http_server::{Request, Response, forward, read_request};

/// What to do to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 with the service's throttling error; not forwarded.
    Throttle,
    /// 500 `InternalFailure`; not forwarded.
    ServerError,
    /// 503 `ServiceUnavailable`; not forwarded.
    Unavailable,
    /// The connection is reset before the request is forwarded.
    ResetBefore,
    /// No answer for this long, then the connection is closed; not
    /// forwarded.
    StallBefore(Duration),
    /// Forwarded (AWS acted), then the connection is reset: the reply is
    /// lost.
    ResetAfter,
    /// Forwarded, then half of the reply body is sent under the full
    /// `Content-Length` and the connection closed.
    TruncateAfter,
    /// Forwarded, then no answer for this long and the connection closed.
    StallAfter(Duration),
}

impl Fault {
    /// Whether moto sees the request (the side effect happens).
    pub fn forwards(self) -> bool {
        matches!(
            self,
            Fault::ResetAfter | Fault::TruncateAfter | Fault::StallAfter(_)
        )
    }

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Throttle => "throttle",
            Fault::ServerError => "500",
            Fault::Unavailable => "503",
            Fault::ResetBefore => "reset-before",
            Fault::StallBefore(_) => "stall-before",
            Fault::ResetAfter => "reset-after",
            Fault::TruncateAfter => "truncated-reply",
            Fault::StallAfter(_) => "stall-after",
        }
    }

    /// One of each kind, with stalls of `stall`.
    pub fn all(stall: Duration) -> [Fault; 8] {
        [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Unavailable,
            Fault::ResetBefore,
            Fault::StallBefore(stall),
            Fault::ResetAfter,
            Fault::TruncateAfter,
            Fault::StallAfter(stall),
        ]
    }
}

/// Which calls get a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// No faults.
    Never,
    /// The first `n` matching calls.
    FirstN(usize),
    /// Each matching call with this probability (seeded).
    Fraction(f64),
    /// Every matching call.
    Always,
}

/// The fault plan: which calls fail, and how.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    schedule: Schedule,
    /// The faults to use, in turn for `FirstN`/`Always`, at random for
    /// `Fraction`.
    faults: Vec<Fault>,
    /// Only calls to these operations (e.g. `RunTask`); empty means all.
    operations: Vec<String>,
    seed: u64,
}

impl FaultPlan {
    /// Forward everything.
    pub fn none() -> FaultPlan {
        FaultPlan {
            schedule: Schedule::Never,
            faults: Vec::new(),
            operations: Vec::new(),
            seed: 1,
        }
    }

    /// The first `n` calls get `fault`.
    pub fn first(n: usize, fault: Fault) -> FaultPlan {
        FaultPlan {
            schedule: Schedule::FirstN(n),
            faults: vec![fault],
            ..FaultPlan::none()
        }
    }

    /// Every call gets `fault`.
    pub fn always(fault: Fault) -> FaultPlan {
        FaultPlan {
            schedule: Schedule::Always,
            faults: vec![fault],
            ..FaultPlan::none()
        }
    }

    /// Each call fails with probability `fraction`, with a fault drawn from
    /// `faults`; `seed` makes the run repeatable.
    pub fn fraction(fraction: f64, faults: &[Fault], seed: u64) -> FaultPlan {
        FaultPlan {
            schedule: Schedule::Fraction(fraction),
            faults: faults.to_vec(),
            seed,
            ..FaultPlan::none()
        }
    }

    /// Restricts the plan to these operations (`Publish`, `RunTask`, ...).
    pub fn on(mut self, operations: &[&str]) -> FaultPlan {
        self.operations = operations.iter().map(|o| o.to_string()).collect();
        self
    }

    fn matches(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == operation)
    }
}

/// The wire protocol of a call, which decides the shape of error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsQuery (SNS, Auto Scaling, CloudWatch): form body, XML replies.
    Query,
    /// awsJson 1.0/1.1 (ECS, Secrets Manager): `X-Amz-Target`, JSON replies.
    Json,
    /// Anything else (moto's own API, REST services).
    Other,
}

/// One call seen by the proxy.
#[derive(Debug, Clone)]
pub struct ProxyCall {
    /// The signing name from the `Authorization` header (`sns`, `ecs`, ...).
    pub service: String,
    /// `Publish`, `RunTask`, `SetDesiredCapacity`, ...
    pub operation: String,
    pub protocol: Protocol,
    pub request_body: Vec<u8>,
    pub fault: Option<Fault>,
    /// Whether moto received the request.
    pub forwarded: bool,
    /// moto's status, when it answered.
    pub upstream_status: Option<u16>,
}

impl ProxyCall {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.request_body).into_owned()
    }
}

struct State {
    plan: FaultPlan,
    rng: u64,
    /// Matching calls seen so far (for `FirstN` and fault rotation).
    matched: usize,
    calls: Vec<ProxyCall>,
}

impl State {
    fn decide(&mut self, operation: &str) -> Option<Fault> {
        if self.plan.faults.is_empty() || !self.plan.matches(operation) {
            return None;
        }
        let index = self.matched;
        self.matched += 1;
        let pick = |i: usize, faults: &[Fault]| faults[i % faults.len()];
        match self.plan.schedule {
            Schedule::Never => None,
            Schedule::FirstN(n) => (index < n).then(|| pick(index, &self.plan.faults)),
            Schedule::Always => Some(pick(index, &self.plan.faults)),
            Schedule::Fraction(p) => {
                let roll = next_unit(&mut self.rng);
                if roll < p {
                    let choice =
                        (next_unit(&mut self.rng) * self.plan.faults.len() as f64) as usize;
                    Some(pick(choice, &self.plan.faults))
                } else {
                    None
                }
            }
        }
    }
}

/// splitmix64, mapped to [0, 1): small, seeded, good enough for schedules.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. moto's endpoint) on a free port.
    pub async fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        FaultProxy::start_with(upstream, plan, None).await
    }

    /// Starts a transparent proxy to `upstream` that writes every call to
    /// `recorder` (see [`crate::call_record`]).
    pub async fn start_recording(upstream: &str, recorder: Arc<CallRecorder>) -> FaultProxy {
        recorder.set_upstream(upstream);
        FaultProxy::start_with(upstream, FaultPlan::none(), Some(recorder)).await
    }

    async fn start_with(
        upstream: &str,
        plan: FaultPlan,
        recorder: Option<Arc<CallRecorder>>,
    ) -> FaultProxy {
        let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await {
            Ok(listener) => listener,
            Err(err) => panic!("binding 127.0.0.1:0: {err}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("local_addr: {err}"),
        };
        let seed = plan.seed;
        let state = Arc::new(Mutex::new(State {
            plan,
            rng: seed,
            matched: 0,
            calls: Vec::new(),
        }));
        let upstream = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|e| panic!("proxy client: {e}")),
            recorder,
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let upstream = Arc::clone(&upstream);
                tokio::spawn(async move {
                    serve_connection(stream, state, upstream).await;
                });
            }
        });
        FaultProxy { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan (and restarts its counters).
    pub fn set_plan(&self, plan: FaultPlan) {
        if let Ok(mut state) = self.state.lock() {
            state.rng = plan.seed;
            state.plan = plan;
            state.matched = 0;
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<ProxyCall> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// The calls to one operation.
    pub fn calls_to(&self, operation: &str) -> Vec<ProxyCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    /// How many calls got a fault.
    pub fn faults_injected(&self) -> usize {
        self.calls().iter().filter(|c| c.fault.is_some()).count()
    }

    /// SDK configuration that goes through this proxy. Retries are the
    /// SDK's standard mode with its default three attempts, as in
    /// production, but with millisecond back-off so tests don't sleep.
    pub async fn sdk_config(&self) -> SdkConfig {
        let config = crate::moto::sdk_config_for(&self.endpoint()).await;
        config.to_builder().retry_config(fast_retries()).build()
    }
}

/// The SDK's standard retry mode (three attempts) with short back-off.
pub fn fast_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(2))
        .with_max_backoff(Duration::from_millis(20))
}

struct Upstream {
    base: String,
    client: reqwest::Client,
    /// Set for a recording proxy, which is also transparent.
    recorder: Option<Arc<CallRecorder>>,
}

impl Upstream {
    async fn observe(&self, call: &ProxyCall, response: Option<&[u8]>) {
        if let Some(recorder) = &self.recorder {
            recorder
                .observe(&ObservedCall {
                    service: &call.service,
                    operation: &call.operation,
                    protocol: call.protocol,
                    body: &call.request_body,
                    status: call.upstream_status,
                    response,
                })
                .await;
        }
    }
}

/// How the proxy reads an AWS call off the wire.
trait AwsCall {
    fn protocol(&self) -> Protocol;
    /// The signing name in `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
    fn service(&self) -> String;
    fn operation(&self) -> String;
}

impl AwsCall for Request {
    fn protocol(&self) -> Protocol {
        let content_type = self.header("content-type").unwrap_or_default();
        if content_type.contains("x-amz-json") {
            Protocol::Json
        } else if content_type.contains("x-www-form-urlencoded")
            && !self.target.starts_with("/moto-api")
        {
            Protocol::Query
        } else {
            Protocol::Other
        }
    }

    fn service(&self) -> String {
        self.header("authorization")
            .and_then(|auth| auth.split("Credential=").nth(1))
            .and_then(|credential| credential.split('/').nth(3))
            .unwrap_or("unknown")
            .to_string()
    }

    fn operation(&self) -> String {
        match self.protocol() {
            Protocol::Json => self
                .header("x-amz-target")
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("unknown")
                .to_string(),
            Protocol::Query => String::from_utf8_lossy(&self.body)
                .split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
                .unwrap_or("unknown")
                .to_string(),
            Protocol::Other => format!("{} {}", self.method, self.target),
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    upstream: Arc<Upstream>,
) {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await {
            Some(request) => request,
            None => return,
        };
        let protocol = request.protocol();
        let operation = request.operation();
        let fault = match state.lock() {
            Ok(mut s) => s.decide(&operation),
            Err(_) => None,
        };
        let mut call = ProxyCall {
            service: request.service(),
            operation: operation.clone(),
            protocol,
            request_body: request.body.clone(),
            fault,
            forwarded: false,
            upstream_status: None,
        };

        if fault.is_some_and(|f| !f.forwards()) {
            upstream.observe(&call, None).await;
            record(&state, call.clone());
        }
        let keep_open = match fault {
            Some(Fault::Throttle) => {
                let (status, content_type, body) = if call.service == "dynamodb" {
                    dynamodb_throttling()
                } else {
                    throttling(protocol)
                };
                write_reply(&mut stream, status, content_type, &body).await
            }
            Some(Fault::ServerError) => {
                let (content_type, body) = error_body(
                    protocol,
                    "InternalFailure",
                    "We encountered an internal error. Please try again.",
                    "Receiver",
                );
                write_reply(&mut stream, 500, content_type, &body).await
            }
            Some(Fault::Unavailable) => {
                let (content_type, body) = error_body(
                    protocol,
                    "ServiceUnavailable",
                    "Service is unavailable. Please try again.",
                    "Receiver",
                );
                write_reply(&mut stream, 503, content_type, &body).await
            }
            Some(Fault::ResetBefore) => {
                reset(stream);
                return;
            }
            Some(Fault::StallBefore(stall)) => {
                tokio::time::sleep(stall).await;
                return;
            }
            Some(after) => {
                // Forward first: AWS acts, then the reply goes wrong.
                let reply = forward(&upstream.client, &upstream.base, &request).await;
                call.forwarded = true;
                call.upstream_status = reply.as_ref().map(|r| r.status);
                upstream
                    .observe(&call, reply.as_ref().map(|r| r.body.as_slice()))
                    .await;
                record(&state, call);
                match after {
                    Fault::ResetAfter => reset(stream),
                    Fault::TruncateAfter => {
                        if let Some(response) = reply {
                            let half = response.body.len() / 2;
                            let head = response.head(response.body.len());
                            let _ = stream.write_all(head.as_bytes()).await;
                            let _ = stream.write_all(&response.body[..half]).await;
                            let _ = stream.flush().await;
                        }
                        let _ = stream.shutdown().await;
                    }
                    Fault::StallAfter(stall) => {
                        tokio::time::sleep(stall).await;
                    }
                    _ => {}
                }
                return;
            }
            None => {
                let reply = forward(&upstream.client, &upstream.base, &request).await;
                call.forwarded = true;
                call.upstream_status = reply.as_ref().map(|r| r.status);
                // Written down before the reply goes out: once the function
                // has its answer, its process may be stopped at any moment.
                upstream
                    .observe(&call, reply.as_ref().map(|r| r.body.as_slice()))
                    .await;
                record(&state, call);
                match reply {
                    Some(response) => response.write_to(&mut stream).await,
                    None if upstream.recorder.is_some() => {
                        // Transparent: an unreachable AWS stays unreachable.
                        reset(stream);
                        return;
                    }
                    None => {
                        let (content_type, body) =
                            error_body(protocol, "BadGateway", "moto did not answer", "Receiver");
                        write_reply(&mut stream, 502, content_type, &body).await
                    }
                }
            }
        };
        if !keep_open {
            return;
        }
    }
}

fn record(state: &Mutex<State>, call: ProxyCall) {
    if let Ok(mut s) = state.lock() {
        s.calls.push(call);
    }
}

/// Closes with RST rather than FIN, as a dropped connection looks to the
/// client. A zero linger never blocks on close.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn write_reply(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> bool {
    Response::new(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "fault-proxy")
        .body(body)
        .write_to(stream)
        .await
}

/// The throttling answer each protocol's services give: `Throttling` for
/// the awsQuery services (as Auto Scaling, SNS and CloudWatch's front end
/// sends it), `ThrottlingException` for the awsJson ones.
pub fn throttling(protocol: Protocol) -> (u16, &'static str, Vec<u8>) {
    let (content_type, body) = match protocol {
        Protocol::Json => error_body(protocol, "ThrottlingException", "Rate exceeded", "Sender"),
        _ => error_body(protocol, "Throttling", "Rate exceeded", "Sender"),
    };
    (400, content_type, body)
}

/// DynamoDB's throttling answer (awsJson 1.0, the error type namespaced),
/// which the SDK retries as a throttling error.
pub fn dynamodb_throttling() -> (u16, &'static str, Vec<u8>) {
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
    });
    (
        400,
        "application/x-amz-json-1.0",
        body.to_string().into_bytes(),
    )
}

/// An error body in the protocol's shape.
pub fn error_body(
    protocol: Protocol,
    code: &str,
    message: &str,
    fault_type: &str,
) -> (&'static str, Vec<u8>) {
    match protocol {
        Protocol::Json => (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": code, "message": message})
                .to_string()
                .into_bytes(),
        ),
        Protocol::Query | Protocol::Other => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{fault_type}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            )
            .into_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_pick_the_right_calls() {
        let mut state = State {
            plan: FaultPlan::first(2, Fault::Throttle).on(&["RunTask"]),
            rng: 1,
            matched: 0,
            calls: Vec::new(),
        };
        assert_eq!(state.decide("DescribeTasks"), None);
        assert_eq!(state.decide("RunTask"), Some(Fault::Throttle));
        assert_eq!(state.decide("RunTask"), Some(Fault::Throttle));
        assert_eq!(state.decide("RunTask"), None);

        let plan = FaultPlan::fraction(0.25, &[Fault::ServerError, Fault::ResetAfter], 42);
        let mut a = State {
            rng: plan.seed,
            plan: plan.clone(),
            matched: 0,
            calls: Vec::new(),
        };
        let mut b = State {
            rng: plan.seed,
            plan,
            matched: 0,
            calls: Vec::new(),
        };
        let run_a: Vec<_> = (0..400).map(|_| a.decide("Publish")).collect();
        let run_b: Vec<_> = (0..400).map(|_| b.decide("Publish")).collect();
        assert_eq!(run_a, run_b, "a seed gives the same run");
        let hit = run_a.iter().filter(|f| f.is_some()).count();
        assert!((60..140).contains(&hit), "{hit} of 400 at 25%");
        assert!(
            run_a.contains(&Some(Fault::ServerError)) && run_a.contains(&Some(Fault::ResetAfter))
        );
    }

    #[test]
    fn error_bodies_follow_the_protocol() {
        let (status, content_type, body) = throttling(Protocol::Json);
        assert_eq!(status, 400);
        assert_eq!(content_type, "application/x-amz-json-1.1");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["__type"], "ThrottlingException");
        let (status, content_type, body) = dynamodb_throttling();
        assert_eq!((status, content_type), (400, "application/x-amz-json-1.0"));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            value["__type"]
                .as_str()
                .unwrap()
                .ends_with("#ProvisionedThroughputExceededException")
        );
        let (_, content_type, body) = throttling(Protocol::Query);
        assert_eq!(content_type, "text/xml");
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("<Code>Throttling</Code>")
        );
    }
}
