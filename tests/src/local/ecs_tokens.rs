//! ECS's `clientToken`, which moto ignores, kept in front of moto.
//!
//! deploy-exec's ECS calls go here (`AWS_ENDPOINT_URL_ECS`) and are
//! forwarded to moto unchanged, except `RunTask` with a token seen before,
//! answered as ECS does: the same request again gets the first answer (no
//! second task), a different request under the same token gets a
//! `ConflictException` naming the tasks already started. Every `RunTask` is
//! recorded with its token, which is how the end-to-end tests check that a
//! redelivered webhook reuses its original's token.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::HarnessError;

/// What became of one `RunTask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTaskOutcome {
    /// Forwarded; moto started these tasks.
    Started(Vec<String>),
    /// The same request under a known token: the first answer again.
    Replayed(Vec<String>),
    /// Another request under a known token: `ConflictException`.
    Conflict(Vec<String>),
    /// moto failed it (status), or did not answer (`None`).
    Failed(Option<u16>),
}

/// One `RunTask` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTaskCall {
    pub client_token: Option<String>,
    pub started_by: Option<String>,
    pub outcome: RunTaskOutcome,
}

/// An upstream answer: status, headers, body.
type Upstream = (u16, Vec<(String, String)>, Bytes);

/// A first answer, kept per token.
struct FirstRun {
    request: Value,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    task_arns: Vec<String>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    tokens: tokio::sync::Mutex<HashMap<String, FirstRun>>,
    calls: Mutex<Vec<RunTaskCall>>,
}

/// The front; stops when dropped.
pub struct EcsTokens {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for EcsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsTokens")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for EcsTokens {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EcsTokens {
    /// Listens on 127.0.0.1 on a free port, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Result<EcsTokens, HarnessError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| HarnessError(format!("binding the ECS front: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError(format!("ECS front address: {e}")))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| HarnessError(format!("ECS front client: {e}")))?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(EcsTokens { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_ECS`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every `RunTask` so far, in arrival order.
    pub fn run_task_calls(&self) -> Vec<RunTaskCall> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let is_run_task = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.ends_with(".RunTask"));
    if !is_run_task {
        return match forward(&shared, &parts.method, &path, &parts.headers, &body).await {
            Some((status, headers, body)) => response(status, &headers, body),
            None => StatusCode::BAD_GATEWAY.into_response(),
        };
    }

    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |key: &str| input.get(key).and_then(Value::as_str).map(str::to_string);
    let client_token = text("clientToken");
    let started_by = text("startedBy");
    let record = |outcome: RunTaskOutcome| {
        if let Ok(mut calls) = shared.calls.lock() {
            calls.push(RunTaskCall {
                client_token: client_token.clone(),
                started_by: started_by.clone(),
                outcome,
            });
        }
    };
    let Some(token) = client_token.clone() else {
        let reply = forward(&shared, &parts.method, &path, &parts.headers, &body).await;
        record(outcome_of(reply.as_ref()));
        return match reply {
            Some((status, headers, body)) => response(status, &headers, body),
            None => StatusCode::BAD_GATEWAY.into_response(),
        };
    };

    // One RunTask per token at a time, as ECS serialises them.
    let mut tokens = shared.tokens.lock().await;
    if let Some(first) = tokens.get(&token) {
        if first.request == input {
            record(RunTaskOutcome::Replayed(first.task_arns.clone()));
            return response(first.status, &first.headers, first.body.clone());
        }
        record(RunTaskOutcome::Conflict(first.task_arns.clone()));
        let body = json!({
            "__type": "ConflictException",
            "message": "The specified client token has already been used in a RunTask request with different parameters.",
            "resourceIds": first.task_arns,
        });
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            body.to_string(),
        )
            .into_response();
    }
    let reply = forward(&shared, &parts.method, &path, &parts.headers, &body).await;
    let outcome = outcome_of(reply.as_ref());
    record(outcome.clone());
    let Some((status, headers, body)) = reply else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if let RunTaskOutcome::Started(task_arns) = outcome {
        tokens.insert(
            token,
            FirstRun {
                request: input,
                status,
                headers: headers.clone(),
                body: body.clone(),
                task_arns,
            },
        );
    }
    response(status, &headers, body)
}

fn outcome_of(reply: Option<&Upstream>) -> RunTaskOutcome {
    let Some((status, _, body)) = reply else {
        return RunTaskOutcome::Failed(None);
    };
    let task_arns: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("tasks").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("taskArn").and_then(Value::as_str).map(str::to_string))
        .collect();
    if *status == 200 && !task_arns.is_empty() {
        RunTaskOutcome::Started(task_arns)
    } else {
        RunTaskOutcome::Failed(Some(*status))
    }
}

async fn forward(
    shared: &Shared,
    method: &axum::http::Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Upstream> {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).ok()?;
    let mut builder = shared
        .client
        .request(method, format!("{}{path}", shared.upstream));
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "expect"
        ) {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let reply = builder.body(body.clone()).send().await.ok()?;
    let status = reply.status().as_u16();
    let headers = reply
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
            )
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = reply.bytes().await.ok()?;
    Some((status, headers, body))
}

fn response(status: u16, headers: &[(String, String)], body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
