//! `github_payload`: the deploy decision on arbitrary payloads, and on
//! arbitrary `DEPLOY_PATHS` values.

use deploy_trigger::handler::{Decision, decide};
use deploy_trigger::skip::{SKIP_MARKERS, Skip, SkipRule};
use kiln::DeployRequest;
use serde_json::Value;
use time::OffsetDateTime;

/// The event names deploy-trigger treats differently.
const EVENTS: [&str; 5] = ["push", "deployment", "ping", "deployment_status", "release"];

/// Selector bit: the input is `<DEPLOY_PATHS>\n<payload>`, not the payload
/// alone.
const PATHS_FROM_INPUT: u8 = 0x40;

pub fn check(selector: u8, data: &[u8]) {
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let restricted = selector & 0x80 != 0;
    if selector & PATHS_FROM_INPUT != 0 {
        let Some(newline) = data.iter().position(|b| *b == b'\n') else {
            return;
        };
        let (raw_paths, json) = (&data[..newline], &data[newline + 1..]);
        let Ok(raw_paths) = std::str::from_utf8(raw_paths) else {
            return;
        };
        match crate::trigger_config_with_paths(restricted, raw_paths) {
            Ok(config) => check_decision(&config, event, json),
            // A bad value is refused at start-up, naming the variable.
            Err(e) => assert!(
                e.variable().starts_with("DEPLOY_PATHS") && e.to_string().starts_with("DEPLOY_PATHS"),
                "DEPLOY_PATHS={raw_paths:?} refused as {e}"
            ),
        }
    } else {
        check_decision(trigger_config_cached(restricted), event, data);
    }
}

fn check_decision(config: &deploy_trigger::Config, event: &str, json: &[u8]) {
    let now = OffsetDateTime::UNIX_EPOCH;
    let Ok(decision) = decide(config, event, "fuzz-delivery-1", json, now) else {
        return;
    };
    match decision {
        Decision::Pong => assert_eq!(event, "ping"),
        Decision::Ignore(reason) => assert!(!reason.is_empty()),
        Decision::Skip(skip) => check_skip(config, event, json, &skip),
        Decision::Deploy(request) => check_deploy(config, event, json, &request),
    }
}

/// A skip is a push, for an environment a rule routes to, and the payload
/// bears it out, read here independently of deploy-trigger's types.
fn check_skip(config: &deploy_trigger::Config, event: &str, json: &[u8], skip: &Skip) {
    assert_eq!(event, "push", "a {event} was skipped");
    assert!(!skip.reason.is_empty());
    assert!(crate::ENVIRONMENTS.contains(&skip.environment.as_str()));
    let push: Value = match serde_json::from_slice(json) {
        Ok(value) => value,
        Err(e) => panic!("skipped a push serde_json cannot read: {e}"),
    };
    match skip.rule {
        SkipRule::SkipMarker => {
            let message = push["head_commit"]["message"].as_str().unwrap_or_default();
            assert!(has_marker(message), "skipped for a marker in {message:?}");
            assert!(skip.reason.contains("skip marker"), "{}", skip.reason);
        }
        SkipRule::PathFilter => {
            assert!(
                skip.reason
                    .starts_with(&format!("no changed file matches DEPLOY_PATHS for {}", skip.environment)),
                "{}",
                skip.reason
            );
            let git_ref = push["ref"].as_str().unwrap_or_default();
            assert!(git_ref.starts_with("refs/heads/"), "path-filtered {git_ref}");
            assert_ne!(push["created"], Value::Bool(true), "path-filtered a new branch");
            assert_ne!(push["forced"], Value::Bool(true), "path-filtered a force push");
            let commits = push["commits"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(
                (1..deploy_trigger::paths::MAX_COMMITS).contains(&commits.len()),
                "path-filtered a push listing {} commits",
                commits.len()
            );
            let Some(filter) = config.deploy_paths.for_environment(&skip.environment) else {
                panic!("path-filtered {}, which has no globs", skip.environment);
            };
            for commit in commits.iter().chain([&push["head_commit"]]) {
                let files: Vec<&str> = ["added", "modified", "removed"]
                    .iter()
                    .filter_map(|list| commit[list].as_array())
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    files.len() < deploy_trigger::paths::MAX_FILES_PER_COMMIT,
                    "path-filtered a commit at the file cap"
                );
                for file in files {
                    assert!(
                        filter.deciding_glob(file).is_none(),
                        "skipped although {file} matches"
                    );
                }
            }
        }
    }
}

fn has_marker(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    SKIP_MARKERS.iter().any(|marker| message.contains(marker))
}

fn check_deploy(config: &deploy_trigger::Config, event: &str, json: &[u8], request: &DeployRequest) {
    assert!(event == "push" || event == "deployment", "{event} deployed");
    assert!(config.allowed_repositories.allows(&request.repository));
    if event == "push" {
        assert!(
            crate::ENVIRONMENTS.contains(&request.environment.as_str()),
            "push routed to {:?}",
            request.environment
        );
        if let Ok(push) = serde_json::from_slice::<Value>(json) {
            let message = push["head_commit"]["message"].as_str().unwrap_or_default();
            assert!(!has_marker(message), "deployed despite a marker in {message:?}");
        }
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
