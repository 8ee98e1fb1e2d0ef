//! A scriptable HTTP server on 127.0.0.1 that records every request.
//!
//! Slack's incoming webhook and GitHub's API are faked with it. Each request
//! is recorded (method, path, query, headers, body bytes), then answered by
//! the first of: the next queued [`Reply`], the responder function, the
//! default reply (200, empty body, unless changed). A reply can be delayed,
//! or can drop the connection without answering, which is how tests make
//! network failures.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::http_server::{self, Request, Response};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!(
                "{} {} body is not JSON ({err}): {}",
                self.method,
                self.path,
                self.body_text()
            ),
        }
    }
}

/// How to answer one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Close the connection instead of answering.
    pub drop_connection: bool,
}

impl Reply {
    /// An empty reply with this status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
            drop_connection: false,
        }
    }

    /// 200 with a text body (Slack answers `ok`).
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.as_bytes())
    }

    /// A JSON reply.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
    }

    /// No answer: the connection is closed once the request has been read.
    pub fn drop_connection() -> Reply {
        Reply {
            drop_connection: true,
            ..Reply::status(0)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

type Responder = dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync;

struct Script {
    queue: VecDeque<Reply>,
    responder: Option<Arc<Responder>>,
    default: Reply,
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    script: Mutex<Script>,
    arrived: Notify,
}

/// The recording server; stops when dropped.
pub struct RecordingServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RecordingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RecordingServer {
    /// Starts on 127.0.0.1 on a free port, answering 200 with an empty body.
    pub async fn start() -> RecordingServer {
        RecordingServer::start_with_default(Reply::status(200)).await
    }

    /// Starts with another default reply.
    pub async fn start_with_default(default: Reply) -> RecordingServer {
        let (listener, addr) = match http_server::bind_loopback().await {
            Ok(bound) => bound,
            Err(err) => panic!("binding 127.0.0.1:0: {err}"),
        };
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                responder: None,
                default,
            }),
            arrived: Notify::new(),
        });
        let state = Arc::clone(&shared);
        let task = http_server::serve(listener, move |request| {
            record_and_reply(Arc::clone(&state), request)
        });
        RecordingServer { addr, shared, task }
    }

    /// A GitHub API for deploy-exec's statuses: every status is accepted
    /// (201 `{"id": 1}`) and none is listed back (GET: 200 `[]`), so no
    /// task ever has a final status yet.
    pub async fn start_github() -> RecordingServer {
        let github =
            RecordingServer::start_with_default(Reply::json(201, &serde_json::json!({"id": 1})))
                .await;
        github.respond_with(|request| {
            (request.method == "GET").then(|| Reply::json(200, &serde_json::json!([])))
        });
        github
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port><path>` (`path` starts with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next request not yet answered.
    pub fn push(&self, reply: Reply) {
        self.with_script(|script| script.queue.push_back(reply));
    }

    /// Queues several replies, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        self.with_script(|script| script.queue.extend(replies));
    }

    /// Answers requests the queue does not cover: `Some(reply)` answers,
    /// `None` falls through to the default.
    pub fn respond_with(
        &self,
        responder: impl Fn(&RecordedRequest) -> Option<Reply> + Send + Sync + 'static,
    ) {
        self.with_script(|script| script.responder = Some(Arc::new(responder)));
    }

    /// Changes the default reply.
    pub fn set_default(&self, reply: Reply) {
        self.with_script(|script| script.default = reply);
    }

    fn with_script(&self, f: impl FnOnce(&mut Script)) {
        let mut script = lock(&self.shared.script);
        f(&mut script);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Waits until at least `count` requests arrived, up to `timeout`;
    /// panics otherwise. Returns all requests.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                panic!(
                    "expected {count} request(s) on {}, got {}: {requests:#?}",
                    self.url(),
                    requests.len()
                );
            }
        }
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the requests from the next
    // assertion.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn record_and_reply(shared: Arc<Shared>, request: Request) -> Option<Response> {
    let recorded = RecordedRequest {
        method: request.method.clone(),
        path: request.path().to_string(),
        query: request.query().map(str::to_string),
        headers: request.headers,
        body: request.body,
    };
    let reply = {
        let mut script = lock(&shared.script);
        match script.queue.pop_front() {
            Some(reply) => reply,
            None => script
                .responder
                .clone()
                .and_then(|responder| responder(&recorded))
                .unwrap_or_else(|| script.default.clone()),
        }
    };
    lock(&shared.requests).push(recorded);
    shared.arrived.notify_waiters();

    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if reply.drop_connection {
        return None;
    }
    Some(Response {
        status: reply.status.clamp(100, 999),
        headers: reply.headers,
        body: reply.body,
    })
}
