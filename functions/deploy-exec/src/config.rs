//! deploy-exec's configuration, parsed once at start-up from the
//! environment. Every error names the variable it is about.

use kiln::{ConfigError, Env};

use crate::task_request::vars;

/// The public GitHub API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// How ECS places the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    LaunchType(LaunchType),
    /// A capacity provider strategy with this one provider.
    CapacityProvider(String),
}

impl Placement {
    /// Whether the task runs on Fargate, which requires awsvpc networking.
    pub fn is_fargate(&self) -> bool {
        match self {
            Placement::LaunchType(launch_type) => *launch_type == LaunchType::Fargate,
            Placement::CapacityProvider(name) => name.starts_with("FARGATE"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchType {
    Fargate,
    Ec2,
}

impl LaunchType {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Fargate => "FARGATE",
            LaunchType::Ec2 => "EC2",
        }
    }
}

/// Which deployment outcomes are published to `NOTIFY_TOPIC_ARN`
/// (`NOTIFY_DEPLOYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyDeploys {
    /// Failed deployments only.
    #[default]
    Failures,
    /// Started, succeeded, failed and superseded.
    All,
    /// Nothing.
    None,
}

impl NotifyDeploys {
    const EXPECTED: &str = "failures, all or none";

    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "failures" => Ok(NotifyDeploys::Failures),
            "all" => Ok(NotifyDeploys::All),
            "none" => Ok(NotifyDeploys::None),
            _ => Err(Self::EXPECTED.to_string()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyDeploys::Failures => "failures",
            NotifyDeploys::All => "all",
            NotifyDeploys::None => "none",
        }
    }
}

/// Where deployment notifications go, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    /// The SNS topic (kiln's alert topic); `None` publishes nothing.
    pub topic_arn: Option<String>,
    pub deploys: NotifyDeploys,
}

/// The awsvpc network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Cluster name or ARN.
    pub cluster: String,
    /// `family`, `family:revision` or a task definition ARN.
    pub task_definition: String,
    /// The container that receives the deploy environment.
    pub container_name: String,
    /// `None` when the task does not use awsvpc (EC2 bridge or host mode).
    pub network: Option<Network>,
    pub placement: Placement,
    /// Extra variables for the deploy container, in the order given.
    pub task_environment: Vec<(String, String)>,
    /// The Secrets Manager secret holding a GitHub token; `None` turns
    /// GitHub reporting off.
    pub github_token_secret_arn: Option<String>,
    /// The API root, without a trailing slash.
    pub github_api_url: String,
    /// The DynamoDB table of the deploy lanes; `None` starts every request
    /// at once (no lanes).
    pub lanes_table: Option<String>,
    /// Deployment notifications (`NOTIFY_TOPIC_ARN`, `NOTIFY_DEPLOYS`).
    pub notifications: Notifications,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let cluster = env.required("CLUSTER", "an ECS cluster name or ARN")?;
        let task_definition = env.parse_required(
            "TASK_DEFINITION",
            "a task definition family, family:revision or ARN",
            parse_task_definition,
        )?;
        let container_name = env.required(
            "CONTAINER_NAME",
            "the name of the container that runs the deployment",
        )?;
        let placement = placement(env)?;
        let network = network(env, &placement)?;
        let task_environment = task_environment(env)?;
        let github_token_secret_arn =
            env.optional_arn("GITHUB_TOKEN_SECRET_ARN", "secretsmanager")?;
        let github_api_url = env
            .parse_optional("GITHUB_API_URL", parse_api_url)?
            .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_string());
        let lanes_table = env.parse_optional("LANES_TABLE", parse_table_name)?;
        let notifications = notifications(env)?;
        Ok(Config {
            cluster,
            task_definition,
            container_name,
            network,
            placement,
            task_environment,
            github_token_secret_arn,
            github_api_url,
            lanes_table,
            notifications,
        })
    }

    /// Whether `TASK_DEFINITION` names a fixed revision. An unpinned family
    /// runs whatever revision was registered last, which may not be the one
    /// that was reviewed.
    pub fn task_definition_is_pinned(&self) -> bool {
        self.task_definition
            .rsplit_once(':')
            .is_some_and(|(_, revision)| {
                !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit())
            })
    }
}

fn notifications(env: &Env) -> Result<Notifications, ConfigError> {
    let topic_arn = env.optional_arn("NOTIFY_TOPIC_ARN", "sns")?;
    let deploys = env.parse_optional("NOTIFY_DEPLOYS", NotifyDeploys::parse)?;
    // Asking for notifications with nowhere to send them is a mistake worth
    // stopping for; the default (failures) with no topic just sends none.
    if let (None, Some(deploys @ (NotifyDeploys::Failures | NotifyDeploys::All))) =
        (&topic_arn, deploys)
    {
        return Err(ConfigError::Conflict {
            variables: "NOTIFY_DEPLOYS and NOTIFY_TOPIC_ARN".into(),
            reason: format!(
                "NOTIFY_DEPLOYS={} asks for deployment notifications, but NOTIFY_TOPIC_ARN is not set: set it to the alert topic's ARN, or set NOTIFY_DEPLOYS=none",
                deploys.as_str()
            ),
        });
    }
    Ok(Notifications {
        topic_arn,
        deploys: deploys.unwrap_or_default(),
    })
}

fn placement(env: &Env) -> Result<Placement, ConfigError> {
    let launch_type = env.parse_optional("LAUNCH_TYPE", |raw| {
        match raw.to_ascii_uppercase().as_str() {
            "FARGATE" => Ok(LaunchType::Fargate),
            "EC2" => Ok(LaunchType::Ec2),
            _ => Err("FARGATE or EC2".to_string()),
        }
    })?;
    let capacity_provider = env.parse_optional("CAPACITY_PROVIDER", |raw| {
        if raw.len() <= 255
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Ok(raw.to_string())
        } else {
            Err(
                "a capacity provider name such as FARGATE_SPOT (letters, digits, _ and -)"
                    .to_string(),
            )
        }
    })?;
    match (launch_type, capacity_provider) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict {
            variables: "LAUNCH_TYPE and CAPACITY_PROVIDER".into(),
            reason: "ECS takes a launch type or a capacity provider strategy, not both: unset one"
                .into(),
        }),
        (None, Some(provider)) => Ok(Placement::CapacityProvider(provider)),
        (launch_type, None) => Ok(Placement::LaunchType(
            launch_type.unwrap_or(LaunchType::Fargate),
        )),
    }
}

fn network(env: &Env, placement: &Placement) -> Result<Option<Network>, ConfigError> {
    let subnets = env.list("SUBNETS", "a comma list of subnet ids")?;
    let security_groups = env.list("SECURITY_GROUPS", "a comma list of security group ids")?;
    let assign_public_ip = env
        .parse_optional("ASSIGN_PUBLIC_IP", |raw| {
            match raw.to_ascii_uppercase().as_str() {
                "ENABLED" => Ok(true),
                "DISABLED" => Ok(false),
                _ => Err("ENABLED or DISABLED".to_string()),
            }
        })?
        .unwrap_or(false);
    if placement.is_fargate() {
        if subnets.is_empty() {
            return Err(ConfigError::Missing {
                variable: "SUBNETS",
                expected: "a comma list of subnet ids (Fargate tasks use awsvpc networking)".into(),
            });
        }
        if security_groups.is_empty() {
            return Err(ConfigError::Missing {
                variable: "SECURITY_GROUPS",
                expected:
                    "a comma list of security group ids (Fargate tasks use awsvpc networking)"
                        .into(),
            });
        }
    }
    if subnets.is_empty() {
        if !security_groups.is_empty() {
            return Err(ConfigError::Conflict {
                variables: "SECURITY_GROUPS and SUBNETS".into(),
                reason: "security groups apply only to awsvpc networking, which needs SUBNETS"
                    .into(),
            });
        }
        return Ok(None);
    }
    Ok(Some(Network {
        subnets,
        security_groups,
        assign_public_ip,
    }))
}

fn task_environment(env: &Env) -> Result<Vec<(String, String)>, ConfigError> {
    let pairs = env.pairs("TASK_ENVIRONMENT", "comma-separated KEY=VALUE pairs")?;
    for (key, _) in &pairs {
        if !is_variable_name(key) {
            return Err(ConfigError::malformed(
                "TASK_ENVIRONMENT",
                format!(
                    "KEY=VALUE pairs whose keys are variable names ([A-Za-z_][A-Za-z0-9_]*); `{key}` is not"
                ),
            ));
        }
        if vars::ALL.contains(&key.as_str()) {
            return Err(ConfigError::malformed(
                "TASK_ENVIRONMENT",
                format!(
                    "KEY=VALUE pairs that don't redefine a variable kiln sets; `{key}` is set by kiln"
                ),
            ));
        }
    }
    Ok(pairs)
}

fn is_variable_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_task_definition(raw: &str) -> Result<String, String> {
    let expected = || "a task definition family, family:revision or ARN".to_string();
    if raw.starts_with("arn:") {
        return if kiln::config::is_arn_of(raw, "ecs") && raw.contains(":task-definition/") {
            Ok(raw.to_string())
        } else {
            Err(expected())
        };
    }
    let (family, revision) = match raw.split_once(':') {
        Some((family, revision)) => (family, Some(revision)),
        None => (raw, None),
    };
    let family_ok = !family.is_empty()
        && family.len() <= 255
        && family
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let revision_ok =
        revision.is_none_or(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
    if family_ok && revision_ok {
        Ok(raw.to_string())
    } else {
        Err(expected())
    }
}

/// A DynamoDB table name: 3 to 255 of letters, digits, `_`, `-` and `.`.
fn parse_table_name(raw: &str) -> Result<String, String> {
    if (3..=255).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Ok(raw.to_string())
    } else {
        Err("a DynamoDB table name (3 to 255 letters, digits, _, - and .)".to_string())
    }
}

fn parse_api_url(raw: &str) -> Result<String, String> {
    let expected = || "an http(s) URL such as https://api.github.com".to_string();
    let url = url::Url::parse(raw).map_err(|_| expected())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(expected());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{} without a query or fragment", expected()));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CLUSTER", "kiln"),
            ("TASK_DEFINITION", "kiln-stack-updater:3"),
            ("CONTAINER_NAME", "stack-updater"),
            ("SUBNETS", "subnet-1, subnet-2"),
            ("SECURITY_GROUPS", "sg-1"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        for (key, value) in extra {
            pairs.retain(|(k, _)| k != key);
            pairs.push((key, value));
        }
        Config::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults() {
        let config = with(&[]).unwrap();
        assert_eq!(config.placement, Placement::LaunchType(LaunchType::Fargate));
        assert_eq!(
            config.network,
            Some(Network {
                subnets: vec!["subnet-1".into(), "subnet-2".into()],
                security_groups: vec!["sg-1".into()],
                assign_public_ip: false,
            })
        );
        assert!(config.task_environment.is_empty());
        assert_eq!(config.github_token_secret_arn, None);
        assert_eq!(config.github_api_url, "https://api.github.com");
        assert!(config.task_definition_is_pinned());
        assert_eq!(config.lanes_table, None);
        assert_eq!(
            config.notifications,
            Notifications {
                topic_arn: None,
                deploys: NotifyDeploys::Failures
            }
        );
    }

    #[test]
    fn lanes_table_is_a_table_name() {
        let config = with(&[("LANES_TABLE", "kiln-lanes")]).unwrap();
        assert_eq!(config.lanes_table.as_deref(), Some("kiln-lanes"));
        let err = with(&[("LANES_TABLE", "arn:aws:dynamodb:us-east-1:1:table/x")]).unwrap_err();
        assert_eq!(err.variable(), "LANES_TABLE");
        assert!(err.to_string().contains("a DynamoDB table name"), "{err}");
        assert!(with(&[("LANES_TABLE", "ab")]).is_err());
    }

    #[test]
    fn notification_settings() {
        let topic = "arn:aws:sns:eu-west-1:123456789012:kiln-alerts";
        for (raw, expected) in [
            ("failures", NotifyDeploys::Failures),
            ("ALL", NotifyDeploys::All),
            ("none", NotifyDeploys::None),
        ] {
            let config = with(&[("NOTIFY_TOPIC_ARN", topic), ("NOTIFY_DEPLOYS", raw)]).unwrap();
            assert_eq!(config.notifications.deploys, expected);
            assert_eq!(config.notifications.topic_arn.as_deref(), Some(topic));
        }
        assert_eq!(
            with(&[("NOTIFY_TOPIC_ARN", topic), ("NOTIFY_DEPLOYS", "some")])
                .unwrap_err()
                .to_string(),
            "NOTIFY_DEPLOYS is malformed: expected failures, all or none"
        );
        let err = with(&[("NOTIFY_TOPIC_ARN", "kiln-alerts")]).unwrap_err();
        assert_eq!(err.variable(), "NOTIFY_TOPIC_ARN");
        let err = with(&[("NOTIFY_DEPLOYS", "all")]).unwrap_err();
        assert_eq!(err.variable(), "NOTIFY_DEPLOYS and NOTIFY_TOPIC_ARN");
        assert!(err.to_string().contains("NOTIFY_DEPLOYS=all asks"), "{err}");
        assert_eq!(
            with(&[("NOTIFY_DEPLOYS", "none")])
                .unwrap()
                .notifications
                .deploys,
            NotifyDeploys::None
        );
    }

    #[test]
    fn every_required_variable_is_named() {
        for variable in [
            "CLUSTER",
            "TASK_DEFINITION",
            "CONTAINER_NAME",
            "SUBNETS",
            "SECURITY_GROUPS",
        ] {
            let pairs: Vec<_> = base().into_iter().filter(|(k, _)| *k != variable).collect();
            let err = Config::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.variable(), variable);
            assert!(
                err.to_string()
                    .starts_with(&format!("{variable} is required")),
                "{err}"
            );
        }
    }

    #[test]
    fn launch_type_and_capacity_provider_are_exclusive() {
        let err = with(&[
            ("LAUNCH_TYPE", "EC2"),
            ("CAPACITY_PROVIDER", "FARGATE_SPOT"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "LAUNCH_TYPE and CAPACITY_PROVIDER conflict: ECS takes a launch type or a capacity provider strategy, not both: unset one"
        );
        let spot = with(&[("CAPACITY_PROVIDER", "FARGATE_SPOT")]).unwrap();
        assert_eq!(
            spot.placement,
            Placement::CapacityProvider("FARGATE_SPOT".into())
        );
        assert_eq!(
            with(&[("LAUNCH_TYPE", "ec2")]).unwrap().placement,
            Placement::LaunchType(LaunchType::Ec2)
        );
        assert_eq!(
            with(&[("LAUNCH_TYPE", "LAMBDA")]).unwrap_err().variable(),
            "LAUNCH_TYPE"
        );
        assert_eq!(
            with(&[("CAPACITY_PROVIDER", "no spaces")])
                .unwrap_err()
                .variable(),
            "CAPACITY_PROVIDER"
        );
    }

    #[test]
    fn ec2_may_run_without_awsvpc() {
        let config = Config::from_env(&Env::from_pairs([
            ("CLUSTER", "kiln"),
            ("TASK_DEFINITION", "updater"),
            ("CONTAINER_NAME", "c"),
            ("LAUNCH_TYPE", "EC2"),
        ]))
        .unwrap();
        assert_eq!(config.network, None);
        assert!(!config.task_definition_is_pinned());
        let err = Config::from_env(&Env::from_pairs([
            ("CLUSTER", "kiln"),
            ("TASK_DEFINITION", "updater"),
            ("CONTAINER_NAME", "c"),
            ("LAUNCH_TYPE", "EC2"),
            ("SECURITY_GROUPS", "sg-1"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable(), "SECURITY_GROUPS and SUBNETS");
    }

    #[test]
    fn assign_public_ip() {
        let config = with(&[("ASSIGN_PUBLIC_IP", "ENABLED")]).unwrap();
        assert!(config.network.unwrap().assign_public_ip);
        let err = with(&[("ASSIGN_PUBLIC_IP", "yes")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ASSIGN_PUBLIC_IP is malformed: expected ENABLED or DISABLED"
        );
    }

    #[test]
    fn task_environment_pairs() {
        let config = with(&[(
            "TASK_ENVIRONMENT",
            "FURNACE_INSTANCE=prod, BUILD_BUCKET=b=1",
        )])
        .unwrap();
        assert_eq!(
            config.task_environment,
            vec![
                ("FURNACE_INSTANCE".to_string(), "prod".to_string()),
                ("BUILD_BUCKET".to_string(), "b=1".to_string()),
            ]
        );
        let err = with(&[("TASK_ENVIRONMENT", "GIT_SHA=x")]).unwrap_err();
        assert_eq!(err.variable(), "TASK_ENVIRONMENT");
        assert!(
            err.to_string().contains("`GIT_SHA` is set by kiln"),
            "{err}"
        );
        let err = with(&[("TASK_ENVIRONMENT", "1X=y")]).unwrap_err();
        assert!(err.to_string().contains("`1X` is not"), "{err}");
        assert_eq!(
            with(&[("TASK_ENVIRONMENT", "novalue")])
                .unwrap_err()
                .variable(),
            "TASK_ENVIRONMENT"
        );
    }

    #[test]
    fn task_definition_forms() {
        for good in [
            "updater",
            "updater:12",
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/updater:12",
        ] {
            assert!(with(&[("TASK_DEFINITION", good)]).is_ok(), "{good}");
        }
        for bad in [
            "updater:",
            "updater:latest",
            "up dater",
            "arn:aws:sns:eu-west-1:1:x",
        ] {
            assert_eq!(
                with(&[("TASK_DEFINITION", bad)]).unwrap_err().variable(),
                "TASK_DEFINITION",
                "{bad}"
            );
        }
    }

    #[test]
    fn github_settings() {
        let config = with(&[
            (
                "GITHUB_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gh",
            ),
            ("GITHUB_API_URL", "https://github.example.com/api/v3/"),
        ])
        .unwrap();
        assert_eq!(config.github_api_url, "https://github.example.com/api/v3");
        assert!(config.github_token_secret_arn.is_some());
        assert_eq!(
            with(&[("GITHUB_TOKEN_SECRET_ARN", "gh-token")])
                .unwrap_err()
                .variable(),
            "GITHUB_TOKEN_SECRET_ARN"
        );
        assert_eq!(
            with(&[("GITHUB_API_URL", "api.github.com")])
                .unwrap_err()
                .variable(),
            "GITHUB_API_URL"
        );
    }
}
