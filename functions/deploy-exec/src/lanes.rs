//! Deploy lanes: one deployment per (repository, environment) at a time,
//! and the newest request wins (pure).
//!
//! A lane holds at most one *running* deployment and one *next* one, and
//! remembers the newest request it ever started. Requests are ordered by
//! [`Order`]: the time GitHub gave the event (`event_at`, else
//! `requested_at`), then the delivery id. This module decides, from the
//! lane's state and a request, a stopped task, or a failed start, what the
//! lane becomes and what must happen (start, queue, supersede). It does no
//! I/O: the handler loads the state, asks ECS whether the running task is
//! still alive, applies the decision with a conditional write, and only
//! then acts on it.

use kiln::DeployRequest;
use time::{Duration, OffsetDateTime};

use crate::completion::short_sha;

/// How long a lane keeps a request it claimed, but whose task it has not
/// recorded yet, before another invocation takes the start over. A claim
/// lives for one RunTask call inside one invocation (deploy-exec's timeout
/// is 60 s), so an older claim belongs to an invocation that died.
pub const CLAIM_TIMEOUT: Duration = Duration::minutes(2);

/// How long an idle lane is kept: it must remember the newest request it
/// deployed for at least 30 days, which is what stops replays.
pub const RETENTION: Duration = Duration::days(35);

pub use kiln::lanes_table::lane_key;

/// Where a request stands among the others on its lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub at: OffsetDateTime,
    pub delivery_id: String,
}

impl Order {
    pub fn of(request: &DeployRequest) -> Order {
        Order {
            at: request.ordered_at(),
            delivery_id: request.delivery_id.clone(),
        }
    }
}

/// The newest request a lane started: what a later request must beat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub order: Order,
    pub sha: String,
}

impl Latest {
    fn of(request: &DeployRequest) -> Latest {
        Latest {
            order: Order::of(request),
            sha: request.sha.clone(),
        }
    }
}

/// The deployment a lane is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub request: DeployRequest,
    /// `None` while the start is claimed but RunTask has not answered.
    pub task_arn: Option<String>,
    /// When the start was claimed.
    pub since: OffsetDateTime,
}

impl Running {
    /// A claim whose invocation must have died (see [`CLAIM_TIMEOUT`]).
    pub fn is_abandoned_claim(&self, now: OffsetDateTime) -> bool {
        self.task_arn.is_none() && now - self.since > CLAIM_TIMEOUT
    }
}

/// One lane, as stored. `version` is 0 for a lane never written; every
/// write increments it, and is conditional on the version read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneState {
    pub version: u64,
    pub running: Option<Running>,
    pub next: Option<DeployRequest>,
    pub latest: Option<Latest>,
    /// Requests superseded by a write whose GitHub status is not posted
    /// yet; any invocation on the lane posts them, then forgets them.
    pub unreported: Vec<Superseded>,
}

/// Whether the running task is still alive, as ECS answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// ECS was not asked: nothing runs, or only a claim.
    NotAsked,
    Alive,
    /// STOPPED, or no longer known: the stop event was lost or is late.
    Gone,
}

/// A request that will never deploy, and the one that replaces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Superseded {
    pub request: DeployRequest,
    /// The commit and delivery that won.
    pub by_sha: String,
    pub by_delivery: String,
}

impl Superseded {
    fn by(request: DeployRequest, winner: &DeployRequest) -> Superseded {
        Superseded {
            request,
            by_sha: winner.sha.clone(),
            by_delivery: winner.delivery_id.clone(),
        }
    }

    /// The GitHub status description.
    pub fn description(&self) -> String {
        format!(
            "Superseded by {}: a newer commit deploys to {} instead",
            short_sha(&self.by_sha),
            self.request.environment
        )
    }
}

/// A request waiting behind the running deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub request: DeployRequest,
    /// The running deployment's commit and task (when known).
    pub behind_sha: String,
    pub behind_task: Option<String>,
}

impl Queued {
    /// The GitHub status description.
    pub fn description(&self) -> String {
        format!(
            "Queued behind {}, which is deploying to {}",
            short_sha(&self.behind_sha),
            self.request.environment
        )
    }
}

/// What a decision does: the lane's new state (written conditionally on
/// the version read) and what to do once the write won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub state: LaneState,
    /// Claimed: start this request's task, then record the task on the lane.
    pub start: Option<DeployRequest>,
    pub queued: Option<Queued>,
    pub superseded: Vec<Superseded>,
    /// Requests the claim displaced from `next`: if the start fails, they
    /// are offered back to the lane (see [`on_start_failed`]).
    pub displaced: Vec<DeployRequest>,
    /// Nothing changes (a redelivery, or a stop that is not the lane's).
    pub unchanged: Option<&'static str>,
}

impl Plan {
    fn unchanged(state: &LaneState, reason: &'static str) -> Plan {
        Plan {
            state: state.clone(),
            start: None,
            queued: None,
            superseded: Vec::new(),
            displaced: Vec::new(),
            unchanged: Some(reason),
        }
    }

    /// Supersedes a request. One that the lane held (not the incoming
    /// request, whose invocation reports it) is also kept on the lane
    /// until its status is posted.
    fn supersede(&mut self, superseded: Superseded, incoming: &str) {
        if superseded.request.delivery_id != incoming {
            self.state.unreported.push(superseded.clone());
        }
        self.superseded.push(superseded);
    }

    fn from(state: LaneState) -> Plan {
        Plan {
            state,
            start: None,
            queued: None,
            superseded: Vec::new(),
            displaced: Vec::new(),
            unchanged: None,
        }
    }
}

/// The newer of two requests, and the older one.
fn newer_older(a: DeployRequest, b: DeployRequest) -> (DeployRequest, DeployRequest) {
    if Order::of(&a) >= Order::of(&b) {
        (a, b)
    } else {
        (b, a)
    }
}

/// Claims the lane for `request`: it becomes the running deployment and
/// the lane's newest.
fn claim(state: &mut LaneState, request: &DeployRequest, now: OffsetDateTime) {
    state.latest = Some(Latest::of(request));
    state.running = Some(Running {
        request: request.clone(),
        task_arn: None,
        since: now,
    });
}

/// A deploy request arrives. `liveness` is ECS's answer about the running
/// task (ask only when `state.running` has a task).
pub fn on_request(
    current: &LaneState,
    request: &DeployRequest,
    liveness: Liveness,
    now: OffsetDateTime,
) -> Plan {
    let delivery = request.delivery_id.as_str();
    let mut plan = Plan::from(current.clone());
    // A task ECS says is gone frees the lane: a lost stop event must not
    // hold it forever.
    if liveness == Liveness::Gone
        && plan
            .state
            .running
            .as_ref()
            .is_some_and(|r| r.task_arn.is_some())
    {
        plan.state.running = None;
    }
    // A claim whose invocation died: this invocation finishes its start
    // (RunTask's idempotency token makes a second call safe).
    if let Some(running) = plan.state.running.as_mut()
        && running.is_abandoned_claim(now)
    {
        running.since = now;
        plan.start = Some(running.request.clone());
    }
    if let Some(running) = &plan.state.running
        && running.request.delivery_id == delivery
    {
        if running.task_arn.is_none() {
            // Its own claim, whose task is not recorded: a redelivery, or
            // this invocation's own write whose reply was lost. Starting
            // again is safe (the same idempotency token).
            plan.start = Some(running.request.clone());
        }
        if plan.start.is_none() {
            return Plan::unchanged(current, "this delivery is the lane's running deployment");
        }
        return plan;
    }
    let busy = plan.state.running.is_some();
    if busy
        && plan
            .state
            .next
            .as_ref()
            .is_some_and(|n| n.delivery_id == delivery)
    {
        if plan.start.is_none() {
            return Plan::unchanged(current, "this delivery is already waiting on the lane");
        }
        return plan;
    }
    if let Some(latest) = &plan.state.latest {
        if latest.order.delivery_id == delivery && !busy {
            return Plan::unchanged(current, "this delivery was already deployed on the lane");
        }
        if latest.order > Order::of(request) {
            // Older than what the lane runs or ran: never deploy it.
            let by = Superseded {
                request: request.clone(),
                by_sha: latest.sha.clone(),
                by_delivery: latest.order.delivery_id.clone(),
            };
            plan.supersede(by, delivery);
            return plan;
        }
    }
    // The candidate: the request, or the waiting one when that is newer.
    let candidate = match plan.state.next.take() {
        Some(next) if next.delivery_id == delivery => request.clone(),
        Some(next) => {
            let (newer, older) = newer_older(request.clone(), next.clone());
            plan.supersede(Superseded::by(older, &newer), delivery);
            if !busy {
                // Claimed below, or superseded by the claim: a failed
                // start offers it back to the lane.
                plan.displaced.push(next);
            }
            newer
        }
        None => request.clone(),
    };
    match plan.state.running.clone() {
        Some(running) => {
            plan.state.next = Some(candidate.clone());
            if candidate.delivery_id == delivery {
                plan.queued = Some(Queued {
                    request: candidate,
                    behind_sha: running.request.sha.clone(),
                    behind_task: running.task_arn.clone(),
                });
            }
        }
        None => {
            claim(&mut plan.state, &candidate, now);
            plan.start = Some(candidate);
        }
    }
    plan
}

/// The task of the lane's running deployment stopped (or the stop event of
/// an older task arrived). Frees the lane when it is this deployment's, and
/// claims the next one, if any.
pub fn on_stop(
    current: &LaneState,
    task_arn: &str,
    delivery_id: Option<&str>,
    now: OffsetDateTime,
) -> Plan {
    let mut state = current.clone();
    let ours = state.running.as_ref().is_some_and(|r| {
        r.task_arn.as_deref() == Some(task_arn)
            || Some(r.request.delivery_id.as_str()) == delivery_id
    });
    if ours {
        state.running = None;
    } else if state.running.is_some() {
        return Plan::unchanged(
            current,
            "the stopped task is not the lane's running deployment",
        );
    }
    match state.next.take() {
        Some(next) => {
            let mut plan = Plan::from(state);
            claim(&mut plan.state, &next, now);
            // A failed start puts it back (see on_start_failed).
            plan.displaced.push(next.clone());
            plan.start = Some(next);
            plan
        }
        None if ours => Plan::from(state),
        None => Plan::unchanged(current, "the lane is already free"),
    }
}

/// RunTask started the claimed request's task: record it. `None` when the
/// claim is no longer there (the task already stopped and freed the lane,
/// or another invocation took an abandoned claim over).
pub fn on_started(current: &LaneState, delivery_id: &str, task_arn: &str) -> Option<LaneState> {
    let running = current.running.as_ref()?;
    if running.request.delivery_id != delivery_id || running.task_arn.is_some() {
        return None;
    }
    let mut state = current.clone();
    if let Some(running) = state.running.as_mut() {
        running.task_arn = Some(task_arn.to_string());
    }
    Some(state)
}

/// RunTask failed for the claimed request: the lane goes back to what it
/// was before the claim (`before`: its running deployment and newest
/// request), and the requests the claim displaced are offered back, the
/// newest waiting and the others superseded. A claim that is no longer
/// there leaves the lane alone.
pub fn on_start_failed(
    current: &LaneState,
    before: &LaneState,
    delivery_id: &str,
    displaced: &[DeployRequest],
) -> Plan {
    let claimed = current
        .running
        .as_ref()
        .is_some_and(|r| r.request.delivery_id == delivery_id && r.task_arn.is_none());
    if !claimed {
        return Plan::unchanged(current, "the claim is no longer on the lane");
    }
    let mut plan = Plan::from(current.clone());
    plan.state.running = before.running.clone();
    plan.state.latest = before.latest.clone();
    // Offered back, so no longer superseded.
    plan.state.unreported.retain(|s| {
        !displaced
            .iter()
            .any(|d| d.delivery_id == s.request.delivery_id)
    });
    let mut waiting = plan.state.next.take();
    for offered in displaced {
        waiting = Some(match waiting {
            None => offered.clone(),
            Some(w) if w.delivery_id == offered.delivery_id => w,
            Some(w) => {
                let (newer, older) = newer_older(w, offered.clone());
                plan.supersede(Superseded::by(older, &newer), "");
                newer
            }
        });
    }
    plan.state.next = waiting;
    plan
}

/// The statuses of these deliveries are posted: the lane forgets them.
/// `None` when there is nothing to forget.
pub fn on_reported(current: &LaneState, delivery_ids: &[String]) -> Option<LaneState> {
    let mut state = current.clone();
    state
        .unreported
        .retain(|s| !delivery_ids.contains(&s.request.delivery_id));
    (state.unreported.len() != current.unreported.len()).then_some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln::DeployEvent;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

    fn req(delivery: &str, second: i64, sha_digit: char) -> DeployRequest {
        DeployRequest {
            kind: kiln::messages::deploy_request::KIND.into(),
            version: kiln::messages::deploy_request::VERSION,
            delivery_id: delivery.into(),
            event: DeployEvent::Push,
            repository: "o/r".into(),
            clone_url: "https://github.com/o/r.git".into(),
            git_ref: "refs/heads/main".into(),
            sha: sha_digit.to_string().repeat(40),
            environment: "production".into(),
            sender: "octocat".into(),
            deployment_id: None,
            requested_at: NOW,
            event_at: Some(NOW + Duration::seconds(second)),
            before: None,
        }
    }

    fn running(request: &DeployRequest, task: Option<&str>) -> LaneState {
        LaneState {
            version: 3,
            running: Some(Running {
                request: request.clone(),
                task_arn: task.map(str::to_string),
                since: NOW,
            }),
            next: None,
            latest: Some(Latest::of(request)),
            unreported: Vec::new(),
        }
    }

    fn deliveries(list: &[Superseded]) -> Vec<&str> {
        list.iter()
            .map(|s| s.request.delivery_id.as_str())
            .collect()
    }

    #[test]
    fn lane_key_names_repository_and_environment() {
        assert_eq!(lane_key("o/r", "production"), "o/r#production");
    }

    #[test]
    fn order_is_event_time_then_delivery_id() {
        let a = req("a", 1, '1');
        let mut b = req("b", 1, '2');
        assert!(Order::of(&a) < Order::of(&b));
        b.event_at = Some(NOW);
        assert!(Order::of(&b) < Order::of(&a));
        // No event_at: requested_at orders it.
        b.event_at = None;
        b.requested_at = NOW + Duration::seconds(5);
        assert!(Order::of(&a) < Order::of(&b));
    }

    #[test]
    fn an_idle_lane_starts_the_request_and_remembers_it() {
        let r = req("d1", 0, '1');
        let plan = on_request(&LaneState::default(), &r, Liveness::NotAsked, NOW);
        assert_eq!(plan.start.as_ref(), Some(&r));
        assert!(plan.queued.is_none() && plan.superseded.is_empty());
        let running = plan.state.running.unwrap();
        assert_eq!(running.task_arn, None);
        assert_eq!(running.since, NOW);
        assert_eq!(plan.state.latest, Some(Latest::of(&r)));
        assert_eq!(plan.unchanged, None);
    }

    #[test]
    fn a_busy_lane_queues_the_request_behind_the_running_task() {
        let first = req("d1", 0, '1');
        let second = req("d2", 1, '2');
        let plan = on_request(&running(&first, Some("t1")), &second, Liveness::Alive, NOW);
        assert_eq!(plan.start, None);
        let queued = plan.queued.unwrap();
        assert_eq!(queued.request, second);
        assert_eq!(queued.behind_task.as_deref(), Some("t1"));
        assert_eq!(
            queued.description(),
            "Queued behind 1111111, which is deploying to production"
        );
        assert_eq!(plan.state.next, Some(second));
        assert_eq!(plan.state.running, running(&first, Some("t1")).running);
        // A claim without a task yet is busy too.
        let plan = on_request(
            &running(&first, None),
            &req("d3", 2, '3'),
            Liveness::NotAsked,
            NOW,
        );
        assert_eq!(plan.queued.unwrap().behind_task, None);
    }

    #[test]
    fn only_the_newest_waits() {
        let first = req("d1", 0, '1');
        let mut lane = running(&first, Some("t1"));
        lane.next = Some(req("d2", 1, '2'));
        // Newer than the waiting one: it waits, the other is superseded.
        let plan = on_request(&lane, &req("d3", 2, '3'), Liveness::Alive, NOW);
        assert_eq!(plan.state.next.as_ref().unwrap().delivery_id, "d3");
        assert_eq!(deliveries(&plan.superseded), ["d2"]);
        assert_eq!(plan.superseded[0].by_sha, "3".repeat(40));
        assert!(
            plan.superseded[0]
                .description()
                .starts_with("Superseded by 3333333")
        );
        assert_eq!(plan.queued.unwrap().request.delivery_id, "d3");
        // The lane keeps d2 until its status is posted.
        assert_eq!(deliveries(&plan.state.unreported), ["d2"]);
        let posted = on_reported(&plan.state, &["d2".to_string()]).unwrap();
        assert!(posted.unreported.is_empty());
        assert_eq!(on_reported(&posted, &["d2".to_string()]), None);
        // Older than the waiting one (sent late): it is superseded itself.
        let plan = on_request(&lane, &req("d0", 1, '9'), Liveness::Alive, NOW);
        assert_eq!(plan.state.next.as_ref().unwrap().delivery_id, "d2");
        assert_eq!(deliveries(&plan.superseded), ["d0"]);
        assert_eq!(plan.superseded[0].by_delivery, "d2");
        assert!(plan.queued.is_none());
        // Its own invocation reports it: the lane does not keep it.
        assert!(plan.state.unreported.is_empty());
        // Same time: the delivery id breaks the tie.
        let plan = on_request(&lane, &req("d9", 1, '9'), Liveness::Alive, NOW);
        assert_eq!(plan.state.next.as_ref().unwrap().delivery_id, "d9");
        assert_eq!(deliveries(&plan.superseded), ["d2"]);
    }

    #[test]
    fn an_older_request_than_the_running_or_deployed_one_is_superseded_at_once() {
        let running_one = req("d5", 5, '5');
        let plan = on_request(
            &running(&running_one, Some("t5")),
            &req("d4", 4, '4'),
            Liveness::Alive,
            NOW,
        );
        assert_eq!(deliveries(&plan.superseded), ["d4"]);
        assert_eq!(plan.superseded[0].by_sha, "5".repeat(40));
        assert_eq!(plan.state, running(&running_one, Some("t5")));
        assert!(plan.start.is_none() && plan.queued.is_none());
        // An idle lane that deployed d5 long ago: a replay of d4 is refused.
        let idle = LaneState {
            version: 9,
            running: None,
            next: None,
            latest: Some(Latest::of(&running_one)),
            unreported: Vec::new(),
        };
        let plan = on_request(&idle, &req("d4", 4, '4'), Liveness::NotAsked, NOW);
        assert_eq!(deliveries(&plan.superseded), ["d4"]);
        assert!(plan.start.is_none());
        assert_eq!(plan.state, idle);
        // Newer than it: starts.
        let plan = on_request(&idle, &req("d6", 6, '6'), Liveness::NotAsked, NOW);
        assert_eq!(plan.start.unwrap().delivery_id, "d6");
    }

    #[test]
    fn a_gone_task_frees_the_lane() {
        let first = req("d1", 0, '1');
        let plan = on_request(
            &running(&first, Some("t1")),
            &req("d2", 1, '2'),
            Liveness::Gone,
            NOW,
        );
        assert_eq!(plan.start.unwrap().delivery_id, "d2");
        assert!(plan.queued.is_none());
        // A gone task freed, but the request is older than it: the lane is
        // written free, and the request superseded.
        let plan = on_request(
            &running(&first, Some("t1")),
            &req("d0", -1, '0'),
            Liveness::Gone,
            NOW,
        );
        assert_eq!(plan.state.running, None);
        assert_eq!(plan.unchanged, None);
        assert!(plan.start.is_none());
        assert_eq!(deliveries(&plan.superseded), ["d0"]);
        // Liveness is about tasks only: a fresh claim stays.
        let plan = on_request(
            &running(&first, None),
            &req("d2", 1, '2'),
            Liveness::Gone,
            NOW,
        );
        assert!(plan.queued.is_some());
    }

    #[test]
    fn a_stranded_next_starts_with_the_next_request() {
        // A free lane with a waiting request (its start failed, or the
        // lane was freed by ECS's answer): the newer of the two starts.
        let waiting = req("d2", 2, '2');
        let lane = LaneState {
            version: 4,
            running: None,
            next: Some(waiting.clone()),
            latest: Some(Latest::of(&req("d1", 1, '1'))),
            unreported: Vec::new(),
        };
        let plan = on_request(&lane, &req("d3", 3, '3'), Liveness::NotAsked, NOW);
        assert_eq!(plan.start.as_ref().unwrap().delivery_id, "d3");
        assert_eq!(deliveries(&plan.superseded), ["d2"]);
        assert_eq!(plan.displaced, std::slice::from_ref(&waiting));
        assert_eq!(plan.state.next, None);
        let plan = on_request(&lane, &req("d0b", 0, '9'), Liveness::NotAsked, NOW);
        // Older than the lane's newest: superseded; nothing starts.
        assert!(plan.start.is_none());
        assert_eq!(deliveries(&plan.superseded), ["d0b"]);
        let late = req("d15", 2, '0'); // same second as d2, lower delivery id
        let plan = on_request(&lane, &late, Liveness::NotAsked, NOW);
        assert_eq!(plan.start.as_ref().unwrap().delivery_id, "d2");
        assert_eq!(deliveries(&plan.superseded), ["d15"]);
        // The waiting request redelivered onto a free lane starts.
        let plan = on_request(&lane, &waiting, Liveness::NotAsked, NOW);
        assert_eq!(plan.start.unwrap().delivery_id, "d2");
        assert!(plan.superseded.is_empty());
    }

    #[test]
    fn redeliveries_change_nothing() {
        let first = req("d1", 0, '1');
        let mut lane = running(&first, Some("t1"));
        lane.next = Some(req("d2", 1, '2'));
        for (delivery, reason) in [
            (&first, "this delivery is the lane's running deployment"),
            (
                lane.next.as_ref().unwrap(),
                "this delivery is already waiting on the lane",
            ),
        ] {
            let plan = on_request(&lane, delivery, Liveness::Alive, NOW);
            assert_eq!(plan.unchanged, Some(reason));
            assert_eq!(plan.state, lane);
            assert!(plan.start.is_none() && plan.queued.is_none() && plan.superseded.is_empty());
        }
        // Deployed and done: a redelivery neither starts nor supersedes.
        let done = LaneState {
            running: None,
            next: None,
            ..lane.clone()
        };
        let plan = on_request(&done, &first, Liveness::NotAsked, NOW);
        assert_eq!(
            plan.unchanged,
            Some("this delivery was already deployed on the lane")
        );
        assert!(plan.superseded.is_empty());
    }

    #[test]
    fn an_abandoned_claim_is_taken_over() {
        let first = req("d1", 0, '1');
        let lane = running(&first, None);
        let later = NOW + CLAIM_TIMEOUT + Duration::seconds(1);
        // Its own redelivery finishes the start.
        let plan = on_request(&lane, &first, Liveness::NotAsked, later);
        assert_eq!(plan.start.as_ref(), Some(&first));
        assert_eq!(plan.state.running.as_ref().unwrap().since, later);
        // Another request finds it: the claim's start is finished, and the
        // request waits behind it.
        let plan = on_request(&lane, &req("d2", 1, '2'), Liveness::NotAsked, later);
        assert_eq!(plan.start.as_ref(), Some(&first));
        assert_eq!(plan.queued.unwrap().request.delivery_id, "d2");
        // Within the timeout, its own redelivery (or a retry after a lost
        // reply) starts it again, under the same token, writing nothing.
        let plan = on_request(
            &lane,
            &first,
            Liveness::NotAsked,
            NOW + Duration::seconds(30),
        );
        assert_eq!(plan.start.as_ref(), Some(&first));
        assert_eq!(plan.state, lane);
        // Another request within the timeout waits behind the claim.
        let plan = on_request(&lane, &req("d2", 1, '2'), Liveness::NotAsked, NOW);
        assert_eq!(plan.start, None);
        assert!(plan.queued.is_some());
    }

    #[test]
    fn a_stop_frees_the_lane_and_claims_the_next() {
        let first = req("d1", 0, '1');
        let next = req("d2", 1, '2');
        let mut lane = running(&first, Some("t1"));
        lane.next = Some(next.clone());
        let plan = on_stop(&lane, "t1", Some("d1"), NOW);
        assert_eq!(plan.start.as_ref(), Some(&next));
        assert_eq!(plan.state.next, None);
        assert_eq!(plan.state.running.as_ref().unwrap().request, next);
        assert_eq!(plan.state.latest, Some(Latest::of(&next)));
        // No next: the lane is free, and remembers what it deployed.
        let plan = on_stop(&running(&first, Some("t1")), "t1", None, NOW);
        assert_eq!(plan.state.running, None);
        assert_eq!(plan.state.latest, Some(Latest::of(&first)));
        assert!(plan.start.is_none() && plan.unchanged.is_none());
        // A stop that arrives before the task was recorded: by delivery.
        let plan = on_stop(&running(&first, None), "t1", Some("d1"), NOW);
        assert_eq!(plan.state.running, None);
        // Another task's stop (a late duplicate) leaves the lane alone.
        let plan = on_stop(&lane, "t0", Some("d0"), NOW);
        assert!(plan.unchanged.is_some());
        assert_eq!(plan.state, lane);
        // A free lane with a stranded next: the stop starts it.
        let stranded = LaneState {
            running: None,
            ..lane.clone()
        };
        let plan = on_stop(&stranded, "t0", None, NOW);
        assert_eq!(plan.start, Some(next));
        let plan = on_stop(&LaneState::default(), "t0", None, NOW);
        assert_eq!(plan.unchanged, Some("the lane is already free"));
    }

    #[test]
    fn recording_the_task_needs_the_claim() {
        let first = req("d1", 0, '1');
        let claimed = running(&first, None);
        let recorded = on_started(&claimed, "d1", "t1").unwrap();
        assert_eq!(recorded.running.unwrap().task_arn.as_deref(), Some("t1"));
        assert_eq!(on_started(&claimed, "d2", "t1"), None);
        assert_eq!(on_started(&running(&first, Some("t1")), "d1", "t1"), None);
        assert_eq!(on_started(&LaneState::default(), "d1", "t1"), None);
    }

    #[test]
    fn a_failed_start_leaves_the_lane_as_it_was() {
        // Request path: idle lane, d2 waiting, d3 claims and displaces it.
        let waiting = req("d2", 2, '2');
        let before = LaneState {
            version: 4,
            running: None,
            next: Some(waiting.clone()),
            latest: Some(Latest::of(&req("d1", 1, '1'))),
            unreported: Vec::new(),
        };
        let d3 = req("d3", 3, '3');
        let plan = on_request(&before, &d3, Liveness::NotAsked, NOW);
        let mut current = plan.state.clone();
        current.version = 5;
        assert_eq!(deliveries(&current.unreported), ["d2"]);
        let undo = on_start_failed(&current, &before, "d3", &plan.displaced);
        assert_eq!(undo.state.running, before.running);
        assert_eq!(undo.state.latest, before.latest);
        assert_eq!(undo.state.next, before.next);
        assert!(undo.superseded.is_empty());
        assert!(undo.state.unreported.is_empty());
        // Meanwhile d4 queued behind the claim: it stays, d2 is superseded.
        current.next = Some(req("d4", 4, '4'));
        let undo = on_start_failed(&current, &before, "d3", &plan.displaced);
        assert_eq!(undo.state.next.as_ref().unwrap().delivery_id, "d4");
        assert_eq!(deliveries(&undo.superseded), ["d2"]);
        assert_eq!(deliveries(&undo.state.unreported), ["d2"]);
        // Stop path: the next one goes back to waiting on a free lane.
        let first = req("d1", 0, '1');
        let mut lane = running(&first, Some("t1"));
        lane.next = Some(waiting.clone());
        let stop = on_stop(&lane, "t1", None, NOW);
        let freed = LaneState {
            running: None,
            ..lane.clone()
        };
        let undo = on_start_failed(&stop.state, &freed, "d2", &stop.displaced);
        assert_eq!(undo.state.running, None);
        assert_eq!(undo.state.next, Some(waiting));
        assert_eq!(undo.state.latest, lane.latest);
        // The claim is gone (taken over): nothing to undo.
        let undo = on_start_failed(&lane, &freed, "d9", &[]);
        assert!(undo.unchanged.is_some());
    }
}
