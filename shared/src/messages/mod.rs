//! The messages kiln itself sends: one schema each, shared by producer and
//! consumer. Each has a `kind` and a `version`, and is decoded strictly:
//! a message we don't recognise is an error, never a guess.

pub mod alert;
pub mod deploy_request;
pub mod deployment;

pub use alert::{Alert, AlertField, Severity};
pub use deploy_request::{DeployEvent, DeployRequest};
pub use deployment::{DeployOutcome, DeploymentLog, DeploymentNotice, LogLocation};

/// Why one of kiln's own messages could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not valid JSON for {kind} v{version}: {detail}")]
    Invalid {
        kind: &'static str,
        version: u32,
        detail: String,
    },
    #[error("expected kind {expected:?}, found {found:?}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("{kind} version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        kind: &'static str,
        found: u64,
        supported: u32,
    },
}

/// Reads `kind` and `version` first, so a wrong or newer message gets a
/// precise error rather than a missing-field complaint.
pub(crate) fn check_envelope(
    json: &str,
    kind: &'static str,
    version: u32,
) -> Result<(), MessageError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        kind: Option<String>,
        version: Option<u64>,
    }
    let envelope: Envelope = serde_json::from_str(json).map_err(|e| MessageError::Invalid {
        kind,
        version,
        detail: e.to_string(),
    })?;
    match envelope.kind {
        Some(found) if found == kind => {}
        found => {
            return Err(MessageError::WrongKind {
                expected: kind,
                found: found.unwrap_or_else(|| "<none>".into()),
            });
        }
    }
    match envelope.version {
        Some(found) if found == u64::from(version) => Ok(()),
        found => Err(MessageError::UnsupportedVersion {
            kind,
            found: found.unwrap_or(0),
            supported: version,
        }),
    }
}
