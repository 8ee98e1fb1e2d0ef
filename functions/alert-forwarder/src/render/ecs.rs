//! ECS task state changes.
//!
//! A stopped task is red when it failed (a container exited non-zero, or
//! the task failed to start), grey when it simply ended; a running task is
//! green; anything on its way (PROVISIONING, PENDING, STOPPING, ...) blue.

use kiln::events::ecs::TaskStateChange;
use kiln::events::eventbridge::EventBridgeEvent;

use super::blocks::{Block, SlackMessage, Text, escape, field, field_mrkdwn, link, truncate_plain};
use super::console::{arn_account, arn_region, ecs_task_url, is_region_code};
use super::format_time;

/// Whether the task stopped because something went wrong.
pub fn failed(task: &TaskStateChange) -> bool {
    task.is_stopped()
        && (task
            .containers
            .iter()
            .any(|c| c.exit_code.is_some_and(|code| code != 0))
            || task.stop_code.as_deref() == Some("TaskFailedToStart"))
}

fn last_part(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub fn render(event: &EventBridgeEvent, task: &TaskStateChange) -> SlackMessage {
    let status = task.last_status.as_deref().unwrap_or("UNKNOWN");
    let emoji = if failed(task) {
        "🔴"
    } else {
        match status {
            "STOPPED" => "⚪",
            "RUNNING" => "🟢",
            _ => "🔵",
        }
    };
    let name = task
        .task_definition_arn
        .as_deref()
        .map(last_part)
        .or(task.group.as_deref())
        .unwrap_or("task");
    let title = format!("{emoji} ECS task {status}: {name}");
    let task_arn = task
        .task_arn
        .as_deref()
        .or(event.resources.first().map(String::as_str));
    let region = task_arn
        .and_then(arn_region)
        .or(event.region.as_deref().filter(|r| is_region_code(r)));
    let account = event.account.as_deref().or(task_arn.and_then(arn_account));
    let cluster = task.cluster_name();
    let task_id = task_arn.map(last_part);

    let mut text = escape(&title);
    if let Some(cluster) = cluster {
        text.push_str(&format!(" in {}", escape(cluster)));
    }
    if let Some(reason) = task.stopped_reason.as_deref() {
        text.push_str(&format!(" — {}", escape(&truncate_plain(reason, 200))));
    }

    let mut blocks = vec![Block::header(&title)];
    if let Some(reason) = task.stopped_reason.as_deref() {
        blocks.push(Block::text(format!("*Stopped reason*\n{}", escape(reason))));
    }
    let mut fields = Vec::new();
    let mut state = status.to_string();
    if let Some(desired) = task.desired_status.as_deref().filter(|d| *d != status) {
        state.push_str(&format!(" (desired {desired})"));
    }
    fields.push(field("Status", &state));
    if let Some(code) = task.stop_code.as_deref() {
        fields.push(field("Stop code", code));
    }
    let task_url = match (region, cluster, task_id) {
        (Some(region), Some(cluster), Some(id)) => ecs_task_url(region, cluster, id),
        _ => None,
    };
    if let Some(id) = task_id {
        fields.push(match &task_url {
            Some(url) => field_mrkdwn("Task", &link(url, id)),
            None => field("Task", id),
        });
    }
    if let Some(cluster) = cluster {
        fields.push(field("Cluster", cluster));
    }
    if let Some(group) = task.group.as_deref() {
        fields.push(field("Group", group));
    }
    if let Some(started_by) = task.started_by.as_deref() {
        fields.push(field("Started by", started_by));
    }
    if let Some(launch_type) = task.launch_type.as_deref() {
        fields.push(field("Launch type", launch_type));
    }
    let containers: Vec<String> = task
        .containers
        .iter()
        .map(|c| {
            let mut line = format!(
                "{}: {}",
                c.name.as_deref().unwrap_or("?"),
                c.last_status.as_deref().unwrap_or("?")
            );
            if let Some(code) = c.exit_code {
                line.push_str(&format!(", exit {code}"));
            }
            if let Some(reason) = c.reason.as_deref() {
                line.push_str(&format!(" ({reason})"));
            }
            line
        })
        .collect();
    if !containers.is_empty() {
        fields.push(field("Containers", &containers.join("\n")));
    }
    if let Some(region) = region.or(event.region.as_deref()) {
        fields.push(field("Region", region));
    }
    if let Some(account) = account {
        fields.push(field("Account", account));
    }
    blocks.push(Block::fields(fields));

    let mut context = Vec::new();
    if let Some(time) = event.time.as_deref().or(task.updated_at.as_deref()) {
        context.push(format!("🕒 {}", escape(&format_time(time))));
    }
    if let Some(url) = &task_url {
        context.push(link(url, "Open in ECS"));
    }
    if !context.is_empty() {
        blocks.push(Block::context(vec![Text::mrkdwn(context.join("  ·  "))]));
    }
    SlackMessage::new(text, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> TaskStateChange {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn failure_is_a_non_zero_exit_or_a_failed_start() {
        assert!(failed(&task(serde_json::json!({
            "lastStatus": "STOPPED", "containers": [{"name": "app", "exitCode": 1}]
        }))));
        assert!(failed(&task(serde_json::json!({
            "lastStatus": "STOPPED", "stopCode": "TaskFailedToStart", "containers": []
        }))));
        assert!(!failed(&task(serde_json::json!({
            "lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
            "containers": [{"name": "app", "exitCode": 0}]
        }))));
        assert!(!failed(&task(serde_json::json!({
            "lastStatus": "RUNNING", "containers": [{"name": "sidecar", "exitCode": 2}]
        }))));
    }
}
