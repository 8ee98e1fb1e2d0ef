//! Errors that Lambda reports with a meaningful `errorType`.
//!
//! Each function's handler error is a `thiserror` enum that implements
//! [`KilnError`]; its `From<HandlerError> for Diagnostic` calls
//! [`diagnostic`], so the Lambda console and the dead-letter queue show
//! "SignatureMismatch" or "RunTaskFailed" rather than a generic "Error".

use lambda_runtime::Diagnostic;

/// An error with a stable, meaningful Lambda error type.
pub trait KilnError: std::error::Error + 'static {
    /// A short CamelCase name, stable across releases: dashboards and
    /// alarms may filter on it.
    fn error_type(&self) -> &'static str;
}

/// The Lambda diagnostic for an error: its type and its whole cause chain.
pub fn diagnostic<E: KilnError>(err: &E) -> Diagnostic {
    Diagnostic {
        error_type: err.error_type().to_string(),
        error_message: crate::aws::error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("record 2: not a kiln.deploy.request")]
    struct BadRecord;

    impl KilnError for BadRecord {
        fn error_type(&self) -> &'static str {
            "InvalidDeployRequest"
        }
    }

    #[test]
    fn diagnostic_carries_type_and_message() {
        let d = diagnostic(&BadRecord);
        assert_eq!(d.error_type, "InvalidDeployRequest");
        assert_eq!(d.error_message, "record 2: not a kiln.deploy.request");
    }
}
