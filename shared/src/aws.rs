//! Building AWS SDK configuration and clients.
//!
//! There is no code path of kiln's own for local emulators: the SDK honours
//! the standard `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`)
//! variables, so pointing a function at moto is configuration only.

use std::error::Error as StdError;

/// Loads the shared SDK configuration from the environment (region,
/// credentials, endpoint overrides). Credentials are resolved lazily, on the
/// first call, so this is cheap enough for the init phase.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The whole `source()` chain of an error on one line. SDK errors put the
/// useful part ("connection refused", "dispatch failure") several levels
/// down, and `Display` alone shows only the top.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn error_chain_joins_sources() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
