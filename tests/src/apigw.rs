//! A local API Gateway HTTP API (payload format 2.0) in front of a function.
//!
//! Real HTTP requests to `http://127.0.0.1:<port><route>` become the event
//! API Gateway would build ([`crate::fixtures::apigw_v2_request`]), the
//! function answers through the emulated Runtime API, and its answer becomes
//! the HTTP response under API Gateway's rules: an object with `statusCode`
//! is a full response, anything else is a 200 JSON body; a function error is
//! a 500 and a timeout a 503. This is what lets `curl` (or GitHub's own
//! redelivery tooling) talk to deploy-trigger on this machine.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::HarnessError;
use crate::fixtures::apigw_v2_request;
use crate::http_server::{self, Request, Response};
use crate::lambda::LambdaFunction;

/// The local endpoint; stops when dropped.
pub struct ApiGateway {
    addr: SocketAddr,
    route: String,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ApiGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiGateway")
            .field("addr", &self.addr)
            .field("route", &self.route)
            .finish()
    }
}

struct Route {
    method: String,
    path: String,
    function: Arc<LambdaFunction>,
}

impl ApiGateway {
    /// Serves `POST <path>` (e.g. `/webhook`) on 127.0.0.1 on a free port,
    /// integrated with `function`. Other routes get API Gateway's 404.
    pub async fn start(
        path: &str,
        function: Arc<LambdaFunction>,
    ) -> Result<ApiGateway, HarnessError> {
        let (listener, addr) = http_server::bind_loopback()
            .await
            .map_err(|e| HarnessError(format!("binding the API Gateway endpoint: {e}")))?;
        let route = Arc::new(Route {
            method: "POST".into(),
            path: path.to_string(),
            function,
        });
        let task = http_server::serve(listener, move |request| proxy(Arc::clone(&route), request));
        Ok(ApiGateway {
            addr,
            route: path.to_string(),
            task,
        })
    }

    /// The URL of the route, e.g. `http://127.0.0.1:40123/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.route)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn message(status: u16, text: &str) -> Response {
    Response::json(status, &json!({ "message": text }))
}

async fn proxy(route: Arc<Route>, request: Request) -> Option<Response> {
    if request.method != route.method || request.path() != route.path {
        return Some(message(404, "Not Found"));
    }
    let content_type = request.header("content-type").unwrap_or_default();
    let base64 = is_binary(content_type) || std::str::from_utf8(&request.body).is_err();
    let event = apigw_v2_request(
        &route.method,
        &route.path,
        request.query().unwrap_or_default(),
        request.headers.clone(),
        &request.body,
        base64,
    );
    Some(match route.function.invoke(event).await {
        Ok(answer) => into_http(answer),
        Err(err) if err.error_type == "Sandbox.Timedout" => message(503, "Service Unavailable"),
        Err(_) => message(500, "Internal Server Error"),
    })
}

/// API Gateway base64-encodes bodies it does not consider text.
fn is_binary(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    !(media.is_empty()
        || media.starts_with("text/")
        || media == "application/json"
        || media.ends_with("+json")
        || media == "application/xml"
        || media == "application/javascript")
}

/// A payload-2.0 function answer as an HTTP response.
fn into_http(answer: Value) -> Response {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        // Not a response object: API Gateway sends it as a JSON body.
        return Response::json(200, &answer);
    };
    let body = match answer.get("body").and_then(Value::as_str) {
        Some(text) if answer.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(_) => return message(500, "Internal Server Error"),
            }
        }
        Some(text) => text.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=999).contains(s))
        .unwrap_or(500);
    let mut response = Response::new(status).body(body);
    if let Some(headers) = answer.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if is_header_safe(name) && is_header_safe(&text) {
                response = response.header(name, &text);
            }
        }
    }
    if let Some(cookies) = answer.get("cookies").and_then(Value::as_array) {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            if is_header_safe(cookie) {
                response = response.header("set-cookie", cookie);
            }
        }
    }
    response
}

/// A header name or value that cannot break the response head (no line
/// breaks or other control characters), as hyper refused before.
fn is_header_safe(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(|c| c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_bodies_are_not_base64() {
        assert!(!is_binary("application/json"));
        assert!(!is_binary("application/json; charset=utf-8"));
        assert!(!is_binary("text/plain"));
        assert!(is_binary("application/x-www-form-urlencoded"));
        assert!(is_binary("application/octet-stream"));
    }

    #[test]
    fn answers_become_http_responses() {
        let full = into_http(json!({
            "statusCode": 401,
            "headers": {"content-type": "application/json", "x-bad": "a\r\nb"},
            "body": "{\"error\":\"bad signature\"}",
            "isBase64Encoded": false
        }));
        assert_eq!(full.status, 401);
        assert_eq!(
            full.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(&full.body[..], b"{\"error\":\"bad signature\"}");

        let bare = into_http(json!({"ok": true}));
        assert_eq!(bare.status, 200);
        assert_eq!(&bare.body[..], b"{\"ok\":true}");

        let binary = into_http(json!({"statusCode": 200, "body": "/wBh", "isBase64Encoded": true}));
        assert_eq!(&binary.body[..], &[0xff, 0x00, b'a']);
    }
}
