//! `kiln-local`: kiln on this machine, against an emulated AWS.
//!
//! - `kiln-local run` (what `make run` calls) starts moto, provisions
//!   kiln's resources, runs the four function binaries under the emulated
//!   Lambda Runtime API behind their local front doors, drives a scripted
//!   demo printing what happens at each step, then a summary table. Exits 0
//!   only if every step did what it should.
//! - `kiln-local dev` (what `make dev` calls) starts the same stack and
//!   leaves it running until Ctrl-C, printing the webhook URL, the secret and
//!   a signed `curl` command.
//!
//! The function binaries are taken from `$KILN_BIN_DIR`, or from the
//! directory this program is in (`make run` builds them all there).

use std::process::ExitCode;
use std::sync::Arc;

use kiln_tests::local::{
    Binaries, FUNCTIONS, LocalKiln, Options, PUSH_FIXTURE, Story, demo, names, print_function_line,
    print_slack_message,
};

const USAGE: &str = "usage: kiln-local [run | dev]

  run   start an emulated AWS, run kiln's functions on it, show what they do, stop
  dev   start the same and leave it running (Ctrl-C stops it)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Dev,
}

fn main() -> ExitCode {
    // Not a test: nothing to record for `make check-iam`.
    kiln_tests::call_record::disable();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["run"] => Mode::Run,
        ["dev"] => Mode::Dev,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    // A harness panic (the emulator misbehaving) ends the run as a failure
    // with its message, not as a backtrace; everything started is stopped
    // as the task unwinds.
    let outcome = runtime.block_on(async {
        match mode {
            Mode::Run => tokio::spawn(run()).await,
            Mode::Dev => tokio::spawn(dev()).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("\n✗ the local run stopped: {err}");
            ExitCode::FAILURE
        }
    }
}

fn options() -> Options {
    Options {
        binaries: Binaries::beside_this_program(),
        on_function_line: Some(Arc::new(print_function_line)),
        on_slack_message: Some(Arc::new(print_slack_message)),
        deploy_trigger_only: false,
        extra_env: Vec::new(),
    }
}

/// Starts everything, telling the story; `None` if something did not start.
async fn start(story: &mut Story) -> Option<LocalKiln> {
    let options = options();
    println!("kiln, locally: AWS is moto on 127.0.0.1; nothing leaves this machine.");
    println!("function binaries: {}", options.binaries.describe());
    story.chapter("Start moto, provision kiln's resources, start the four functions");
    let kiln = match LocalKiln::start(options).await {
        Ok(kiln) => kiln,
        Err(err) => {
            story.check(
                "local stack",
                "moto and 4 functions running",
                &err.to_string(),
                false,
            );
            return None;
        }
    };
    let r = &kiln.resources;
    story.say(&format!("moto            {}", kiln.moto.endpoint()));
    story.say(&format!("deploy topic    {}", r.deploy_topic_arn));
    story.say(&format!("alert topic     {}", r.alert_topic_arn));
    story.say(&format!("webhook secret  {}", r.webhook_secret_arn));
    story.say(&format!("Slack secret    {}", r.slack_secret_arn));
    story.say(&format!("GitHub token    {}", r.github_token_secret_arn));
    story.say(&format!("ECS cluster     {}", r.ecs.cluster_arn));
    story.say(&format!(
        "task definition {} (container {})",
        r.ecs.task_definition_arn, r.ecs.container_name
    ));
    story.say(&format!("app cluster     {}", r.app_cluster_arn));
    story.say(&format!(
        "app ASG         {} (min 0, desired 1, max 2)",
        names::APP_ASG
    ));
    story.say(&format!(
        "GitHub API      {} (local fake)",
        kiln.github.url()
    ));
    story.say(&format!(
        "Slack webhook   {} (local sink)",
        kiln.slack.url()
    ));
    for (function, init) in &kiln.functions {
        story.say(&format!(
            "{:<16}pid {}, ready in {} ms",
            function.name(),
            function.pid(),
            init.as_millis()
        ));
    }
    story.check(
        "local stack",
        "moto and 4 functions running",
        &format!("{} functions ready", kiln.functions.len()),
        kiln.functions.len() == FUNCTIONS.len(),
    );
    story.say(&format!("webhook URL     {}", kiln.webhook_url));
    Some(kiln)
}

async fn run() -> bool {
    let mut story = Story::new();
    let Some(kiln) = start(&mut story).await else {
        return finish(&story);
    };
    demo::run(&kiln, &mut story).await;
    story.chapter("Stop everything");
    drop(kiln);
    story.say("moto, the functions and the local endpoints are stopped");
    finish(&story)
}

async fn dev() -> bool {
    let mut story = Story::new();
    let Some(kiln) = start(&mut story).await else {
        return finish(&story);
    };
    let delivery = "11111111-2222-4333-8444-555555555555";
    println!("\n==> kiln is running locally. Ctrl-C stops it.\n");
    println!("webhook URL:     {}", kiln.webhook_url);
    println!("webhook secret:  {}", kiln.resources.webhook_secret);
    println!("\nA signed push ({PUSH_FIXTURE}); send it twice to see the second start no task:\n");
    println!("{}\n", kiln.curl_command(PUSH_FIXTURE, delivery));
    println!("Function logs and Slack messages appear below.");
    match tokio::signal::ctrl_c().await {
        Ok(()) => println!("\nstopping…"),
        Err(err) => eprintln!("\nwaiting for Ctrl-C failed ({err}); stopping"),
    }
    drop(kiln);
    println!("moto, the functions and the local endpoints are stopped");
    true
}

fn finish(story: &Story) -> bool {
    println!("\n{}", story.summary());
    story.all_ok()
}
