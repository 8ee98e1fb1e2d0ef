//! Building AWS SDK configuration and clients.
//!
//! There is no code path of kiln's own for local emulators: the SDK honours
//! the standard `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`)
//! variables, so pointing a function at moto is configuration only.
//!
//! Nothing here runs in the init phase. [`LazySdkConfig`] loads the SDK
//! configuration on the first call that needs it, and [`LazyClient`] builds a
//! service client then: the SDK builds its HTTPS connector (and parses its
//! trust store) when a client is constructed, which is work a cold start
//! should not pay before the first event arrives.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_smithy_http_client::tls::{self, TlsContext};
use tokio::sync::OnceCell;

use crate::tls::{AwsRoots, TrustedRoots};

/// Loads the shared SDK configuration from the environment (region,
/// credentials, endpoint overrides), with an HTTPS client that trusts the
/// roots in `tls_context`. Credentials are resolved lazily, on the first call.
///
/// When `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set (always, on
/// Lambda) the credentials come from those variables alone. The default chain
/// would pick the same ones, since the environment is its first source, but
/// building the chain also builds an STS client for the providers after it,
/// about a millisecond of a cold start spent on clients that are never used.
pub async fn load_sdk_config(tls_context: TlsContext) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(tls_context)
        .build_https();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
    if credentials_in_environment() {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader.load().await
}

fn credentials_in_environment() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY")
}

/// The SDK configuration, loaded from the environment on first use and
/// shared by every client made from it (one HTTPS connector, one
/// credentials cache).
#[derive(Clone)]
pub struct LazySdkConfig {
    inner: Arc<LazySdkInner>,
}

struct LazySdkInner {
    tls_context: TlsContext,
    config: OnceCell<SdkConfig>,
}

impl LazySdkConfig {
    /// Nothing is loaded yet; the trust store is only recorded.
    pub fn new(
        roots: &TrustedRoots,
        aws: AwsRoots,
    ) -> Result<Self, aws_smithy_http_client::HttpClientError> {
        let tls_context = TlsContext::builder()
            .with_trust_store(roots.sdk_trust_store(aws))
            .build()?;
        Ok(LazySdkConfig {
            inner: Arc::new(LazySdkInner {
                tls_context,
                config: OnceCell::new(),
            }),
        })
    }

    /// The trust store from `EXTRA_CA_CERTS_FILE` and the region (see
    /// [`crate::tls`]) and nothing loaded yet: what every function's `main` builds at start-up.
    pub fn from_env(env: &crate::Env) -> Result<(Self, TrustedRoots), crate::ConfigError> {
        let roots = TrustedRoots::from_env(env)?;
        let sdk = LazySdkConfig::new(&roots, AwsRoots::for_environment(env)).map_err(|err| {
            crate::ConfigError::malformed(
                crate::tls::EXTRA_CA_CERTS_FILE,
                format!("certificates the SDK's TLS client accepts ({err})"),
            )
        })?;
        Ok((sdk, roots))
    }

    /// The configuration, loaded on the first call.
    pub async fn get(&self) -> &SdkConfig {
        self.inner
            .config
            .get_or_init(|| load_sdk_config(self.inner.tls_context.clone()))
            .await
    }

    /// A client of one service, built from this configuration on first use:
    /// `sdk.client(aws_sdk_sns::Client::new)`.
    pub fn client<C>(&self, build: fn(&SdkConfig) -> C) -> LazyClient<C> {
        LazyClient {
            state: LazyState::Deferred {
                sdk: self.clone(),
                build,
                client: OnceCell::new(),
            },
        }
    }
}

impl fmt::Debug for LazySdkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySdkConfig")
            .field("loaded", &self.inner.config.initialized())
            .finish()
    }
}

/// An SDK client that is either ready (tests hand one in) or built on first
/// use from a [`LazySdkConfig`]. Adapters hold one and call [`get`].
///
/// [`get`]: LazyClient::get
#[derive(Clone)]
pub struct LazyClient<C> {
    state: LazyState<C>,
}

#[derive(Clone)]
enum LazyState<C> {
    Ready(C),
    Deferred {
        sdk: LazySdkConfig,
        build: fn(&SdkConfig) -> C,
        client: OnceCell<C>,
    },
}

impl<C> LazyClient<C> {
    /// The client, built on the first call when it is deferred.
    pub async fn get(&self) -> &C {
        match &self.state {
            LazyState::Ready(client) => client,
            LazyState::Deferred { sdk, build, client } => {
                client
                    .get_or_init(|| async { build(sdk.get().await) })
                    .await
            }
        }
    }
}

impl<C> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        LazyClient {
            state: LazyState::Ready(client),
        }
    }
}

impl<C> fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            LazyState::Ready(_) => "ready",
            LazyState::Deferred { client, .. } if client.initialized() => "built",
            LazyState::Deferred { .. } => "not built yet",
        };
        f.debug_struct("LazyClient")
            .field("client", &state)
            .finish()
    }
}

/// The whole `source()` chain of an error on one line. SDK errors put the
/// useful part ("connection refused", "dispatch failure") several levels
/// down, and `Display` alone shows only the top.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn error_chain_joins_sources() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
