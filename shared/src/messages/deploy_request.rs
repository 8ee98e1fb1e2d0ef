//! The deploy request: what deploy-trigger publishes to the deploy topic and
//! deploy-exec consumes. It stays small (never the GitHub body) and carries
//! everything the stack updater needs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MessageError, check_envelope};

/// `kind` of a deploy request.
pub const KIND: &str = "kiln.deploy.request";
/// The schema version this build writes and reads.
pub const VERSION: u32 = 1;

/// Which GitHub event asked for the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployEvent {
    Push,
    Deployment,
    /// A person asked to deploy a commit again (Slack's "Retry deploy").
    Retry,
}

impl DeployEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployEvent::Push => "push",
            DeployEvent::Deployment => "deployment",
            DeployEvent::Retry => "retry",
        }
    }
}

/// A request to deploy one commit of one repository to one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Always [`KIND`].
    pub kind: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// GitHub's `X-GitHub-Delivery`: unique per delivery, and the same when
    /// GitHub redelivers it. The idempotency key downstream.
    pub delivery_id: String,
    pub event: DeployEvent,
    /// `owner/name`.
    pub repository: String,
    pub clone_url: String,
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1.2.0`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit to deploy: 40 lowercase hex characters.
    pub sha: String,
    pub environment: String,
    /// The GitHub login that caused the event.
    pub sender: String,
    /// The GitHub deployment id, for `deployment` events.
    pub deployment_id: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When GitHub says the event happened: `repository.pushed_at` for a
    /// push, `deployment.created_at` for a deployment. It orders requests
    /// on a deploy lane (the newest wins). Optional, and left out of the
    /// JSON when absent, so a request without it reads as before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub event_at: Option<OffsetDateTime>,
    /// For a push, the commit the ref pointed at before it (GitHub's
    /// `before`). Two pushes stamped with the same second are ordered by it:
    /// the push whose `before` is the other's `sha` is the newer. Optional,
    /// and left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

impl DeployRequest {
    /// Encodes to the JSON published on SNS.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes strictly: the right kind and version, no unknown fields, and
    /// a well-formed sha.
    pub fn from_json(json: &str) -> Result<Self, MessageError> {
        check_envelope(json, KIND, VERSION)?;
        let request: DeployRequest =
            serde_json::from_str(json).map_err(|e| MessageError::Invalid {
                kind: KIND,
                version: VERSION,
                detail: e.to_string(),
            })?;
        request.validate()?;
        Ok(request)
    }

    fn validate(&self) -> Result<(), MessageError> {
        let invalid = |detail: String| MessageError::Invalid {
            kind: KIND,
            version: VERSION,
            detail,
        };
        if !is_commit_sha(&self.sha) {
            return Err(invalid("sha must be 40 lowercase hex characters".into()));
        }
        if let Some(before) = &self.before
            && !is_commit_sha(before)
        {
            return Err(invalid("before must be 40 lowercase hex characters".into()));
        }
        if !self.git_ref.starts_with("refs/") {
            return Err(invalid(
                "ref must be a full ref (refs/heads/… or refs/tags/…)".into(),
            ));
        }
        for (name, value) in [
            ("delivery_id", &self.delivery_id),
            ("repository", &self.repository),
            ("environment", &self.environment),
        ] {
            if value.is_empty() {
                return Err(invalid(format!("{name} is empty")));
            }
        }
        Ok(())
    }

    /// The time that orders this request against others on its lane:
    /// `event_at`, or `requested_at` when GitHub gave no time.
    pub fn ordered_at(&self) -> OffsetDateTime {
        self.event_at.unwrap_or(self.requested_at)
    }

    /// The short name of the ref: `main` for `refs/heads/main`, `v1.2.0`
    /// for `refs/tags/v1.2.0`.
    pub fn short_ref(&self) -> &str {
        self.git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| self.git_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&self.git_ref)
    }
}

/// Whether `sha` is a full commit id: 40 lowercase hex characters.
pub fn is_commit_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeployRequest {
        DeployRequest {
            kind: KIND.into(),
            version: VERSION,
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            event: DeployEvent::Push,
            repository: "Codertocat/Hello-World".into(),
            clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
            git_ref: "refs/heads/main".into(),
            sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            environment: "production".into(),
            sender: "Codertocat".into(),
            deployment_id: None,
            requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
            event_at: None,
            before: None,
        }
    }

    #[test]
    fn round_trips_with_documented_keys() {
        let json = sample().to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "kind",
            "version",
            "delivery_id",
            "event",
            "repository",
            "clone_url",
            "ref",
            "sha",
            "environment",
            "sender",
            "deployment_id",
            "requested_at",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["requested_at"], "2026-11-22T10:00:00Z");
        assert_eq!(v["event"], "push");
        assert_eq!(DeployRequest::from_json(&json).unwrap(), sample());
        assert_eq!(sample().short_ref(), "main");
    }

    #[test]
    fn rejects_wrong_kind_version_and_unknown_fields() {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["kind"] = "kiln.alert".into();
        assert!(matches!(
            DeployRequest::from_json(&v.to_string()),
            Err(MessageError::WrongKind { .. })
        ));
        v["kind"] = KIND.into();
        v["version"] = 2.into();
        assert_eq!(
            DeployRequest::from_json(&v.to_string())
                .unwrap_err()
                .to_string(),
            "kiln.deploy.request version 2 is not supported (this build reads version 1)"
        );
        v["version"] = 1.into();
        v["extra"] = true.into();
        assert!(DeployRequest::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn event_at_is_optional_and_orders_the_request() {
        // Absent: not written, and requested_at orders the request.
        let json = sample().to_json();
        assert!(!json.contains("event_at"), "{json}");
        assert_eq!(sample().ordered_at(), sample().requested_at);
        // Present: RFC 3339, read back, and it wins over requested_at.
        let mut r = sample();
        r.event_at = Some(time::macros::datetime!(2026-11-22 09:59:58 UTC));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["event_at"], "2026-11-22T09:59:58Z");
        let back = DeployRequest::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.ordered_at(), r.event_at.unwrap());
        // Any RFC 3339 offset is accepted; not RFC 3339 is rejected.
        let mut v = v;
        v["event_at"] = "2026-11-22T11:59:58+02:00".into();
        assert_eq!(
            DeployRequest::from_json(&v.to_string())
                .unwrap()
                .ordered_at(),
            r.event_at.unwrap()
        );
        v["event_at"] = 1557933657.into();
        assert!(DeployRequest::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn before_is_optional_and_checked() {
        assert!(!sample().to_json().contains("before"));
        let mut r = sample();
        r.before = Some("0123456789abcdef0123456789abcdef01234567".into());
        assert_eq!(DeployRequest::from_json(&r.to_json()).unwrap(), r);
        r.before = Some("0123456".into());
        assert!(DeployRequest::from_json(&r.to_json()).is_err());
    }

    #[test]
    fn a_retry_says_so() {
        let mut r = sample();
        r.event = DeployEvent::Retry;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["event"], "retry");
        assert_eq!(DeployRequest::from_json(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn rejects_bad_sha_and_plain_text() {
        let mut r = sample();
        r.sha = "6113728".into();
        assert!(DeployRequest::from_json(&r.to_json()).is_err());
        assert!(DeployRequest::from_json("Hello\r\nworld!").is_err());
    }
}
