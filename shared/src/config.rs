//! Typed configuration from environment variables.
//!
//! Every function parses its configuration once, at start-up, through an
//! [`Env`]. A missing or malformed variable becomes a [`ConfigError`] that
//! names the variable and says what was expected, so a bad deployment fails
//! its init phase with a message an operator can act on.
//!
//! Comma lists and `key=value` maps are parsed here and nowhere else.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A configuration problem, naming the variable and the expected form.
///
/// The offending value is deliberately *not* echoed: configuration holds
/// ARNs rather than secrets, but a mistyped variable can still carry one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable} is required but not set: expected {expected}")]
    Missing {
        variable: &'static str,
        expected: String,
    },
    #[error("{variable} is malformed: expected {expected}")]
    Malformed {
        variable: &'static str,
        expected: String,
    },
    #[error("{variables} conflict: {reason}")]
    Conflict { variables: String, reason: String },
}

impl ConfigError {
    /// The variable (or variables) this error is about.
    pub fn variable(&self) -> &str {
        match self {
            ConfigError::Missing { variable, .. } | ConfigError::Malformed { variable, .. } => {
                variable
            }
            ConfigError::Conflict { variables, .. } => variables,
        }
    }

    pub fn malformed(variable: &'static str, expected: impl Into<String>) -> Self {
        ConfigError::Malformed {
            variable,
            expected: expected.into(),
        }
    }
}

/// The value, or, for a configuration error, the error on standard error
/// and exit status 1: how every function's `main` stops a bad deployment in
/// its init phase (Lambda reports `Runtime.ExitError` with that line in the
/// log).
pub fn or_exit<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    }
}

/// A source of environment variables: the process environment in
/// production, a map in tests.
#[derive(Clone, Default)]
pub struct Env {
    overrides: Option<BTreeMap<String, String>>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are never printed: only which variables a test map defines.
        match &self.overrides {
            None => f.write_str("Env(process)"),
            Some(map) => f
                .debug_tuple("Env")
                .field(&map.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Env { overrides: None }
    }

    /// Reads only the given pairs (for tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The raw value, with surrounding whitespace removed; an empty value
    /// counts as unset.
    pub fn raw(&self, variable: &str) -> Option<String> {
        let value = match &self.overrides {
            Some(map) => map.get(variable).cloned(),
            None => std::env::var(variable).ok(),
        }?;
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }

    /// A required string.
    pub fn required(&self, variable: &'static str, expected: &str) -> Result<String, ConfigError> {
        self.raw(variable).ok_or_else(|| ConfigError::Missing {
            variable,
            expected: expected.to_string(),
        })
    }

    /// An optional string.
    pub fn optional(&self, variable: &'static str) -> Option<String> {
        self.raw(variable)
    }

    /// An optional value parsed with `FromStr`, or `default` when unset.
    pub fn parsed_or<T: FromStr>(
        &self,
        variable: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(variable) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::malformed(variable, expected)),
        }
    }

    /// An optional value checked by `parse`, which says what it expected.
    pub fn parse_optional<T>(
        &self,
        variable: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(variable) {
            None => Ok(None),
            Some(raw) => parse(&raw)
                .map(Some)
                .map_err(|expected| ConfigError::malformed(variable, expected)),
        }
    }

    /// A required value checked by `parse`.
    pub fn parse_required<T>(
        &self,
        variable: &'static str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let raw = self.required(variable, expected)?;
        parse(&raw).map_err(|why| ConfigError::malformed(variable, why))
    }

    /// A comma-separated list; unset gives an empty list. Items are trimmed
    /// and empty items (`a,,b`, a trailing comma) are rejected, because they
    /// are almost always a typo.
    pub fn list(&self, variable: &'static str, expected: &str) -> Result<Vec<String>, ConfigError> {
        match self.raw(variable) {
            None => Ok(Vec::new()),
            Some(raw) => parse_list(&raw)
                .map_err(|why| ConfigError::malformed(variable, format!("{expected} ({why})"))),
        }
    }

    /// A comma-separated list of `key=value` pairs, in the order given (the
    /// order matters for first-match rules). Unset gives an empty list.
    pub fn pairs(
        &self,
        variable: &'static str,
        expected: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        match self.raw(variable) {
            None => Ok(Vec::new()),
            Some(raw) => parse_pairs(&raw)
                .map_err(|why| ConfigError::malformed(variable, format!("{expected} ({why})"))),
        }
    }

    /// An ARN of the given service (`sns`, `secretsmanager`, ...).
    pub fn arn(&self, variable: &'static str, service: &str) -> Result<String, ConfigError> {
        let expected = format!("an ARN of the form arn:PARTITION:{service}:REGION:ACCOUNT:...");
        let raw = self.required(variable, &expected)?;
        if is_arn_of(&raw, service) {
            Ok(raw)
        } else {
            Err(ConfigError::malformed(variable, expected))
        }
    }

    /// An optional ARN of the given service.
    pub fn optional_arn(
        &self,
        variable: &'static str,
        service: &str,
    ) -> Result<Option<String>, ConfigError> {
        match self.raw(variable) {
            None => Ok(None),
            Some(_) => self.arn(variable, service).map(Some),
        }
    }
}

/// Splits a comma list, trimming items and rejecting empty ones.
pub fn parse_list(raw: &str) -> Result<Vec<String>, String> {
    raw.split(',')
        .enumerate()
        .map(|(index, item)| {
            let item = item.trim();
            if item.is_empty() {
                Err(format!("item {} is empty", index + 1))
            } else {
                Ok(item.to_string())
            }
        })
        .collect()
}

/// Splits a comma list of `key=value` pairs. Keys and values are trimmed;
/// a value may itself contain `=` (only the first one separates).
pub fn parse_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    parse_list(raw)?
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(format!("`{}` is not key=value", redact_item(&item))),
        })
        .collect()
}

/// Shows at most the start of a bad item, so an error never reprints a long
/// value that might be sensitive.
fn redact_item(item: &str) -> String {
    const SHOWN: usize = 24;
    if item.chars().count() <= SHOWN {
        item.to_string()
    } else {
        format!("{}…", item.chars().take(SHOWN).collect::<String>())
    }
}

/// Whether `value` looks like `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
pub fn is_arn_of(value: &str, service: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && !parts[5].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_names_variable_and_expectation() {
        let env = Env::from_pairs([("OTHER", "x")]);
        let err = env
            .required("DEPLOY_TOPIC_ARN", "an SNS topic ARN")
            .unwrap_err();
        assert_eq!(err.variable(), "DEPLOY_TOPIC_ARN");
        assert_eq!(
            err.to_string(),
            "DEPLOY_TOPIC_ARN is required but not set: expected an SNS topic ARN"
        );
    }

    #[test]
    fn blank_counts_as_unset() {
        let env = Env::from_pairs([("A", "   ")]);
        assert!(env.optional("A").is_none());
    }

    #[test]
    fn lists_are_trimmed_and_reject_empty_items() {
        let env = Env::from_pairs([("L", " a, b ,c"), ("BAD", "a,,b")]);
        assert_eq!(env.list("L", "names").unwrap(), vec!["a", "b", "c"]);
        let err = env.list("BAD", "a comma list of names").unwrap_err();
        assert_eq!(
            err.to_string(),
            "BAD is malformed: expected a comma list of names (item 2 is empty)"
        );
        assert!(env.list("UNSET", "x").unwrap().is_empty());
    }

    #[test]
    fn pairs_keep_order_and_allow_equals_in_values() {
        let env = Env::from_pairs([("P", "release/*=staging, main=production,K=a=b")]);
        assert_eq!(
            env.pairs("P", "pattern=environment").unwrap(),
            vec![
                ("release/*".to_string(), "staging".to_string()),
                ("main".to_string(), "production".to_string()),
                ("K".to_string(), "a=b".to_string()),
            ]
        );
        let err = Env::from_pairs([("P", "main")]).pairs("P", "pattern=environment");
        assert_eq!(
            err.unwrap_err().to_string(),
            "P is malformed: expected pattern=environment (`main` is not key=value)"
        );
        assert!(Env::from_pairs([("P", "=x")]).pairs("P", "k=v").is_err());
    }

    #[test]
    fn arns_are_checked_by_service() {
        let env = Env::from_pairs([
            ("T", "arn:aws:sns:us-east-1:123456789012:kiln-deploy"),
            (
                "S",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
            ),
            ("BAD", "kiln-deploy"),
        ]);
        assert!(env.arn("T", "sns").is_ok());
        assert!(env.arn("S", "secretsmanager").is_ok());
        assert!(env.arn("T", "secretsmanager").is_err());
        let err = env.arn("BAD", "sns").unwrap_err();
        assert_eq!(err.variable(), "BAD");
        assert!(err.to_string().contains("arn:PARTITION:sns:REGION:ACCOUNT"));
        assert_eq!(env.optional_arn("NONE", "sns").unwrap(), None);
    }

    #[test]
    fn parsed_or_uses_default_and_names_bad_values() {
        let env = Env::from_pairs([("N", "abc"), ("M", "15")]);
        assert_eq!(env.parsed_or("UNSET", 60u32, "minutes").unwrap(), 60);
        assert_eq!(env.parsed_or("M", 60u32, "minutes").unwrap(), 15);
        let err = env
            .parsed_or("N", 1u32, "a whole number of minutes")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "N is malformed: expected a whole number of minutes"
        );
    }

    #[test]
    fn debug_never_prints_values() {
        let env = Env::from_pairs([("SECRETISH", "hunter2")]);
        assert!(!format!("{env:?}").contains("hunter2"));
    }
}
