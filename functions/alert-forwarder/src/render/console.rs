//! Links to the AWS console, and what ARNs say about region and account.
//!
//! The console lives on a different host in each partition: China regions
//! (`cn-`) use `console.amazonaws.cn`, GovCloud (`us-gov-`) uses
//! `console.amazonaws-us-gov.com`, every other region
//! `<region>.console.aws.amazon.com`.

/// Whether `region` looks like a region code (`eu-west-1`), not a display
/// name or a placeholder.
pub fn is_region_code(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// The region code in an ARN (`arn:aws:sns:eu-west-1:…` → `eu-west-1`).
pub fn arn_region(arn: &str) -> Option<&str> {
    let region = arn.split(':').nth(3)?.trim();
    is_region_code(region).then_some(region)
}

/// The account id in an ARN.
pub fn arn_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?.trim();
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The console's base URL for a region.
pub fn console_base(region: &str) -> String {
    if region.starts_with("cn-") {
        "https://console.amazonaws.cn".to_string()
    } else if region.starts_with("us-gov-") {
        "https://console.amazonaws-us-gov.com".to_string()
    } else {
        format!("https://{region}.console.aws.amazon.com")
    }
}

/// The CloudWatch console page of an alarm.
pub fn alarm_url(region: &str, alarm_name: &str) -> Option<String> {
    is_region_code(region).then(|| {
        format!(
            "{}/cloudwatch/home?region={region}#alarmsV2:alarm/{}",
            console_base(region),
            percent_encode(alarm_name)
        )
    })
}

/// The ECS console page of a task.
pub fn ecs_task_url(region: &str, cluster: &str, task_id: &str) -> Option<String> {
    is_region_code(region).then(|| {
        format!(
            "{}/ecs/v2/clusters/{}/tasks/{}?region={region}",
            console_base(region),
            percent_encode(cluster),
            percent_encode(task_id)
        )
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// name can't end a Slack link (`|`, `>`) or the URL.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes() {
        for code in [
            "eu-west-1",
            "us-gov-west-1",
            "cn-northwest-1",
            "ap-southeast-5",
        ] {
            assert!(is_region_code(code), "{code}");
        }
        for not in ["EU - Ireland", "REGION", "EXAMPLE", "us-east", "", "us--1"] {
            assert!(!is_region_code(not), "{not}");
        }
    }

    #[test]
    fn arn_parts() {
        let arn = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cpu";
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        assert_eq!(arn_account(arn), Some("123456789012"));
        assert_eq!(
            arn_region("arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"),
            None
        );
        assert_eq!(
            arn_account("arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"),
            None
        );
        assert_eq!(
            arn_account("arn:aws:cloudwatch:us-east-1: 111122223333:alarm:x"),
            Some("111122223333")
        );
    }

    #[test]
    fn console_host_per_partition() {
        assert_eq!(
            alarm_url("eu-west-1", "Sample Alert").unwrap(),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/Sample%20Alert"
        );
        assert_eq!(
            alarm_url("cn-north-1", "a").unwrap(),
            "https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1#alarmsV2:alarm/a"
        );
        assert_eq!(
            alarm_url("us-gov-west-1", "a").unwrap(),
            "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#alarmsV2:alarm/a"
        );
        assert_eq!(alarm_url("EU - Ireland", "a"), None);
        assert_eq!(
            ecs_task_url("us-west-2", "FargateCluster", "c13b").unwrap(),
            "https://us-west-2.console.aws.amazon.com/ecs/v2/clusters/FargateCluster/tasks/c13b?region=us-west-2"
        );
    }

    #[test]
    fn names_cannot_break_a_link() {
        assert_eq!(percent_encode("a|b>c<d e/é"), "a%7Cb%3Ec%3Cd%20e%2F%C3%A9");
    }
}
