//! GitHub's `X-Hub-Signature-256`: parsing the header and checking it.
//!
//! The header is `sha256=` followed by the HMAC-SHA256 of the raw body, as
//! 64 lowercase hex digits. Anything else is refused outright: there is no
//! SHA-1 (`X-Hub-Signature`) fallback, no uppercase hex, no truncated value
//! and no list of values. The comparison is the hmac crate's constant-time
//! `verify_slice`, tried against each version of the secret in turn (the
//! current one and, during a rotation, the previous one).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use kiln::SecretString;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header GitHub puts the signature in.
pub const HEADER: &str = "x-hub-signature-256";

const PREFIX: &str = "sha256=";
const DIGEST_LEN: usize = 32;

/// A parsed signature: the 32 bytes of an HMAC-SHA256.
///
/// Its `Debug` doesn't show the bytes: log lines never carry a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature([u8; DIGEST_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature([redacted])")
    }
}

impl Signature {
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }
}

/// Why a signature header was refused. The messages describe the shape,
/// never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFormatError {
    #[error("X-Hub-Signature-256 carries more than one signature")]
    Multiple,
    #[error("X-Hub-Signature-256 is not a sha256= signature (kiln accepts only HMAC-SHA256)")]
    NotSha256,
    #[error("X-Hub-Signature-256 must have exactly 64 hex digits after sha256=")]
    WrongLength,
    #[error("X-Hub-Signature-256 must be lowercase hex after sha256=")]
    NotLowercaseHex,
}

/// Parses one header value: `sha256=` and 64 lowercase hex digits.
/// Surrounding spaces or tabs (HTTP's optional whitespace) are ignored.
pub fn parse_header(value: &[u8]) -> Result<Signature, SignatureFormatError> {
    let value = value.trim_ascii();
    // API Gateway joins repeated headers with commas.
    if value.contains(&b',') {
        return Err(SignatureFormatError::Multiple);
    }
    let hex = value
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(SignatureFormatError::NotSha256)?;
    if hex.len() != DIGEST_LEN * 2 {
        return Err(SignatureFormatError::WrongLength);
    }
    let mut digest = [0u8; DIGEST_LEN];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
    }
    Ok(Signature(digest))
}

fn lower_hex_digit(c: u8) -> Result<u8, SignatureFormatError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(SignatureFormatError::NotLowercaseHex),
    }
}

/// Which secret version a body was signed with, if any: the index into
/// `secrets` of the first version whose HMAC matches. Every comparison is
/// constant-time.
pub fn verify(body: &[u8], signature: &Signature, secrets: &[SecretString]) -> Option<usize> {
    secrets
        .iter()
        .position(|secret| matches(body, signature, secret))
}

/// Whether `signature` is the HMAC-SHA256 of `body` under `secret`, compared
/// in constant time.
pub fn matches(body: &[u8], signature: &Signature, secret: &SecretString) -> bool {
    // HMAC takes keys of any length, so this never fails.
    HmacSha256::new_from_slice(secret.expose().as_bytes())
        .map(|mut mac| {
            mac.update(body);
            mac.verify_slice(signature.as_bytes()).is_ok()
        })
        .unwrap_or(false)
}

/// The header value GitHub would send for `body` signed with `secret`.
/// Used by tests, benchmarks and the local tools that play GitHub.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    use std::fmt::Write;
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        // Unreachable: HMAC accepts keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut header = String::with_capacity(PREFIX.len() + DIGEST_LEN * 2);
    header.push_str(PREFIX);
    for byte in digest.iter() {
        let _ = write!(header, "{byte:02x}");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // GitHub's documented test vector ("Validating webhook deliveries").
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_PAYLOAD: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values.iter().map(|v| SecretString::new(*v)).collect()
    }

    #[test]
    fn githubs_documented_vector_verifies() {
        assert_eq!(sign(DOC_SECRET.as_bytes(), DOC_PAYLOAD), DOC_SIGNATURE);
        let signature = parse_header(DOC_SIGNATURE.as_bytes()).unwrap();
        assert_eq!(
            verify(DOC_PAYLOAD, &signature, &secrets(&[DOC_SECRET])),
            Some(0)
        );
        assert_eq!(
            verify(b"Hello, World?", &signature, &secrets(&[DOC_SECRET])),
            None
        );
        assert_eq!(
            verify(DOC_PAYLOAD, &signature, &secrets(&["another secret"])),
            None
        );
    }

    #[test]
    fn previous_secret_version_is_tried_after_the_current_one() {
        let signature = parse_header(DOC_SIGNATURE.as_bytes()).unwrap();
        let versions = secrets(&["the new secret", DOC_SECRET]);
        assert_eq!(verify(DOC_PAYLOAD, &signature, &versions), Some(1));
        assert_eq!(verify(DOC_PAYLOAD, &signature, &[]), None);
    }

    #[test]
    fn malformed_headers_are_refused_with_their_reason() {
        let hex = &DOC_SIGNATURE[PREFIX.len()..];
        let cases: Vec<(String, SignatureFormatError)> = vec![
            (
                format!("sha1={}", &hex[..40]),
                SignatureFormatError::NotSha256,
            ),
            (hex.to_string(), SignatureFormatError::NotSha256),
            (format!("SHA256={hex}"), SignatureFormatError::NotSha256),
            (format!("sha256 ={hex}"), SignatureFormatError::NotSha256),
            (String::new(), SignatureFormatError::NotSha256),
            (
                format!("sha256={}", &hex[..63]),
                SignatureFormatError::WrongLength,
            ),
            (
                format!("sha256={}", &hex[..32]),
                SignatureFormatError::WrongLength,
            ),
            (format!("sha256={hex}0"), SignatureFormatError::WrongLength),
            ("sha256=".to_string(), SignatureFormatError::WrongLength),
            (
                format!("sha256={}", hex.to_ascii_uppercase()),
                SignatureFormatError::NotLowercaseHex,
            ),
            (
                format!("sha256={}g", &hex[..63]),
                SignatureFormatError::NotLowercaseHex,
            ),
            (
                format!("sha256={hex},sha256={hex}"),
                SignatureFormatError::Multiple,
            ),
            (
                format!("sha256={hex}, sha1=abc"),
                SignatureFormatError::Multiple,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_header(header.as_bytes()), Err(expected), "{header}");
        }
        assert!(parse_header(format!(" {DOC_SIGNATURE}\t").as_bytes()).is_ok());
    }

    #[test]
    fn debug_and_errors_never_show_the_signature() {
        let signature = parse_header(DOC_SIGNATURE.as_bytes()).unwrap();
        assert!(!format!("{signature:?}").contains("757107"));
        let err = parse_header(b"sha256=757107EA").unwrap_err();
        assert!(!err.to_string().contains("757107"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_header(&bytes);
        }

        #[test]
        fn parser_never_panics_near_the_accepted_shape(tail in "[0-9a-fA-F,= ]{0,140}") {
            let _ = parse_header(format!("sha256={tail}").as_bytes());
        }

        #[test]
        fn formatted_digests_round_trip(digest in any::<[u8; 32]>()) {
            let header: String = std::iter::once(PREFIX.to_string())
                .chain(digest.iter().map(|b| format!("{b:02x}")))
                .collect();
            let parsed = parse_header(header.as_bytes()).unwrap();
            prop_assert_eq!(parsed.as_bytes(), &digest);
            // The same digest in uppercase is refused (unless it has no letters).
            let upper = header.replacen("sha256=", "", 1).to_ascii_uppercase();
            let result = parse_header(format!("sha256={upper}").as_bytes());
            if upper.bytes().any(|b| b.is_ascii_alphabetic()) {
                prop_assert_eq!(result, Err(SignatureFormatError::NotLowercaseHex));
            } else {
                prop_assert!(result.is_ok());
            }
        }

        #[test]
        fn sign_then_verify_round_trips(
            secret in ".{0,80}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let header = sign(secret.as_bytes(), &body);
            let signature = parse_header(header.as_bytes()).unwrap();
            let secret = SecretString::new(secret);
            prop_assert_eq!(verify(&body, &signature, std::slice::from_ref(&secret)), Some(0));
            let mut tampered = body.clone();
            tampered.push(b'x');
            prop_assert_eq!(verify(&tampered, &signature, &[secret]), None);
        }
    }
}
