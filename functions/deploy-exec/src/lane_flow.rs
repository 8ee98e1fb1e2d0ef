//! The steps of a deploy request or a stopped task on its lane: read the
//! lane, ask ECS whether its running task is still alive, decide (see
//! [`lanes`](crate::lanes)), write conditionally, and only once the write
//! won, start the claimed task and record it.
//!
//! A lost conditional write is retried inside the invocation (read again,
//! decide again), with a short jittered pause, up to [`WRITE_ATTEMPTS`]
//! times. No lock is held across a network call: the claim is the lane's
//! state itself. A RunTask that fails puts the lane back as it was.
//!
//! The result is a [`LaneOutcome`] that lists what happened; the handler
//! reports each part of it to GitHub.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use kiln::DeployRequest;
use time::OffsetDateTime;

use crate::config::Config;
use crate::lane_store::{LaneStore, Saved, StoreError};
use crate::lanes::{self, LaneState, Liveness, Plan, Queued, Superseded};
use crate::runner::{DescribeError, RunTaskError, StartedTask, TaskRunner};
use crate::task_request::{self, TaskRequestError};

/// Conditional writes one invocation may lose on one lane before it gives
/// up (and Lambda retries it). Each loss means another instance made
/// progress on the lane, so this bounds the instances racing at once.
pub const WRITE_ATTEMPTS: u32 = 64;

/// What happened on a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneOutcome {
    /// `owner/name#environment`.
    pub lane: String,
    /// The task this invocation started (or found started under the
    /// delivery's token).
    pub started: Option<(DeployRequest, StartedTask)>,
    /// The incoming request waits behind the running deployment.
    pub queued: Option<Queued>,
    /// Requests superseded by this invocation's decision.
    pub superseded: Vec<Superseded>,
    /// Requests superseded earlier whose status is still to be posted.
    pub unreported: Vec<Superseded>,
    /// Why nothing changed, when nothing did.
    pub unchanged: Option<&'static str>,
    /// The claimed start failed; the lane is back as it was.
    pub failed_start: Option<(DeployRequest, StartFailure)>,
}

impl LaneOutcome {
    fn new(lane: &str) -> LaneOutcome {
        LaneOutcome {
            lane: lane.to_string(),
            started: None,
            queued: None,
            superseded: Vec::new(),
            unreported: Vec::new(),
            unchanged: None,
            failed_start: None,
        }
    }

    /// A summary for the invocation's result.
    pub fn to_json(&self) -> serde_json::Value {
        let ids = |list: &[Superseded]| -> Vec<String> {
            list.iter().map(|s| s.request.delivery_id.clone()).collect()
        };
        serde_json::json!({
            "lane": self.lane,
            "started": self.started.as_ref().map(|(request, task)| serde_json::json!({
                "delivery_id": request.delivery_id,
                "task_arn": task.task_arn,
                "already_started": task.already_started,
            })),
            "queued": self.queued.as_ref().map(|q| q.request.delivery_id.clone()),
            "superseded": ids(&self.superseded),
            "unchanged": self.unchanged,
        })
    }
}

/// Why a claimed start did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartFailure {
    #[error(transparent)]
    Request(#[from] TaskRequestError),
    #[error(transparent)]
    RunTask(#[from] RunTaskError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("asking ECS whether the lane's running task is alive: {0}")]
    Liveness(#[from] DescribeError),
    #[error(
        "lane {lane}: lost {WRITE_ATTEMPTS} conditional writes in a row to other deploy-exec instances"
    )]
    Contention { lane: String },
}

/// What the steps need.
pub struct Lane<'a, S, R> {
    pub store: &'a S,
    pub runner: &'a R,
    pub config: &'a Config,
    pub now: fn() -> OffsetDateTime,
}

impl<S: LaneStore, R: TaskRunner> Lane<'_, S, R> {
    /// A deploy request arrives on its lane.
    pub async fn request(&self, request: &DeployRequest) -> Result<LaneOutcome, LaneError> {
        let lane = lanes::lane_key(&request.repository, &request.environment);
        let (plan, before) = self
            .decide(&lane, true, |current, liveness, now| {
                lanes::on_request(current, request, liveness, now)
            })
            .await?;
        self.act(&lane, plan, before).await
    }

    /// A task stopped: free its lane, and start the lane's next request.
    pub async fn stop(
        &self,
        repository: &str,
        environment: &str,
        task_arn: &str,
        delivery_id: Option<&str>,
    ) -> Result<LaneOutcome, LaneError> {
        let lane = lanes::lane_key(repository, environment);
        let (plan, current) = self
            .decide(&lane, false, |current, _, now| {
                lanes::on_stop(current, task_arn, delivery_id, now)
            })
            .await?;
        // A failed start of the next request leaves the lane freed, with
        // that request waiting again.
        let freed = LaneState {
            running: None,
            ..current
        };
        self.act(&lane, plan, freed).await
    }

    /// Reads, decides and writes until a write wins (or nothing needs
    /// writing). With `ask_ecs`, the lane's running task is looked up
    /// (once per task). Returns the plan and the state it was made from.
    async fn decide(
        &self,
        lane: &str,
        ask_ecs: bool,
        decide: impl Fn(&LaneState, Liveness, OffsetDateTime) -> Plan,
    ) -> Result<(Plan, LaneState), LaneError> {
        let mut known: Option<(String, Liveness)> = None;
        // The last write that seemed to lose: its reply may have been lost
        // after DynamoDB applied it (the SDK's retry then loses its
        // condition to that very write).
        let mut tried: Option<(Plan, LaneState)> = None;
        for attempt in 0..WRITE_ATTEMPTS {
            let current = self.store.load(lane).await?;
            if let Some((plan, from)) = tried.take()
                && is_written(&current, &plan.state)
            {
                return Ok((plan, from));
            }
            let task = current.running.as_ref().and_then(|r| r.task_arn.clone());
            let liveness = match (task.filter(|_| ask_ecs), &known) {
                (None, _) => Liveness::NotAsked,
                (Some(task), Some((asked, liveness))) if task == *asked => *liveness,
                (Some(task), _) => {
                    let liveness = self.liveness(&task).await?;
                    known = Some((task, liveness));
                    liveness
                }
            };
            let plan = decide(&current, liveness, (self.now)());
            if plan.state == current {
                return Ok((plan, current));
            }
            match self.store.save(lane, &plan.state, (self.now)()).await? {
                Saved::Written => return Ok((plan, current)),
                Saved::Conflict => {
                    tracing::debug!(
                        lane,
                        attempt,
                        "lane written by another instance; deciding again"
                    );
                    tried = Some((plan, current));
                    tokio::time::sleep(jitter(attempt)).await;
                }
            }
        }
        Err(LaneError::Contention {
            lane: lane.to_string(),
        })
    }

    /// Whether ECS still runs the task: STOPPED or unknown is gone.
    async fn liveness(&self, task_arn: &str) -> Result<Liveness, DescribeError> {
        let details = self
            .runner
            .describe_task(&self.config.cluster, task_arn, &self.config.container_name)
            .await?;
        Ok(match details {
            Some(d) if d.last_status.as_deref() != Some("STOPPED") => Liveness::Alive,
            _ => {
                tracing::warn!(
                    task_arn,
                    "the lane's running task is stopped or unknown to ECS: the lane is free"
                );
                Liveness::Gone
            }
        })
    }

    /// Carries out a plan whose write won.
    async fn act(
        &self,
        lane: &str,
        plan: Plan,
        before: LaneState,
    ) -> Result<LaneOutcome, LaneError> {
        let mut outcome = LaneOutcome::new(lane);
        outcome.unchanged = plan.unchanged;
        outcome.queued = plan.queued;
        let already_reported: Vec<&str> = plan
            .superseded
            .iter()
            .map(|s| s.request.delivery_id.as_str())
            .collect();
        outcome.unreported = before
            .unreported
            .iter()
            .filter(|s| !already_reported.contains(&s.request.delivery_id.as_str()))
            .cloned()
            .collect();
        let Some(start) = plan.start else {
            outcome.superseded = plan.superseded;
            return Ok(outcome);
        };
        let started = match task_request::build(&start, self.config) {
            Ok(task_request) => self
                .runner
                .run_task(&task_request)
                .await
                .map_err(StartFailure::from),
            Err(err) => Err(StartFailure::from(err)),
        };
        match started {
            Ok(task) => {
                self.record(lane, &start.delivery_id, &task.task_arn)
                    .await?;
                outcome.superseded = plan.superseded;
                outcome.started = Some((start, task));
            }
            Err(failure) => {
                let delivery = start.delivery_id.clone();
                let (undo, _) = self
                    .decide(lane, false, |current, _, _| {
                        lanes::on_start_failed(current, &before, &delivery, &plan.displaced)
                    })
                    .await?;
                // Only what is still superseded once the lane is back.
                outcome.superseded = plan
                    .superseded
                    .into_iter()
                    .filter(|s| {
                        s.request.delivery_id != delivery
                            && !plan
                                .displaced
                                .iter()
                                .any(|d| d.delivery_id == s.request.delivery_id)
                    })
                    .chain(undo.superseded)
                    .collect();
                outcome.failed_start = Some((start, failure));
            }
        }
        Ok(outcome)
    }

    /// Records the started task on the lane (unless the claim is gone).
    async fn record(&self, lane: &str, delivery_id: &str, task_arn: &str) -> Result<(), LaneError> {
        let recorded = self
            .update(lane, |current| {
                lanes::on_started(current, delivery_id, task_arn)
            })
            .await?;
        if !recorded {
            tracing::info!(
                lane,
                delivery_id,
                task_arn,
                "the claim left the lane before its task was recorded (the task already stopped)"
            );
        }
        Ok(())
    }

    /// The statuses of these superseded requests are posted: forget them.
    pub async fn reported(&self, lane: &str, delivery_ids: &[String]) -> Result<(), LaneError> {
        if !delivery_ids.is_empty() {
            self.update(lane, |current| lanes::on_reported(current, delivery_ids))
                .await?;
        }
        Ok(())
    }

    /// Writes `change(current)` until a write wins; `false` when there was
    /// nothing to change.
    async fn update(
        &self,
        lane: &str,
        change: impl Fn(&LaneState) -> Option<LaneState>,
    ) -> Result<bool, LaneError> {
        for attempt in 0..WRITE_ATTEMPTS {
            let current = self.store.load(lane).await?;
            let Some(state) = change(&current) else {
                return Ok(false);
            };
            match self.store.save(lane, &state, (self.now)()).await? {
                Saved::Written => return Ok(true),
                Saved::Conflict => tokio::time::sleep(jitter(attempt)).await,
            }
        }
        Err(LaneError::Contention {
            lane: lane.to_string(),
        })
    }
}

/// Whether `current` is the write of `state` (the version after it, and
/// the same content; a claim's time makes the content one's own).
fn is_written(current: &LaneState, state: &LaneState) -> bool {
    current.version == state.version + 1
        && LaneState {
            version: state.version,
            ..current.clone()
        } == *state
}

/// A random pause of up to 2^attempt × 5 ms (at most 200 ms), so instances
/// that lost to each other do not collide again in step.
fn jitter(attempt: u32) -> Duration {
    let ceiling_ms = 5u64.saturating_mul(1 << attempt.min(6)).min(200);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(random % (ceiling_ms + 1))
}
