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
//!
//! The alert must not be lost between the scale-down and its publication: a
//! retried invocation finds the group at zero and would have nothing to do.
//! So before scaling, the group gets the tag [`ALERT_PENDING_TAG`] holding
//! the capacity it had; the tag is removed once the alert is published. A
//! group found at zero *with* the tag is [`ScaleDown::AlertPending`]: an
//! earlier invocation scaled it and failed before its alert went out.

use kiln::aws::LazyClient;
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

/// The tag that marks a group scaled to zero whose alert is not yet
/// published; its value is the capacity before, as [`Capacity::to_tag`]
/// writes it.
pub const ALERT_PENDING_TAG: &str = "kiln:watchdog:alert-pending";

impl Capacity {
    /// `min=1 desired=2 max=4`: the value of [`ALERT_PENDING_TAG`].
    pub fn to_tag(self) -> String {
        format!(
            "min={} desired={} max={}",
            self.min_size, self.desired, self.max_size
        )
    }

    /// Reads [`Capacity::to_tag`]'s format back; `None` for anything else
    /// (a tag edited by hand).
    pub fn from_tag(value: &str) -> Option<Capacity> {
        let mut min_size = None;
        let mut desired = None;
        let mut max_size = None;
        for pair in value.split_whitespace() {
            let (key, number) = pair.split_once('=')?;
            let number: i32 = number.parse().ok()?;
            let slot = match key {
                "min" => &mut min_size,
                "desired" => &mut desired,
                "max" => &mut max_size,
                _ => return None,
            };
            *slot = Some(number);
        }
        Some(Capacity {
            min_size: min_size?,
            desired: desired?,
            max_size: max_size?,
        })
    }
}

/// A group as watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub capacity: Capacity,
    /// The capacity recorded by [`ALERT_PENDING_TAG`], when the tag is set.
    pub alert_pending: Option<Capacity>,
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

/// The port: the Auto Scaling calls watchdog makes.
pub trait AutoScaling: Send + Sync {
    /// The group's capacity and pending-alert tag, or `None` when no group
    /// has that name.
    fn describe(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Option<Group>, ScalingError>> + Send;

    /// Sets [`ALERT_PENDING_TAG`] to `before` (`CreateOrUpdateTags`, not
    /// propagated to instances).
    fn mark_alert_pending(
        &self,
        group: &str,
        before: Capacity,
    ) -> impl Future<Output = Result<(), ScalingError>> + Send;

    /// Removes [`ALERT_PENDING_TAG`] (`DeleteTags`).
    fn clear_alert_pending(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<(), ScalingError>> + Send;

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
    /// Desired capacity was already 0 and no alert is pending: nothing
    /// changed.
    AlreadyZero(Capacity),
    /// Desired capacity was already 0 with [`ALERT_PENDING_TAG`] set: an
    /// earlier invocation scaled the group from `before` and failed before
    /// its alert was published.
    AlertPending { before: Capacity, now: Capacity },
    /// The group was scaled to zero; `before` is what an operator restores.
    /// `marked` says whether [`ALERT_PENDING_TAG`] was written first.
    ScaledDown {
        before: Capacity,
        after: Capacity,
        marked: bool,
    },
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
    let found = retry(backoff, deadline, retryable, || autoscaling.describe(group))
        .await?
        .ok_or_else(|| ScaleDownError::NotFound(group.to_string()))?;
    let before = found.capacity;
    if before.desired == 0 {
        return Ok(match found.alert_pending {
            Some(pending) => ScaleDown::AlertPending {
                before: pending,
                now: before,
            },
            None => ScaleDown::AlreadyZero(before),
        });
    }
    // Stopping the crash loop matters more than the marker: when the tag
    // cannot be written the group is still scaled, and the alert is tried
    // as hard as before.
    let marked = match retry(backoff, deadline, retryable, || {
        autoscaling.mark_alert_pending(group, before)
    })
    .await
    {
        Ok(()) => true,
        Err(Exhausted { error, attempts }) => {
            tracing::error!(
                group,
                error = %error,
                attempts,
                tag = ALERT_PENDING_TAG,
                "could not tag the group before scaling it: if this invocation fails after \
                 scaling, its retry will not send the alert"
            );
            false
        }
    };
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
        marked,
    })
}

/// The Auto Scaling adapter.
#[derive(Clone, Debug)]
pub struct AsgClient {
    client: LazyClient<aws_sdk_autoscaling::Client>,
}

impl AsgClient {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_autoscaling::Client>>) -> Self {
        AsgClient {
            client: client.into(),
        }
    }
}

impl AutoScaling for AsgClient {
    async fn describe(&self, group: &str) -> Result<Option<Group>, ScalingError> {
        let output = self
            .client
            .get()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| scaling_error("DescribeAutoScalingGroups", e))?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
            .map(|g| Group {
                capacity: Capacity {
                    min_size: g.min_size().unwrap_or_default(),
                    desired: g.desired_capacity().unwrap_or_default(),
                    max_size: g.max_size().unwrap_or_default(),
                },
                alert_pending: g
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(ALERT_PENDING_TAG))
                    .and_then(|t| t.value())
                    .and_then(Capacity::from_tag),
            }))
    }

    async fn mark_alert_pending(&self, group: &str, before: Capacity) -> Result<(), ScalingError> {
        self.client
            .get()
            .await
            .create_or_update_tags()
            .tags(pending_tag(group).value(before.to_tag()).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| scaling_error("CreateOrUpdateTags", e))
    }

    async fn clear_alert_pending(&self, group: &str) -> Result<(), ScalingError> {
        self.client
            .get()
            .await
            .delete_tags()
            .tags(pending_tag(group).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| scaling_error("DeleteTags", e))
    }

    async fn set_desired_zero(&self, group: &str) -> Result<(), ScalingError> {
        self.client
            .get()
            .await
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
            .get()
            .await
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

/// [`ALERT_PENDING_TAG`] on `group`, without its value.
fn pending_tag(group: &str) -> aws_sdk_autoscaling::types::builders::TagBuilder {
    aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(ALERT_PENDING_TAG)
        .propagate_at_launch(false)
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
        pub alert_pending: Mutex<Option<Capacity>>,
        /// Errors returned, in order, by the next scaling calls.
        pub failures: Mutex<VecDeque<ScalingError>>,
        /// Errors returned, in order, by the next tag calls.
        pub tag_failures: Mutex<VecDeque<ScalingError>>,
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
                alert_pending: Mutex::new(None),
                failures: Mutex::new(VecDeque::new()),
                tag_failures: Mutex::new(VecDeque::new()),
                calls: Mutex::new(Vec::new()),
            }
        }

        pub fn alert_pending(&self) -> Option<Capacity> {
            *self.alert_pending.lock().unwrap()
        }

        pub fn capacity(&self) -> Option<Capacity> {
            *self.capacity.lock().unwrap()
        }

        pub fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }

        /// Records `call` and returns the next failure scripted in `queue`.
        fn call(
            &self,
            call: &'static str,
            queue: &Mutex<VecDeque<ScalingError>>,
        ) -> Result<(), ScalingError> {
            self.calls.lock().unwrap().push(call);
            match queue.lock().unwrap().pop_front() {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }

        fn mutate(&self, call: &'static str, min_size: Option<i32>) -> Result<(), ScalingError> {
            self.call(call, &self.failures)?;
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
        async fn describe(&self, _group: &str) -> Result<Option<Group>, ScalingError> {
            self.calls.lock().unwrap().push("DescribeAutoScalingGroups");
            Ok(self.capacity().map(|capacity| Group {
                capacity,
                alert_pending: self.alert_pending(),
            }))
        }
        async fn mark_alert_pending(
            &self,
            _group: &str,
            before: Capacity,
        ) -> Result<(), ScalingError> {
            self.call("CreateOrUpdateTags", &self.tag_failures)?;
            *self.alert_pending.lock().unwrap() = Some(before);
            Ok(())
        }
        async fn clear_alert_pending(&self, _group: &str) -> Result<(), ScalingError> {
            self.call("DeleteTags", &self.tag_failures)?;
            *self.alert_pending.lock().unwrap() = None;
            Ok(())
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
        let ScaleDown::ScaledDown {
            before,
            after,
            marked,
        } = result
        else {
            panic!("not scaled: {result:?}")
        };
        assert_eq!((before.min_size, before.desired), (0, 1));
        assert_eq!((after.min_size, after.desired, after.max_size), (0, 0, 2));
        assert!(marked);
        assert_eq!(asg.alert_pending(), Some(before));
        assert_eq!(
            asg.calls(),
            vec![
                "DescribeAutoScalingGroups",
                "CreateOrUpdateTags",
                "SetDesiredCapacity"
            ]
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
            vec![
                "DescribeAutoScalingGroups",
                "CreateOrUpdateTags",
                "UpdateAutoScalingGroup"
            ]
        );
        let capacity = asg.capacity().unwrap();
        assert_eq!((capacity.min_size, capacity.desired), (0, 0));
    }

    #[tokio::test]
    async fn a_group_at_zero_with_the_tag_has_its_alert_pending() {
        let asg = FakeAsg::new(0, 0);
        let before = Capacity {
            min_size: 1,
            desired: 3,
            max_size: 4,
        };
        *asg.alert_pending.lock().unwrap() = Some(before);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap();
        assert_eq!(
            result,
            ScaleDown::AlertPending {
                before,
                now: asg.capacity().unwrap()
            }
        );
        assert_eq!(asg.calls(), vec!["DescribeAutoScalingGroups"]);
    }

    #[tokio::test]
    async fn a_tag_that_cannot_be_written_does_not_stop_the_scale_down() {
        let asg = FakeAsg::new(0, 1);
        let denied = ScalingError {
            operation: "CreateOrUpdateTags",
            code: Some("AccessDenied".into()),
            message: "AccessDenied: not authorized".into(),
            retryable: false,
        };
        asg.tag_failures.lock().unwrap().push_back(denied);
        let result = scale_to_zero(&asg, GROUP, &Backoff::immediate(3), Deadline::NONE)
            .await
            .unwrap();
        assert!(
            matches!(result, ScaleDown::ScaledDown { marked: false, .. }),
            "{result:?}"
        );
        assert_eq!(asg.capacity().unwrap().desired, 0);
        assert_eq!(asg.alert_pending(), None);
    }

    #[test]
    fn the_tag_value_round_trips_and_rejects_hand_edits() {
        let capacity = Capacity {
            min_size: 1,
            desired: 2,
            max_size: 4,
        };
        assert_eq!(capacity.to_tag(), "min=1 desired=2 max=4");
        assert_eq!(Capacity::from_tag(&capacity.to_tag()), Some(capacity));
        for bad in [
            "",
            "min=1 desired=2",
            "min=1 desired=two max=4",
            "yes",
            "min=1 desired=2 max=4 x=1",
        ] {
            assert_eq!(Capacity::from_tag(bad), None, "{bad:?}");
        }
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
        let tag = mock!(aws_sdk_autoscaling::Client::create_or_update_tags)
            .match_requests(|r| {
                r.tags().iter().all(|t| {
                    t.key() == Some(ALERT_PENDING_TAG) && t.resource_id() == Some(GROUP)
                })
            })
            .then_output(|| {
                aws_sdk_autoscaling::operation::create_or_update_tags::CreateOrUpdateTagsOutput::builder()
                    .build()
            });
        let rules: Vec<&aws_smithy_mocks::Rule> =
            rules.iter().copied().chain(std::iter::once(&tag)).collect();
        let client = mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, &rules, |c| {
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
