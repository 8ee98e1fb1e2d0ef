//! Secrets: read from Secrets Manager by id or ARN, cached in the process.
//!
//! A [`SecretString`] never shows its value in `Debug` or `Display`; code
//! that needs the value calls [`SecretString::expose`] at the point of use.
//! The [`SecretCache`] fetches on first use (never during init) and keeps a
//! value for a TTL, five minutes by default, so a rotated secret is picked
//! up without a redeploy. Both the `AWSCURRENT` and the `AWSPREVIOUS`
//! versions can be read, which lets a webhook secret rotate without
//! downtime.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::aws::LazyClient;

/// The default time a secret value is kept before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A secret value. Its `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Arc::from(value.into()))
    }

    /// The value. Use it where it is needed and nowhere else: never format it
    /// into a log line or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret (as stored, and trimmed)
    /// replaced by `[redacted]`: for text from elsewhere that might quote it
    /// back, such as an HTTP error body, before it goes into a log or an
    /// error. Secrets shorter than 8 characters are not searched for, so a
    /// trivial value cannot blank out ordinary words.
    pub fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut scrubbed = std::borrow::Cow::Borrowed(text);
        for needle in [self.0.as_ref(), self.0.trim()] {
            if needle.len() >= 8 && scrubbed.contains(needle) {
                scrubbed = std::borrow::Cow::Owned(scrubbed.replace(needle, "[redacted]"));
            }
        }
        scrubbed
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which version of a secret to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionStage {
    Current,
    Previous,
}

impl VersionStage {
    pub fn label(self) -> &'static str {
        match self {
            VersionStage::Current => "AWSCURRENT",
            VersionStage::Previous => "AWSPREVIOUS",
        }
    }
}

/// Why a secret could not be read. Messages name the secret id and the
/// stage, never the value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("secret {secret_id} ({stage}) was not found")]
    NotFound {
        secret_id: String,
        stage: &'static str,
    },
    #[error("secret {secret_id} ({stage}) has no string value")]
    NotAString {
        secret_id: String,
        stage: &'static str,
    },
    #[error("reading secret {secret_id} ({stage}) failed: {message}")]
    Unavailable {
        secret_id: String,
        stage: &'static str,
        message: String,
    },
}

/// The port: something that can fetch one version of a secret.
///
/// `Ok(None)` means the stage does not exist (a secret that was never
/// rotated has no `AWSPREVIOUS`), which is not an error.
pub trait SecretFetcher: Send + Sync {
    fn fetch(
        &self,
        secret_id: &str,
        stage: VersionStage,
    ) -> impl Future<Output = Result<Option<SecretString>, SecretError>> + Send;
}

/// Secrets Manager adapter.
#[derive(Clone, Debug)]
pub struct SecretsManagerFetcher {
    client: LazyClient<aws_sdk_secretsmanager::Client>,
}

impl SecretsManagerFetcher {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_secretsmanager::Client>>) -> Self {
        SecretsManagerFetcher {
            client: client.into(),
        }
    }
}

impl SecretFetcher for SecretsManagerFetcher {
    async fn fetch(
        &self,
        secret_id: &str,
        stage: VersionStage,
    ) -> Result<Option<SecretString>, SecretError> {
        use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
        let result = self
            .client
            .get()
            .await
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage.label())
            .send()
            .await;
        match result {
            Ok(output) => match output.secret_string {
                Some(value) => Ok(Some(SecretString::new(value))),
                None => Err(SecretError::NotAString {
                    secret_id: secret_id.to_string(),
                    stage: stage.label(),
                }),
            },
            Err(err) => {
                let code = err.code().unwrap_or_default().to_string();
                if code == "ResourceNotFoundException" && stage == VersionStage::Previous {
                    // No previous version yet: the secret was never rotated.
                    return Ok(None);
                }
                if code == "ResourceNotFoundException" {
                    return Err(SecretError::NotFound {
                        secret_id: secret_id.to_string(),
                        stage: stage.label(),
                    });
                }
                // The SDK's error text describes the call, not the value.
                let message = match err.message() {
                    Some(message) => format!("{code}: {message}"),
                    None => crate::aws::error_chain(&err),
                };
                Err(SecretError::Unavailable {
                    secret_id: secret_id.to_string(),
                    stage: stage.label(),
                    message,
                })
            }
        }
    }
}

struct CacheEntry {
    value: Option<SecretString>,
    fetched_at: Instant,
}

/// A TTL cache in front of a [`SecretFetcher`]. Cheap to clone; clones share
/// the cache.
pub struct SecretCache<F> {
    fetcher: Arc<F>,
    ttl: Duration,
    entries: Arc<Mutex<HashMap<(String, VersionStage), CacheEntry>>>,
}

impl<F> Clone for SecretCache<F> {
    fn clone(&self) -> Self {
        SecretCache {
            fetcher: Arc::clone(&self.fetcher),
            ttl: self.ttl,
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<F> fmt::Debug for SecretCache<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<F: SecretFetcher> SecretCache<F> {
    pub fn new(fetcher: F) -> Self {
        Self::with_ttl(fetcher, DEFAULT_TTL)
    }

    pub fn with_ttl(fetcher: F, ttl: Duration) -> Self {
        SecretCache {
            fetcher: Arc::new(fetcher),
            ttl,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// One stage of a secret, from the cache while it is fresh.
    pub async fn get(
        &self,
        secret_id: &str,
        stage: VersionStage,
    ) -> Result<Option<SecretString>, SecretError> {
        let key = (secret_id.to_string(), stage);
        // Holding the lock across the fetch means concurrent callers wait for
        // one fetch instead of each making their own.
        let mut entries = self.entries.lock().await;
        if let Some(entry) = entries.get(&key)
            && entry.fetched_at.elapsed() < self.ttl
        {
            return Ok(entry.value.clone());
        }
        let value = self.fetcher.fetch(secret_id, stage).await?;
        entries.insert(
            key,
            CacheEntry {
                value: value.clone(),
                fetched_at: Instant::now(),
            },
        );
        Ok(value)
    }

    /// The current version, which must exist.
    pub async fn current(&self, secret_id: &str) -> Result<SecretString, SecretError> {
        self.get(secret_id, VersionStage::Current)
            .await?
            .ok_or_else(|| SecretError::NotFound {
                secret_id: secret_id.to_string(),
                stage: VersionStage::Current.label(),
            })
    }

    /// The current version and, if the secret was rotated, the previous one.
    pub async fn current_and_previous(
        &self,
        secret_id: &str,
    ) -> Result<Vec<SecretString>, SecretError> {
        let mut values = vec![self.current(secret_id).await?];
        if let Some(previous) = self.get(secret_id, VersionStage::Previous).await?
            && previous != values[0]
        {
            values.push(previous);
        }
        Ok(values)
    }

    /// Forgets every cached value, e.g. after a value was rejected.
    pub async fn invalidate(&self) {
        self.entries.lock().await.clear();
    }
}

/// In-memory secrets for tests, counting fetches.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    pub struct FakeSecrets {
        values: std::sync::Mutex<HashMap<(String, VersionStage), String>>,
        fetches: AtomicUsize,
    }

    impl FakeSecrets {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn with(self, secret_id: &str, stage: VersionStage, value: &str) -> Self {
            self.set(secret_id, stage, value);
            self
        }

        pub fn set(&self, secret_id: &str, stage: VersionStage, value: &str) {
            if let Ok(mut values) = self.values.lock() {
                values.insert((secret_id.to_string(), stage), value.to_string());
            }
        }

        pub fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl SecretFetcher for FakeSecrets {
        async fn fetch(
            &self,
            secret_id: &str,
            stage: VersionStage,
        ) -> Result<Option<SecretString>, SecretError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let values = self.values.lock().map_err(|_| SecretError::Unavailable {
                secret_id: secret_id.to_string(),
                stage: stage.label(),
                message: "fake poisoned".into(),
            })?;
            Ok(values
                .get(&(secret_id.to_string(), stage))
                .map(|v| SecretString::new(v.clone())))
        }
    }

    impl SecretFetcher for Arc<FakeSecrets> {
        async fn fetch(
            &self,
            secret_id: &str,
            stage: VersionStage,
        ) -> Result<Option<SecretString>, SecretError> {
            self.as_ref().fetch(secret_id, stage).await
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scrub_removes_the_secret_from_quoted_text() {
        let token = SecretString::new("ghp_16C7e42F292c6912E7710c838347Ae178B4a\n");
        assert_eq!(
            token.scrub(
                "bad request: Authorization: Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a"
            ),
            "bad request: Authorization: Bearer [redacted]"
        );
        assert!(matches!(
            token.scrub("nothing to see"),
            std::borrow::Cow::Borrowed("nothing to see")
        ));
        // Too short to search for safely.
        assert_eq!(SecretString::new("abc").scrub("abcdef"), "abcdef");
    }

    use super::fake::FakeSecrets;
    use super::*;

    #[test]
    fn secret_string_never_formats_its_value() {
        let secret = SecretString::new("hunter2");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[tokio::test]
    async fn cache_fetches_once_within_ttl() {
        let fake = Arc::new(FakeSecrets::new().with("s", VersionStage::Current, "v1"));
        let cache = SecretCache::new(Arc::clone(&fake));
        for _ in 0..3 {
            assert_eq!(cache.current("s").await.unwrap().expose(), "v1");
        }
        assert_eq!(fake.fetches(), 1);
    }

    #[tokio::test]
    async fn cache_refetches_after_ttl() {
        let fake = Arc::new(FakeSecrets::new().with("s", VersionStage::Current, "v1"));
        let cache = SecretCache::with_ttl(Arc::clone(&fake), Duration::ZERO);
        cache.current("s").await.unwrap();
        fake.set("s", VersionStage::Current, "v2");
        assert_eq!(cache.current("s").await.unwrap().expose(), "v2");
        assert_eq!(fake.fetches(), 2);
    }

    #[tokio::test]
    async fn current_and_previous_skips_missing_and_equal_previous() {
        let fake = FakeSecrets::new()
            .with("a", VersionStage::Current, "new")
            .with("a", VersionStage::Previous, "old")
            .with("b", VersionStage::Current, "only");
        let cache = SecretCache::new(fake);
        let a: Vec<_> = cache.current_and_previous("a").await.unwrap();
        assert_eq!(
            a.iter().map(|s| s.expose()).collect::<Vec<_>>(),
            vec!["new", "old"]
        );
        let b = cache.current_and_previous("b").await.unwrap();
        assert_eq!(b.len(), 1);
        let missing = cache.current("nope").await.unwrap_err();
        assert_eq!(
            missing.to_string(),
            "secret nope (AWSCURRENT) was not found"
        );
    }
}
