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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::HarnessError;
use crate::http_server::{self, Request, Response, forward};

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

/// A first answer, kept per token.
struct FirstRun {
    request: Value,
    answer: Response,
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
        let (listener, addr) = http_server::bind_loopback()
            .await
            .map_err(|e| HarnessError(format!("binding the ECS front: {e}")))?;
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
        let state = Arc::clone(&shared);
        let task = http_server::serve(listener, move |request| handle(Arc::clone(&state), request));
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

async fn handle(shared: Arc<Shared>, request: Request) -> Option<Response> {
    let is_run_task = request
        .header("x-amz-target")
        .is_some_and(|t| t.ends_with(".RunTask"));
    if !is_run_task {
        return Some(forwarded(
            forward(&shared.client, &shared.upstream, &request).await,
        ));
    }

    let input: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
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
        let reply = forward(&shared.client, &shared.upstream, &request).await;
        record(outcome_of(reply.as_ref()));
        return Some(forwarded(reply));
    };

    // One RunTask per token at a time, as ECS serialises them.
    let mut tokens = shared.tokens.lock().await;
    if let Some(first) = tokens.get(&token) {
        if first.request == input {
            record(RunTaskOutcome::Replayed(first.task_arns.clone()));
            return Some(first.answer.clone());
        }
        record(RunTaskOutcome::Conflict(first.task_arns.clone()));
        let body = json!({
            "__type": "ConflictException",
            "message": "The specified client token has already been used in a RunTask request with different parameters.",
            "resourceIds": first.task_arns,
        });
        return Some(
            Response::new(400)
                .header("content-type", "application/x-amz-json-1.1")
                .body(body.to_string()),
        );
    }
    let reply = forward(&shared.client, &shared.upstream, &request).await;
    let outcome = outcome_of(reply.as_ref());
    record(outcome.clone());
    if let (RunTaskOutcome::Started(task_arns), Some(answer)) = (outcome, &reply) {
        tokens.insert(
            token,
            FirstRun {
                request: input,
                answer: answer.clone(),
                task_arns,
            },
        );
    }
    Some(forwarded(reply))
}

/// moto's answer, or 502 when it gave none.
fn forwarded(reply: Option<Response>) -> Response {
    reply.unwrap_or_else(|| Response::new(502))
}

fn outcome_of(reply: Option<&Response>) -> RunTaskOutcome {
    let Some(reply) = reply else {
        return RunTaskOutcome::Failed(None);
    };
    let task_arns: Vec<String> = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("tasks").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("taskArn").and_then(Value::as_str).map(str::to_string))
        .collect();
    if reply.status == 200 && !task_arns.is_empty() {
        RunTaskOutcome::Started(task_arns)
    } else {
        RunTaskOutcome::Failed(Some(reply.status))
    }
}
