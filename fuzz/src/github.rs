//! `github_payload`: the deploy decision on arbitrary payloads.

use deploy_trigger::handler::{Decision, decide};
use kiln::DeployRequest;
use time::OffsetDateTime;

/// The event names deploy-trigger treats differently.
const EVENTS: [&str; 5] = ["push", "deployment", "ping", "deployment_status", "release"];

pub fn check(selector: u8, json: &[u8]) {
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let restricted = selector & 0x80 != 0;
    let config = trigger_config_cached(restricted);
    let now = OffsetDateTime::UNIX_EPOCH;
    let Ok(decision) = decide(config, event, "fuzz-delivery-1", json, now) else {
        return;
    };
    match decision {
        Decision::Pong => assert_eq!(event, "ping"),
        Decision::Ignore(reason) => assert!(!reason.is_empty()),
        Decision::Deploy(request) => check_deploy(config, event, &request),
    }
}

fn check_deploy(config: &deploy_trigger::Config, event: &str, request: &DeployRequest) {
    assert!(event == "push" || event == "deployment", "{event} deployed");
    assert!(config.allowed_repositories.allows(&request.repository));
    if event == "push" {
        assert!(
            crate::ENVIRONMENTS.contains(&request.environment.as_str()),
            "push routed to {:?}",
            request.environment
        );
    }
    // What the producer publishes, the consumer's strict decoder accepts
    // unchanged: otherwise deploy-exec would fail on every delivery of it.
    let json = request.to_json();
    match DeployRequest::from_json(&json) {
        Ok(decoded) => assert_eq!(&decoded, request),
        Err(e) => panic!("deploy-trigger produced a request deploy-exec refuses: {e}\n{json}"),
    }
}

fn trigger_config_cached(restricted: bool) -> &'static deploy_trigger::Config {
    use std::sync::OnceLock;
    static ANY: OnceLock<deploy_trigger::Config> = OnceLock::new();
    static RESTRICTED: OnceLock<deploy_trigger::Config> = OnceLock::new();
    if restricted {
        RESTRICTED.get_or_init(|| crate::trigger_config(true))
    } else {
        ANY.get_or_init(|| crate::trigger_config(false))
    }
}
