//! alert-forwarder's integration tests: one test binary, so
//! `cargo nextest run -p kiln-tests -E 'binary(alert_forwarder)'` runs them
//! all.
//!
//! - [`slack`]: delivery to a local Slack webhook (retries, limits, errors,
//!   one post per record, the webhook URL kept out of logs).
//! - [`refire`]: re-posting alarms still in ALARM, against moto's
//!   CloudWatch, in process and through the function's binary.

#[path = "alert_forwarder/refire.rs"]
mod refire;
#[path = "alert_forwarder/slack.rs"]
mod slack;
