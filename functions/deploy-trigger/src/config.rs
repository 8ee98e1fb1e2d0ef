//! deploy-trigger's configuration, parsed once at start-up.
//!
//! A bad rule or pattern fails the init phase with a [`ConfigError`] that
//! names the variable, rather than surfacing later as a webhook that never
//! deploys.

use kiln::{ConfigError, Env};

use crate::paths::DeployPaths;
use crate::routing::{RefRules, RepositoryAllowlist, Routes};

pub const WEBHOOK_SECRET_ARN: &str = "WEBHOOK_SECRET_ARN";
pub const DEPLOY_TOPIC_ARN: &str = "DEPLOY_TOPIC_ARN";
pub const DEPLOY_BRANCHES: &str = "DEPLOY_BRANCHES";
pub const DEPLOY_TAGS: &str = "DEPLOY_TAGS";
pub const ALLOWED_REPOSITORIES: &str = "ALLOWED_REPOSITORIES";
pub const DEPLOY_PATHS: &str = "DEPLOY_PATHS";

/// The branch rules when `DEPLOY_BRANCHES` is unset.
pub const DEFAULT_BRANCHES: &str = "main=production";

/// The value of `DEPLOY_BRANCHES` or `DEPLOY_TAGS` that turns a kind of ref
/// off entirely (an empty value counts as unset, so it can't mean "none").
pub const NO_RULES: &str = "none";

const RULES_EXPECTED: &str =
    "comma-separated pattern=environment rules (a pattern may end in *), or `none`";

const PATHS_EXPECTED: &str = "environment=glob[,glob...] entries separated by `;`, e.g. production=infra/**,services/api/**;staging=**";

#[derive(Debug, Clone)]
pub struct Config {
    /// The Secrets Manager secret holding the webhook secret as plain text.
    pub webhook_secret_arn: String,
    /// The SNS topic deploy requests are published to.
    pub deploy_topic_arn: String,
    pub routes: Routes,
    pub allowed_repositories: RepositoryAllowlist,
    /// Per-environment path filters for branch pushes.
    pub deploy_paths: DeployPaths,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let webhook_secret_arn = env.arn(WEBHOOK_SECRET_ARN, "secretsmanager")?;
        let deploy_topic_arn = env.arn(DEPLOY_TOPIC_ARN, "sns")?;
        let branches = rules(env, DEPLOY_BRANCHES, Some(DEFAULT_BRANCHES))?;
        let tags = rules(env, DEPLOY_TAGS, None)?;
        let entries = env.list(
            ALLOWED_REPOSITORIES,
            "comma-separated owner/name or owner/*",
        )?;
        let allowed_repositories = if entries.is_empty() {
            RepositoryAllowlist::any()
        } else {
            RepositoryAllowlist::from_entries(&entries).map_err(|why| {
                ConfigError::malformed(
                    ALLOWED_REPOSITORIES,
                    format!("comma-separated owner/name or owner/* ({why})"),
                )
            })?
        };
        let deploy_paths = deploy_paths(env, &branches)?;
        Ok(Config {
            webhook_secret_arn,
            deploy_topic_arn,
            routes: Routes { branches, tags },
            allowed_repositories,
            deploy_paths,
        })
    }
}

/// `DEPLOY_PATHS`, whose environments must be ones a branch rule deploys
/// to: path filters apply only to branch pushes, so any other name is a
/// typo that would quietly filter nothing.
fn deploy_paths(env: &Env, branches: &RefRules) -> Result<DeployPaths, ConfigError> {
    let paths = env
        .parse_optional(DEPLOY_PATHS, |raw| {
            DeployPaths::parse(raw).map_err(|why| format!("{PATHS_EXPECTED} ({why})"))
        })?
        .unwrap_or_default();
    if let Some(unknown) = paths
        .environments()
        .find(|name| !branches.environments().any(|known| known == *name))
    {
        let mut known: Vec<&str> = Vec::new();
        for name in branches.environments() {
            if !known.contains(&name) {
                known.push(name);
            }
        }
        return Err(ConfigError::Conflict {
            variables: format!("{DEPLOY_PATHS} and {DEPLOY_BRANCHES}"),
            reason: format!(
                "{DEPLOY_PATHS} lists environment {unknown}, which no {DEPLOY_BRANCHES} rule deploys to (they deploy to: {}); path filters apply to branch pushes only",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    Ok(paths)
}

fn rules(
    env: &Env,
    variable: &'static str,
    default: Option<&str>,
) -> Result<RefRules, ConfigError> {
    let raw = env.optional(variable).or_else(|| default.map(String::from));
    let Some(raw) = raw else {
        return Ok(RefRules::none());
    };
    if raw == NO_RULES {
        return Ok(RefRules::none());
    }
    let malformed =
        |why: String| ConfigError::malformed(variable, format!("{RULES_EXPECTED} ({why})"));
    let pairs = kiln::config::parse_pairs(&raw).map_err(malformed)?;
    RefRules::from_pairs(&pairs).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Route;

    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln-webhook-AbCdEf";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:kiln-deploy.fifo";

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![(WEBHOOK_SECRET_ARN, SECRET), (DEPLOY_TOPIC_ARN, TOPIC)];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn defaults_deploy_main_to_production_and_allow_any_repository() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.webhook_secret_arn, SECRET);
        assert_eq!(config.deploy_topic_arn, TOPIC);
        assert_eq!(
            config.routes.route("refs/heads/main"),
            Route::Deploy("production")
        );
        assert!(config.routes.tags.is_empty());
        assert!(!config.allowed_repositories.is_restricted());
        assert!(config.deploy_paths.is_empty());
    }

    #[test]
    fn deploy_paths_are_read_per_environment() {
        let config = Config::from_env(&env(&[
            (DEPLOY_BRANCHES, "main=production,release/*=staging"),
            (
                DEPLOY_PATHS,
                "production=infra/**,services/api/**;staging=**",
            ),
        ]))
        .unwrap();
        let production = config.deploy_paths.for_environment("production").unwrap();
        assert!(production.deciding_glob("services/api/main.rs").is_some());
        assert!(production.deciding_glob("README.md").is_none());
        assert!(config.deploy_paths.for_environment("staging").is_some());
        // Blank is unset.
        let config = Config::from_env(&env(&[(DEPLOY_PATHS, "  ")])).unwrap();
        assert!(config.deploy_paths.is_empty());
    }

    #[test]
    fn deploy_paths_name_only_environments_of_branch_rules() {
        let err = Config::from_env(&env(&[(DEPLOY_PATHS, "prodution=infra/**")])).unwrap_err();
        assert_eq!(err.variable(), "DEPLOY_PATHS and DEPLOY_BRANCHES");
        assert_eq!(
            err.to_string(),
            "DEPLOY_PATHS and DEPLOY_BRANCHES conflict: DEPLOY_PATHS lists environment prodution, \
             which no DEPLOY_BRANCHES rule deploys to (they deploy to: production); \
             path filters apply to branch pushes only"
        );
        // A tag-only environment is never path-filtered either.
        let err = Config::from_env(&env(&[
            (DEPLOY_TAGS, "v*=release"),
            (DEPLOY_PATHS, "release=infra/**"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("environment release"), "{err}");
        let err = Config::from_env(&env(&[
            (DEPLOY_BRANCHES, "none"),
            (DEPLOY_PATHS, "production=infra/**"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("(they deploy to: none)"), "{err}");
    }

    #[test]
    fn rules_and_allowlist_are_read_in_order() {
        let config = Config::from_env(&env(&[
            (DEPLOY_BRANCHES, "release/*=staging, main=production"),
            (DEPLOY_TAGS, "v*=production"),
            (ALLOWED_REPOSITORIES, "Codertocat/Hello-World,octo-org/*"),
        ]))
        .unwrap();
        assert_eq!(
            config.routes.route("refs/heads/release/1.0"),
            Route::Deploy("staging")
        );
        assert_eq!(
            config.routes.route("refs/tags/v2.0.0"),
            Route::Deploy("production")
        );
        assert!(config.allowed_repositories.allows("octo-org/x"));
        assert!(!config.allowed_repositories.allows("someone/else"));
    }

    #[test]
    fn none_turns_branch_deploys_off() {
        let config = Config::from_env(&env(&[
            (DEPLOY_BRANCHES, "none"),
            (DEPLOY_TAGS, "v*=production"),
        ]))
        .unwrap();
        assert!(config.routes.branches.is_empty());
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            (DEPLOY_BRANCHES, "main"),
            (DEPLOY_BRANCHES, "ma*in=production"),
            (DEPLOY_BRANCHES, "main=prod env"),
            (DEPLOY_TAGS, "v*=production,,"),
            (ALLOWED_REPOSITORIES, "just-an-owner"),
            (DEPLOY_PATHS, "production"),
            (DEPLOY_PATHS, "production=**.md"),
            (DEPLOY_PATHS, "production=infra/**;;"),
            (DEPLOY_TOPIC_ARN, "kiln-deploy"),
            (
                WEBHOOK_SECRET_ARN,
                "arn:aws:sns:us-east-1:123456789012:not-a-secret",
            ),
        ];
        for (variable, value) in cases {
            let err = Config::from_env(&env(&[(variable, value)])).unwrap_err();
            assert_eq!(err.variable(), variable, "{value}");
            assert!(err.to_string().starts_with(variable), "{err}");
        }
        let missing = Config::from_env(&Env::from_pairs([(DEPLOY_TOPIC_ARN, TOPIC)])).unwrap_err();
        assert_eq!(missing.variable(), WEBHOOK_SECRET_ARN);
    }
}
