//! Reporting a deployment to GitHub: the [`DeploymentReporter`] port and
//! its HTTP adapter.
//!
//! A `deployment` event gets deployment statuses (`in_progress`, then
//! `success` or `failure`) with a `log_url` to the task; a `push` gets
//! commit statuses (`pending`, then `success` or `failure`) with the context
//! `kiln/deploy (<environment>)` and a `target_url` to the task. On a deploy
//! lane, a waiting request is `queued` (a commit: `pending`), and a
//! superseded one `inactive` (a commit: `error`).
//!
//! A status that is already final for the task is never overwritten: that
//! makes a duplicate "task stopped" event, or a late retry of the start, a
//! no-op instead of a second post (or a regression to "in progress").
//!
//! The token comes from Secrets Manager on first use and is only ever put
//! in an `Authorization` header marked sensitive.

use kiln::http::LazyHttpClient;
use kiln::tls::TrustedRoots;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use kiln::messages::alert::truncate_chars;
use kiln::secrets::{SecretCache, SecretFetcher};
use serde::Deserialize;

/// GitHub's limit on a status description.
pub const DESCRIPTION_MAX_CHARS: usize = 140;
const API_VERSION: &str = "2022-11-28";
const USER_AGENT: &str = "kiln-deploy-exec";

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployState {
    /// Waiting behind the lane's running deployment.
    Queued,
    InProgress,
    Success,
    Failure,
    /// A newer request on the lane won: this one never deploys.
    Superseded,
}

/// One status to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// `owner/name`.
    pub repository: String,
    pub sha: String,
    pub environment: String,
    /// Set for `deployment` events: report a deployment status, not a
    /// commit status.
    pub deployment_id: Option<u64>,
    pub state: DeployState,
    pub description: String,
    /// The task in the ECS console.
    pub task_url: Option<String>,
}

impl StatusUpdate {
    /// The commit status context.
    pub fn context(&self) -> String {
        format!("kiln/deploy ({})", self.environment)
    }

    /// The API path to post to.
    pub fn post_path(&self) -> String {
        match self.deployment_id {
            Some(id) => format!("/repos/{}/deployments/{id}/statuses", self.repository),
            None => format!("/repos/{}/statuses/{}", self.repository, self.sha),
        }
    }

    /// The JSON body GitHub expects.
    pub fn body(&self) -> serde_json::Value {
        let description = truncate_chars(&self.description, DESCRIPTION_MAX_CHARS);
        match self.deployment_id {
            Some(_) => {
                let state = match self.state {
                    DeployState::Queued => "queued",
                    DeployState::InProgress => "in_progress",
                    DeployState::Success => "success",
                    DeployState::Failure => "failure",
                    DeployState::Superseded => "inactive",
                };
                let mut body = serde_json::json!({ "state": state, "description": description });
                if let Some(url) = &self.task_url {
                    body["log_url"] = url.as_str().into();
                }
                body
            }
            None => {
                let state = match self.state {
                    DeployState::Queued | DeployState::InProgress => "pending",
                    DeployState::Success => "success",
                    DeployState::Failure => "failure",
                    DeployState::Superseded => "error",
                };
                let mut body = serde_json::json!({
                    "state": state,
                    "description": description,
                    "context": self.context(),
                });
                if let Some(url) = &self.task_url {
                    body["target_url"] = url.as_str().into();
                }
                body
            }
        }
    }

    /// The API path that lists the statuses already posted, newest first.
    pub fn existing_path(&self) -> String {
        match self.deployment_id {
            Some(id) => format!(
                "/repos/{}/deployments/{id}/statuses?per_page=1",
                self.repository
            ),
            None => format!(
                "/repos/{}/commits/{}/statuses?per_page=100",
                self.repository, self.sha
            ),
        }
    }

    /// Whether the newest existing status already closes this deployment:
    /// for a deployment, any final state; for a commit, a final state of
    /// this context for this same task (the same commit may be deployed
    /// again later, by another task).
    pub fn already_final(&self, existing: &[ExistingStatus]) -> bool {
        let is_final = |state: &str| matches!(state, "success" | "failure" | "error" | "inactive");
        match self.deployment_id {
            Some(_) => existing.first().is_some_and(|s| is_final(&s.state)),
            None => {
                let context = self.context();
                existing
                    .iter()
                    .find(|s| s.context.as_deref() == Some(context.as_str()))
                    .is_some_and(|s| {
                        is_final(&s.state)
                            && self.task_url.is_some()
                            && s.target_url == self.task_url
                    })
            }
        }
    }
}

/// A status as GitHub lists it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExistingStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Posted,
    /// A final status for this task was already there.
    AlreadyFinal,
    /// No token is configured: nothing was sent.
    Disabled,
}

/// Why a status could not be posted. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GitHub {method} {path}: {message}")]
pub struct ReportError {
    pub method: &'static str,
    pub path: String,
    pub message: String,
}

/// The port.
pub trait DeploymentReporter: Send + Sync {
    fn report(
        &self,
        update: &StatusUpdate,
    ) -> impl Future<Output = Result<ReportOutcome, ReportError>> + Send;
}

/// How often, and how patiently, to retry GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// The first backoff; it doubles with each retry.
    pub base_delay: Duration,
    /// The longest wait; a rate limit that asks for longer is given up on
    /// rather than holding the function past its timeout.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No waiting between attempts (for tests).
    pub fn immediate(attempts: u32) -> Self {
        RetryPolicy {
            attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// How long to wait before retrying a response, or `None` when it must
    /// not be retried. `attempt` counts from 1; `now` is Unix seconds.
    pub fn retry_delay(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        attempt: u32,
        now: u64,
    ) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        if status.is_server_error() {
            return Some(self.backoff(attempt));
        }
        if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        // GitHub's rate limits: `retry-after` (secondary limits), or an
        // exhausted primary limit with its reset time. A 403 with neither
        // is a permission problem, which retrying cannot fix.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let wait = if let Some(seconds) =
            header("retry-after").and_then(|v| v.trim().parse::<u64>().ok())
        {
            Duration::from_secs(seconds)
        } else if header("x-ratelimit-remaining").map(str::trim) == Some("0") {
            let reset = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok());
            match reset {
                Some(reset) => Duration::from_secs(reset.saturating_sub(now)),
                None => self.backoff(attempt),
            }
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            self.backoff(attempt)
        } else {
            return None;
        };
        (wait <= self.max_delay).then_some(wait)
    }
}

/// The GitHub REST API adapter.
pub struct GitHubReporter<F> {
    /// Built on the first call.
    http: LazyHttpClient,
    api_url: String,
    /// The token's secret, and the cache it is read through; `None`
    /// disables reporting.
    token: Option<(String, SecretCache<F>)>,
    retry: RetryPolicy,
}

impl<F> std::fmt::Debug for GitHubReporter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubReporter")
            .field("api_url", &self.api_url)
            .field("token_secret", &self.token.as_ref().map(|(id, _)| id))
            .finish()
    }
}

impl<F: SecretFetcher + 'static> GitHubReporter<F> {
    /// `token`: the secret id and the cache to read it through, or `None`
    /// to make no calls at all.
    pub fn new(api_url: &str, token: Option<(String, SecretCache<F>)>, retry: RetryPolicy) -> Self {
        GitHubReporter::trusting(api_url, token, retry, &TrustedRoots::mozilla())
    }

    /// As [`new`](GitHubReporter::new), trusting `roots` (Mozilla's, plus
    /// `EXTRA_CA_CERTS_FILE` for a GitHub Enterprise Server with a private CA).
    pub fn trusting(
        api_url: &str,
        token: Option<(String, SecretCache<F>)>,
        retry: RetryPolicy,
        roots: &TrustedRoots,
    ) -> Self {
        let http = LazyHttpClient::new(roots, |builder| {
            builder
                .user_agent(USER_AGENT)
                .timeout(Duration::from_secs(10))
        });
        GitHubReporter {
            http,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            retry,
        }
    }

    /// Sends one request with retries; returns the body of a 2xx answer.
    async fn send(
        &self,
        secret_id: &str,
        cache: &SecretCache<F>,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, ReportError> {
        let error = |message: String| ReportError {
            method,
            path: path.to_string(),
            message,
        };
        let url = format!("{}{path}", self.api_url);
        let mut refreshed_token = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = cache
                .current(secret_id)
                .await
                .map_err(|e| error(format!("no token: {e}")))?;
            let mut authorization =
                HeaderValue::from_str(&format!("Bearer {}", token.expose().trim())).map_err(
                    |_| {
                        error(format!(
                            "the token in {secret_id} is not a valid header value"
                        ))
                    },
                )?;
            authorization.set_sensitive(true);
            let http = self
                .http
                .get()
                .map_err(|e| error(kiln::aws::error_chain(&e)))?;
            let mut request = match method {
                "GET" => http.get(&url),
                _ => http.post(&url),
            }
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let message = kiln::aws::error_chain(&err.without_url());
                    if attempt < self.retry.attempts {
                        tracing::warn!(method, path, attempt, error = %message, "GitHub unreachable; retrying");
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        continue;
                    }
                    return Err(error(message));
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text);
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed_token {
                // The token may have been rotated since it was cached.
                refreshed_token = true;
                cache.invalidate().await;
                if attempt < self.retry.attempts {
                    continue;
                }
            }
            // An error body may quote the request back (a proxy in front of
            // GitHub, say): never let the token into a log or an error.
            let text = token.scrub(&text);
            let message = format!("answered {status}: {}", truncate_chars(text.trim(), 200));
            match self
                .retry
                .retry_delay(status, &headers, attempt, unix_now())
            {
                Some(delay) => {
                    tracing::warn!(
                        method,
                        path,
                        attempt,
                        status = status.as_u16(),
                        delay_ms = delay.as_millis() as u64,
                        "GitHub refused; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error(message)),
            }
        }
    }
}

impl<F: SecretFetcher + 'static> DeploymentReporter for GitHubReporter<F> {
    async fn report(&self, update: &StatusUpdate) -> Result<ReportOutcome, ReportError> {
        let Some((secret_id, cache)) = &self.token else {
            return Ok(ReportOutcome::Disabled);
        };
        let existing_path = update.existing_path();
        match self
            .send(secret_id, cache, "GET", &existing_path, None)
            .await
        {
            Ok(text) => {
                let existing: Vec<ExistingStatus> = serde_json::from_str(&text).unwrap_or_default();
                if update.already_final(&existing) {
                    return Ok(ReportOutcome::AlreadyFinal);
                }
            }
            // Reading is only a guard against double posts: go on and post.
            Err(err) => tracing::warn!(error = %err, "could not read existing GitHub statuses"),
        }
        self.send(
            secret_id,
            cache,
            "POST",
            &update.post_path(),
            Some(&update.body()),
        )
        .await?;
        Ok(ReportOutcome::Posted)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(deployment_id: Option<u64>, state: DeployState) -> StatusUpdate {
        StatusUpdate {
            repository: "Codertocat/Hello-World".into(),
            sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            environment: "production".into(),
            deployment_id,
            state,
            description: "x".repeat(200),
            task_url: Some("https://console/task1".into()),
        }
    }

    #[test]
    fn commit_status_body() {
        let u = update(None, DeployState::InProgress);
        assert_eq!(
            u.post_path(),
            "/repos/Codertocat/Hello-World/statuses/6113728f27ae82c7b1a177c8d03f9e96e0adf246"
        );
        let body = u.body();
        assert_eq!(body["state"], "pending");
        assert_eq!(body["context"], "kiln/deploy (production)");
        assert_eq!(body["target_url"], "https://console/task1");
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 140);
        assert_eq!(
            update(None, DeployState::Failure).body()["state"],
            "failure"
        );
        assert_eq!(update(None, DeployState::Queued).body()["state"], "pending");
        assert_eq!(
            update(None, DeployState::Superseded).body()["state"],
            "error"
        );
    }

    #[test]
    fn deployment_status_body() {
        let u = update(Some(42), DeployState::InProgress);
        assert_eq!(
            u.post_path(),
            "/repos/Codertocat/Hello-World/deployments/42/statuses"
        );
        let body = u.body();
        assert_eq!(body["state"], "in_progress");
        assert_eq!(body["log_url"], "https://console/task1");
        assert!(body.get("context").is_none());
        assert_eq!(
            update(Some(42), DeployState::Success).body()["state"],
            "success"
        );
        assert_eq!(
            update(Some(42), DeployState::Queued).body()["state"],
            "queued"
        );
        assert_eq!(
            update(Some(42), DeployState::Superseded).body()["state"],
            "inactive"
        );
    }

    fn existing(state: &str, context: &str, url: &str) -> ExistingStatus {
        ExistingStatus {
            state: state.into(),
            context: Some(context.into()),
            target_url: Some(url.into()),
        }
    }

    #[test]
    fn final_statuses_of_the_same_task_are_not_overwritten() {
        let u = update(None, DeployState::Success);
        let ours = "kiln/deploy (production)";
        assert!(u.already_final(&[
            existing("success", "ci/other", "x"),
            existing("failure", ours, "https://console/task1"),
        ]));
        // Newest first: a pending of ours on top means not final yet.
        assert!(!u.already_final(&[
            existing("pending", ours, "https://console/task1"),
            existing("success", ours, "https://console/task1"),
        ]));
        // A final status of an earlier task for the same commit.
        assert!(!u.already_final(&[existing("success", ours, "https://console/task0")]));
        assert!(!u.already_final(&[]));
        let d = update(Some(1), DeployState::Failure);
        assert!(d.already_final(&[existing("inactive", "", "")]));
        assert!(!d.already_final(&[existing("in_progress", "", "")]));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn retries_5xx_and_rate_limits_only() {
        let policy = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
        };
        let none = HeaderMap::new();
        assert_eq!(
            policy.retry_delay(StatusCode::BAD_GATEWAY, &none, 1, 0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.retry_delay(StatusCode::BAD_GATEWAY, &none, 2, 0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            policy.retry_delay(StatusCode::BAD_GATEWAY, &none, 3, 0),
            None
        );
        assert_eq!(
            policy.retry_delay(StatusCode::UNPROCESSABLE_ENTITY, &none, 1, 0),
            None
        );
        assert_eq!(policy.retry_delay(StatusCode::NOT_FOUND, &none, 1, 0), None);
        // A plain 403 is a permission problem.
        assert_eq!(policy.retry_delay(StatusCode::FORBIDDEN, &none, 1, 0), None);
        // Secondary rate limit.
        assert_eq!(
            policy.retry_delay(
                StatusCode::FORBIDDEN,
                &headers(&[("retry-after", "2")]),
                1,
                0
            ),
            Some(Duration::from_secs(2))
        );
        // Primary limit exhausted: wait for the reset.
        assert_eq!(
            policy.retry_delay(
                StatusCode::FORBIDDEN,
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1003")
                ]),
                1,
                1000
            ),
            Some(Duration::from_secs(3))
        );
        // Longer than we may wait: give up now.
        assert_eq!(
            policy.retry_delay(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "60")]),
                1,
                0
            ),
            None
        );
        assert_eq!(
            policy.retry_delay(StatusCode::TOO_MANY_REQUESTS, &none, 1, 0),
            Some(Duration::from_millis(500))
        );
    }
}

/// A reporter for tests: records updates, answers from a script.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct FakeReporter {
        pub(crate) updates: Mutex<Vec<StatusUpdate>>,
        pub(crate) answers: Mutex<VecDeque<Result<ReportOutcome, ReportError>>>,
    }

    impl FakeReporter {
        pub(crate) fn answer(&self, answer: Result<ReportOutcome, ReportError>) {
            self.answers.lock().unwrap().push_back(answer);
        }
        pub(crate) fn updates(&self) -> Vec<StatusUpdate> {
            self.updates.lock().unwrap().clone()
        }
    }

    impl DeploymentReporter for FakeReporter {
        async fn report(&self, update: &StatusUpdate) -> Result<ReportOutcome, ReportError> {
            self.updates.lock().unwrap().push(update.clone());
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(ReportOutcome::Posted))
        }
    }
}
