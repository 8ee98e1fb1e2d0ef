//! The checks behind each fuzz target, kept out of the `fuzz_targets/`
//! files so a crash found by one target can be replayed from a test with
//! the same code.

pub mod events;
pub mod github;
pub mod slack;
pub mod webhook;

/// The webhook secret the fuzzed deploy-trigger is configured with.
pub const SECRET: &str = "fuzz-webhook-secret-9f1c2e";
/// The previous version of it (a rotation in progress).
pub const PREVIOUS_SECRET: &str = "fuzz-previous-secret-77ab01";

pub const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln-webhook-AbCdEf";
pub const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo";

/// The environments the fuzzed configuration deploys to.
pub const ENVIRONMENTS: [&str; 2] = ["production", "staging"];

/// The path filters of the fuzzed configuration: `production` deploys on
/// infrastructure or API changes, `staging` on any Rust file outside docs.
pub const DEPLOY_PATHS: &str = "production=infra/**,services/api/**;staging=**/*.rs,!docs/**";

/// deploy-trigger's configuration for fuzzing: branch and tag rules that the
/// fixtures match, path filters, and either any repository or an allowlist.
pub fn trigger_config(restricted: bool) -> deploy_trigger::Config {
    match trigger_config_with_paths(restricted, DEPLOY_PATHS) {
        Ok(config) => config,
        Err(e) => panic!("fuzz configuration: {e}"),
    }
}

/// The fuzzed configuration with another `DEPLOY_PATHS` value.
pub fn trigger_config_with_paths(
    restricted: bool,
    deploy_paths: &str,
) -> Result<deploy_trigger::Config, kiln::ConfigError> {
    let mut pairs = vec![
        ("DEPLOY_PATHS", deploy_paths),
        ("WEBHOOK_SECRET_ARN", SECRET_ARN),
        ("DEPLOY_TOPIC_ARN", TOPIC_ARN),
        (
            "DEPLOY_BRANCHES",
            "main=production,master=staging,release/*=staging",
        ),
        ("DEPLOY_TAGS", "v*=production"),
    ];
    if restricted {
        pairs.push(("ALLOWED_REPOSITORIES", "Codertocat/*,octo-org/Hello-World"));
    }
    deploy_trigger::Config::from_env(&kiln::Env::from_pairs(pairs))
}
