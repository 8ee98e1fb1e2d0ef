//! Turning an API Gateway HTTP API request into what the checks need: the
//! raw body bytes (which the signature covers), GitHub's headers, and the
//! JSON document inside the body.
//!
//! The body is decoded here rather than by `lambda_http`'s request
//! conversion, because that conversion panics on invalid base64: a
//! malformed request must get a 400, not take the process down.

use std::borrow::Cow;

use base64::Engine;
use http::{HeaderMap, HeaderValue};

/// GitHub caps webhook payloads at 25 MB; anything larger isn't GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const EVENT_HEADER: &str = "x-github-event";

/// Why the body could not be turned into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than 25 MiB, GitHub's maximum payload size")]
    TooLarge,
    #[error("the body is marked base64-encoded but is not valid base64")]
    InvalidBase64,
    #[error("the body is empty")]
    Empty,
}

/// The raw body bytes: base64-decoded when API Gateway says it encoded
/// them, otherwise the text as is. The signature is computed over exactly
/// these bytes.
pub fn decode_body(body: Option<String>, is_base64_encoded: bool) -> Result<Vec<u8>, BodyError> {
    let body = body.unwrap_or_default();
    let bytes = if is_base64_encoded {
        // Refuse before allocating when even the encoded length is too big.
        if body.len() > max_base64_len(MAX_BODY_BYTES) {
            return Err(BodyError::TooLarge);
        }
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| BodyError::InvalidBase64)?
    } else {
        body.into_bytes()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    if bytes.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(bytes)
}

/// The length of the padded base64 encoding of `decoded` bytes.
const fn max_base64_len(decoded: usize) -> usize {
    decoded.div_ceil(3) * 4
}

/// A problem with one of GitHub's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is repeated")]
    Repeated(&'static str),
    #[error("the {0} header is malformed: {1}")]
    Malformed(&'static str, &'static str),
}

/// The one value of a header, looked up without regard to case (the
/// `HeaderMap` keeps names lowercase). API Gateway joins repeated headers
/// with commas, so a repeat shows up either as two values or as a comma.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    display: &'static str,
) -> Result<&'a HeaderValue, HeaderError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(HeaderError::Missing(display))?;
    if values.next().is_some() {
        return Err(HeaderError::Repeated(display));
    }
    Ok(first)
}

/// `X-GitHub-Delivery`: GitHub's id for this delivery, the same when it is
/// redelivered. It becomes the SNS deduplication id, so it is held to a
/// safe alphabet and SNS's 128-character limit.
pub fn delivery_id(headers: &HeaderMap) -> Result<String, HeaderError> {
    token_header(
        headers,
        DELIVERY_HEADER,
        "X-GitHub-Delivery",
        128,
        |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'),
        "expected 1 to 128 letters, digits, `-`, `_`, `.` or `:`",
    )
}

/// `X-GitHub-Event`: the event name, e.g. `push`.
pub fn event_name(headers: &HeaderMap) -> Result<String, HeaderError> {
    token_header(
        headers,
        EVENT_HEADER,
        "X-GitHub-Event",
        64,
        |b| b.is_ascii_lowercase() || b == b'_',
        "expected an event name such as push",
    )
}

/// A single-valued header of at most `max_len` bytes, each `allowed`.
fn token_header(
    headers: &HeaderMap,
    name: &'static str,
    display: &'static str,
    max_len: usize,
    allowed: impl Fn(u8) -> bool,
    expected: &'static str,
) -> Result<String, HeaderError> {
    let value = single_header(headers, name, display)?
        .as_bytes()
        .trim_ascii();
    if value.contains(&b',') {
        return Err(HeaderError::Repeated(display));
    }
    if value.is_empty() || value.len() > max_len || !value.iter().copied().all(allowed) {
        return Err(HeaderError::Malformed(display, expected));
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// The two content types GitHub can be configured to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/json`: the body is the JSON document.
    Json,
    /// `application/x-www-form-urlencoded`: the JSON is in `payload`.
    Form,
}

/// The body's content type was neither of GitHub's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported content type {found}: expected application/json or application/x-www-form-urlencoded"
)]
pub struct UnsupportedContentType {
    /// What was sent (cut short), or `none`.
    pub found: String,
}

/// The media type of `Content-Type`, ignoring parameters and case.
pub fn content_type(headers: &HeaderMap) -> Result<ContentType, UnsupportedContentType> {
    let unsupported = |found: String| UnsupportedContentType { found };
    let value = match single_header(headers, "content-type", "Content-Type") {
        Ok(value) => value,
        Err(HeaderError::Missing(_)) => return Err(unsupported("none".into())),
        Err(_) => return Err(unsupported("repeated".into())),
    };
    let media_type = value
        .as_bytes()
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if media_type.eq_ignore_ascii_case(b"application/json") {
        Ok(ContentType::Json)
    } else if media_type.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        Ok(ContentType::Form)
    } else {
        let shown: String = String::from_utf8_lossy(media_type)
            .chars()
            .take(64)
            .collect();
        Err(unsupported(format!("`{shown}`")))
    }
}

/// The form body did not carry the JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form body has no payload field")]
    NoPayload,
    #[error("the form body has more than one payload field")]
    RepeatedPayload,
}

/// The JSON document: the body itself, or the form's `payload` field.
pub fn json_document(body: &[u8], content_type: ContentType) -> Result<Cow<'_, [u8]>, FormError> {
    match content_type {
        ContentType::Json => Ok(Cow::Borrowed(body)),
        ContentType::Form => {
            let mut payloads = form_urlencoded::parse(body).filter(|(key, _)| key == "payload");
            let (_, payload) = payloads.next().ok_or(FormError::NoPayload)?;
            if payloads.next().is_some() {
                return Err(FormError::RepeatedPayload);
            }
            Ok(match payload {
                Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use proptest::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bodies_decode_to_the_exact_bytes() {
        assert_eq!(
            decode_body(Some("{\"a\":1}".into()), false).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            decode_body(Some(b64(b"\x00\xffbinary")), true).unwrap(),
            b"\x00\xffbinary"
        );
        // Base64 of a text body is not decoded unless API Gateway says so.
        assert_eq!(decode_body(Some("e30=".into()), false).unwrap(), b"e30=");
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert_eq!(decode_body(None, false), Err(BodyError::Empty));
        assert_eq!(
            decode_body(Some(String::new()), false),
            Err(BodyError::Empty)
        );
        assert_eq!(
            decode_body(Some(String::new()), true),
            Err(BodyError::Empty)
        );
        assert_eq!(
            decode_body(Some("not base64!".into()), true),
            Err(BodyError::InvalidBase64)
        );
        assert_eq!(
            decode_body(Some("e30".into()), true),
            Err(BodyError::InvalidBase64)
        );
    }

    #[test]
    fn size_limit_is_25_mib_of_decoded_bytes() {
        let at_limit = "x".repeat(MAX_BODY_BYTES);
        assert_eq!(
            decode_body(Some(at_limit.clone()), false).unwrap().len(),
            MAX_BODY_BYTES
        );
        assert_eq!(
            decode_body(Some(format!("{at_limit}x")), false),
            Err(BodyError::TooLarge)
        );
        let encoded = b64(at_limit.as_bytes());
        assert_eq!(
            decode_body(Some(encoded), true).unwrap().len(),
            MAX_BODY_BYTES
        );
        let over = b64(format!("{at_limit}x").as_bytes());
        assert_eq!(decode_body(Some(over), true), Err(BodyError::TooLarge));
    }

    #[test]
    fn github_headers_are_found_in_any_case() {
        let h = headers(&[
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-EVENT", "push"),
        ]);
        assert_eq!(
            delivery_id(&h).unwrap(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert_eq!(event_name(&h).unwrap(), "push");
    }

    #[test]
    fn missing_repeated_and_malformed_headers_are_told_apart() {
        assert_eq!(
            delivery_id(&headers(&[])),
            Err(HeaderError::Missing("X-GitHub-Delivery"))
        );
        assert_eq!(
            event_name(&headers(&[
                ("x-github-event", "push"),
                ("x-github-event", "ping")
            ])),
            Err(HeaderError::Repeated("X-GitHub-Event"))
        );
        assert_eq!(
            event_name(&headers(&[("x-github-event", "push,ping")])),
            Err(HeaderError::Repeated("X-GitHub-Event"))
        );
        assert!(matches!(
            event_name(&headers(&[("x-github-event", "Push")])),
            Err(HeaderError::Malformed(..))
        ));
        assert!(matches!(
            delivery_id(&headers(&[("x-github-delivery", "a b")])),
            Err(HeaderError::Malformed(..))
        ));
        assert!(matches!(
            delivery_id(&headers(&[("x-github-delivery", &"a".repeat(129))])),
            Err(HeaderError::Malformed(..))
        ));
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        let ct = |v: &str| content_type(&headers(&[("content-type", v)]));
        assert_eq!(ct("application/json"), Ok(ContentType::Json));
        assert_eq!(ct("Application/JSON; charset=utf-8"), Ok(ContentType::Json));
        assert_eq!(
            ct("application/x-www-form-urlencoded"),
            Ok(ContentType::Form)
        );
        assert!(ct("text/plain").is_err());
        assert!(ct("application/jsonx").is_err());
        assert!(ct("multipart/form-data; boundary=x").is_err());
        assert_eq!(content_type(&headers(&[])).unwrap_err().found, "none");
    }

    #[test]
    fn form_bodies_carry_json_in_payload() {
        let body = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D";
        assert_eq!(
            json_document(body, ContentType::Form).unwrap().as_ref(),
            br#"{"zen":"Keep it logically awesome."}"#
        );
        assert_eq!(
            json_document(b"other=1", ContentType::Form),
            Err(FormError::NoPayload)
        );
        assert_eq!(
            json_document(b"payload=1&payload=2", ContentType::Form),
            Err(FormError::RepeatedPayload)
        );
        assert_eq!(
            json_document(b"{}", ContentType::Json).unwrap().as_ref(),
            b"{}"
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(body in ".{0,300}", is_base64 in any::<bool>()) {
            let _ = decode_body(Some(body), is_base64);
        }

        #[test]
        fn decoder_never_panics_on_base64_like_input(body in "[A-Za-z0-9+/=\\-_ \n]{0,300}") {
            let _ = decode_body(Some(body), true);
        }

        #[test]
        fn base64_bodies_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..2048)) {
            prop_assert_eq!(decode_body(Some(b64(&bytes)), true).unwrap(), bytes);
        }

        #[test]
        fn text_bodies_round_trip(text in ".{1,300}") {
            prop_assert_eq!(decode_body(Some(text.clone()), false).unwrap(), text.into_bytes());
        }

        #[test]
        fn form_payloads_round_trip(payload in ".{0,300}", other in "[a-z]{1,8}") {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(&other, "x")
                .append_pair("payload", &payload)
                .finish();
            let document = json_document(body.as_bytes(), ContentType::Form);
            if other == "payload" {
                prop_assert_eq!(document, Err(FormError::RepeatedPayload));
            } else {
                let document = document.unwrap();
                prop_assert_eq!(document.as_ref(), payload.as_bytes());
            }
        }

        #[test]
        fn form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = json_document(&body, ContentType::Form);
        }
    }
}
