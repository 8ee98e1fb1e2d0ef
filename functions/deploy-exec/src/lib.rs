//! deploy-exec: turns each deploy request into exactly one ECS task that
//! performs the deployment, and reports the deployment's start and end to
//! GitHub, and announces deployments on the alert topic.
//!
//! - [`config`]: the environment variables.
//! - [`task_request`]: deploy request → RunTask input (the deploy
//!   container's environment contract, the idempotency token, tags).
//! - [`runner`]: the ECS port and adapter.
//! - [`github`]: the GitHub port and adapter (statuses, retries).
//! - [`completion`]: how a stopped task ended, and whose it was.
//! - [`console`]: the link to a task in the ECS console.
//! - [`lanes`]: the deploy lane rules (one deployment per repository and
//!   environment at a time, the newest request wins).
//! - [`lane_store`]: the lane store port and its DynamoDB adapter.
//! - [`lane_flow`]: a request or a stopped task on its lane (read, ask ECS,
//!   decide, write conditionally, start).
//! - [`notification`]: which outcomes `NOTIFY_DEPLOYS` announces, and the
//!   notice for each (pure).
//! - [`task_log`]: where the stack updater's log is, and the port and
//!   CloudWatch Logs adapter that read its last lines.
//! - [`notifier`]: publishing a notice once per task and outcome.
//! - [`handler`]: the Lambda handler that ties them together.

pub mod completion;
pub mod config;
pub mod console;
pub mod github;
pub mod handler;
pub mod lane_flow;
pub mod lane_store;
pub mod lanes;
pub mod notification;
pub mod notifier;
pub mod runner;
pub mod task_log;
pub mod task_request;

pub use config::Config;
pub use handler::{Deps, HandlerError, handle};
