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

/// How many failures of a batch an error message names; the others are
/// counted. Each failure is also logged on its own line, so none is lost,
/// and the message stays far below Lambda's and CloudWatch's size limits
/// whatever the size of the batch.
pub const FAILURES_NAMED: usize = 5;

/// `a; b; c` for up to [`FAILURES_NAMED`] failures, then `; and N more
/// (each is in the log)`.
pub fn name_failures<I>(failures: I) -> String
where
    I: IntoIterator,
    I::Item: std::fmt::Display,
{
    let mut named = Vec::with_capacity(FAILURES_NAMED);
    let mut more = 0usize;
    for failure in failures {
        if named.len() < FAILURES_NAMED {
            named.push(failure.to_string());
        } else {
            more += 1;
        }
    }
    let mut text = named.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more (each is in the log)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_up_to_the_limit_then_counted() {
        assert_eq!(name_failures(["a", "b"]), "a; b");
        let many: Vec<String> = (1..=10_000).map(|i| format!("record {i}: bad")).collect();
        let text = name_failures(&many);
        assert_eq!(
            text,
            "record 1: bad; record 2: bad; record 3: bad; record 4: bad; record 5: bad; and 9995 \
             more (each is in the log)"
        );
        assert_eq!(name_failures(Vec::<String>::new()), "");
    }

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
