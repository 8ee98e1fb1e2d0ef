//! alert-forwarder: CloudWatch alarms, EventBridge events and kiln alerts
//! to Slack, as Block Kit through an incoming webhook; and re-posts of
//! alarms that stay in ALARM.
//!
//! - [`config`]: the environment.
//! - [`classify`]: what an invocation and each message is (pure).
//! - [`render`]: Block Kit for each kind of message, within Slack's limits
//!   (pure).
//! - [`slack`]: the webhook port, its reqwest adapter, and the retry policy.
//! - [`refire`]: which alarms to re-post (pure) and the CloudWatch adapter.
//! - [`handler`]: the flow of one invocation.
//! - [`clock`]: time as a port.

pub mod classify;
pub mod clock;
pub mod config;
pub mod handler;
pub mod refire;
pub mod render;
pub mod slack;

pub use config::Config;
pub use handler::{Forwarder, HandlerError, Outcome};
