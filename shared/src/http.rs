//! The HTTP client kiln uses outside the AWS SDK (GitHub, Slack).

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
}
