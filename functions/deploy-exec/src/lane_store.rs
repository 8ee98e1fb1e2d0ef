//! Where lanes are kept: the [`LaneStore`] port, its DynamoDB adapter, and
//! an in-memory store for tests.
//!
//! One item per lane (partition key `lane`). Every write is a PutItem
//! conditional on the `version` that was read (or on the item not existing
//! yet), so two deploy-exec instances never both win: the loser reads
//! again and decides again. Reads are strongly consistent. `expires_at`
//! (epoch seconds, the table's TTL attribute) moves forward with every
//! write, so a lane idle for longer than [`RETENTION`] disappears.
//!
//! deploy-exec calls only GetItem and PutItem, and its role allows only
//! those two, on this table alone (`make check-iam` holds the two together).

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::types::AttributeValue;
use kiln::DeployRequest;
use kiln::aws::LazyClient;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::lanes::{LaneState, Latest, Order, RETENTION, Running, Superseded};

/// The item's attribute names.
pub mod attr {
    pub const LANE: &str = "lane";
    pub const VERSION: &str = "version";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const UPDATED_AT: &str = "updated_at";
    /// The running deployment's request (JSON), task and claim time.
    pub const RUNNING: &str = "running";
    pub const RUNNING_TASK: &str = "running_task";
    pub const RUNNING_SINCE: &str = "running_since";
    /// The waiting request (JSON).
    pub const NEXT: &str = "next";
    /// The newest request the lane started.
    pub const LATEST_AT: &str = "latest_at";
    pub const LATEST_DELIVERY: &str = "latest_delivery";
    pub const LATEST_SHA: &str = "latest_sha";
    /// Superseded requests whose status is not posted yet (JSON list).
    pub const UNREPORTED: &str = "unreported";
}

/// Whether a conditional write won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// Another instance wrote the lane since it was read.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on lane {lane} failed: {message}")]
    Api {
        operation: &'static str,
        lane: String,
        message: String,
    },
    #[error("lane {lane} holds an item kiln cannot read ({detail}): fix or delete the item")]
    Corrupt { lane: String, detail: String },
}

/// The port.
pub trait LaneStore: Send + Sync {
    /// The lane's state; a lane never written is the default (version 0).
    fn load(&self, lane: &str) -> impl Future<Output = Result<LaneState, StoreError>> + Send;

    /// Writes `state` as version `state.version + 1`, if the stored version
    /// is still `state.version`.
    fn save(
        &self,
        lane: &str,
        state: &LaneState,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;
}

/// The DynamoDB adapter.
#[derive(Clone, Debug)]
pub struct DynamoLaneStore {
    client: LazyClient<aws_sdk_dynamodb::Client>,
    table: String,
}

impl DynamoLaneStore {
    pub fn new(client: impl Into<LazyClient<aws_sdk_dynamodb::Client>>, table: &str) -> Self {
        DynamoLaneStore {
            client: client.into(),
            table: table.to_string(),
        }
    }
}

/// No lanes: what a [`Deps`](crate::Deps) without `LANES_TABLE` holds.
pub const NO_LANES: Option<DynamoLaneStore> = None;

impl LaneStore for DynamoLaneStore {
    async fn load(&self, lane: &str) -> Result<LaneState, StoreError> {
        let output = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .key(attr::LANE, AttributeValue::S(lane.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| StoreError::Api {
                operation: "GetItem",
                lane: lane.to_string(),
                message: crate::runner::sdk_message(&err),
            })?;
        decode(lane, output.item())
    }

    async fn save(
        &self,
        lane: &str,
        state: &LaneState,
        now: OffsetDateTime,
    ) -> Result<Saved, StoreError> {
        let mut call = self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(lane, state, now)));
        call = if state.version == 0 {
            call.condition_expression("attribute_not_exists(#lane)")
                .expression_attribute_names("#lane", attr::LANE)
        } else {
            call.condition_expression("#version = :version")
                .expression_attribute_names("#version", attr::VERSION)
                .expression_attribute_values(":version", number(state.version))
        };
        match call.send().await {
            Ok(_) => Ok(Saved::Written),
            Err(err) => {
                if let Some(
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(_),
                ) = err.as_service_error()
                {
                    return Ok(Saved::Conflict);
                }
                Err(StoreError::Api {
                    operation: "PutItem",
                    lane: lane.to_string(),
                    message: crate::runner::sdk_message(&err),
                })
            }
        }
    }
}

/// A lane's state from its item, if any.
fn decode(
    lane: &str,
    item: Option<&HashMap<String, AttributeValue>>,
) -> Result<LaneState, StoreError> {
    match item {
        Some(item) => from_item(item).map_err(|detail| StoreError::Corrupt {
            lane: lane.to_string(),
            detail,
        }),
        None => Ok(LaneState::default()),
    }
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting a valid date as RFC 3339 fails only for years past 9999.
    at.format(&Rfc3339).unwrap_or_default()
}

/// The item for a lane's next version.
pub fn to_item(
    lane: &str,
    state: &LaneState,
    now: OffsetDateTime,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (attr::LANE.to_string(), text(lane)),
        (attr::VERSION.to_string(), number(state.version + 1)),
        (
            attr::EXPIRES_AT.to_string(),
            number((now + RETENTION).unix_timestamp()),
        ),
        (attr::UPDATED_AT.to_string(), text(rfc3339(now))),
    ]);
    if let Some(running) = &state.running {
        item.insert(attr::RUNNING.into(), text(running.request.to_json()));
        item.insert(attr::RUNNING_SINCE.into(), text(rfc3339(running.since)));
        if let Some(task) = &running.task_arn {
            item.insert(attr::RUNNING_TASK.into(), text(task));
        }
    }
    if let Some(next) = &state.next {
        item.insert(attr::NEXT.into(), text(next.to_json()));
    }
    if let Some(latest) = &state.latest {
        item.insert(attr::LATEST_AT.into(), text(rfc3339(latest.order.at)));
        item.insert(
            attr::LATEST_DELIVERY.into(),
            text(&latest.order.delivery_id),
        );
        item.insert(attr::LATEST_SHA.into(), text(&latest.sha));
    }
    if !state.unreported.is_empty() {
        // Serialising plain strings cannot fail.
        let json = serde_json::to_string(&state.unreported).unwrap_or_default();
        item.insert(attr::UNREPORTED.into(), text(json));
    }
    item
}

/// A lane's state from its item; the error says which attribute is wrong.
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<LaneState, String> {
    let string = |name: &str| -> Result<Option<&str>, String> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let time = |name: &str| -> Result<Option<OffsetDateTime>, String> {
        string(name)?
            .map(|s| OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let request = |name: &str| -> Result<Option<DeployRequest>, String> {
        string(name)?
            .map(|s| DeployRequest::from_json(s).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let version = match item.get(attr::VERSION) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| format!("{} is not a whole number", attr::VERSION))?,
        _ => return Err(format!("{} is missing or not a number", attr::VERSION)),
    };
    let running = match request(attr::RUNNING)? {
        Some(request) => Some(Running {
            request,
            task_arn: string(attr::RUNNING_TASK)?.map(str::to_string),
            since: time(attr::RUNNING_SINCE)?
                .ok_or_else(|| format!("{} is missing", attr::RUNNING_SINCE))?,
        }),
        None => None,
    };
    let latest = match (
        time(attr::LATEST_AT)?,
        string(attr::LATEST_DELIVERY)?,
        string(attr::LATEST_SHA)?,
    ) {
        (Some(at), Some(delivery), Some(sha)) => Some(Latest {
            order: Order {
                at,
                delivery_id: delivery.to_string(),
            },
            sha: sha.to_string(),
        }),
        (None, None, None) => None,
        _ => return Err("latest_at, latest_delivery and latest_sha go together".into()),
    };
    let unreported: Vec<Superseded> = match string(attr::UNREPORTED)? {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| format!("{}: {e}", attr::UNREPORTED))?
        }
        None => Vec::new(),
    };
    Ok(LaneState {
        version,
        running,
        next: request(attr::NEXT)?,
        latest,
        unreported,
    })
}

/// An in-memory store for tests: the same conditional writes, through the
/// same item encoding, plus a way to make writes lose.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    #[derive(Default)]
    pub struct InMemoryLaneStore {
        items: Mutex<HashMap<String, HashMap<String, AttributeValue>>>,
        /// Writes still to lose, as if another instance had written first.
        conflicts: Mutex<usize>,
        /// Calls still to fail, as if DynamoDB were throttling.
        failures: Mutex<usize>,
        /// Writes still to apply but answer as lost (a reply lost after
        /// DynamoDB applied the write, and the retry losing its condition).
        lost_replies: Mutex<usize>,
        saves: Mutex<usize>,
    }

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    impl InMemoryLaneStore {
        pub fn new() -> Self {
            Self::default()
        }

        /// The next `n` writes lose their condition.
        pub fn lose_next_writes(&self, n: usize) {
            *lock(&self.conflicts) = n;
        }

        /// The next `n` writes are applied, but answered as conflicts.
        pub fn lose_next_replies(&self, n: usize) {
            *lock(&self.lost_replies) = n;
        }

        /// The next `n` calls fail.
        pub fn fail_next_calls(&self, n: usize) {
            *lock(&self.failures) = n;
        }

        /// Writes that won.
        pub fn saves(&self) -> usize {
            *lock(&self.saves)
        }

        /// The lane as stored (default when absent).
        pub fn lane(&self, lane: &str) -> LaneState {
            lock(&self.items)
                .get(lane)
                .map(|item| from_item(item).unwrap_or_default())
                .unwrap_or_default()
        }

        /// The raw item, as DynamoDB would hold it.
        pub fn item(&self, lane: &str) -> Option<HashMap<String, AttributeValue>> {
            lock(&self.items).get(lane).cloned()
        }

        fn fail(&self, operation: &'static str, lane: &str) -> Result<(), StoreError> {
            let mut failures = lock(&self.failures);
            if *failures > 0 {
                *failures -= 1;
                return Err(StoreError::Api {
                    operation,
                    lane: lane.to_string(),
                    message:
                        "ThrottlingException: Rate of requests exceeds the allowed throughput."
                            .into(),
                });
            }
            Ok(())
        }
    }

    impl LaneStore for InMemoryLaneStore {
        async fn load(&self, lane: &str) -> Result<LaneState, StoreError> {
            self.fail("GetItem", lane)?;
            decode(lane, lock(&self.items).get(lane))
        }

        async fn save(
            &self,
            lane: &str,
            state: &LaneState,
            now: OffsetDateTime,
        ) -> Result<Saved, StoreError> {
            self.fail("PutItem", lane)?;
            {
                let mut conflicts = lock(&self.conflicts);
                if *conflicts > 0 {
                    *conflicts -= 1;
                    return Ok(Saved::Conflict);
                }
            }
            let mut items = lock(&self.items);
            let stored = items
                .get(lane)
                .map(|item| from_item(item).map(|s| s.version).unwrap_or(u64::MAX))
                .unwrap_or(0);
            if stored != state.version {
                return Ok(Saved::Conflict);
            }
            items.insert(lane.to_string(), to_item(lane, state, now));
            *lock(&self.saves) += 1;
            let mut lost = lock(&self.lost_replies);
            if *lost > 0 {
                *lost -= 1;
                return Ok(Saved::Conflict);
            }
            Ok(Saved::Written)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::InMemoryLaneStore;
    use super::*;
    use crate::task_request::tests::request;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

    fn full_state() -> LaneState {
        let mut next = request();
        next.delivery_id = "d-next".into();
        next.event_at = Some(NOW);
        LaneState {
            version: 7,
            running: Some(Running {
                request: request(),
                task_arn: Some("arn:aws:ecs:us-east-1:123456789012:task/kiln/t1".into()),
                since: NOW,
            }),
            next: Some(next.clone()),
            latest: Some(Latest {
                order: Order::of(&request()),
                sha: request().sha,
            }),
            unreported: vec![Superseded {
                request: next,
                by_sha: "f".repeat(40),
                by_delivery: "d-9".into(),
            }],
        }
    }

    #[test]
    fn items_round_trip_and_carry_the_ttl() {
        let state = full_state();
        let item = to_item("o/r#production", &state, NOW);
        assert_eq!(item[attr::LANE], text("o/r#production"));
        assert_eq!(item[attr::VERSION], number(8));
        assert_eq!(
            item[attr::EXPIRES_AT],
            number((NOW + time::Duration::days(35)).unix_timestamp())
        );
        let back = from_item(&item).unwrap();
        assert_eq!(back.version, 8);
        assert_eq!(LaneState { version: 7, ..back }, state);
        // An idle lane keeps only what stops replays.
        let idle = LaneState {
            running: None,
            next: None,
            unreported: vec![],
            ..state
        };
        let item = to_item("l", &idle, NOW);
        assert!(!item.contains_key(attr::RUNNING) && !item.contains_key(attr::NEXT));
        assert_eq!(from_item(&item).unwrap().latest, idle.latest);
    }

    #[test]
    fn unreadable_items_say_which_attribute() {
        let mut item = to_item("l", &full_state(), NOW);
        item.insert(attr::NEXT.into(), text("{}"));
        assert!(from_item(&item).unwrap_err().starts_with("next: "));
        item.remove(attr::VERSION);
        assert_eq!(
            from_item(&item).unwrap_err(),
            "version is missing or not a number"
        );
        let mut item = to_item("l", &full_state(), NOW);
        item.remove(attr::LATEST_SHA);
        assert!(from_item(&item).unwrap_err().contains("go together"));
    }

    #[tokio::test]
    async fn writes_are_conditional_on_the_version_read() {
        let store = InMemoryLaneStore::new();
        let fresh = store.load("l").await.unwrap();
        assert_eq!(fresh, LaneState::default());
        assert_eq!(store.save("l", &fresh, NOW).await.unwrap(), Saved::Written);
        // A second writer that read version 0 loses.
        assert_eq!(store.save("l", &fresh, NOW).await.unwrap(), Saved::Conflict);
        let now = store.load("l").await.unwrap();
        assert_eq!(now.version, 1);
        assert_eq!(store.save("l", &now, NOW).await.unwrap(), Saved::Written);
        store.lose_next_writes(1);
        let now = store.load("l").await.unwrap();
        assert_eq!(store.save("l", &now, NOW).await.unwrap(), Saved::Conflict);
        store.fail_next_calls(1);
        assert!(store.load("l").await.is_err());
        assert_eq!(store.saves(), 2);
    }
}
