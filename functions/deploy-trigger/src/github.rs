//! The parts of GitHub's webhook payloads that kiln reads.
//!
//! Only the fields used are declared, each optional (GitHub sends `null`
//! for many of them), and unknown fields are skipped. Whether a field that
//! is needed is present is the handler's decision, not serde's, so a
//! missing field gets a precise reason.

use serde::Deserialize;

/// `repository`, as every repository event carries it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Repository {
    pub full_name: Option<String>,
    pub clone_url: Option<String>,
    /// When the repository was last pushed to: epoch seconds in a `push`
    /// payload, an RFC 3339 string in the others.
    #[serde(default, deserialize_with = "github_time")]
    pub pushed_at: Option<time::OffsetDateTime>,
}

/// `sender` or `pusher`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Account {
    pub login: Option<String>,
    /// `pusher` has `name` rather than `login`.
    pub name: Option<String>,
}

/// Any event: only what the repository allowlist needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnyEvent {
    pub repository: Option<Repository>,
}

/// A `push` event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The commit the ref pointed at before the push (all zeros for a new ref).
    pub before: Option<String>,
    pub after: Option<String>,
    pub deleted: Option<bool>,
    pub repository: Option<Repository>,
    pub sender: Option<Account>,
    pub pusher: Option<Account>,
    pub created: Option<bool>,
    pub forced: Option<bool>,
    /// The pushed commits, oldest first; GitHub lists at most 2048.
    pub commits: Option<Vec<Commit>>,
    /// The commit the ref now points at (`null` when the ref was deleted).
    pub head_commit: Option<Commit>,
}

/// One commit of a push (`commits[]`, `head_commit`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Commit {
    pub id: Option<String>,
    pub message: Option<String>,
    pub added: Option<Vec<String>>,
    pub modified: Option<Vec<String>>,
    pub removed: Option<Vec<String>>,
}

impl Commit {
    /// The files this commit added, modified or removed.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        [&self.added, &self.modified, &self.removed]
            .into_iter()
            .flatten()
            .flatten()
            .map(String::as_str)
    }

    /// The commit id cut to git's usual seven characters, for messages.
    pub fn short_id(&self) -> &str {
        let id = self.id.as_deref().unwrap_or("(no id)");
        id.get(..7).unwrap_or(id)
    }
}

/// A `deployment` event (GitHub's Deployments API).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeploymentEvent {
    pub deployment: Option<Deployment>,
    pub repository: Option<Repository>,
    pub sender: Option<Account>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Deployment {
    pub id: Option<u64>,
    pub sha: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub environment: Option<String>,
    #[serde(default, deserialize_with = "github_time")]
    pub created_at: Option<time::OffsetDateTime>,
}

/// A GitHub timestamp, as epoch seconds or an RFC 3339 string. Anything
/// else (null, a malformed value) reads as absent: the time only orders
/// deployments, and the request's own time stands in for it.
fn github_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<time::OffsetDateTime>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()),
        serde_json::Value::String(s) => {
            time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok()
        }
        _ => None,
    })
}

/// The body is not a JSON object of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payload is not valid JSON for a {event} event: {detail}")]
pub struct PayloadError {
    pub event: String,
    pub detail: String,
}

/// Decodes a payload, which must be a JSON object (serde would otherwise
/// accept an array for a struct).
pub fn parse<'a, T: Deserialize<'a>>(event: &str, json: &'a [u8]) -> Result<T, PayloadError> {
    let error = |detail: String| PayloadError {
        event: event.to_string(),
        detail,
    };
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(error("expected a JSON object".into()));
    }
    serde_json::from_slice(json).map_err(|e| error(e.to_string()))
}

/// The commit id GitHub sends as `after` when a ref is deleted.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

impl PushEvent {
    /// A push that deletes its ref has nothing to deploy.
    pub fn is_deletion(&self) -> bool {
        self.deleted == Some(true) || self.after.as_deref() == Some(ZERO_SHA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!(
            "{}/../../tests/fixtures/github/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    #[test]
    fn push_fixtures_decode() {
        let push: PushEvent = parse("push", &fixture("push/with-new-branch.payload.json")).unwrap();
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/master"));
        assert_eq!(
            push.after.as_deref(),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        assert!(!push.is_deletion());
        let repository = push.repository.unwrap();
        assert_eq!(
            repository.full_name.as_deref(),
            Some("Codertocat/Hello-World")
        );
        assert_eq!(
            repository.clone_url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World.git")
        );
        assert_eq!(push.sender.unwrap().login.as_deref(), Some("Codertocat"));
        assert_eq!(push.created, Some(true));
        assert_eq!(push.forced, Some(false));
        let commits = push.commits.unwrap();
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0].files().collect::<Vec<_>>(), ["README.md"]);
        assert_eq!(commits[0].short_id(), "6113728");
        let head = push.head_commit.unwrap();
        assert_eq!(head.message.as_deref(), Some("Initial commit"));
        assert_eq!(head.files().collect::<Vec<_>>(), ["README.md"]);
        // A push payload gives pushed_at in epoch seconds.
        assert_eq!(
            repository.pushed_at,
            Some(time::macros::datetime!(2019-05-15 15:20:57 UTC))
        );

        let deletion: PushEvent = parse("push", &fixture("push/payload.json")).unwrap();
        assert!(deletion.is_deletion());
        assert!(deletion.head_commit.is_none());
        assert_eq!(deletion.commits.map(|c| c.len()), Some(0));
    }

    #[test]
    fn deployment_fixture_decodes() {
        let event: DeploymentEvent =
            parse("deployment", &fixture("deployment/payload.json")).unwrap();
        let deployment = event.deployment.unwrap();
        assert_eq!(deployment.id, Some(145988746));
        assert_eq!(deployment.environment.as_deref(), Some("production"));
        assert_eq!(
            deployment.sha.as_deref(),
            Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
        );
        assert_eq!(deployment.git_ref.as_deref(), Some("master"));
        assert_eq!(
            deployment.created_at,
            Some(time::macros::datetime!(2019-05-15 15:20:53 UTC))
        );
        // Elsewhere, pushed_at is an RFC 3339 string.
        assert_eq!(
            event.repository.unwrap().pushed_at,
            Some(time::macros::datetime!(2019-05-15 15:20:52 UTC))
        );
    }

    #[test]
    fn organization_ping_has_no_repository() {
        let ping: AnyEvent =
            parse("ping", &fixture("ping/with-organization.payload.json")).unwrap();
        assert!(ping.repository.is_none());
    }

    #[test]
    fn nulls_and_missing_fields_are_tolerated_but_non_objects_are_not() {
        let push: PushEvent = parse("push", br#"{"ref":null,"repository":null}"#).unwrap();
        let odd: Repository = serde_json::from_str(r#"{"pushed_at":"yesterday"}"#).unwrap();
        assert_eq!(odd.pushed_at, None);
        let null: Deployment = serde_json::from_str(r#"{"created_at":null}"#).unwrap();
        assert_eq!(null.created_at, None);
        assert!(push.git_ref.is_none() && push.repository.is_none());
        assert!(parse::<AnyEvent>("ping", b"[null]").is_err());
        assert!(parse::<AnyEvent>("ping", b"null").is_err());
        assert!(parse::<AnyEvent>("ping", b"{").is_err());
        let err = parse::<PushEvent>("push", br#"{"after": 12}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the payload is not valid JSON for a push event")
        );
    }
}
