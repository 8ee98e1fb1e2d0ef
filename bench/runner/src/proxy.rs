//! A timing proxy in front of each downstream service (moto, the Slack and
//! GitHub sinks): it forwards every request unchanged and records when it
//! arrived and when its answer left, so the runner can tell the time a
//! function spends waiting on its downstream calls from its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Every downstream call seen by any proxy, as (arrived, answered).
#[derive(Debug, Default)]
pub struct Recorder {
    spans: Mutex<Vec<(Instant, Instant)>>,
}

impl Recorder {
    fn record(&self, start: Instant, end: Instant) {
        if let Ok(mut spans) = self.spans.lock() {
            spans.push((start, end));
        }
    }

    /// The wall time covered by the calls recorded since the last take
    /// (overlapping calls count once), and how many there were; clears them.
    pub fn take(&self) -> (Duration, usize) {
        let mut spans = match self.spans.lock() {
            Ok(mut spans) => std::mem::take(&mut *spans),
            Err(_) => return (Duration::ZERO, 0),
        };
        (union_length(&mut spans), spans.len())
    }
}

/// The total length of the union of intervals.
fn union_length(spans: &mut [(Instant, Instant)]) -> Duration {
    spans.sort_unstable_by_key(|span| span.0);
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for &(start, end) in spans.iter() {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

struct Upstream {
    base: String,
    client: reqwest::Client,
    recorder: Arc<Recorder>,
}

/// A running proxy; stops when dropped.
pub struct TimedProxy {
    url: String,
    task: JoinHandle<()>,
}

impl TimedProxy {
    /// Proxies `http://127.0.0.1:<free port>` to `upstream` (a base URL
    /// without a trailing slash).
    pub async fn start(upstream: &str, recorder: Arc<Recorder>) -> Result<TimedProxy, String> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| format!("binding a proxy port: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the proxy port: {e}"))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| format!("building the proxy's HTTP client: {e}"))?;
        let upstream = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            client,
            recorder,
        });
        let app = Router::new().fallback(forward).with_state(upstream);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TimedProxy {
            url: format!("http://{addr}"),
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TimedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that belong to one connection, not to the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::CONTENT_LENGTH
        || name == header::TE
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("reading the body: {e}")).into_response();
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outbound = upstream
        .client
        .request(parts.method, format!("{}{path}", upstream.base))
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outbound = outbound.header(name, value);
        }
    }
    let response = match outbound.send().await {
        Ok(response) => response,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response();
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream body: {e}")).into_response();
        }
    };
    let mut reply = Response::new(Body::from(bytes));
    *reply.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            reply.headers_mut().append(name, value.clone());
        }
    }
    upstream.recorder.record(started, Instant::now());
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_calls_count_once() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let mut spans = vec![
            (at(10), at(20)),
            (at(0), at(5)),
            (at(15), at(30)),
            (at(40), at(41)),
        ];
        assert_eq!(union_length(&mut spans), Duration::from_millis(5 + 20 + 1));
        assert_eq!(union_length(&mut []), Duration::ZERO);
    }
}
