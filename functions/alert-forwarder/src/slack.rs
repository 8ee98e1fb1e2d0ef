//! Delivery to a Slack incoming webhook.
//!
//! - [`SlackWebhook`] is the port (one HTTP POST); [`ReqwestWebhook`] is the
//!   adapter.
//! - [`deliver`] is the policy: success is a 2xx (Slack answers `200 ok`);
//!   `429` waits `Retry-After` if that fits in the time left, then retries;
//!   a 5xx or a network error is retried with doubling backoff a few
//!   times, then fails so Lambda retries the event and it can end in the
//!   dead-letter queue; any other status (`400 invalid_payload`, `404
//!   channel_not_found`, `410 channel_is_archived`, `403
//!   action_prohibited`, `404 no_service`, ...) fails at once with Slack's
//!   error string, because no retry can fix configuration.
//! - [`webhook_url`] reads the URL out of the secret's value.
//!
//! The webhook URL is a credential: it lives in a [`SecretString`], and no
//! error or log line carries it (reqwest's errors are stripped of their URL,
//! and any text that still holds it is scrubbed).

use kiln::http::LazyHttpClient;
use kiln::tls::TrustedRoots;
use std::future::Future;
use std::time::Duration;

use kiln::SecretString;
use time::OffsetDateTime;

use crate::clock::Clock;

/// What Slack answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackReply {
    pub status: u16,
    /// `Retry-After`, on a 429.
    pub retry_after: Option<Duration>,
    /// The body: `ok`, or Slack's error string such as `invalid_payload`.
    pub body: String,
}

/// The request never got an answer (connection refused, timeout, TLS).
/// The text never holds the webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// The port: one POST of a JSON body to the webhook.
pub trait SlackWebhook: Send + Sync {
    fn post(
        &self,
        url: &SecretString,
        body: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<SlackReply, TransportError>> + Send;
}

/// The reqwest adapter. Its HTTP client is built on the first post.
#[derive(Debug)]
pub struct ReqwestWebhook {
    client: LazyHttpClient,
}

impl ReqwestWebhook {
    /// Trusting Mozilla's roots only.
    pub fn new() -> Self {
        ReqwestWebhook::trusting(&TrustedRoots::mozilla())
    }

    /// Trusting `roots` (Mozilla's, plus `EXTRA_CA_CERTS_FILE`).
    pub fn trusting(roots: &TrustedRoots) -> Self {
        ReqwestWebhook {
            client: LazyHttpClient::new(roots, |builder| {
                builder
                    .user_agent(concat!("kiln-alert-forwarder/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(Duration::from_secs(5))
                    // A webhook never redirects; following one would send the
                    // message (and the URL's path) somewhere we didn't choose.
                    .redirect(reqwest::redirect::Policy::none())
            }),
        }
    }
}

impl Default for ReqwestWebhook {
    fn default() -> Self {
        ReqwestWebhook::new()
    }
}

impl SlackWebhook for ReqwestWebhook {
    async fn post(
        &self,
        url: &SecretString,
        body: &str,
        timeout: Duration,
    ) -> Result<SlackReply, TransportError> {
        let client = self
            .client
            .get()
            .map_err(|e| TransportError(reqwest_error(e, None)))?;
        let response = client
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| TransportError(reqwest_error(e, Some(url))))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .text()
            .await
            .map_err(|e| TransportError(reqwest_error(e, Some(url))))?;
        Ok(SlackReply {
            status,
            retry_after,
            body,
        })
    }
}

/// A reqwest error as text, without the URL reqwest would print.
fn reqwest_error(err: reqwest::Error, url: Option<&SecretString>) -> String {
    let kind = if err.is_timeout() {
        "timed out: "
    } else if err.is_connect() {
        "could not connect: "
    } else {
        ""
    };
    let text = format!("{kind}{}", kiln::aws::error_chain(&err.without_url()));
    match url {
        Some(url) => scrub(&text, url),
        None => text,
    }
}

/// Removes the webhook URL, and its secret path, from `text`.
pub fn scrub(text: &str, url: &SecretString) -> String {
    let url = url.expose();
    let mut text = text.replace(url, "[webhook URL]");
    // The path is the credential; a library might print it without the host.
    if let Some(path_start) = url
        .find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
    {
        let path = &url[path_start..];
        if path.len() > 1 {
            text = text.replace(path, "/[redacted]");
        }
    }
    text
}

/// `Retry-After` in seconds (Slack's form). HTTP dates are not worth the
/// code: an unparseable value falls back to the default wait.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, 429s included.
    pub attempts: u32,
    /// The first wait after a 5xx or network error; doubled each time.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The wait after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    /// The longest a single request may take.
    pub request_timeout: Duration,
    /// Time kept back from the invocation's deadline for the rest of the
    /// batch and the response.
    pub reserve: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            default_retry_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            reserve: Duration::from_secs(1),
        }
    }
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A configuration error on Slack's side: retrying can't help.
    #[error("Slack rejected the message: HTTP {status} {error}{}", hint(error))]
    Rejected { status: u16, error: String },
    /// Still rate limited, or the wait would not fit in the time left.
    #[error(
        "Slack rate-limited the webhook (Retry-After {}s) and the wait does not fit in the {}s left after {attempts} attempt(s)",
        retry_after.as_secs(),
        remaining.as_secs()
    )]
    RateLimited {
        retry_after: Duration,
        remaining: Duration,
        attempts: u32,
    },
    /// 5xx or network errors on every attempt.
    #[error("Slack is unavailable after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
}

impl DeliveryError {
    pub fn error_type(&self) -> &'static str {
        match self {
            DeliveryError::Rejected { .. } => "SlackRejected",
            DeliveryError::RateLimited { .. } => "SlackRateLimited",
            DeliveryError::Unavailable { .. } => "SlackUnavailable",
        }
    }

    /// Whether the webhook itself may be gone (revoked, or rotated in the
    /// secret), so the cached URL should be read again.
    pub fn webhook_may_have_changed(&self) -> bool {
        matches!(self, DeliveryError::Rejected { status, .. } if matches!(status, 401 | 403 | 404 | 410))
    }
}

/// What Slack's error strings mean, for the error message.
fn hint(error: &str) -> &'static str {
    match error {
        "invalid_payload" => {
            " (the message is not valid Block Kit; it is kept in the dead-letter queue)"
        }
        "channel_not_found" => " (the webhook's channel was deleted)",
        "channel_is_archived" => {
            " (the webhook's channel is archived: unarchive it or create a new webhook)"
        }
        "action_prohibited" => " (a workspace admin restricted posting to the channel)",
        "posting_to_general_channel_denied" => " (only admins may post to that channel)",
        "no_service" | "no_service_id" => {
            " (the webhook was disabled or removed: create a new one and update the secret)"
        }
        "invalid_token" | "no_team" | "team_disabled" => {
            " (the webhook's app or workspace is no longer valid: create a new webhook)"
        }
        "too_many_attachments" => " (too many attachments)",
        _ => "",
    }
}

/// Slack's error string from a reply body: its first line, short.
fn slack_error(body: &str) -> String {
    let line = body.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return "(empty body)".into();
    }
    kiln::messages::alert::truncate_chars(line, 200)
}

/// Posts `body`, retrying as the module documents, until `deadline`.
pub async fn deliver<W: SlackWebhook, C: Clock>(
    webhook: &W,
    clock: &C,
    url: &SecretString,
    body: &str,
    policy: &RetryPolicy,
    deadline: OffsetDateTime,
) -> Result<Delivered, DeliveryError> {
    let left = |now: OffsetDateTime| -> Duration {
        let left = deadline - now - policy.reserve;
        left.try_into().unwrap_or(Duration::ZERO)
    };
    let mut backoff = policy.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = left(clock.now());
        if remaining.is_zero() {
            return Err(DeliveryError::Unavailable {
                attempts: attempt - 1,
                last: "no time left before the invocation's deadline".into(),
            });
        }
        let timeout = remaining.min(policy.request_timeout);
        let failure = match webhook.post(url, body, timeout).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                if reply.body.trim() != "ok" {
                    tracing::warn!(status = reply.status, body = %slack_error(&reply.body), "Slack accepted the message with an unusual reply");
                }
                return Ok(Delivered { attempts: attempt });
            }
            Ok(reply) if reply.status == 429 => {
                let wait = reply.retry_after.unwrap_or(policy.default_retry_after);
                let remaining = left(clock.now());
                if attempt >= policy.attempts || wait >= remaining {
                    return Err(DeliveryError::RateLimited {
                        retry_after: wait,
                        remaining,
                        attempts: attempt,
                    });
                }
                tracing::warn!(
                    attempt,
                    wait_s = wait.as_secs_f64(),
                    "Slack rate limit: waiting Retry-After"
                );
                clock.sleep(wait).await;
                continue;
            }
            Ok(reply) if reply.status >= 500 => {
                format!("HTTP {} {}", reply.status, slack_error(&reply.body))
            }
            Ok(reply) => {
                return Err(DeliveryError::Rejected {
                    status: reply.status,
                    error: slack_error(&reply.body),
                });
            }
            Err(TransportError(message)) => scrub(&message, url),
        };
        let remaining = left(clock.now());
        if attempt >= policy.attempts || backoff >= remaining {
            return Err(DeliveryError::Unavailable {
                attempts: attempt,
                last: failure,
            });
        }
        tracing::warn!(attempt, error = %failure, wait_s = backoff.as_secs_f64(), "Slack delivery failed: retrying");
        clock.sleep(backoff).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

/// Why the secret does not yield a webhook URL. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret {secret_id} does not hold a webhook URL: expected the URL (https://hooks.slack.com/...) as the secret string, or JSON {{\"url\": \"...\"}}"
)]
pub struct WebhookSecretMalformed {
    pub secret_id: String,
}

/// The webhook URL from a secret's value: the URL itself, or JSON with a
/// `url` key. `https` is required, except on a loopback host (local tests).
pub fn webhook_url(
    value: &SecretString,
    secret_id: &str,
) -> Result<SecretString, WebhookSecretMalformed> {
    let malformed = || WebhookSecretMalformed {
        secret_id: secret_id.to_string(),
    };
    let raw = value.expose().trim();
    let url = if raw.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(raw).map_err(|_| malformed())?;
        json.get("url")
            .and_then(|u| u.as_str())
            .map(|u| u.trim().to_string())
            .ok_or_else(malformed)?
    } else {
        raw.to_string()
    };
    let acceptable = url.starts_with("https://")
        || [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://localhost:",
            "http://localhost/",
            "http://[::1]:",
        ]
        .iter()
        .any(|prefix| url.starts_with(prefix));
    if acceptable && !url.contains(char::is_whitespace) {
        Ok(SecretString::new(url))
    } else {
        Err(malformed())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";

    /// Answers from a script and records every call's timeout.
    struct Scripted {
        replies: Mutex<VecDeque<Result<SlackReply, TransportError>>>,
        timeouts: Mutex<Vec<Duration>>,
    }

    impl Scripted {
        fn new(replies: Vec<Result<SlackReply, TransportError>>) -> Self {
            Scripted {
                replies: Mutex::new(replies.into()),
                timeouts: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> usize {
            self.timeouts.lock().unwrap().len()
        }
    }

    impl SlackWebhook for Scripted {
        async fn post(
            &self,
            _url: &SecretString,
            _body: &str,
            timeout: Duration,
        ) -> Result<SlackReply, TransportError> {
            self.timeouts.lock().unwrap().push(timeout);
            self.replies
                .lock()
                .unwrap()
                .pop_front()
                .expect("more calls than scripted replies")
        }
    }

    fn reply(status: u16, body: &str) -> Result<SlackReply, TransportError> {
        Ok(SlackReply {
            status,
            retry_after: None,
            body: body.into(),
        })
    }

    fn rate_limited(seconds: u64) -> Result<SlackReply, TransportError> {
        Ok(SlackReply {
            status: 429,
            retry_after: Some(Duration::from_secs(seconds)),
            body: "rate_limited".into(),
        })
    }

    fn start() -> OffsetDateTime {
        time::macros::datetime!(2026-11-22 10:00:00 UTC)
    }

    async fn run(
        script: Vec<Result<SlackReply, TransportError>>,
        budget: Duration,
    ) -> (Result<Delivered, DeliveryError>, usize, Vec<Duration>) {
        let webhook = Scripted::new(script);
        let clock = ManualClock::at(start());
        let result = deliver(
            &webhook,
            &clock,
            &SecretString::new(URL),
            "{}",
            &RetryPolicy::default(),
            start() + budget,
        )
        .await;
        (result, webhook.calls(), clock.sleeps())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn ok_is_one_call() {
        let (result, calls, sleeps) = run(vec![reply(200, "ok")], MINUTE).await;
        assert_eq!(result, Ok(Delivered { attempts: 1 }));
        assert_eq!(calls, 1);
        assert!(sleeps.is_empty());
    }

    #[tokio::test]
    async fn rate_limit_waits_retry_after() {
        let (result, calls, sleeps) = run(vec![rate_limited(7), reply(200, "ok")], MINUTE).await;
        assert_eq!(result, Ok(Delivered { attempts: 2 }));
        assert_eq!(calls, 2);
        assert_eq!(sleeps, vec![Duration::from_secs(7)]);
    }

    #[tokio::test]
    async fn rate_limit_longer_than_the_time_left_fails_without_waiting() {
        let (result, calls, sleeps) = run(vec![rate_limited(30)], Duration::from_secs(20)).await;
        let err = result.unwrap_err();
        assert_eq!(err.error_type(), "SlackRateLimited");
        assert!(err.to_string().contains("Retry-After 30s"), "{err}");
        assert_eq!(calls, 1);
        assert!(sleeps.is_empty());
    }

    #[tokio::test]
    async fn server_errors_back_off_then_fail() {
        let (result, calls, sleeps) = run(
            vec![
                reply(500, "rollup_error"),
                reply(503, ""),
                Err(TransportError(
                    "could not connect: connection refused".into(),
                )),
                reply(502, "bad gateway"),
            ],
            MINUTE,
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.error_type(), "SlackUnavailable");
        assert_eq!(
            err.to_string(),
            "Slack is unavailable after 4 attempt(s): HTTP 502 bad gateway"
        );
        assert_eq!(calls, 4);
        assert_eq!(
            sleeps,
            vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }

    #[tokio::test]
    async fn a_server_error_then_success() {
        let (result, calls, _) = run(vec![reply(500, "oops"), reply(200, "ok")], MINUTE).await;
        assert_eq!(result, Ok(Delivered { attempts: 2 }));
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn configuration_errors_fail_at_once() {
        for (status, error) in [
            (400, "invalid_payload"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (403, "action_prohibited"),
            (404, "no_service"),
        ] {
            let (result, calls, sleeps) = run(vec![reply(status, error)], MINUTE).await;
            let err = result.unwrap_err();
            assert_eq!(err.error_type(), "SlackRejected");
            assert!(
                err.to_string().starts_with(&format!(
                    "Slack rejected the message: HTTP {status} {error}"
                )),
                "{err}"
            );
            assert_eq!(calls, 1, "{error}");
            assert!(sleeps.is_empty());
        }
    }

    #[tokio::test]
    async fn request_timeout_is_capped_by_the_time_left() {
        let webhook = Scripted::new(vec![reply(200, "ok")]);
        let clock = ManualClock::at(start());
        deliver(
            &webhook,
            &clock,
            &SecretString::new(URL),
            "{}",
            &RetryPolicy::default(),
            start() + Duration::from_secs(4),
        )
        .await
        .unwrap();
        assert_eq!(
            *webhook.timeouts.lock().unwrap(),
            vec![Duration::from_secs(3)]
        );
    }

    #[tokio::test]
    async fn transport_errors_are_scrubbed() {
        let (result, _, _) = run(
            vec![
                Err(TransportError(format!("boom at {URL}"))),
                Err(TransportError(
                    "boom at /services/T000/B000/XXXXSECRET".into(),
                )),
                Err(TransportError("x".into())),
                Err(TransportError("again".into())),
            ],
            MINUTE,
        )
        .await;
        let text = result.unwrap_err().to_string();
        assert!(!text.contains("XXXXSECRET"), "{text}");
        assert_eq!(
            scrub(
                &format!("a {URL} b /services/T000/B000/XXXXSECRET"),
                &SecretString::new(URL)
            ),
            "a [webhook URL] b /[redacted]"
        );
    }

    #[test]
    fn webhook_url_from_either_secret_form() {
        let plain = webhook_url(&SecretString::new(format!(" {URL}\n")), "s").unwrap();
        assert_eq!(plain.expose(), URL);
        let json = webhook_url(&SecretString::new(format!(r#"{{"url": "{URL}"}}"#)), "s").unwrap();
        assert_eq!(json.expose(), URL);
        let local = webhook_url(&SecretString::new("http://127.0.0.1:8080/hook"), "s").unwrap();
        assert_eq!(local.expose(), "http://127.0.0.1:8080/hook");
        for bad in [
            "http://hooks.slack.com/services/T/B/XXXXSECRET",
            r#"{"webhook": "https://hooks.slack.com/services/T/B/XXXXSECRET"}"#,
            "{not json XXXXSECRET",
            "XXXXSECRET",
        ] {
            let err = webhook_url(&SecretString::new(bad), "arn:secret").unwrap_err();
            assert!(!err.to_string().contains("XXXXSECRET"));
            assert!(err.to_string().contains("arn:secret"));
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
