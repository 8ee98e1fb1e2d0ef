//! `aws_events`: every decoder kiln applies to what AWS hands it, and the
//! strict decoders of kiln's own messages.

use kiln::events::cloudwatch::{AlarmNotification, AlarmStateChange};
use kiln::events::ecs::TaskStateChange;
use kiln::events::eventbridge::EventBridgeEvent;
use kiln::events::sns::SnsEvent;
use kiln::events::{Inbound, parse_aws_time};
use kiln::{Alert, DeployRequest};

pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        // Message bodies arrive as strings inside SNS records.
        let _ = AlarmNotification::from_message(text)
            .map(|a| (a.region_code().map(str::len), a.is_composite()));
        let _ = parse_aws_time(text);
        if let Ok(request) = DeployRequest::from_json(text) {
            // Strictly decoded requests are well formed.
            assert!(kiln::messages::deploy_request::is_commit_sha(&request.sha));
            assert!(request.git_ref.starts_with("refs/"));
            let _ = request.short_ref();
            let again = DeployRequest::from_json(&request.to_json());
            assert_eq!(
                again.as_ref().ok(),
                Some(&request),
                "deploy request does not round-trip"
            );
        }
        if let Ok(alert) = Alert::from_json(text) {
            assert!(alert.subject().chars().count() <= kiln::messages::alert::SUBJECT_MAX_CHARS);
            let again = Alert::from_json(&alert.to_json());
            assert_eq!(
                again.as_ref().ok(),
                Some(&alert),
                "alert does not round-trip"
            );
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match Inbound::from_value(value.clone()) {
        Ok(Inbound::Sns(event)) => sns(&event),
        Ok(Inbound::EventBridge(event)) => eventbridge(&event),
        Err(e) => assert!(e.to_string().starts_with("unrecognised event")),
    }
    // The typed decoders straight on the value, as handlers use them.
    let _ = serde_json::from_value::<SnsEvent>(value.clone());
    let _ = serde_json::from_value::<TaskStateChange>(value.clone()).map(|t| inspect_task(&t));
    let _ = serde_json::from_value::<AlarmStateChange>(value);
}

fn sns(event: &SnsEvent) {
    for (index, record) in event.records.iter().enumerate() {
        let _ = record.label(index);
        let _ = AlarmNotification::from_message(&record.sns.message);
        let _ = DeployRequest::from_json(&record.sns.message);
        let _ = Alert::from_json(&record.sns.message);
    }
}

fn eventbridge(event: &EventBridgeEvent) {
    if let Ok(task) = event.detail_as::<TaskStateChange>() {
        inspect_task(&task);
    }
    if let Ok(alarm) = event.detail_as::<AlarmStateChange>() {
        let _ = alarm.state.timestamp.as_deref().map(parse_aws_time);
    }
    let _ = event.time.as_deref().map(parse_aws_time);
}

fn inspect_task(task: &TaskStateChange) {
    let _ = task.is_stopped();
    let _ = task.cluster_name();
    let _ = task.container("stack-updater");
    let _ = task.override_env("stack-updater", "KILN_DELIVERY_ID");
    for time in [
        &task.created_at,
        &task.started_at,
        &task.stopping_at,
        &task.stopped_at,
    ] {
        let _ = time.as_deref().map(parse_aws_time);
    }
}
