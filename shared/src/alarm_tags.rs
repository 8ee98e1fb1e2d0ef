//! What a person did about an alarm, kept on the alarm itself as tags, so
//! alert-forwarder's refire stays stateless. slack-actions writes them
//! (Acknowledge, Snooze); refire reads them with the alarm's tags.
//!
//! An acknowledgement names the ALARM episode it belongs to: the alarm's
//! `StateUpdatedTimestamp` when it went into ALARM. When the alarm goes OK
//! and then ALARM again, the new episode has a new time, the old tag no
//! longer matches, and the alarm fires as new.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Every tag kiln puts on an alarm starts with this; slack-actions' role may
/// tag only with it (`aws:TagKeys`).
pub const PREFIX: &str = "kiln:";
/// `<episode RFC 3339> <Slack user id>`.
pub const ACKNOWLEDGED: &str = "kiln:acknowledged";
/// `<until RFC 3339> <Slack user id>`.
pub const SNOOZED_UNTIL: &str = "kiln:snoozed-until";

/// A tag value's time and Slack user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub at: OffsetDateTime,
    pub user: String,
}

impl Stamp {
    pub fn to_tag(&self) -> String {
        // Formatting a valid UTC time as RFC 3339 cannot fail.
        let at = self.at.format(&Rfc3339).unwrap_or_default();
        format!("{at} {}", self.user)
    }

    /// `None` for a value kiln did not write (edited by hand): such a tag is
    /// ignored, never trusted.
    pub fn from_tag(value: &str) -> Option<Stamp> {
        let (at, user) = value.trim().split_once(' ')?;
        let at = OffsetDateTime::parse(at, &Rfc3339).ok()?;
        let user = user.trim();
        if user.is_empty() || user.contains(char::is_whitespace) {
            return None;
        }
        Some(Stamp {
            at,
            user: user.to_string(),
        })
    }
}

/// Why refire stays quiet about an alarm in ALARM, if it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quiet {
    Acknowledged(Stamp),
    Snoozed(Stamp),
}

/// Decides from the alarm's tags whether refire skips it: acknowledged for
/// this episode (`episode` is the alarm's `StateUpdatedTimestamp`), or
/// snoozed past `now`.
pub fn quiet(
    acknowledged: Option<&str>,
    snoozed_until: Option<&str>,
    episode: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<Quiet> {
    if let Some(stamp) = acknowledged.and_then(Stamp::from_tag)
        && stamp.at == episode
    {
        return Some(Quiet::Acknowledged(stamp));
    }
    if let Some(stamp) = snoozed_until.and_then(Stamp::from_tag)
        && stamp.at > now
    {
        return Some(Quiet::Snoozed(stamp));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stamp_round_trips_and_rejects_hand_edits() {
        let stamp = Stamp {
            at: datetime!(2026-12-08 14:02:00 UTC),
            user: "U024BE7LH".into(),
        };
        assert_eq!(stamp.to_tag(), "2026-12-08T14:02:00Z U024BE7LH");
        assert_eq!(Stamp::from_tag(&stamp.to_tag()), Some(stamp));
        assert_eq!(Stamp::from_tag("yes"), None);
        assert_eq!(Stamp::from_tag("2026-12-08T14:02:00Z"), None);
        assert_eq!(Stamp::from_tag("tomorrow U1"), None);
    }

    #[test]
    fn acknowledgement_holds_for_its_episode_only() {
        let episode = datetime!(2026-12-08 14:00:00 UTC);
        let now = datetime!(2026-12-08 15:00:00 UTC);
        let ack = "2026-12-08T14:00:00Z U1";
        assert!(matches!(
            quiet(Some(ack), None, episode, now),
            Some(Quiet::Acknowledged(_))
        ));
        // OK, then ALARM again: a new episode fires anew.
        let next = datetime!(2026-12-08 14:30:00 UTC);
        assert_eq!(quiet(Some(ack), None, next, now), None);
    }

    #[test]
    fn snooze_holds_until_its_time() {
        let episode = datetime!(2026-12-08 14:00:00 UTC);
        let snooze = "2026-12-08T16:00:00Z U1";
        assert!(matches!(
            quiet(
                None,
                Some(snooze),
                episode,
                datetime!(2026-12-08 15:59:59 UTC)
            ),
            Some(Quiet::Snoozed(_))
        ));
        assert_eq!(
            quiet(
                None,
                Some(snooze),
                episode,
                datetime!(2026-12-08 16:00:00 UTC)
            ),
            None
        );
    }
}
