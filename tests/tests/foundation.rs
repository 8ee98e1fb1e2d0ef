//! The foundation: moto starts and stops, every AWS service kiln uses
//! answers the real Rust SDK (through kiln's own adapters where they exist),
//! and every function fails its init with a message naming a missing
//! variable.

use std::time::Duration;

use aws_sdk_ecs::types::{ContainerOverride, KeyValuePair, TaskOverride};
use kiln::secrets::{SecretCache, SecretsManagerFetcher, VersionStage};
use kiln::sns::{OutboundMessage, Publisher, SnsPublisher};
use kiln_tests::lambda::LambdaFunction;
use kiln_tests::moto::Moto;

#[tokio::test]
async fn moto_starts_answers_and_stops() {
    let mut moto = Moto::start().await;
    let endpoint = moto.endpoint().to_string();
    let aws = moto.aws().await;
    assert!(aws.sns.list_topics().send().await.is_ok());

    moto.stop().await;
    let refused = reqwest::Client::new()
        .get(format!("{endpoint}/moto-api/"))
        .send()
        .await;
    assert!(refused.is_err(), "moto still answers after stop()");

    // Drop stops it too.
    let moto = Moto::start().await;
    let endpoint = moto.endpoint().to_string();
    drop(moto);
    let mut refused = false;
    for _ in 0..50 {
        if reqwest::Client::new()
            .get(format!("{endpoint}/moto-api/"))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "moto still answers after drop");
}

#[tokio::test]
async fn each_server_has_its_own_state_and_reset_clears_it() {
    let (a, b) = tokio::join!(Moto::start(), Moto::start());
    assert_ne!(a.endpoint(), b.endpoint());
    let (aws_a, aws_b) = (a.aws().await, b.aws().await);
    aws_a.create_topic("only-on-a").await;
    let topics = |out: aws_sdk_sns::operation::list_topics::ListTopicsOutput| {
        out.topics.unwrap_or_default().len()
    };
    assert_eq!(topics(aws_a.sns.list_topics().send().await.unwrap()), 1);
    assert_eq!(topics(aws_b.sns.list_topics().send().await.unwrap()), 0);

    a.reset().await;
    assert_eq!(topics(aws_a.sns.list_topics().send().await.unwrap()), 0);
}

#[tokio::test]
async fn sns_publisher_messages_arrive_as_sns_envelopes() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_topic("kiln-deploy").await;
    let queue = aws.subscribe_queue(&topic).await;

    let publisher = SnsPublisher::new(aws.sns.clone());
    let message_id = publisher
        .publish(
            &topic,
            OutboundMessage {
                body: r#"{"kind":"kiln.deploy.request"}"#.into(),
                subject: Some("deploy".into()),
                attributes: vec![("environment".into(), "production".into())],
                ..OutboundMessage::default()
            },
        )
        .await
        .unwrap();

    let envelope = queue.expect_one().await;
    assert_eq!(envelope.message_id, message_id);
    assert_eq!(envelope.topic_arn, topic);
    assert_eq!(envelope.json()["kind"], "kiln.deploy.request");
    assert_eq!(envelope.subject.as_deref(), Some("deploy"));
    assert_eq!(envelope.attribute("environment"), Some("production"));
    queue.expect_none().await;
}

#[tokio::test]
async fn sns_publisher_sets_fifo_group_and_deduplication_ids() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_fifo_topic("kiln-deploy").await;
    assert!(topic.ends_with("kiln-deploy.fifo"));
    let queue = aws.subscribe_queue(&topic).await;

    SnsPublisher::new(aws.sns.clone())
        .publish(
            &topic,
            OutboundMessage {
                body: "{}".into(),
                group_id: Some("octo/hello".into()),
                deduplication_id: Some("delivery-1".into()),
                ..OutboundMessage::default()
            },
        )
        .await
        .unwrap();

    let envelope = queue.expect_one().await;
    assert_eq!(envelope.group_id.as_deref(), Some("octo/hello"));
    assert_eq!(envelope.deduplication_id.as_deref(), Some("delivery-1"));
}

#[tokio::test]
async fn sns_publisher_reports_an_unreachable_emulator_as_retryable() {
    let mut moto = Moto::start().await;
    let aws = moto.aws().await;
    let topic = aws.create_topic("kiln-deploy").await;
    moto.stop().await;
    let error = SnsPublisher::new(aws.sns.clone())
        .publish(&topic, OutboundMessage::default())
        .await
        .unwrap_err();
    assert!(error.retryable, "{error}");
}

#[tokio::test]
async fn secrets_are_read_through_the_cache_including_after_rotation() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    let arn = aws.create_secret("kiln/webhook", "first").await;

    let cache = SecretCache::with_ttl(
        SecretsManagerFetcher::new(aws.secrets.clone()),
        Duration::ZERO,
    );
    assert_eq!(cache.current(&arn).await.unwrap().expose(), "first");
    assert!(
        cache
            .get(&arn, VersionStage::Previous)
            .await
            .unwrap()
            .is_none()
    );
    let only = cache.current_and_previous(&arn).await.unwrap();
    assert_eq!(only.len(), 1);

    aws.put_secret_version(&arn, "second").await;
    let both: Vec<String> = cache
        .current_and_previous(&arn)
        .await
        .unwrap()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    assert_eq!(both, vec!["second", "first"]);
    // By name as well as by ARN.
    assert_eq!(
        cache.current("kiln/webhook").await.unwrap().expose(),
        "second"
    );

    let missing = cache.current("kiln/nope").await.unwrap_err();
    assert!(missing.to_string().contains("kiln/nope"), "{missing}");
}

#[tokio::test]
async fn ecs_run_task_and_describe_tasks_on_the_provisioned_cluster() {
    let moto = Moto::start().await;
    moto.freeze_ecs_tasks().await;
    let aws = moto.aws().await;
    let stack = aws.create_ecs("kiln", "stack-updater").await;
    assert!(!stack.subnets.is_empty());
    assert!(stack.security_groups[0].starts_with("sg-"));

    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(&stack.container_name)
                .environment(
                    KeyValuePair::builder()
                        .name("KILN_SHA")
                        .value("abc")
                        .build(),
                )
                .build(),
        )
        .build();
    let run = aws
        .ecs
        .run_task()
        .cluster(&stack.cluster_name)
        .task_definition(&stack.task_definition_arn)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(stack.network_configuration())
        .started_by("kiln-delivery-1")
        .overrides(overrides)
        .send()
        .await
        .unwrap();
    assert!(run.failures.unwrap_or_default().is_empty());
    let task_arn = run.tasks.unwrap_or_default()[0].task_arn.clone().unwrap();

    // Frozen: the status stays put however often it is described.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let described = aws
            .ecs
            .describe_tasks()
            .cluster(&stack.cluster_name)
            .tasks(&task_arn)
            .send()
            .await
            .unwrap();
        let task = described.tasks.unwrap_or_default().remove(0);
        statuses.push(task.last_status.unwrap_or_default());
        let environment = task.overrides.unwrap().container_overrides.unwrap()[0]
            .environment
            .clone()
            .unwrap();
        assert_eq!(environment[0].value.as_deref(), Some("abc"));
    }
    assert!(statuses.windows(2).all(|w| w[0] == w[1]), "{statuses:?}");

    let listed = aws
        .ecs
        .list_tasks()
        .cluster(&stack.cluster_name)
        .started_by("kiln-delivery-1")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns.unwrap_or_default(), vec![task_arn]);
    assert_eq!(aws.describe_all_tasks(&stack.cluster_name).await.len(), 1);
}

#[tokio::test]
async fn auto_scaling_describe_and_set_desired_capacity() {
    let moto = Moto::start().await;
    let aws = moto.aws().await;
    aws.create_asg("kiln-app", 0, 1, 2).await;
    let before = aws.asg_capacity("kiln-app").await;
    assert_eq!((before.min, before.desired, before.max), (0, 1, 2));

    aws.autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name("kiln-app")
        .desired_capacity(0)
        .honor_cooldown(false)
        .send()
        .await
        .unwrap();
    assert_eq!(aws.asg_capacity("kiln-app").await.desired, 0);
}

/// Starts a function binary with only the variables Lambda itself sets, and
/// checks that it fails its init naming `variable`.
async fn fails_init_naming(function: &str, variable: &str) {
    let process = LambdaFunction::builder(function).start().await;
    let failure = process.expect_init_failure(Duration::from_secs(60)).await;
    assert!(
        failure.exited && failure.exit_code != Some(0),
        "{function} should exit non-zero at init with no configuration; it {failure}"
    );
    let reported = format!(
        "{}\n{}\n{}",
        failure.stderr,
        failure.stdout,
        failure
            .init_error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    assert!(
        reported.contains(variable),
        "{function}'s init failure should name {variable}; it {failure}"
    );
}

#[tokio::test]
async fn deploy_trigger_init_fails_naming_webhook_secret_arn() {
    fails_init_naming("deploy-trigger", "WEBHOOK_SECRET_ARN").await;
}

#[tokio::test]
async fn deploy_exec_init_fails_naming_cluster() {
    fails_init_naming("deploy-exec", "CLUSTER").await;
}

#[tokio::test]
async fn watchdog_init_fails_naming_asg_name() {
    fails_init_naming("watchdog", "ASG_NAME").await;
}

#[tokio::test]
async fn alert_forwarder_init_fails_naming_slack_webhook_secret_arn() {
    fails_init_naming("alert-forwarder", "SLACK_WEBHOOK_SECRET_ARN").await;
}
