//! The HTTP client kiln uses outside the AWS SDK (GitHub, Slack).

use std::fmt;
use std::sync::OnceLock;

use crate::tls::TrustedRoots;

/// A reqwest client builder that trusts exactly `roots` (no platform store:
/// see [`crate::tls`]). Callers add their timeouts, user agent and redirect
/// policy.
pub fn client_builder(roots: &TrustedRoots) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let certificates = roots
        .certificates()
        .map(|certificate| reqwest::Certificate::from_der(certificate.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(reqwest::Client::builder().tls_certs_only(certificates))
}

/// A reqwest client built on first use, like the SDK clients
/// ([`crate::aws::LazyClient`]): building one parses every trusted root, work
/// the init phase should not do for a client the first event may not need.
pub struct LazyHttpClient {
    roots: TrustedRoots,
    configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    client: OnceLock<reqwest::Client>,
}

impl LazyHttpClient {
    /// `configure` adds the caller's settings (user agent, timeouts,
    /// redirect policy) to a builder that trusts `roots`.
    pub fn new(
        roots: &TrustedRoots,
        configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> LazyHttpClient {
        LazyHttpClient {
            roots: roots.clone(),
            configure,
            client: OnceLock::new(),
        }
    }

    /// The client, built on the first call. A build that fails is tried
    /// again on the next call.
    pub fn get(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = (self.configure)(client_builder(&self.roots)?).build()?;
        // Another caller may have won the race; either client will do.
        Ok(self.client.get_or_init(|| client))
    }
}

impl fmt::Debug for LazyHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyHttpClient")
            .field("built", &self.client.get().is_some())
            .field("trusted_roots", &self.roots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_mozilla_roots() {
        client_builder(&TrustedRoots::mozilla())
            .unwrap()
            .build()
            .unwrap();
    }

    #[test]
    fn the_lazy_client_is_built_once_on_first_use() {
        let lazy = LazyHttpClient::new(&TrustedRoots::mozilla(), |b| b.user_agent("kiln-test"));
        assert!(format!("{lazy:?}").contains("built: false"));
        let first: *const reqwest::Client = lazy.get().unwrap();
        let second: *const reqwest::Client = lazy.get().unwrap();
        assert_eq!(first, second);
        assert!(format!("{lazy:?}").contains("built: true"));
    }
}
