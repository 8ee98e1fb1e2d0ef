//! A local API Gateway HTTP API (payload format 2.0) in front of a function.
//!
//! Real HTTP requests to `http://127.0.0.1:<port><route>` become the event
//! API Gateway would build ([`crate::fixtures::apigw_v2_request`]), the
//! function answers through the emulated Runtime API, and its answer becomes
//! the HTTP response under API Gateway's rules: an object with `statusCode`
//! is a full response, anything else is a 200 JSON body; a function error is
//! a 500 and a timeout a 503. This is what lets `curl` (or GitHub's own
//! redelivery tooling) talk to deploy-trigger on this machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::HarnessError;
use crate::fixtures::apigw_v2_request;
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
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| HarnessError(format!("binding the API Gateway endpoint: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError(format!("API Gateway address: {e}")))?;
        let route = Arc::new(Route {
            method: "POST".into(),
            path: path.to_string(),
            function,
        });
        let app = Router::new()
            .fallback(proxy)
            .layer(DefaultBodyLimit::disable())
            .with_state(route);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
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

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

async fn proxy(State(route): State<Arc<Route>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method.as_str() != route.method || parts.uri.path() != route.path {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let base64 = is_binary(content_type) || std::str::from_utf8(&body).is_err();
    let event = apigw_v2_request(
        &route.method,
        &route.path,
        parts.uri.query().unwrap_or_default(),
        headers,
        &body,
        base64,
    );
    match route.function.invoke(event).await {
        Ok(answer) => into_http(answer),
        Err(err) if err.error_type == "Sandbox.Timedout" => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(_) => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
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
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response();
    };
    let body = match answer.get("body").and_then(Value::as_str) {
        Some(text) if answer.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => Bytes::from(bytes),
                Err(_) => {
                    return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                }
            }
        }
        Some(text) => Bytes::from(text.to_string()),
        None => Bytes::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(headers) = answer.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&text),
            ) {
                response.headers_mut().append(name, value);
            }
        }
    }
    if let Some(cookies) = answer.get("cookies").and_then(Value::as_array) {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }
    response
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

    #[tokio::test]
    async fn answers_become_http_responses() {
        let full = into_http(json!({
            "statusCode": 401,
            "headers": {"content-type": "application/json"},
            "body": "{\"error\":\"bad signature\"}",
            "isBase64Encoded": false
        }));
        assert_eq!(full.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(full.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(full.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"error\":\"bad signature\"}");

        let bare = into_http(json!({"ok": true}));
        assert_eq!(bare.status(), StatusCode::OK);
        let body = axum::body::to_bytes(bare.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"ok\":true}");

        let binary = into_http(json!({"statusCode": 200, "body": "/wBh", "isBase64Encoded": true}));
        let body = axum::body::to_bytes(binary.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], &[0xff, 0x00, b'a']);
    }
}
