//! kiln end to end on the local stack `make run` uses: moto, the four real
//! function binaries under the emulated Lambda runtime, deploy-trigger
//! behind the local API Gateway endpoint, SNS delivering to the functions
//! through moto's HTTP subscriptions, deploy-exec's ECS calls through the
//! clientToken front, a GitHub fake and a Slack sink. Assertions are on the
//! emulator's state (ECS tasks, ASG capacity, SNS read back through SQS)
//! and on what the fakes received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kiln_tests::fixtures::{fixture_bytes, github_headers};
use kiln_tests::local::ecs_tokens::RunTaskOutcome;
use kiln_tests::local::{
    DEPLOY_TOPIC_RECORDER, LocalKiln, Options, PUSH_FIXTURE, Story, demo, receive,
};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

/// Deliveries in flight at once, as GitHub sends them to a busy endpoint.
const IN_FLIGHT: usize = 8;

/// Posts each `(delivery id, body)` signed to the webhook, `IN_FLIGHT` at
/// a time; sends `(index, delivery id, status)` as answers come.
fn burst(
    kiln: &LocalKiln,
    deliveries: Vec<String>,
) -> mpsc::UnboundedReceiver<(usize, String, u16)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let url = kiln.webhook_url.clone();
    let secret = kiln.resources.webhook_secret.clone();
    let body = Arc::new(fixture_bytes(PUSH_FIXTURE));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (index, delivery) in deliveries.into_iter().enumerate() {
        let (tx, url, secret, body, slots, client) = (
            tx.clone(),
            url.clone(),
            secret.clone(),
            Arc::clone(&body),
            Arc::clone(&slots),
            client.clone(),
        );
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let mut request = client
                .post(&url)
                .timeout(Duration::from_secs(60))
                .body(body.to_vec());
            for (name, value) in github_headers("push", &delivery, &secret, &body) {
                request = request.header(name, value);
            }
            let status = match request.send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            let _ = tx.send((index, delivery, status));
        });
    }
    rx
}

fn delivery_of(message: &str) -> String {
    let request: Value = serde_json::from_str(message).unwrap();
    request["delivery_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_every_step() {
    let kiln = LocalKiln::start(Options::for_tests()).await.unwrap();
    let mut story = Story::new();
    let ids = demo::run(&kiln, &mut story).await;
    assert!(story.all_ok(), "{}", story.summary());
    assert_eq!(story.steps().len(), 18, "{}", story.summary());

    // The state the story describes, read directly: the first push's task,
    // and on the lane the first and the third of the three later pushes.
    let tasks = kiln.deploy_tasks().await;
    // The first push's task, the lanes chapter's two, the failed
    // deployment's.
    assert_eq!(tasks.len(), 4);
    let first = tasks
        .iter()
        .find(|t| t.task_arn() == ids.task_arn.as_deref())
        .unwrap();
    assert_eq!(
        first.started_by(),
        Some(format!("kiln/{}", ids.delivery_id).as_str())
    );
    assert_eq!(
        ids.client_token.as_deref(),
        Some(deploy_exec::task_request::client_token(&ids.delivery_id).as_str())
    );
    let capacity = kiln.asg_capacity().await;
    assert_eq!((capacity.min, capacity.desired, capacity.max), (0, 0, 2));
    let slack: Vec<String> = kiln
        .slack
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(slack.len(), 3, "{slack:#?}");
    assert!(slack[0].contains("Crash loop") && slack[0].contains("kiln-app scaled to 0"));
    assert!(slack[1].contains("kiln-deploy-exec-dead-letters"));
    assert!(slack[2].contains("Deploy failed"), "{}", slack[2]);
    let states: Vec<String> = kiln
        .github
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json()["state"].as_str().unwrap().to_string())
        .collect();
    // Pending at the start, nothing for the redelivery (its lane already
    // runs it), success at the end. Then the lane: the first of three
    // pushes pending, the second queued (pending), the third queued and the
    // second superseded (error), the third started and the first done.
    // Last, the failed deployment's start and end.
    assert_eq!(
        states,
        [
            "pending", "success", "pending", "pending", "pending", "error", "pending", "success",
            "pending", "failure"
        ]
    );
    // Everything SNS delivered was handled on the first attempt.
    for delivery in kiln.sns.deliveries() {
        assert!(
            delivery.succeeded() && delivery.attempts == 1,
            "{delivery:#?}"
        );
    }
}

/// 200 deliveries, 40 of them redeliveries of earlier ones (the same
/// delivery id and bytes): all answered 200 and published, and deploy-exec
/// starts one task per unique delivery, every redelivery carrying its
/// original's clientToken. About 15 s on two cores: the size is the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_200_deliveries_with_20_percent_duplicates_starts_one_task_per_delivery() {
    // Without lanes: every delivery deploys the same commit to the same
    // environment, which lanes would rightly hold to one at a time.
    let kiln = LocalKiln::start(Options {
        extra_env: vec![("LANES_TABLE".into(), String::new())],
        ..Options::for_tests()
    })
    .await
    .unwrap();
    let unique: Vec<String> = (0..160)
        .map(|i| format!("burst-{i:03}-{}", std::process::id()))
        .collect();
    // Groups of four new deliveries, then one redelivery from the group.
    let mut sent = Vec::new();
    for (group, chunk) in unique.chunks(4).enumerate() {
        sent.extend(chunk.iter().cloned());
        sent.push(chunk[group % 4].clone());
    }
    assert_eq!(sent.len(), 200);

    let mut answers = burst(&kiln, sent.clone());
    let mut statuses = Vec::new();
    while let Some((_, delivery, status)) = answers.recv().await {
        statuses.push((delivery, status));
    }
    assert_eq!(statuses.len(), 200);
    let failed: Vec<_> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(failed.is_empty(), "not answered 200: {failed:?}");

    // Every delivery was published: 200 messages, one per delivery sent.
    let published = receive(&kiln.deploy_requests, 200, Duration::from_secs(30)).await;
    let mut published_ids: Vec<String> =
        published.iter().map(|e| delivery_of(&e.message)).collect();
    let mut sent_sorted = sent.clone();
    published_ids.sort();
    sent_sorted.sort();
    assert_eq!(published_ids, sent_sorted);

    // deploy-exec handled every message SNS delivered to it.
    let handled = kiln
        .sns
        .wait_finished("deploy-exec", 200, Duration::from_secs(180))
        .await;
    assert_eq!(handled.len(), 200);
    let unhandled: Vec<_> = handled.iter().filter(|d| !d.succeeded()).collect();
    assert!(unhandled.is_empty(), "{unhandled:#?}");

    // RunTask: one clientToken per unique delivery, the same for its
    // redelivery, and distinct across deliveries.
    let calls = kiln.ecs_tokens.run_task_calls();
    assert_eq!(calls.len(), 200);
    let mut tokens_by_delivery: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut calls_by_delivery: HashMap<String, usize> = HashMap::new();
    for call in &calls {
        let delivery = call
            .started_by
            .as_deref()
            .and_then(|s| s.strip_prefix("kiln/"))
            .unwrap()
            .to_string();
        tokens_by_delivery
            .entry(delivery.clone())
            .or_default()
            .insert(call.client_token.clone().unwrap());
        *calls_by_delivery.entry(delivery).or_default() += 1;
    }
    assert_eq!(tokens_by_delivery.len(), unique.len());
    for (delivery, tokens) in &tokens_by_delivery {
        assert_eq!(tokens.len(), 1, "{delivery} used {tokens:?}");
    }
    let distinct: BTreeSet<&String> = tokens_by_delivery.values().flatten().collect();
    assert_eq!(distinct.len(), unique.len());
    for (group, chunk) in unique.chunks(4).enumerate() {
        let duplicated = &chunk[group % 4];
        assert_eq!(calls_by_delivery[duplicated], 2, "{duplicated}");
    }

    // One task per unique delivery on ECS: the redeliveries started none.
    let started = calls
        .iter()
        .filter(|c| matches!(c.outcome, RunTaskOutcome::Started(_)))
        .count();
    assert_eq!(started, unique.len());
    let mut task_count = 0;
    let mut pages = kiln
        .aws
        .ecs
        .list_tasks()
        .cluster(&kiln.resources.ecs.cluster_name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        task_count += page.unwrap().task_arns().len();
    }
    assert_eq!(task_count, unique.len());
}

/// moto stops while a burst is under way. Every delivery is answered 2xx
/// with its message on the deploy topic, or 5xx, which GitHub redelivers;
/// none is 2xx and missing. Each delivery after the stop takes deploy-trigger
/// the SDK's three attempts (about 1.5 s), so the burst is kept small.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_stopped_mid_burst_leaves_no_acknowledged_delivery_unpublished() {
    let mut kiln = LocalKiln::start(Options {
        deploy_trigger_only: true,
        ..Options::for_tests()
    })
    .await
    .unwrap();
    let sent: Vec<String> = (0..24)
        .map(|i| format!("outage-{i:02}-{}", std::process::id()))
        .collect();
    let mut answers = burst(&kiln, sent.clone());
    let mut statuses = Vec::new();
    while let Some((_, delivery, status)) = answers.recv().await {
        statuses.push((delivery, status));
        if statuses.len() == sent.len() / 2 {
            // The other deliveries are in flight or queued.
            kiln.moto.stop().await;
        }
    }
    assert_eq!(statuses.len(), sent.len());

    let published: BTreeSet<String> = kiln
        .sns
        .deliveries_to(DEPLOY_TOPIC_RECORDER)
        .iter()
        .map(|d| delivery_of(&d.message))
        .collect();
    let mut acknowledged = 0;
    let mut refused = 0;
    for (delivery, status) in &statuses {
        match status {
            200..=299 => {
                acknowledged += 1;
                assert!(
                    published.contains(delivery),
                    "{delivery} was answered {status} but never published"
                );
            }
            500..=599 => refused += 1,
            other => panic!("{delivery} was answered {other}: neither 2xx nor 5xx"),
        }
    }
    // Both sides of the outage were exercised.
    assert!(acknowledged >= sent.len() / 2, "{statuses:?}");
    assert!(refused >= 1, "{statuses:?}");
}
