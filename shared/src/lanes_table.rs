//! The deploy lanes table's shared vocabulary. deploy-exec owns the lanes
//! (one item per repository and environment); slack-actions freezes and
//! unfreezes environments and reads the lanes for `/kiln status`. Both read
//! and write the items through these names, so neither can drift.
//!
//! A freeze is one item per environment, keyed [`freeze_key`], beside the
//! lanes: it holds every repository's lane of that environment, including
//! lanes that do not exist yet. It has no `expires_at`: a freeze lasts
//! until someone lifts it.

use time::OffsetDateTime;

/// The table's partition key attribute.
pub const KEY: &str = "lane";

/// The lane of a request or a task: `owner/name#environment`. Neither a
/// repository name nor `/` can hold `#`, so the key splits back.
pub fn lane_key(repository: &str, environment: &str) -> String {
    format!("{repository}#{environment}")
}

/// The freeze item of an environment: `freeze:<environment>`. A lane key
/// always holds the repository's `/`, a freeze key never does, so the two
/// cannot collide.
pub fn freeze_key(environment: &str) -> String {
    format!("{FREEZE_KEY_PREFIX}{environment}")
}

/// What every freeze key starts with.
pub const FREEZE_KEY_PREFIX: &str = "freeze:";

/// The freeze item's attributes (all strings).
pub mod freeze_attr {
    pub const ENVIRONMENT: &str = "environment";
    /// The Slack user id that froze it.
    pub const FROZEN_BY: &str = "frozen_by";
    /// The Slack user name, when Slack sent one.
    pub const FROZEN_BY_NAME: &str = "frozen_by_name";
    /// Why, as typed after `/kiln freeze <env>`; absent when none was given.
    pub const REASON: &str = "reason";
    /// RFC 3339.
    pub const FROZEN_AT: &str = "frozen_at";
}

/// An environment's freeze: while it stands, deploy-exec queues requests
/// for that environment (the newest wins) but starts nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub environment: String,
    pub frozen_by: String,
    pub frozen_by_name: Option<String>,
    pub reason: Option<String>,
    pub frozen_at: OffsetDateTime,
}

impl Freeze {
    /// Who froze it, as people read it: `@alice`, or the user id.
    pub fn who(&self) -> String {
        match &self.frozen_by_name {
            Some(name) if !name.is_empty() => format!("@{name}"),
            _ => self.frozen_by.clone(),
        }
    }

    /// The waiting deployment's GitHub status description: frozen, by whom
    /// and why. GitHub cuts descriptions at 140 characters; the caller
    /// truncates.
    pub fn waiting_description(&self) -> String {
        match &self.reason {
            Some(reason) if !reason.trim().is_empty() => format!(
                "Waiting: {} is frozen by {}: {}",
                self.environment,
                self.who(),
                reason.trim()
            ),
            _ => format!("Waiting: {} is frozen by {}", self.environment, self.who()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze(reason: Option<&str>, name: Option<&str>) -> Freeze {
        Freeze {
            environment: "production".into(),
            frozen_by: "U024BE7LH".into(),
            frozen_by_name: name.map(String::from),
            reason: reason.map(String::from),
            frozen_at: time::macros::datetime!(2026-12-08 14:02:00 UTC),
        }
    }

    #[test]
    fn keys_never_collide() {
        assert_eq!(lane_key("acme/shop", "production"), "acme/shop#production");
        assert_eq!(freeze_key("production"), "freeze:production");
        assert!(!freeze_key("production").contains('/'));
    }

    #[test]
    fn waiting_description_names_who_and_why() {
        assert_eq!(
            freeze(Some(" release on Monday "), Some("alice")).waiting_description(),
            "Waiting: production is frozen by @alice: release on Monday"
        );
        assert_eq!(
            freeze(None, None).waiting_description(),
            "Waiting: production is frozen by U024BE7LH"
        );
    }
}
