//! Scaling the Auto Scaling group to zero: the port, its SDK adapter, and
//! the rule that decides which call to make.
//!
//! - Desired capacity already 0: nothing to do, and no alert. One crash
//!   produces several task events; only the first finds capacity to remove.
//! - MinSize 0: `SetDesiredCapacity(0)` without honouring the cooldown.
//! - MinSize above 0: `UpdateAutoScalingGroup(MinSize=0, DesiredCapacity=0)`,
//!   since Auto Scaling rejects a desired capacity below the minimum.
//!
//! Busy-group errors and throttling are retried within the invocation's
//! remaining time ([`crate::retry`]); AccessDenied, ValidationError and the
//! like fail at once with AWS's message.

use std::future::Future;

use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};

use crate::retry::{Backoff, Deadline, Exhausted, retry};

/// The capacity of an Auto Scaling group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub min_size: i32,
    pub desired: i32,
    pub max_size: i32,
}

/// A failed Auto Scaling call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct ScalingError {
    /// The API operation, e.g. `SetDesiredCapacity`.
    pub operation: &'static str,
    /// AWS's error code (`AccessDenied`, `ScalingActivityInProgress`, ...).
    pub code: Option<String>,
    /// AWS's message, prefixed by the code.
    pub message: String,
    /// Whether the same call can succeed a little later.
    pub retryable: bool,
}

/// Error codes that mean "busy, try again shortly".
const TRANSIENT_CODES: &[&str] = &[
    "ScalingActivityInProgress",
    "ResourceContention",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
];

/// The port: the three Auto Scaling calls watchdog makes.
pub trait AutoScaling: Send + Sync {
    /// The group's capacity, or `None` when no group has that name.
    fn describe(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Option<Capacity>, ScalingError>> + Send;

    /// `SetDesiredCapacity(0)` with `HonorCooldown` false.
    fn set_desired_zero(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<(), ScalingError>> + Send;

    /// `UpdateAutoScalingGroup(MinSize=0, DesiredCapacity=0)`.
    fn set_min_and_desired_zero(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<(), ScalingError>> + Send;
}

/// What scaling down did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleDown {
    /// Desired capacity was already 0: nothing changed.
    AlreadyZero(Capacity),
    /// The group was scaled to zero; `before` is what an operator restores.
    ScaledDown { before: Capacity, after: Capacity },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleDownError {
    #[error("Auto Scaling group {0} does not exist (check ASG_NAME and the region)")]
    NotFound(String),
    #[error("{error} (after {attempts} attempt{plural})", plural = if *attempts == 1 { "" } else { "s" })]
    Failed { error: ScalingError, attempts: u32 },
}

impl From<Exhausted<ScalingError>> for ScaleDownError {
    fn from(e: Exhausted<ScalingError>) -> Self {
        ScaleDownError::Failed {
            error: e.error,
            attempts: e.attempts,
        }
    }
}

/// Scales `group` to zero (see the module docs for the rule).
pub async fn scale_to_zero<A: AutoScaling>(
    autoscaling: &A,
    group: &str,
    backoff: &Backoff,
    deadline: Deadline,
) -> Result<ScaleDown, ScaleDownError> {
    let retryable = |e: &ScalingError| e.retryable;
    let before = retry(backoff, deadline, retryable, || autoscaling.describe(group))
        .await?
        .ok_or_else(|| ScaleDownError::NotFound(group.to_string()))?;
    if before.desired == 0 {
        return Ok(ScaleDown::AlreadyZero(before));
    }
    if before.min_size > 0 {
        retry(backoff, deadline, retryable, || {
            autoscaling.set_min_and_desired_zero(group)
        })
        .await?;
    } else {
        retry(backoff, deadline, retryable, || {
            autoscaling.set_desired_zero(group)
        })
        .await?;
    }
    Ok(ScaleDown::ScaledDown {
        before,
        after: Capacity {
            min_size: 0,
            desired: 0,
            max_size: before.max_size,
        },
    })
}

/// The Auto Scaling adapter.
#[derive(Clone, Debug)]
pub struct AsgClient {
    client: aws_sdk_autoscaling::Client,
}

impl AsgClient {
    pub fn new(client: aws_sdk_autoscaling::Client) -> Self {
        AsgClient { client }
    }
}

impl AutoScaling for AsgClient {
    async fn describe(&self, group: &str) -> Result<Option<Capacity>, ScalingError> {
        let output = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| scaling_error("DescribeAutoScalingGroups", e))?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
            .map(|g| Capacity {
                min_size: g.min_size().unwrap_or_default(),
                desired: g.desired_capacity().unwrap_or_default(),
                max_size: g.max_size().unwrap_or_default(),
            }))
    }

    async fn set_desired_zero(&self, group: &str) -> Result<(), ScalingError> {
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(0)
            .honor_cooldown(false)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| scaling_error("SetDesiredCapacity", e))
    }

    async fn set_min_and_desired_zero(&self, group: &str) -> Result<(), ScalingError> {
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .min_size(0)
            .desired_capacity(0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| scaling_error("UpdateAutoScalingGroup", e))
    }
}

/// Classifies an SDK error: AWS's code and message, and whether to retry.
fn scaling_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> ScalingError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = err.code().map(str::to_string);
    let retryable = match &err {
        SdkError::ServiceError(_) => code
            .as_deref()
            .is_some_and(|c| TRANSIENT_CODES.contains(&c)),
        // Timeouts, connection and dispatch failures.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    };
    let message = match (&code, err.message()) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.clone(),
        _ => kiln::aws::error_chain(&err),
    };
    ScalingError {
        operation,
        code,
        message,
        retryable,
    }
}

/// An in-memory Auto Scaling group, for tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Debug)]
    pub struct FakeAsg {
        pub capacity: Mutex<Option<Capacity>>,
        /// Errors returned, in order, by the next mutating calls.
        pub failures: Mutex<VecDeque<ScalingError>>,
        pub calls: Mutex<Vec<&'static str>>,
    }

    impl FakeAsg {
        pub fn new(min_size: i32, desired: i32) -> Self {
            FakeAsg {
                capacity: Mutex::new(Some(Capacity {
                    min_size,
                    desired,
                    max_size: 2,
                })),
                failures: Mutex::new(VecDeque::new()),
                calls: Mutex::new(Vec::new()),
            }
        }

        pub fn capacity(&self) -> Option<Capacity> {
            *self.capacity.lock().unwrap()
        }

        pub fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }

        fn mutate(&self, call: &'static str, min_size: Option<i32>) -> Result<(), ScalingError> {
            self.calls.lock().unwrap().push(call);
            if let Some(err) = self.failures.lock().unwrap().pop_front() {
                return Err(err);
            }
            let mut capacity = self.capacity.lock().unwrap();
            if let Some(c) = capacity.as_mut() {
                c.desired = 0;
                if let Some(min) = min_size {
                    c.min_size = min;
                }
            }
            Ok(())
        }
    }

    impl AutoScaling for FakeAsg {
        async fn describe(&self, _group: &str) -> Result<Option<Capacity>, ScalingError> {
            self.calls.lock().unwrap().push("DescribeAutoScalingGroups");
            Ok(self.capacity())
        }
        async fn set_desired_zero(&self, _group: &str) -> Result<(), ScalingError> {
            self.mutate("SetDesiredCapacity", None)
        }
        async fn set_min_and_desired_zero(&self, _group: &str) -> Result<(), ScalingError> {
            self.mutate("UpdateAutoScalingGroup", Some(0))
        }
    }

    pub fn busy() -> ScalingError {
        ScalingError {
            operation: "SetDesiredCapacity",
            code: Some("ScalingActivityInProgress".into()),
            message: "ScalingActivityInProgress: busy".into(),
            retryable: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeAsg, busy};
    use super::*;
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::set_desired_capacity::{
        SetDesiredCapacityError, SetDesiredCapacityOutput,
    };
    use aws_sdk_autoscaling::types::AutoScalingGroup;
    use aws_sdk_autoscaling::types::error::ScalingActivityInProgressFault;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const GROUP: &str = "kiln-app";

    #[tokio::test]
    async fn desired_zero_is_left_alone() {
        let asg = FakeAsg::new(0, 0);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE).await;
        assert!(matches!(result, Ok(ScaleDown::AlreadyZero(_))));
        assert_eq!(asg.calls(), vec!["DescribeAutoScalingGroups"]);
    }

    #[tokio::test]
    async fn min_zero_sets_desired_only() {
        let asg = FakeAsg::new(0, 1);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap();
        let ScaleDown::ScaledDown { before, after } = result else {
            panic!("not scaled: {result:?}")
        };
        assert_eq!((before.min_size, before.desired), (0, 1));
        assert_eq!((after.min_size, after.desired, after.max_size), (0, 0, 2));
        assert_eq!(
            asg.calls(),
            vec!["DescribeAutoScalingGroups", "SetDesiredCapacity"]
        );
    }

    #[tokio::test]
    async fn min_above_zero_lowers_both() {
        let asg = FakeAsg::new(1, 1);
        scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap();
        assert_eq!(
            asg.calls(),
            vec!["DescribeAutoScalingGroups", "UpdateAutoScalingGroup"]
        );
        let capacity = asg.capacity().unwrap();
        assert_eq!((capacity.min_size, capacity.desired), (0, 0));
    }

    #[tokio::test]
    async fn missing_group_is_named() {
        let asg = FakeAsg::new(0, 1);
        *asg.capacity.lock().unwrap() = None;
        let err = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Auto Scaling group kiln-app does not exist (check ASG_NAME and the region)"
        );
    }

    #[tokio::test]
    async fn busy_group_is_retried_until_the_attempts_run_out() {
        let asg = FakeAsg::new(0, 1);
        asg.failures
            .lock()
            .unwrap()
            .extend([busy(), busy(), busy()]);
        let err = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "SetDesiredCapacity failed: ScalingActivityInProgress: busy (after 3 attempts)"
        );
    }

    // The SDK adapter against canned AWS replies: the faults moto cannot
    // produce. The SDK's own retries are off, so only watchdog's retry runs.

    fn group_with(min_size: i32, desired: i32) -> DescribeAutoScalingGroupsOutput {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(
                AutoScalingGroup::builder()
                    .auto_scaling_group_name(GROUP)
                    .min_size(min_size)
                    .max_size(2)
                    .desired_capacity(desired)
                    .build(),
            )
            .build()
    }

    fn client(rules: &[&aws_smithy_mocks::Rule]) -> AsgClient {
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, rules, |c| {
            c.retry_config(aws_sdk_autoscaling::config::retry::RetryConfig::disabled())
        });
        AsgClient::new(client)
    }

    fn service_error(code: &str, message: &str) -> SetDesiredCapacityError {
        SetDesiredCapacityError::generic(
            aws_sdk_autoscaling::error::ErrorMetadata::builder()
                .code(code)
                .message(message)
                .build(),
        )
    }

    #[tokio::test]
    async fn scaling_activity_in_progress_twice_then_success() {
        let describe = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .then_output(|| group_with(0, 1));
        let set = mock!(aws_sdk_autoscaling::Client::set_desired_capacity)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some(GROUP)
                    && r.desired_capacity() == Some(0)
                    && r.honor_cooldown() == Some(false)
            })
            .sequence()
            .error(|| {
                SetDesiredCapacityError::ScalingActivityInProgressFault(
                    ScalingActivityInProgressFault::builder()
                        .message("Scaling activity 1234 is in progress and blocks this action.")
                        .meta(
                            aws_sdk_autoscaling::error::ErrorMetadata::builder()
                                .code("ScalingActivityInProgress")
                                .message(
                                    "Scaling activity 1234 is in progress and blocks this action.",
                                )
                                .build(),
                        )
                        .build(),
                )
            })
            .times(2)
            .output(|| SetDesiredCapacityOutput::builder().build())
            .build();
        let asg = client(&[&describe, &set]);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(5), Deadline::NONE)
            .await
            .unwrap();
        assert!(matches!(result, ScaleDown::ScaledDown { .. }));
        assert_eq!(set.num_calls(), 3);
    }

    #[tokio::test]
    async fn access_denied_fails_at_once_with_the_aws_message() {
        let describe = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .then_output(|| group_with(0, 1));
        let denied = "User: arn:aws:sts::123456789012:assumed-role/kiln-watchdog/fn is not \
                      authorized to perform: autoscaling:SetDesiredCapacity";
        let set = mock!(aws_sdk_autoscaling::Client::set_desired_capacity)
            .then_error(move || service_error("AccessDenied", denied));
        let asg = client(&[&describe, &set]);
        let err = scale_to_zero(&asg, GROUP, &Backoff::immediate(5), Deadline::NONE)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("SetDesiredCapacity failed: AccessDenied: {denied} (after 1 attempt)")
        );
        assert_eq!(set.num_calls(), 1);
    }

    #[tokio::test]
    async fn validation_error_fails_at_once() {
        let describe = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .then_output(|| group_with(1, 1));
        let update = mock!(aws_sdk_autoscaling::Client::update_auto_scaling_group)
            .then_error(|| {
                aws_sdk_autoscaling::operation::update_auto_scaling_group::UpdateAutoScalingGroupError::generic(
                    aws_sdk_autoscaling::error::ErrorMetadata::builder()
                        .code("ValidationError")
                        .message("Desired capacity:0 must be between the specified min size:1 and max size:2")
                        .build(),
                )
            });
        let asg = client(&[&describe, &update]);
        let err = scale_to_zero(&asg, GROUP, &Backoff::immediate(5), Deadline::NONE)
            .await
            .unwrap_err();
        let ScaleDownError::Failed { error, attempts } = err else {
            panic!("{err:?}")
        };
        assert_eq!(attempts, 1);
        assert_eq!(error.code.as_deref(), Some("ValidationError"));
        assert!(
            error
                .message
                .contains("must be between the specified min size")
        );
    }

    #[tokio::test]
    async fn throttled_describe_is_retried() {
        let describe = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .sequence()
            .http_status(
                400,
                Some(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                     <Message>Rate exceeded</Message></Error></ErrorResponse>"
                        .into(),
                ),
            )
            .output(|| group_with(0, 0))
            .build();
        let asg = client(&[&describe]);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(5), Deadline::NONE)
            .await
            .unwrap();
        assert!(matches!(result, ScaleDown::AlreadyZero(_)));
        assert_eq!(describe.num_calls(), 2);
    }
}
