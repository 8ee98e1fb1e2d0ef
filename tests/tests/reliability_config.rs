//! Configuration failures: every function, started with each required
//! variable missing or with a malformed value, fails its init phase with a
//! message that names the variable, and never echoes a secret (an operator
//! who pastes a token or a webhook URL where an ARN belongs must not find
//! it in the logs).
//!
//! Two levels: `Config::from_env` for every variable and many malformed
//! values (fast, in process), and the real binaries under the emulated
//! Lambda Runtime API for each required variable and a pasted secret (the
//! process exits non-zero during init, naming the variable on stderr).

use std::time::Duration;

use kiln::{ConfigError, Env};
use kiln_tests::lambda::LambdaFunction;

/// A value that looks like a secret pasted in the wrong place.
const PASTED_TOKEN: &str = "ghp_PastedInsteadOfAnArn0123456789abcdef";
const PASTED_WEBHOOK: &str = "https://hooks.slack.com/services/T0000/B0000/PastedWebhookSecret";

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/x-AbCdEf";
const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:kiln-topic";

struct Function {
    name: &'static str,
    /// A configuration that parses.
    valid: Vec<(&'static str, &'static str)>,
    /// Variables that must be set.
    required: Vec<&'static str>,
    /// (variable, malformed value)
    malformed: Vec<(&'static str, String)>,
    parse: fn(&Env) -> Result<(), ConfigError>,
}

fn functions() -> Vec<Function> {
    vec![
        Function {
            name: "deploy-trigger",
            valid: vec![
                ("WEBHOOK_SECRET_ARN", SECRET_ARN),
                ("DEPLOY_TOPIC_ARN", TOPIC_ARN),
            ],
            required: vec!["WEBHOOK_SECRET_ARN", "DEPLOY_TOPIC_ARN"],
            malformed: vec![
                ("WEBHOOK_SECRET_ARN", "kiln-webhook".into()),
                ("WEBHOOK_SECRET_ARN", PASTED_TOKEN.into()),
                ("WEBHOOK_SECRET_ARN", TOPIC_ARN.into()),
                (
                    "DEPLOY_TOPIC_ARN",
                    "arn:aws:sqs:us-east-1:123456789012:q".into(),
                ),
                ("DEPLOY_BRANCHES", "main".into()),
                ("DEPLOY_BRANCHES", "main=production,,".into()),
                ("DEPLOY_TAGS", "v*=prod env".into()),
                ("ALLOWED_REPOSITORIES", "just-an-owner".into()),
            ],
            parse: |env| deploy_trigger::Config::from_env(env).map(drop),
        },
        Function {
            name: "deploy-exec",
            valid: vec![
                ("CLUSTER", "kiln"),
                ("TASK_DEFINITION", "kiln-stack-updater:3"),
                ("CONTAINER_NAME", "stack-updater"),
                ("SUBNETS", "subnet-1"),
                ("SECURITY_GROUPS", "sg-1"),
            ],
            required: vec![
                "CLUSTER",
                "TASK_DEFINITION",
                "CONTAINER_NAME",
                "SUBNETS",
                "SECURITY_GROUPS",
            ],
            malformed: vec![
                ("TASK_DEFINITION", "two words".into()),
                ("LAUNCH_TYPE", "LAMBDA".into()),
                ("CAPACITY_PROVIDER", "not a name!".into()),
                ("ASSIGN_PUBLIC_IP", "yes".into()),
                ("SUBNETS", "subnet-1,,subnet-2".into()),
                ("GITHUB_TOKEN_SECRET_ARN", PASTED_TOKEN.into()),
                ("GITHUB_API_URL", "ftp://github.example".into()),
                ("TASK_ENVIRONMENT", "1BAD=x".into()),
                ("TASK_ENVIRONMENT", "NO_EQUALS_SIGN".into()),
            ],
            parse: |env| deploy_exec::Config::from_env(env).map(drop),
        },
        Function {
            name: "watchdog",
            valid: vec![("ASG_NAME", "kiln-ecs"), ("ALERT_TOPIC_ARN", TOPIC_ARN)],
            required: vec!["ASG_NAME", "ALERT_TOPIC_ARN"],
            malformed: vec![
                ("ASG_NAME", "a".repeat(256)),
                ("ALERT_TOPIC_ARN", "kiln-alerts".into()),
                ("ALERT_TOPIC_ARN", PASTED_WEBHOOK.into()),
                ("CLUSTER_ARN", TOPIC_ARN.into()),
                ("CRASH_LOOP_THRESHOLD", "0".into()),
                ("CRASH_LOOP_THRESHOLD", "three".into()),
                ("CRASH_LOOP_WINDOW_MINUTES", "61".into()),
                ("SCALE_DOWN_ALARMS", "a,,b".into()),
            ],
            parse: |env| watchdog::Config::from_env(env).map(drop),
        },
        Function {
            name: "alert-forwarder",
            valid: vec![("SLACK_WEBHOOK_SECRET_ARN", SECRET_ARN)],
            required: vec!["SLACK_WEBHOOK_SECRET_ARN"],
            malformed: vec![
                ("SLACK_WEBHOOK_SECRET_ARN", PASTED_WEBHOOK.into()),
                ("SLACK_WEBHOOK_SECRET_ARN", "kiln/slack".into()),
                ("SLACK_MENTION", "@here".into()),
                ("NOTIFY_OK", "sometimes".into()),
                ("REFIRE_AFTER_MINUTES", "-1".into()),
                ("REFIRE_SCHEDULE_MINUTES", "0".into()),
            ],
            parse: |env| alert_forwarder::Config::from_env(env).map(drop),
        },
    ]
}

fn env_with(function: &Function, set: Option<(&str, &str)>, unset: Option<&str>) -> Env {
    let mut pairs: Vec<(String, String)> = function
        .valid
        .iter()
        .filter(|(name, _)| Some(*name) != unset)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if let Some((name, value)) = set {
        pairs.retain(|(n, _)| n != name);
        pairs.push((name.to_string(), value.to_string()));
    }
    Env::from_pairs(pairs)
}

fn assert_names(function: &str, variable: &str, value: Option<&str>, err: &ConfigError) {
    let message = err.to_string();
    assert!(
        err.variable().contains(variable),
        "{function}: {variable} → {err:?}"
    );
    assert!(
        message.contains(variable),
        "{function}: the message names {variable}: {message}"
    );
    // Names and patterns may be quoted back to help; a secret never is.
    if let Some(value) = value.filter(|v| *v == PASTED_TOKEN || *v == PASTED_WEBHOOK) {
        assert!(
            !message.contains(value),
            "{function}: {variable}'s value echoed: {message}"
        );
    }
}

#[test]
fn every_valid_configuration_parses() {
    for function in functions() {
        let result = (function.parse)(&env_with(&function, None, None));
        assert!(result.is_ok(), "{}: {:?}", function.name, result.err());
    }
}

#[test]
fn each_missing_required_variable_is_named() {
    for function in functions() {
        for variable in &function.required {
            let err = (function.parse)(&env_with(&function, None, Some(variable)))
                .expect_err(&format!("{} without {variable}", function.name));
            assert_names(function.name, variable, None, &err);
            // Blank counts as missing.
            let err = (function.parse)(&env_with(&function, Some((variable, "  ")), None))
                .expect_err(&format!("{} with a blank {variable}", function.name));
            assert_names(function.name, variable, None, &err);
        }
    }
}

#[test]
fn each_malformed_variable_is_named_and_its_value_not_echoed() {
    for function in functions() {
        for (variable, value) in &function.malformed {
            let err = (function.parse)(&env_with(&function, Some((variable, value)), None))
                .expect_err(&format!("{} with {variable}={value}", function.name));
            assert_names(function.name, variable, Some(value), &err);
        }
    }
}

/// The real binaries: init fails, the process exits non-zero, and stderr
/// names the variable. Run with every required variable missing in turn,
/// with a secret pasted where an ARN belongs, and with an
/// `EXTRA_CA_CERTS_FILE` that holds no certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_fails_its_init_naming_the_variable() {
    // (function, environment, variable expected in the error, value that must not appear)
    type InitCase = (
        &'static str,
        Vec<(String, String)>,
        &'static str,
        Option<&'static str>,
    );
    let mut cases: Vec<InitCase> = Vec::new();
    let not_a_certificate = std::env::temp_dir().join(format!(
        "kiln-reliability-config-{}-not-a-ca.pem",
        std::process::id()
    ));
    std::fs::write(&not_a_certificate, "this is not a PEM certificate\n").unwrap();
    for function in functions() {
        let valid: Vec<(String, String)> = function
            .valid
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for variable in &function.required {
            let env = valid
                .iter()
                .filter(|(n, _)| n != variable)
                .cloned()
                .collect();
            cases.push((function.name, env, variable, None));
        }
        let pasted = function
            .malformed
            .iter()
            .find(|(_, v)| v == PASTED_TOKEN || v == PASTED_WEBHOOK)
            .map(|(n, v)| {
                (
                    *n,
                    if v == PASTED_TOKEN {
                        PASTED_TOKEN
                    } else {
                        PASTED_WEBHOOK
                    },
                )
            });
        if let Some((variable, value)) = pasted {
            let mut env: Vec<(String, String)> = valid
                .iter()
                .filter(|(n, _)| n != variable)
                .cloned()
                .collect();
            env.push((variable.to_string(), value.to_string()));
            cases.push((function.name, env, variable, Some(value)));
        }
        let mut env = valid.clone();
        env.push((
            kiln::tls::EXTRA_CA_CERTS_FILE.to_string(),
            not_a_certificate.display().to_string(),
        ));
        cases.push((function.name, env, kiln::tls::EXTRA_CA_CERTS_FILE, None));
    }
    for (name, env, variable, pasted) in cases {
        let function = LambdaFunction::builder(name)
            .env(env)
            .echo(false)
            .start()
            .await;
        let failure = function.expect_init_failure(Duration::from_secs(60)).await;
        assert!(
            failure.exited,
            "{name} without a good {variable}: {failure}"
        );
        assert_ne!(failure.exit_code, Some(0), "{name}: {failure}");
        assert!(
            failure.stderr.contains(variable),
            "{name}: stderr names {variable}: {failure}"
        );
        if let Some(pasted) = pasted {
            let output = format!("{}{}", failure.stdout, failure.stderr);
            assert!(
                !output.contains(pasted),
                "{name}: the pasted secret was echoed: {output}"
            );
        }
    }
    let _ = std::fs::remove_file(&not_a_certificate);
}
