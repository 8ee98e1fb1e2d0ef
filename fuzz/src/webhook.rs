//! `webhook_request`: a whole API Gateway request through deploy-trigger's
//! `handle`, with in-memory secrets and publisher.

use std::sync::OnceLock;

use base64::Engine;
use deploy_trigger::{Deps, handle, signature};
use http::{HeaderMap, HeaderName, HeaderValue};
use kiln::secrets::fake::FakeSecrets;
use kiln::sns::fake::RecordingPublisher;
use kiln::{Metrics, SecretCache, VersionStage};
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;

use crate::{PREVIOUS_SECRET, SECRET, SECRET_ARN};

/// How the fuzzed request is dressed.
#[derive(Debug, Clone, Copy)]
pub struct Flags(pub u8);

impl Flags {
    /// Sign with the current secret (else the previous one, or forged).
    fn sign_current(self) -> bool {
        self.0 & 0x01 != 0
    }
    fn sign_previous(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// Send the body base64-encoded, as API Gateway does for binary bodies.
    fn base64(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// Send the JSON as a form's `payload` field.
    fn form(self) -> bool {
        self.0 & 0x08 != 0
    }
    fn omit_delivery(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// Repeat the signature header.
    fn repeat_signature(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// Restrict the repositories allowed.
    fn restricted(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// Use the body bytes themselves as the signature header value.
    fn raw_signature(self) -> bool {
        self.0 & 0x80 != 0
    }
    fn signed(self) -> bool {
        (self.sign_current() || self.sign_previous()) && !self.raw_signature()
    }
}

/// Splits `<flags><event>\n<body>`.
pub fn split(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&flags, rest) = data.split_first()?;
    let newline = rest.iter().position(|b| *b == b'\n')?;
    Some((flags, &rest[..newline], &rest[newline + 1..]))
}

/// The statuses deploy-trigger documents.
const STATUSES: [i64; 9] = [200, 202, 400, 401, 403, 413, 415, 502, 503];

pub fn check(flags: Flags, event: &[u8], payload: &[u8]) {
    let runtime = runtime();
    let publisher = RecordingPublisher::new();
    let secrets = FakeSecrets::new()
        .with(SECRET_ARN, VersionStage::Current, SECRET)
        .with(SECRET_ARN, VersionStage::Previous, PREVIOUS_SECRET);
    let deps = Deps {
        config: crate::trigger_config(flags.restricted()),
        secrets: SecretCache::new(secrets),
        publisher,
        metrics: Metrics::in_memory("deploy-trigger"),
    };
    let request = build_request(flags, event, payload);
    let response = runtime.block_on(handle(&deps, request));

    let status = response.status_code;
    assert!(STATUSES.contains(&status), "undocumented status {status}");
    let body = match &response.body {
        Some(Body::Text(text)) => text.clone(),
        other => panic!("reply body is not text: {other:?}"),
    };
    let reply: serde_json::Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(e) => panic!("reply is not JSON ({e}): {body}"),
    };
    assert!(
        !body.contains(SECRET) && !body.contains(PREVIOUS_SECRET),
        "secret in reply"
    );

    let published = deps.publisher.published();
    let queued = reply["status"] == "queued";
    assert_eq!(
        published.len(),
        usize::from(queued),
        "published {published:?} for {body}"
    );
    if queued {
        assert_eq!(status, 200);
        assert!(reply["message_id"].is_string());
    }
    if reply["status"] == "skipped" {
        assert_eq!(status, 202);
        assert!(
            reply["rule"] == "skip-marker" || reply["rule"] == "path-filter",
            "{body}"
        );
    }
    if !flags.signed() {
        assert!(status >= 400, "an unsigned request got {status}: {body}");
    }
}

fn build_request(flags: Flags, event: &[u8], payload: &[u8]) -> ApiGatewayV2httpRequest {
    let body: Vec<u8> = if flags.form() {
        let encoded: String = form_encode(payload);
        format!("payload={encoded}").into_bytes()
    } else {
        payload.to_vec()
    };
    // A text body is a string: invalid UTF-8 can only arrive base64-encoded.
    // Sign exactly the bytes that are sent.
    let body = if flags.base64() {
        body
    } else {
        String::from_utf8_lossy(&body).into_owned().into_bytes()
    };
    let mut headers = HeaderMap::new();
    let mut insert = |name: &'static str, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    };
    if !flags.omit_delivery() {
        insert("x-github-delivery", b"72d3162e-cc78-11e3-81ab-4c9367dc0958");
    }
    insert("x-github-event", event);
    insert(
        "content-type",
        if flags.form() {
            b"application/x-www-form-urlencoded"
        } else {
            b"application/json"
        },
    );
    let signature = if flags.raw_signature() {
        payload.iter().take(80).copied().collect()
    } else if flags.sign_current() {
        signature::sign(SECRET.as_bytes(), &body).into_bytes()
    } else if flags.sign_previous() {
        signature::sign(PREVIOUS_SECRET.as_bytes(), &body).into_bytes()
    } else {
        signature::sign(b"not the secret", &body).into_bytes()
    };
    insert("x-hub-signature-256", &signature);
    if flags.repeat_signature() {
        insert("x-hub-signature-256", &signature);
    }

    let mut request = ApiGatewayV2httpRequest::default();
    request.headers = headers;
    if flags.base64() {
        request.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
        request.is_base64_encoded = true;
    } else {
        request.body = Some(String::from_utf8_lossy(&body).into_owned());
    }
    request
}

fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(
        || match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(e) => panic!("tokio runtime: {e}"),
        },
    )
}
