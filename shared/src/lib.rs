//! kiln's shared library.
//!
//! What lives here: the pieces every function needs (typed configuration,
//! logging, metrics, cached secrets, AWS client set-up, error types), the
//! schemas of the messages kiln sends ([`messages`]), tolerant decoders for
//! the AWS events kiln receives ([`events`]), and the ports (traits) at the
//! AWS boundary with their SDK adapters. Function crates own only their
//! wiring and their flow.

pub mod alarm_tags;
pub mod aws;
pub mod config;
pub mod deploy_task;
pub mod error;
pub mod events;
pub mod http;
pub mod lanes_table;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod secrets;
pub mod sns;
pub mod tls;

pub use config::{ConfigError, Env};
pub use error::KilnError;
pub use messages::{Alert, AlertField, DeployEvent, DeployRequest, Severity};
pub use metrics::Metrics;
pub use secrets::{SecretCache, SecretString, VersionStage};
