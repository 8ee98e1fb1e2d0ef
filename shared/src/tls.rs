//! The certificates kiln's HTTPS clients trust.
//!
//! One trust store for every outbound call, the AWS SDK's and the GitHub and
//! Slack clients' alike: Mozilla's root certificates, compiled in (the
//! `webpki-root-certs` crate), plus the PEM certificates in the file named by
//! `EXTRA_CA_CERTS_FILE` when it is set (a GitHub Enterprise Server or a
//! TLS-inspecting proxy signed by a private CA).
//!
//! Compiled in rather than read from the system: loading the platform store
//! means reading and parsing every file under `/etc/ssl/certs` (or
//! `/etc/pki/tls/certs`), milliseconds that every cold start would pay, and
//! the SDK and the HTTP client would each pay them separately.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{ConfigError, Env};

/// The variable naming a PEM file of extra trusted CA certificates.
pub const EXTRA_CA_CERTS_FILE: &str = "EXTRA_CA_CERTS_FILE";

/// Mozilla's roots as one PEM bundle, written by `build.rs`.
static MOZILLA_ROOTS_PEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mozilla-roots.pem"));

/// The trust store: Mozilla's roots plus any extra certificates.
#[derive(Clone, Debug, Default)]
pub struct TrustedRoots {
    extra: Vec<CertificateDer<'static>>,
    extra_pem: Vec<u8>,
}

impl TrustedRoots {
    /// Mozilla's roots only.
    pub fn mozilla() -> Self {
        TrustedRoots::default()
    }

    /// Mozilla's roots, plus the certificates in `EXTRA_CA_CERTS_FILE` when it
    /// is set. The file is read and every certificate in it checked now, at
    /// start-up, so a bad file stops the function before its first event.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.optional(EXTRA_CA_CERTS_FILE) {
            None => Ok(TrustedRoots::mozilla()),
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|err| {
                    ConfigError::malformed(
                        EXTRA_CA_CERTS_FILE,
                        format!(
                            "a readable PEM file of CA certificates; cannot read {path}: {err}"
                        ),
                    )
                })?;
                TrustedRoots::with_extra_pem(pem).map_err(|problem| {
                    ConfigError::malformed(
                        EXTRA_CA_CERTS_FILE,
                        format!("a PEM file of CA certificates; {path}: {problem}"),
                    )
                })
            }
        }
    }

    /// Mozilla's roots plus the PEM certificates in `pem`. Every certificate
    /// must parse as a trust anchor; a file with none is an error too.
    pub fn with_extra_pem(pem: Vec<u8>) -> Result<Self, String> {
        let mut extra = Vec::new();
        for (index, item) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let certificate = item.map_err(|err| format!("certificate {}: {err}", index + 1))?;
            // What the SDK and rustls will do with it later, done now: a
            // certificate that is not a usable trust anchor fails here, with
            // the variable named, not in the middle of an invocation.
            rustls::RootCertStore::empty()
                .add(certificate.clone())
                .map_err(|err| format!("certificate {}: {err}", index + 1))?;
            extra.push(certificate);
        }
        if extra.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".to_string());
        }
        Ok(TrustedRoots {
            extra,
            extra_pem: pem,
        })
    }

    /// Every trusted certificate, DER-encoded (for HTTP clients that take
    /// roots one by one).
    pub fn certificates(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .chain(self.extra.iter())
    }

    /// How many certificates are trusted.
    pub fn len(&self) -> usize {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + self.extra.len()
    }

    /// Never true: Mozilla's roots are always there.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many certificates came from `EXTRA_CA_CERTS_FILE`.
    pub fn extra_count(&self) -> usize {
        self.extra.len()
    }

    /// The SDK's trust store: these certificates only, no platform roots.
    pub fn sdk_trust_store(&self) -> aws_smithy_http_client::tls::TrustStore {
        let store = aws_smithy_http_client::tls::TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(MOZILLA_ROOTS_PEM);
        if self.extra_pem.is_empty() {
            store
        } else {
            store.with_pem_certificate(self.extra_pem.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_bundle_holds_every_mozilla_root() {
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(MOZILLA_ROOTS_PEM)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(parsed.len() > 100, "{} roots", parsed.len());
        assert_eq!(parsed.as_slice(), webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        // The SDK adds each one with `RootCertStore::add` and panics on a
        // failure, so every compiled-in root must be a usable trust anchor.
        let mut store = rustls::RootCertStore::empty();
        for certificate in parsed {
            store.add(certificate).unwrap();
        }
    }

    #[test]
    fn mozilla_only_by_default() {
        let roots = TrustedRoots::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(roots.extra_count(), 0);
        assert_eq!(roots.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert_eq!(roots.certificates().count(), roots.len());
    }

    fn one_root_as_pem() -> Vec<u8> {
        let text = std::str::from_utf8(MOZILLA_ROOTS_PEM).unwrap();
        let end = text.find("-----END CERTIFICATE-----\n").unwrap() + 26;
        MOZILLA_ROOTS_PEM[..end].to_vec()
    }

    #[test]
    fn extra_certificates_are_added() {
        let dir = std::env::temp_dir().join(format!("kiln-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("extra.pem");
        let mut pem = one_root_as_pem();
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(&one_root_as_pem());
        std::fs::write(&path, &pem).unwrap();
        let env = Env::from_pairs([(EXTRA_CA_CERTS_FILE, path.to_str().unwrap())]);
        let roots = TrustedRoots::from_env(&env).unwrap();
        assert_eq!(roots.extra_count(), 2);
        assert_eq!(roots.certificates().count(), roots.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_names_the_variable() {
        let env = Env::from_pairs([(EXTRA_CA_CERTS_FILE, "/nonexistent/kiln/ca.pem")]);
        let err = TrustedRoots::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), EXTRA_CA_CERTS_FILE);
        let text = err.to_string();
        assert!(text.contains("/nonexistent/kiln/ca.pem"), "{text}");
        assert!(text.contains("PEM"), "{text}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let err = TrustedRoots::with_extra_pem(b"not a certificate\n".to_vec()).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        let err = TrustedRoots::with_extra_pem(pem).unwrap_err();
        assert!(err.starts_with("certificate 1:"), "{err}");
    }

    #[test]
    fn broken_base64_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec();
        let err = TrustedRoots::with_extra_pem(pem).unwrap_err();
        assert!(err.starts_with("certificate 1:"), "{err}");
    }
}
