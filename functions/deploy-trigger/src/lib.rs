//! deploy-trigger: GitHub's webhook receiver, behind an API Gateway HTTP
//! API (payload format 2.0).
//!
//! A signed `push` to a branch or tag that a rule maps to an environment,
//! or a `deployment` from GitHub's Deployments API, becomes one
//! `kiln.deploy.request` on the deploy topic. Where things live:
//! [`config`] (the environment variables), [`request`] (body decoding and
//! headers), [`signature`] (`X-Hub-Signature-256`), [`github`] (payload
//! types), [`routing`] (branch/tag rules and the repository allowlist),
//! [`skip`] (skip markers, and which pushes `DEPLOY_PATHS` filters out),
//! [`paths`] (the `DEPLOY_PATHS` globs) and [`handler`] (the order of the
//! checks and the status codes).

pub mod config;
pub mod github;
pub mod handler;
pub mod paths;
pub mod request;
pub mod routing;
pub mod signature;
pub mod skip;

pub use config::Config;
pub use handler::{Deps, handle};
