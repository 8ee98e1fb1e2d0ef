//! watchdog: the crash-loop breaker.
//!
//! When the containers of a small ECS-on-EC2 stack crash-loop, or a listed
//! scale-down alarm fires, watchdog sets the stack's Auto Scaling group to
//! zero instances and raises one alert that says why and how to restore it.
//!
//! - [`config`]: the environment.
//! - [`trigger`]: what an event means (crash, scale-down alarm, nothing).
//! - [`crash_history`]: counting recent crashes from ECS (port + adapter).
//! - [`scaling`]: scaling the group to zero (port + adapter).
//! - [`retry`]: retrying within the invocation's remaining time.
//! - [`alert`]: the alert's content.
//! - [`handler`]: one invocation, end to end.

pub mod alert;
pub mod config;
pub mod crash_history;
pub mod handler;
pub mod retry;
pub mod scaling;
pub mod trigger;

pub use config::Config;
pub use handler::{HandlerError, Outcome, Watchdog};
