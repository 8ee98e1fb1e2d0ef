//! The scripted demo `kiln-local run` prints, one chapter per thing kiln
//! does, each step checked against the emulator's state. The end-to-end
//! test runs the same script and asserts every step passed.

use std::time::Duration;

use serde_json::Value;

use super::{LocalKiln, PUSH_FIXTURE, Story, names, receive};
use crate::fixtures::fixture_bytes;
use crate::local::ecs_tokens::RunTaskOutcome;

/// How long a function may take to handle what SNS delivered to it.
const HANDLED_WITHIN: Duration = Duration::from_secs(60);

/// The ids the demo produced, for callers that look further.
#[derive(Debug, Clone, Default)]
pub struct DemoIds {
    pub delivery_id: String,
    pub task_arn: Option<String>,
    pub client_token: Option<String>,
}

/// Runs every chapter; the story records each checked step.
pub async fn run(kiln: &LocalKiln, story: &mut Story) -> DemoIds {
    let mut ids = DemoIds {
        delivery_id: crate::process::uuid_like(),
        ..DemoIds::default()
    };
    signed_push(kiln, story, &mut ids).await;
    redelivery(kiln, story, &mut ids).await;
    bad_signature(kiln, story).await;
    deployment_end(kiln, story, &ids).await;
    lanes(kiln, story).await;
    crash(kiln, story).await;
    alarm(kiln, story).await;
    failed_deployment(kiln, story).await;
    ids
}

async fn signed_push(kiln: &LocalKiln, story: &mut Story, ids: &mut DemoIds) {
    story.chapter("GitHub delivers a signed push");
    let body = fixture_bytes(PUSH_FIXTURE);
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let sha = payload["after"].as_str().unwrap_or_default().to_string();
    let git_ref = payload["ref"].as_str().unwrap_or_default().to_string();
    let delivery = ids.delivery_id.clone();
    story.say(&format!(
        "push {git_ref} @ {} of {} ({PUSH_FIXTURE}, {} bytes, signed with the local secret)",
        short(&sha),
        payload["repository"]["full_name"]
            .as_str()
            .unwrap_or_default(),
        body.len()
    ));
    story.say(&format!("delivery {delivery}"));
    let answer = kiln.deliver_signed("push", &delivery, &body).await;
    story.say(&format!("answer: {} {}", answer.status, answer.body));
    story.check(
        "signed push",
        "200 queued",
        &format!("{} {}", answer.status, json_field(&answer.body, "status")),
        answer.status == 200,
    );

    story.chapter("The deploy request on SNS (read back through an SQS subscription)");
    let published = receive(&kiln.deploy_requests, 1, Duration::from_secs(5)).await;
    match published.as_slice() {
        [envelope] => {
            let request: Value = serde_json::from_str(&envelope.message).unwrap_or_default();
            story.say(&format!(
                "SNS message {} on {}",
                envelope.message_id,
                names::DEPLOY_TOPIC
            ));
            story.say(&format!("  {}", envelope.message));
            let environment = request["environment"].as_str().unwrap_or_default();
            story.check(
                "deploy request on SNS",
                &format!("production @ {}", short(&sha)),
                &format!(
                    "{environment} @ {}",
                    short(request["sha"].as_str().unwrap_or_default())
                ),
                request["kind"] == "kiln.deploy.request"
                    && request["sha"] == sha.as_str()
                    && request["delivery_id"] == delivery.as_str()
                    && environment == "production",
            );
        }
        other => {
            story.check(
                "deploy request on SNS",
                "1 message",
                &format!("{} messages", other.len()),
                false,
            );
        }
    }

    story.chapter("SNS invokes deploy-exec, which starts the stack-updater task on ECS");
    let handled = kiln
        .sns
        .wait_finished("deploy-exec", 1, HANDLED_WITHIN)
        .await;
    let outcome = handled.first().and_then(|d| d.outcome.clone());
    let task_arn = match &outcome {
        // On a lane the record's outcome names the started task under
        // `started`; without lanes, it is the record's own `task_arn`.
        Some(Ok(answer)) => answer["started"][0]["started"]["task_arn"]
            .as_str()
            .or_else(|| answer["started"][0]["task_arn"].as_str())
            .map(str::to_string),
        _ => None,
    };
    story.check(
        "deploy-exec invoked by SNS",
        "a task started",
        &match (&outcome, &task_arn) {
            (Some(Ok(_)), Some(arn)) => format!("task {}", task_id(arn)),
            (Some(Ok(answer)), None) => format!("no task in {answer}"),
            (Some(Err(err)), _) => err.to_string(),
            (None, _) => "not invoked".into(),
        },
        task_arn.is_some(),
    );
    ids.task_arn = task_arn.clone();
    let tasks = kiln.tasks_of_delivery(&delivery).await.unwrap_or_default();
    match tasks.as_slice() {
        [task] => {
            story.say(&format!("ECS task {}", task.task_arn().unwrap_or_default()));
            story.say(&format!(
                "  task definition {}, startedBy {}, status {}",
                task.task_definition_arn().unwrap_or_default(),
                task.started_by().unwrap_or_default(),
                task.last_status().unwrap_or_default()
            ));
            let environment = overrides(task);
            for (name, value) in &environment {
                story.say(&format!("  {name}={value}"));
            }
            let has =
                |name: &str, value: &str| environment.iter().any(|(n, v)| n == name && v == value);
            let ok = has("GIT_SHA", &sha)
                && has("GIT_REF", &git_ref)
                && has("STACK_ENV", "production")
                && has("DELIVERY_ID", &delivery)
                && has("REPOSITORY", "Codertocat/Hello-World");
            story.check(
                "ECS task overrides",
                "GIT_SHA, GIT_REF, STACK_ENV, DELIVERY_ID",
                &format!(
                    "{} variables on {}",
                    environment.len(),
                    names::CONTAINER_NAME
                ),
                ok,
            );
        }
        other => {
            story.check(
                "ECS task overrides",
                "1 task for the delivery",
                &format!("{} tasks", other.len()),
                false,
            );
        }
    }
    ids.client_token = kiln
        .ecs_tokens
        .run_task_calls()
        .iter()
        .find(|c| c.started_by.as_deref() == Some(&format!("kiln/{delivery}")))
        .and_then(|c| c.client_token.clone());
    if let Some(token) = &ids.client_token {
        story.say(&format!("RunTask clientToken {token}"));
    }
    let statuses = github_posts(kiln);
    let pending = statuses
        .iter()
        .find(|(path, body)| path.ends_with(&sha) && body["state"] == "pending");
    if let Some((path, body)) = pending {
        story.say(&format!("GitHub POST {path}: {body}"));
    }
    story.check(
        "GitHub commit status",
        "pending",
        &pending
            .map(|(_, body)| body["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| format!("{} statuses posted", statuses.len())),
        pending.is_some(),
    );
}

async fn redelivery(kiln: &LocalKiln, story: &mut Story, ids: &mut DemoIds) {
    story.chapter("GitHub redelivers the same delivery");
    let delivery = ids.delivery_id.clone();
    let body = fixture_bytes(PUSH_FIXTURE);
    let answer = kiln.deliver_signed("push", &delivery, &body).await;
    story.say(&format!("answer: {} {}", answer.status, answer.body));
    let handled = kiln
        .sns
        .wait_finished("deploy-exec", 2, HANDLED_WITHIN)
        .await;
    if let Some(Some(Ok(second))) = handled.get(1).map(|d| d.outcome.clone()) {
        story.say(&format!("deploy-exec: {second}"));
    }
    let started_by = format!("kiln/{delivery}");
    let calls: Vec<_> = kiln
        .ecs_tokens
        .run_task_calls()
        .into_iter()
        .filter(|c| c.started_by.as_deref() == Some(started_by.as_str()))
        .collect();
    let tokens: Vec<&str> = calls
        .iter()
        .filter_map(|c| c.client_token.as_deref())
        .collect();
    // The lane already runs this delivery: deploy-exec changes nothing and
    // calls RunTask no second time (were it to, the same clientToken
    // would make ECS answer with the first task).
    let one_call = calls.len() == 1 && tokens.len() == 1;
    let second = calls.get(1).map(|c| match &c.outcome {
        RunTaskOutcome::Replayed(_) => "the first answer again",
        RunTaskOutcome::Conflict(_) => "ConflictException naming the first task",
        RunTaskOutcome::Started(_) => "a new task",
        RunTaskOutcome::Failed(_) => "a failure",
    });
    story.say(&format!(
        "RunTask calls for {started_by}: {} with clientToken {}{}",
        calls.len(),
        tokens.first().copied().unwrap_or("?"),
        second.map_or(String::new(), |s| format!(
            "; ECS answered the second with {s}"
        ))
    ));
    // The redelivery is published again: deploy-exec is what keeps it
    // from starting a second task.
    let republished = receive(&kiln.deploy_requests, 1, Duration::from_secs(5)).await;
    if let Some(envelope) = republished.first() {
        story.say(&format!(
            "published again as SNS message {}",
            envelope.message_id
        ));
    }
    let tasks = kiln.tasks_of_delivery(&delivery).await.unwrap_or_default();
    story.check(
        "redelivery",
        "200, no second task (the lane already runs this delivery)",
        &format!(
            "{}, {} task, {} RunTask call{}",
            answer.status,
            tasks.len(),
            calls.len(),
            if calls.len() == 1 { "" } else { "s" }
        ),
        answer.status == 200 && tasks.len() == 1 && one_call,
    );
}

async fn bad_signature(kiln: &LocalKiln, story: &mut Story) {
    story.chapter("A delivery with a bad signature");
    let delivery = crate::process::uuid_like();
    let body = fixture_bytes(PUSH_FIXTURE);
    let before = kiln.sns.deliveries_to("deploy-exec").len();
    let answer = kiln
        .deliver("push", &delivery, &body, "not-the-webhook-secret")
        .await;
    story.say(&format!("delivery {delivery}, signed with another secret"));
    story.say(&format!("answer: {} {}", answer.status, answer.body));
    // moto delivers during Publish: anything published is already there.
    let published = kiln.deploy_requests.drain().await;
    let invoked = kiln.sns.deliveries_to("deploy-exec").len() - before;
    story.check(
        "bad signature",
        "401, nothing published",
        &format!("{}, {} published", answer.status, published.len() + invoked),
        answer.status == 401 && published.is_empty() && invoked == 0,
    );
}

async fn deployment_end(kiln: &LocalKiln, story: &mut Story, ids: &DemoIds) {
    story.chapter("The stack-updater task exits 0: deploy-exec reports success to GitHub");
    let Some(task_arn) = ids.task_arn.clone() else {
        story.check(
            "deployment end",
            "success status",
            "no task was started",
            false,
        );
        return;
    };
    let event = kiln.deploy_task_stopped_event(&task_arn, &ids.delivery_id, 0);
    story.say(&format!(
        "EventBridge: ECS Task State Change, task {} STOPPED, exit code 0",
        task_id(&task_arn)
    ));
    let before = github_posts(kiln).len();
    let answer = kiln.invoke("deploy-exec", event).await;
    story.say(&format!(
        "deploy-exec: {}",
        answer.as_ref().map_or_else(String::clone, Value::to_string)
    ));
    let posted: Vec<_> = github_posts(kiln).into_iter().skip(before).collect();
    for (path, body) in &posted {
        story.say(&format!("GitHub POST {path}: {body}"));
    }
    let success = posted.iter().any(|(_, body)| body["state"] == "success");
    story.check(
        "deployment end",
        "success status",
        &posted
            .first()
            .map(|(_, body)| body["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| answer.err().unwrap_or_else(|| "nothing posted".into())),
        success,
    );
}

/// Deploy lanes: one deployment per (repository, environment) at a time,
/// and the newest push wins.
async fn lanes(kiln: &LocalKiln, story: &mut Story) {
    story.chapter("Deploy lanes: two pushes to main one second apart, then a third");
    let fixture: Value = serde_json::from_slice(&fixture_bytes(PUSH_FIXTURE)).unwrap_or_default();
    let pushed_at = fixture["repository"]["pushed_at"]
        .as_i64()
        .unwrap_or_default();
    // Three commits pushed to main after the first chapter's.
    let pushes: Vec<(String, String)> = (1..=3)
        .map(|n| {
            let mut payload = fixture.clone();
            let sha = format!("{:07x}{}", 0xa11ce00 + n, "e".repeat(33));
            payload["ref"] = "refs/heads/main".into();
            payload["after"] = sha.clone().into();
            payload["head_commit"]["id"] = sha.clone().into();
            payload["repository"]["pushed_at"] = (pushed_at + 100 + n as i64).into();
            (sha, payload.to_string())
        })
        .collect();
    let deliveries: Vec<String> = (0..3).map(|_| crate::process::uuid_like()).collect();
    let mut handled = kiln.sns.deliveries_to("deploy-exec").len();
    let mut push = |n: usize| {
        let (sha, body) = pushes[n].clone();
        let delivery = deliveries[n].clone();
        handled += 1;
        let count = handled;
        async move {
            let answer = kiln
                .deliver_signed("push", &delivery, body.as_bytes())
                .await;
            let done = kiln
                .sns
                .wait_finished("deploy-exec", count, HANDLED_WITHIN)
                .await;
            let outcome = done
                .get(count - 1)
                .and_then(|d| d.outcome.clone())
                .map_or_else(
                    || "not invoked".to_string(),
                    |o| o.map_or_else(|e| e.to_string(), |v| v.to_string()),
                );
            story_line(&sha, &delivery, answer.status, &outcome)
        }
    };
    let first = push(0).await;
    story.say(&first);
    let second = push(1).await;
    story.say(&second);
    let tasks = |n: usize| {
        let delivery = deliveries[n].clone();
        async move {
            kiln.tasks_of_delivery(&delivery)
                .await
                .unwrap_or_default()
                .len()
        }
    };
    let statuses = github_posts(kiln);
    let state_of = |statuses: &[(String, Value)], n: usize| -> (String, String) {
        statuses
            .iter()
            .rev()
            .find(|(path, _)| path.ends_with(&pushes[n].0))
            .map(|(_, body)| {
                (
                    body["state"].as_str().unwrap_or_default().to_string(),
                    body["description"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default()
    };
    let (state, description) = state_of(&statuses, 1);
    story.say(&format!("GitHub, second push: {state} \"{description}\""));
    let (first_tasks, second_tasks) = (tasks(0).await, tasks(1).await);
    story.check(
        "two pushes, one lane",
        "one task, the second push queued",
        &format!("{first_tasks} + {second_tasks} tasks, second push {state}"),
        first_tasks == 1
            && second_tasks == 0
            && state == "pending"
            && description.starts_with("Queued behind"),
    );

    story
        .chapter("A third push while the first deploys: the second is superseded, the third waits");
    let third = push(2).await;
    story.say(&third);
    let statuses = github_posts(kiln);
    let (second_state, second_description) = state_of(&statuses, 1);
    let (third_state, third_description) = state_of(&statuses, 2);
    story.say(&format!(
        "GitHub, second push: {second_state} \"{second_description}\""
    ));
    story.say(&format!(
        "GitHub, third push: {third_state} \"{third_description}\""
    ));
    let third_tasks = tasks(2).await;
    story.check(
        "only the newest waits",
        "second superseded, third queued",
        &format!("second {second_state}, third {third_state}, {third_tasks} task for the third"),
        second_state == "error"
            && second_description.starts_with(&format!("Superseded by {}", &pushes[2].0[..7]))
            && third_state == "pending"
            && third_tasks == 0,
    );

    story.chapter("The first push's task stops: its lane starts the third");
    let first_task = kiln
        .tasks_of_delivery(&deliveries[0])
        .await
        .unwrap_or_default()
        .first()
        .and_then(|t| t.task_arn().map(str::to_string));
    let Some(first_task) = first_task else {
        story.check(
            "lane freed",
            "the third starts",
            "the first push started no task",
            false,
        );
        return;
    };
    story.say(&format!(
        "EventBridge: ECS Task State Change, task {} STOPPED, exit code 0",
        task_id(&first_task)
    ));
    let event = kiln.deploy_task_stopped_event(&first_task, &deliveries[0], 0);
    let answer = kiln.invoke("deploy-exec", event).await;
    story.say(&format!(
        "deploy-exec: {}",
        answer.as_ref().map_or_else(String::clone, Value::to_string)
    ));
    let third_tasks = tasks(2).await;
    let started = answer.as_ref().ok().and_then(|a| {
        a["lane"]["started"]["delivery_id"]
            .as_str()
            .map(str::to_string)
    });
    story.check(
        "lane freed",
        "the third starts",
        &format!(
            "{} started, {third_tasks} task for the third",
            started
                .as_deref()
                .map_or("nothing", |d| if d == deliveries[2] {
                    "the third"
                } else {
                    "another"
                })
        ),
        third_tasks == 1 && started.as_deref() == Some(deliveries[2].as_str()),
    );
}

fn story_line(sha: &str, delivery: &str, status: u16, outcome: &str) -> String {
    format!(
        "push main @ {}, delivery {delivery}: {status}; deploy-exec: {outcome}",
        short(sha)
    )
}

async fn crash(kiln: &LocalKiln, story: &mut Story) {
    story.chapter("An application task crashes: watchdog scales its group to zero and alerts");
    let event = kiln.crash_event();
    story.say(&format!(
        "EventBridge: ECS Task State Change, task {} STOPPED ({}), exit code {}",
        event["detail"]["taskArn"].as_str().unwrap_or_default(),
        event["detail"]["stopCode"].as_str().unwrap_or_default(),
        event["detail"]["containers"][0]["exitCode"]
    ));
    let before = kiln.asg_capacity().await;
    let answer = kiln.invoke("watchdog", event).await;
    story.say(&format!(
        "watchdog: {}",
        answer.as_ref().map_or_else(String::clone, Value::to_string)
    ));
    let after = kiln.asg_capacity().await;
    story.check(
        "crash → watchdog",
        "ASG desired 1 → 0",
        &format!(
            "{} desired {} → {}",
            names::APP_ASG,
            before.desired,
            after.desired
        ),
        before.desired == 1 && after.desired == 0,
    );
    let alerts = receive(&kiln.alerts, 1, Duration::from_secs(5)).await;
    for alert in &alerts {
        story.say(&format!(
            "SNS message {} on {}: {}",
            alert.message_id,
            names::ALERT_TOPIC,
            alert.subject.as_deref().unwrap_or_default()
        ));
    }
    story.check(
        "alert on SNS",
        "1 kiln.alert",
        &format!("{} message(s)", alerts.len()),
        alerts.len() == 1 && alerts[0].message.contains("\"kiln.alert\""),
    );
    forwarded_to_slack(kiln, story, 1, "alert → Slack", "Crash loop").await;
}

async fn alarm(kiln: &LocalKiln, story: &mut Story) {
    story.chapter("A CloudWatch alarm goes to ALARM: alert-forwarder posts it to Slack");
    match kiln.raise_alarm().await {
        Ok(message_id) => {
            story.say(&format!(
                "alarm {} is in ALARM on moto's CloudWatch; its notification is SNS message {message_id}",
                names::DEAD_LETTERS_ALARM
            ));
            // Read back, so the alert topic's queue stays empty.
            let _ = receive(&kiln.alerts, 1, Duration::from_secs(5)).await;
            forwarded_to_slack(kiln, story, 2, "alarm → Slack", names::DEAD_LETTERS_ALARM).await;
        }
        Err(err) => {
            story.check("alarm → Slack", "a Slack message", &err.to_string(), false);
        }
    }
}

/// What the failed deployment's stack updater writes before it exits 1.
const FAILED_DEPLOY_LOG: [&str; 5] = [
    "+ aws cloudformation deploy --stack-name hello-world-production",
    "Waiting for changeset to be created..",
    "2026-11-22 10:04:12 UPDATE_FAILED AWS::ECS::Service AppService Invalid request provided: the target group has no associated load balancer",
    "2026-11-22 10:04:27 UPDATE_ROLLBACK_COMPLETE AWS::CloudFormation::Stack hello-world-production",
    "deploy: stack update failed and was rolled back",
];

async fn failed_deployment(kiln: &LocalKiln, story: &mut Story) {
    story.chapter(
        "A deployment fails: deploy-exec announces it with the stack updater's last log lines",
    );
    let delivery = crate::process::uuid_like();
    let request = failed_deploy_request(&delivery);
    let started = kiln
        .invoke(
            "deploy-exec",
            crate::fixtures::sns_event(&[crate::fixtures::SnsNotification::new(
                kiln.resources.deploy_topic_arn.clone(),
                request.to_json(),
            )]),
        )
        .await;
    // With lanes, the record's answer names the task its lane started.
    let Some(task_arn) = started
        .as_ref()
        .ok()
        .and_then(|answer| {
            answer["started"][0]["started"]["task_arn"]
                .as_str()
                .or_else(|| answer["started"][0]["task_arn"].as_str())
        })
        .map(str::to_string)
    else {
        story.check(
            "failed deployment",
            "a task started",
            &started.err().unwrap_or_else(|| "no task".into()),
            false,
        );
        return;
    };
    let ecs = &kiln.resources.ecs;
    let stream = ecs.log_stream(&task_arn);
    let lines: Vec<String> = FAILED_DEPLOY_LOG.iter().map(|l| l.to_string()).collect();
    kiln.aws.write_log(&ecs.log_group, &stream, &lines).await;
    story.say(&format!(
        "task {} wrote {} lines to {}:{stream}, then exited with code 1",
        task_id(&task_arn),
        lines.len(),
        ecs.log_group
    ));
    let event = kiln.deploy_task_stopped_event(&task_arn, &delivery, 1);
    let answer = kiln.invoke("deploy-exec", event).await;
    story.say(&format!(
        "deploy-exec: {}",
        answer.as_ref().map_or_else(String::clone, Value::to_string)
    ));
    let alerts = receive(&kiln.alerts, 1, Duration::from_secs(5)).await;
    let carries_lines = alerts
        .first()
        .and_then(|a| kiln::Alert::from_json(&a.message).ok())
        .and_then(|a| {
            a.field_value(kiln::messages::deployment::field::LOG_LINES)
                .map(|l| l == lines.join("\n"))
        })
        .unwrap_or(false);
    story.check(
        "failure on the alert topic",
        "1 kiln.alert from deploy-exec with the 5 log lines",
        &match alerts.first() {
            Some(alert) => format!(
                "{} ({})",
                alert.subject.as_deref().unwrap_or_default(),
                if carries_lines {
                    "with the log lines"
                } else {
                    "without the log lines"
                }
            ),
            None => "no alert".into(),
        },
        alerts.len() == 1 && carries_lines,
    );
    forwarded_to_slack(kiln, story, 3, "failed deployment → Slack", "Deploy failed").await;
    let slack_has_lines = kiln.slack.requests().get(2).is_some_and(|r| {
        String::from_utf8_lossy(&r.body).contains("stack update failed and was rolled back")
    });
    story.check(
        "log lines in Slack",
        "the last log line in the message",
        if slack_has_lines {
            "present"
        } else {
            "missing"
        },
        slack_has_lines,
    );
}

/// A push of the push fixture's repository to staging (a lane of its own:
/// production's runs the lanes chapter's last push), under a new delivery,
/// by the fixture's pusher.
fn failed_deploy_request(delivery_id: &str) -> kiln::DeployRequest {
    let payload: Value = serde_json::from_slice(&fixture_bytes(PUSH_FIXTURE)).unwrap_or_default();
    let text = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    kiln::DeployRequest {
        kind: kiln::messages::deploy_request::KIND.into(),
        version: kiln::messages::deploy_request::VERSION,
        delivery_id: delivery_id.into(),
        event: kiln::DeployEvent::Push,
        repository: text("/repository/full_name"),
        clone_url: text("/repository/clone_url"),
        git_ref: text("/ref"),
        sha: text("/after"),
        environment: "staging".into(),
        sender: text("/sender/login"),
        deployment_id: None,
        requested_at: time::OffsetDateTime::now_utc(),
        event_at: None,
        before: None,
    }
}

/// Checks that alert-forwarder handled its `nth` SNS delivery and that the
/// Slack sink's `nth` message mentions `expected`.
async fn forwarded_to_slack(
    kiln: &LocalKiln,
    story: &mut Story,
    nth: usize,
    step: &str,
    expected: &str,
) {
    let handled = kiln
        .sns
        .wait_finished("alert-forwarder", nth, HANDLED_WITHIN)
        .await;
    let outcome = handled.get(nth - 1).and_then(|d| d.outcome.clone());
    let posts = kiln.slack.requests();
    let text = posts
        .get(nth - 1)
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .and_then(|body| body["text"].as_str().map(str::to_string))
        .unwrap_or_default();
    story.check(
        step,
        &format!("a Slack message about {expected}"),
        &match outcome {
            Some(Ok(_)) if !text.is_empty() => text.clone(),
            Some(Ok(answer)) => format!("no Slack message ({answer})"),
            Some(Err(err)) => err.to_string(),
            None => "alert-forwarder not invoked".into(),
        },
        posts.len() == nth && text.contains(expected),
    );
}

/// The POSTs GitHub received: path and JSON body.
fn github_posts(kiln: &LocalKiln) -> Vec<(String, Value)> {
    kiln.github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            (r.path, body)
        })
        .collect()
}

/// The deploy container's override environment.
fn overrides(task: &aws_sdk_ecs::types::Task) -> Vec<(String, String)> {
    task.overrides()
        .map(|o| o.container_overrides())
        .unwrap_or_default()
        .iter()
        .filter(|o| o.name() == Some(names::CONTAINER_NAME))
        .flat_map(|o| o.environment())
        .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
        .collect()
}

fn json_field(body: &str, field: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}
