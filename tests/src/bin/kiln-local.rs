//! `kiln-local run`: kiln on this machine, against an emulated AWS.
//!
//! Starts moto, provisions kiln's resources, runs the real function
//! binaries (release builds, `$KILN_BIN_DIR` or `target/release`) under the
//! emulated Lambda Runtime API behind their local front doors, drives a
//! scripted demo and prints what happens at each step, then a summary. Exits
//! 0 only if every step did what it should.

use std::process::ExitCode;
use std::time::Duration;

use kiln_tests::fixtures::{fixture_bytes, github_headers};
use kiln_tests::local::{LocalKiln, Story, function_bin_dir, names, print_function_line};
use serde_json::Value;

const USAGE: &str = "usage: kiln-local run\n\n  run   start an emulated AWS, run kiln's functions on it and show what they do";

const PUSH_FIXTURE: &str = "github/push/with-new-branch.payload.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["run"] => {}
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A harness panic (the emulator misbehaving) ends the run as a failed
    // step, not as a backtrace.
    let outcome = runtime.block_on(async { tokio::spawn(run()).await });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("\n✗ the local run stopped: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> bool {
    let mut story = Story::new();
    println!("kiln, locally: the emulated AWS is moto on 127.0.0.1; nothing leaves this machine.");
    println!("function binaries: {}", function_bin_dir().display());

    story.chapter("Start the emulated AWS and provision kiln's resources");
    let mut kiln = match LocalKiln::provision().await {
        Ok(kiln) => kiln,
        Err(err) => {
            story.check("emulator", "moto running", &err.to_string(), false);
            return finish(&story);
        }
    };
    story.check("emulator", "moto running", kiln.moto.endpoint(), true);
    story.say(&format!(
        "deploy topic    {}",
        kiln.resources.deploy_topic_arn
    ));
    story.say(&format!(
        "webhook secret  {}",
        kiln.resources.webhook_secret_arn
    ));

    story.chapter("Start deploy-trigger behind a local API Gateway (HTTP API, payload 2.0)");
    let url = match kiln.start_deploy_trigger(print_function_line).await {
        Ok((url, init)) => {
            story.check(
                "deploy-trigger init",
                "polls for events",
                &format!("ready in {} ms", init.as_millis()),
                true,
            );
            url
        }
        Err(err) => {
            story.check(
                "deploy-trigger init",
                "polls for events",
                &err.to_string(),
                false,
            );
            return finish(&story);
        }
    };
    story.say(&format!("webhook URL     {url}"));

    story.chapter("GitHub delivers a signed push");
    let body = fixture_bytes(PUSH_FIXTURE);
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let sha = payload["after"].as_str().unwrap_or_default().to_string();
    let git_ref = payload["ref"].as_str().unwrap_or_default().to_string();
    let delivery_id = format!("local-{}", std::process::id());
    story.say(&format!(
        "push {git_ref} @ {sha} (fixture {PUSH_FIXTURE}), delivery {delivery_id}"
    ));
    let mut request = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(60))
        .body(body.clone());
    for (name, value) in github_headers("push", &delivery_id, &kiln.resources.webhook_secret, &body)
    {
        request = request.header(name, value);
    }
    let (status, answer) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (0, kiln::aws::error_chain(&err)),
    };
    story.say(&format!("answer: {status} {answer}"));
    story.check("signed push", "200", &format!("{status}"), status == 200);

    story.chapter("The deploy request on SNS (read back through an SQS subscription)");
    let published = kiln.deploy_requests.receive(Duration::from_secs(2)).await;
    match published.as_slice() {
        [envelope] => {
            let request: Value = serde_json::from_str(&envelope.message).unwrap_or_default();
            story.say(&format!(
                "SNS message {}: {}",
                envelope.message_id, envelope.message
            ));
            let environment = request["environment"].as_str().unwrap_or_default();
            let ok = request["kind"] == "kiln.deploy.request"
                && request["sha"] == sha.as_str()
                && request["delivery_id"] == delivery_id.as_str()
                && environment == "production";
            story.check(
                "deploy request",
                &format!("production @ {}", short(&sha)),
                &format!(
                    "{environment} @ {}",
                    short(request["sha"].as_str().unwrap_or_default())
                ),
                ok,
            );
        }
        other => {
            story.check(
                "deploy request",
                &format!("1 message on {}", names::DEPLOY_TOPIC),
                &format!("{} messages", other.len()),
                false,
            );
        }
    }
    drop(kiln);
    finish(&story)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn finish(story: &Story) -> bool {
    println!("\n{}", story.summary());
    story.all_ok()
}
