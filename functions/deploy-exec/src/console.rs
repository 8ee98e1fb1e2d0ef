//! The link to a task in the ECS console, for GitHub's `target_url` and
//! `log_url` (pure).

/// The console page of a task, from its ARN
/// (`arn:PARTITION:ecs:REGION:ACCOUNT:task/CLUSTER/ID`, or the older
/// `task/ID`, for which `cluster` names the cluster). `None` when the ARN
/// is not a task ARN.
pub fn task_url(task_arn: &str, cluster: &str) -> Option<String> {
    let parts: Vec<&str> = task_arn.splitn(6, ':').collect();
    let [_, partition, "ecs", region, _, resource] = parts.as_slice() else {
        return None;
    };
    let path = resource.strip_prefix("task/")?;
    let (cluster, task_id) = match path.split_once('/') {
        Some((cluster, id)) => (cluster, id),
        None => (cluster.rsplit('/').next().unwrap_or(cluster), path),
    };
    if region.is_empty() || cluster.is_empty() || task_id.is_empty() {
        return None;
    }
    let host = match *partition {
        "aws-cn" => format!("{region}.console.amazonaws.cn"),
        "aws-us-gov" => format!("{region}.console.amazonaws-us-gov.com"),
        _ => format!("{region}.console.aws.amazon.com"),
    };
    Some(format!(
        "https://{host}/ecs/v2/clusters/{cluster}/tasks/{task_id}/configuration?region={region}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_old_arn_formats() {
        assert_eq!(
            task_url(
                "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad",
                "ignored"
            )
            .unwrap(),
            "https://us-west-2.console.aws.amazon.com/ecs/v2/clusters/FargateCluster/tasks/c13b4cb40f1f4fe4a2971f76ae5a47ad/configuration?region=us-west-2"
        );
        assert_eq!(
            task_url(
                "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
                "arn:aws:ecs:us-east-1:111122223333:cluster/default"
            )
            .unwrap(),
            "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/default/tasks/b99d40b3-5176-4f71-9a52-9dbd6f1cebef/configuration?region=us-east-1"
        );
        assert!(
            task_url("arn:aws-cn:ecs:cn-north-1:1:task/c/t", "c")
                .unwrap()
                .starts_with("https://cn-north-1.console.amazonaws.cn/")
        );
        assert_eq!(task_url("arn:aws:sns:us-east-1:1:task/c/t", "c"), None);
        assert_eq!(task_url("not an arn", "c"), None);
    }
}
