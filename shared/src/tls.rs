//! The certificates kiln's HTTPS clients trust.
//!
//! Mozilla's root certificates, compiled in (the `webpki-root-certs` crate),
//! plus the PEM certificates in the file named by `EXTRA_CA_CERTS_FILE` when
//! it is set (a GitHub Enterprise Server or a TLS-inspecting proxy signed by
//! a private CA). GitHub and Slack calls trust all of them.
//!
//! AWS calls trust fewer ([`AwsRoots`]): in the `aws` and `aws-us-gov`
//! partitions every service endpoint presents an Amazon Trust Services
//! certificate, so the SDK trusts those five roots (plus
//! `EXTRA_CA_CERTS_FILE`) and no other CA can be used to impersonate AWS to
//! kiln. The SDK takes roots only as PEM and parses them on its first call;
//! five roots instead of Mozilla's ~150 take that from about a millisecond
//! to a few microseconds of the cold start. Other partitions (China, the
//! ISO regions, the European Sovereign Cloud) get Mozilla's full set. An
//! HTTPS endpoint override (`AWS_ENDPOINT_URL*`) must present an Amazon
//! certificate too, or its CA must be in `EXTRA_CA_CERTS_FILE`.
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

/// Amazon Trust Services' five roots (Amazon Root CA 1–4 and Starfield
/// Services Root CA G2), selected from Mozilla's by `build.rs`.
static AMAZON_ROOTS_PEM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/amazon-roots.pem"));

/// Which compiled-in roots the AWS SDK trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsRoots {
    /// Amazon Trust Services only: AWS's own endpoints in the `aws` and
    /// `aws-us-gov` partitions.
    Amazon,
    /// Mozilla's full set.
    Mozilla,
}

impl AwsRoots {
    /// [`AwsRoots::Amazon`] unless the region (`AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`) is outside the `aws` and `aws-us-gov`
    /// partitions.
    pub fn for_environment(env: &Env) -> AwsRoots {
        let region = env
            .optional("AWS_REGION")
            .or_else(|| env.optional("AWS_DEFAULT_REGION"))
            .unwrap_or_default();
        let other_partition = region.starts_with("cn-")
            || region.starts_with("eusc-")
            || region.split('-').any(|part| part.starts_with("iso"));
        if other_partition {
            AwsRoots::Mozilla
        } else {
            AwsRoots::Amazon
        }
    }

    fn pem(self) -> &'static [u8] {
        match self {
            AwsRoots::Amazon => AMAZON_ROOTS_PEM,
            AwsRoots::Mozilla => MOZILLA_ROOTS_PEM,
        }
    }
}

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

    /// The SDK's trust store: `aws` roots and the extra certificates, no
    /// platform roots.
    pub fn sdk_trust_store(&self, aws: AwsRoots) -> aws_smithy_http_client::tls::TrustStore {
        let store = aws_smithy_http_client::tls::TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(aws.pem());
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
    fn the_amazon_bundle_holds_the_five_amazon_trust_services_roots() {
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_ROOTS_PEM)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        for certificate in &parsed {
            assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.contains(certificate));
            store.add(certificate.clone()).unwrap();
        }
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 4",
            "Starfield Services Root",
        ] {
            assert!(
                parsed
                    .iter()
                    .any(|c| c.as_ref().windows(name.len()).any(|w| w == name.as_bytes())),
                "{name}"
            );
        }
    }

    #[test]
    fn aws_calls_trust_amazon_in_the_aws_partitions_only() {
        let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
        for region in [
            "us-east-1",
            "eu-west-3",
            "ap-southeast-5",
            "us-gov-west-1",
            "il-central-1",
        ] {
            assert_eq!(
                AwsRoots::for_environment(&env(&[("AWS_REGION", region)])),
                AwsRoots::Amazon,
                "{region}"
            );
        }
        for region in [
            "cn-north-1",
            "cn-northwest-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "eu-isoe-west-1",
            "us-isof-south-1",
            "eusc-de-east-1",
        ] {
            assert_eq!(
                AwsRoots::for_environment(&env(&[("AWS_REGION", region)])),
                AwsRoots::Mozilla,
                "{region}"
            );
        }
        assert_eq!(
            AwsRoots::for_environment(&env(&[("AWS_DEFAULT_REGION", "cn-north-1")])),
            AwsRoots::Mozilla
        );
        assert_eq!(
            AwsRoots::for_environment(&env(&[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
            ])),
            AwsRoots::Amazon,
            "an endpoint override does not widen the trust"
        );
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
