//! The contract between deploy-exec and the deploy task it starts (kiln's
//! stack updater, or any image a user brings): the environment variables
//! deploy-exec hands the container, and what the container's exit code
//! means. Both sides use these names, so they cannot drift apart.

/// The deploy container's environment variables (docs/configuration.md,
/// deploy-exec; docs/stack-updater.md).
pub mod vars {
    pub const GIT_REMOTE: &str = "GIT_REMOTE";
    pub const GIT_SHA: &str = "GIT_SHA";
    pub const GIT_REF: &str = "GIT_REF";
    pub const GIT_TAG: &str = "GIT_TAG";
    pub const STACK_ENV: &str = "STACK_ENV";
    pub const DEPLOYMENT_ID: &str = "DEPLOYMENT_ID";
    pub const DELIVERY_ID: &str = "DELIVERY_ID";
    pub const REPOSITORY: &str = "REPOSITORY";
    /// The GitHub login that pushed (or created the deployment).
    pub const SENDER: &str = "SENDER";

    /// Every variable kiln sets; `TASK_ENVIRONMENT` may not redefine one.
    pub const ALL: [&str; 9] = [
        GIT_REMOTE,
        GIT_SHA,
        GIT_REF,
        GIT_TAG,
        STACK_ENV,
        DEPLOYMENT_ID,
        DELIVERY_ID,
        REPOSITORY,
        SENDER,
    ];
}

/// The stack updater's exit codes. Any other deploy image may use them too;
/// deploy-exec names the meaning of a code it knows, and reports any other
/// non-zero code as a plain failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Deployed, or there was nothing to change.
    Deployed = 0,
    /// `kiln.toml` or the task's configuration is wrong.
    ConfigError = 2,
    /// The source could not be fetched or verified.
    SourceError = 3,
    /// CloudFormation rejected the change set (a template or parameter error).
    ChangeSetRejected = 4,
    /// The deployment failed and rolled back, or the deploy command failed.
    DeployFailed = 5,
    /// The stack is in a state that needs a person.
    NeedsPerson = 6,
    /// Cancelled (the task was stopped) or timed out.
    Cancelled = 7,
}

impl ExitCode {
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Deployed,
        ExitCode::ConfigError,
        ExitCode::SourceError,
        ExitCode::ChangeSetRejected,
        ExitCode::DeployFailed,
        ExitCode::NeedsPerson,
        ExitCode::Cancelled,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code's meaning, as deploy-exec's GitHub description and
    /// Slack notice say it.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Deployed => "deployed, or no changes",
            ExitCode::ConfigError => "manifest or configuration error",
            ExitCode::SourceError => "source could not be fetched or verified",
            ExitCode::ChangeSetRejected => "change set rejected",
            ExitCode::DeployFailed => "deployment failed",
            ExitCode::NeedsPerson => "stack needs a person",
            ExitCode::Cancelled => "cancelled or timed out",
        }
    }

    /// The exit code a container reported, if it is one of these.
    pub fn from_code(code: i64) -> Option<ExitCode> {
        ExitCode::ALL
            .into_iter()
            .find(|c| i64::from(c.code()) == code)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_meaning() {
        for code in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(i64::from(code.code())), Some(code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(ExitCode::from_code(1), None);
        assert_eq!(ExitCode::from_code(137), None);
        assert_eq!(ExitCode::ChangeSetRejected.code(), 4);
    }
}
