//! From a deploy request to the RunTask input (pure).
//!
//! This module owns the deploy container's environment contract, the
//! idempotency token, `startedBy` and the tags that let the end of the task
//! be reported without storing anything.

use kiln::DeployRequest;
use sha2::{Digest, Sha256};

use crate::config::{Config, Network, Placement};

/// Every task kiln starts has a `startedBy` with this prefix; the
/// EventBridge rule for finished deployments filters on it.
pub const STARTED_BY_PREFIX: &str = "kiln/";
/// ECS's limit on `startedBy`.
pub const STARTED_BY_MAX: usize = 128;
/// ECS's limit on `clientToken`.
pub const CLIENT_TOKEN_MAX: usize = 64;
/// ECS's limit on the overrides, JSON punctuation included.
pub const OVERRIDES_MAX_CHARS: usize = 8192;
/// ECS's limit on a tag value.
const TAG_VALUE_MAX: usize = 256;

pub const TAG_REPOSITORY: &str = "kiln:repository";
pub const TAG_ENVIRONMENT: &str = "kiln:environment";
pub const TAG_SHA: &str = "kiln:sha";
pub const TAG_DELIVERY: &str = "kiln:delivery";
pub const TAG_DEPLOYMENT: &str = "kiln:deployment";
pub const TAG_SENDER: &str = "kiln:sender";

/// The deploy container's environment variables: kiln's contract with
/// the deploy task (see docs/configuration.md, deploy-exec).
pub use kiln::deploy_task::vars;

/// Everything RunTask needs, independent of the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    pub cluster: String,
    pub task_definition: String,
    pub container_name: String,
    /// The container override environment, in order.
    pub environment: Vec<(String, String)>,
    pub client_token: String,
    pub started_by: String,
    pub tags: Vec<(String, String)>,
    pub placement: Placement,
    pub network: Option<Network>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskRequestError {
    #[error(
        "the container overrides take {size} characters, over ECS's limit of {OVERRIDES_MAX_CHARS}: shorten TASK_ENVIRONMENT"
    )]
    OverridesTooLarge { size: usize },
}

/// Builds the RunTask input for one deploy request.
pub fn build(request: &DeployRequest, config: &Config) -> Result<TaskRequest, TaskRequestError> {
    let environment = container_environment(request, &config.task_environment);
    let size = overrides_size(&config.container_name, &environment);
    if size > OVERRIDES_MAX_CHARS {
        return Err(TaskRequestError::OverridesTooLarge { size });
    }
    Ok(TaskRequest {
        cluster: config.cluster.clone(),
        task_definition: config.task_definition.clone(),
        container_name: config.container_name.clone(),
        environment,
        client_token: client_token(&request.delivery_id),
        started_by: started_by(&request.delivery_id),
        tags: tags(request),
        placement: config.placement.clone(),
        network: config.network.clone(),
    })
}

/// The deploy container's environment: kiln's contract first, then
/// `TASK_ENVIRONMENT` (whose keys never collide with the contract; the
/// configuration rejects that).
pub fn container_environment(
    request: &DeployRequest,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut environment = vec![
        (vars::GIT_REMOTE.to_string(), request.clone_url.clone()),
        (vars::GIT_SHA.to_string(), request.sha.clone()),
        (vars::GIT_REF.to_string(), request.git_ref.clone()),
        (vars::GIT_TAG.to_string(), request.short_ref().to_string()),
        (vars::STACK_ENV.to_string(), request.environment.clone()),
    ];
    if let Some(id) = request.deployment_id {
        environment.push((vars::DEPLOYMENT_ID.to_string(), id.to_string()));
    }
    environment.push((vars::DELIVERY_ID.to_string(), request.delivery_id.clone()));
    environment.push((vars::REPOSITORY.to_string(), request.repository.clone()));
    if !request.sender.is_empty() {
        environment.push((vars::SENDER.to_string(), request.sender.clone()));
    }
    environment.extend(extra.iter().cloned());
    environment
}

/// The idempotency token: the same for every retry of one delivery, so ECS
/// starts one task per delivery however often the request arrives. A hash,
/// so any delivery id fits ECS's 64 printable ASCII characters.
pub fn client_token(delivery_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(delivery_id.as_bytes()));
    let mut token = String::from("kiln-");
    token.push_str(&digest[..CLIENT_TOKEN_MAX - token.len()]);
    token
}

/// `kiln/<delivery id>`, with any character ECS does not allow in
/// `startedBy` replaced by `_`, so `aws ecs list-tasks --started-by` finds
/// the task of a delivery.
pub fn started_by(delivery_id: &str) -> String {
    let mut started_by = String::from(STARTED_BY_PREFIX);
    started_by.extend(
        delivery_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/') {
                    c
                } else {
                    '_'
                }
            })
            .take(STARTED_BY_MAX - STARTED_BY_PREFIX.len()),
    );
    started_by
}

fn tags(request: &DeployRequest) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_REPOSITORY, request.repository.clone()),
        (TAG_ENVIRONMENT, request.environment.clone()),
        (TAG_SHA, request.sha.clone()),
        (TAG_DELIVERY, request.delivery_id.clone()),
    ];
    if let Some(id) = request.deployment_id {
        tags.push((TAG_DEPLOYMENT, id.to_string()));
    }
    if !request.sender.is_empty() {
        tags.push((TAG_SENDER, request.sender.clone()));
    }
    tags.into_iter()
        .map(|(key, value)| (key.to_string(), tag_value(&value)))
        .collect()
}

/// A tag value within ECS's rules: letters, digits, spaces and `+-=._:/@`,
/// at most 256 characters. The exact values travel in the overrides; tags
/// are for people and for looking a task up.
fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric()
                || matches!(c, ' ' | '+' | '-' | '=' | '.' | '_' | ':' | '/' | '@')
            {
                c
            } else {
                '_'
            }
        })
        .take(TAG_VALUE_MAX)
        .collect()
}

/// The size of the overrides as ECS counts it: the JSON of the whole
/// `overrides` structure.
pub fn overrides_size(container_name: &str, environment: &[(String, String)]) -> usize {
    let environment: Vec<_> = environment
        .iter()
        .map(|(name, value)| serde_json::json!({ "name": name, "value": value }))
        .collect();
    serde_json::json!({
        "containerOverrides": [{ "name": container_name, "environment": environment }]
    })
    .to_string()
    .chars()
    .count()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::LaunchType;
    use kiln::DeployEvent;

    pub(crate) fn request() -> DeployRequest {
        DeployRequest {
            kind: kiln::messages::deploy_request::KIND.into(),
            version: kiln::messages::deploy_request::VERSION,
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            event: DeployEvent::Deployment,
            repository: "Codertocat/Hello-World".into(),
            clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
            git_ref: "refs/tags/v1.2.0".into(),
            sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            environment: "production".into(),
            sender: "Codertocat".into(),
            deployment_id: Some(145988746),
            requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
            event_at: None,
            before: None,
        }
    }

    pub(crate) fn config() -> Config {
        Config {
            cluster: "kiln".into(),
            task_definition: "kiln-stack-updater:3".into(),
            container_name: "stack-updater".into(),
            network: Some(Network {
                subnets: vec!["subnet-1".into()],
                security_groups: vec!["sg-1".into()],
                assign_public_ip: false,
            }),
            placement: Placement::LaunchType(LaunchType::Fargate),
            task_environment: vec![("FURNACE_INSTANCE".into(), "prod".into())],
            github_token_secret_arn: None,
            github_api_url: "https://api.github.com".into(),
            lanes_table: None,
            notifications: crate::config::Notifications {
                topic_arn: Some("arn:aws:sns:us-east-1:123456789012:kiln-alerts".into()),
                deploys: crate::config::NotifyDeploys::Failures,
            },
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_follows_the_contract() {
        let task = build(&request(), &config()).unwrap();
        assert_eq!(
            task.environment,
            pairs(&[
                (
                    "GIT_REMOTE",
                    "https://github.com/Codertocat/Hello-World.git"
                ),
                ("GIT_SHA", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
                ("GIT_REF", "refs/tags/v1.2.0"),
                ("GIT_TAG", "v1.2.0"),
                ("STACK_ENV", "production"),
                ("DEPLOYMENT_ID", "145988746"),
                ("DELIVERY_ID", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("REPOSITORY", "Codertocat/Hello-World"),
                ("SENDER", "Codertocat"),
                ("FURNACE_INSTANCE", "prod"),
            ])
        );
        assert_eq!(task.container_name, "stack-updater");
        assert_eq!(task.task_definition, "kiln-stack-updater:3");
    }

    #[test]
    fn push_has_no_deployment_id() {
        let mut push = request();
        push.event = DeployEvent::Push;
        push.deployment_id = None;
        push.git_ref = "refs/heads/main".into();
        let task = build(&push, &config()).unwrap();
        assert!(!task.environment.iter().any(|(k, _)| k == "DEPLOYMENT_ID"));
        assert!(
            task.environment
                .contains(&("GIT_TAG".into(), "main".into()))
        );
        assert!(!task.tags.iter().any(|(k, _)| k == TAG_DEPLOYMENT));
    }

    #[test]
    fn tags_identify_the_deployment() {
        let task = build(&request(), &config()).unwrap();
        assert_eq!(
            task.tags,
            pairs(&[
                ("kiln:repository", "Codertocat/Hello-World"),
                ("kiln:environment", "production"),
                ("kiln:sha", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
                ("kiln:delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("kiln:deployment", "145988746"),
                ("kiln:sender", "Codertocat"),
            ])
        );
        assert_eq!(tag_value("prod (eu)!"), "prod _eu__");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }

    #[test]
    fn client_token_is_stable_and_within_ecs_rules() {
        let token = client_token("72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(token, client_token("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert_ne!(token, client_token("72d3162e-cc78-11e3-81ab-4c9367dc0959"));
        for id in [
            "a",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            &"ü ".repeat(200),
        ] {
            let token = client_token(id);
            assert_eq!(token.len(), CLIENT_TOKEN_MAX);
            assert!(token.bytes().all(|b| (33..=126).contains(&b)), "{token}");
        }
    }

    #[test]
    fn started_by_is_prefixed_short_and_clean() {
        assert_eq!(
            started_by("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            "kiln/72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert_eq!(started_by("a b.c"), "kiln/a_b_c");
        let long = started_by(&"é".repeat(500));
        assert_eq!(long.chars().count(), STARTED_BY_MAX);
        assert!(long.starts_with(STARTED_BY_PREFIX));
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_'))
        );
    }

    #[test]
    fn overrides_over_the_limit_are_refused_before_calling_ecs() {
        let mut config = config();
        config.task_environment = vec![("BIG".into(), "x".repeat(8000))];
        let err = build(&request(), &config).unwrap_err();
        let TaskRequestError::OverridesTooLarge { size } = err.clone();
        assert!(size > OVERRIDES_MAX_CHARS);
        assert!(err.to_string().contains("shorten TASK_ENVIRONMENT"));
        // The count includes JSON punctuation and escapes.
        assert_eq!(
            overrides_size("c", &pairs(&[("A", "\"")])),
            r#"{"containerOverrides":[{"environment":[{"name":"A","value":"\""}],"name":"c"}]}"#
                .len()
        );
    }
}
