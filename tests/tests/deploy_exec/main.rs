//! deploy-exec's integration tests.
//!
//! - [`moto`]: deploy requests from a real SNS topic start tasks on moto's
//!   ECS; the idempotency token through a recording proxy; the end of a
//!   deployment read back from the task's tags; the real binary.
//! - [`github`]: the statuses posted to a local fake of GitHub's API.
//! - [`notify`]: deployment notifications on the alert topic, with the
//!   failed task's last log lines from CloudWatch Logs.

mod github;
mod moto;
mod notify;

use kiln::{DeployEvent, DeployRequest};

/// The commit of the synthetic stopped-task fixtures.
const SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

/// A deploy request for `master` of the fixtures' repository, to
/// production; a deployment when `deployment_id` is set, else a push.
fn deploy_request(delivery_id: &str, deployment_id: Option<u64>) -> DeployRequest {
    DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: delivery_id.into(),
        event: if deployment_id.is_some() {
            DeployEvent::Deployment
        } else {
            DeployEvent::Push
        },
        repository: "Codertocat/Hello-World".into(),
        clone_url: "https://github.com/Codertocat/Hello-World.git".into(),
        git_ref: "refs/heads/master".into(),
        sha: SHA.into(),
        environment: "production".into(),
        sender: "Codertocat".into(),
        deployment_id,
        requested_at: time::macros::datetime!(2026-11-22 10:00:00 UTC),
        event_at: None,
        before: None,
    }
}
