//! SNS → Lambda on this machine, through moto's SNS-to-HTTP subscriptions.
//!
//! Each subscribed function gets an HTTP subscription on its topic pointing
//! here (`/sns/<function>`). moto posts every notification to it during
//! `Publish`; the bridge answers at once and invokes the function
//! asynchronously with the Lambda SNS event made from the notification
//! ([`crate::fixtures::sns_event`]), as Lambda's event invoke does, with the
//! two retries of the template's `MaximumRetryAttempts: 2` (seconds apart
//! here, not minutes). Every delivery and its outcome is kept, so a caller
//! can wait for a function to have handled a message.
//!
//! moto's HTTP notifications carry no message attributes, so the events
//! have none; kiln's functions don't read them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::HarnessError;
use crate::aws::Aws;
use crate::fixtures::{SnsNotification, sns_event};
use crate::http_server::{self, Request, Response};
use crate::lambda::{LambdaError, LambdaFunction};

/// Waits before the second and the third attempt of a failed invocation.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

/// One notification delivered to a function.
#[derive(Debug, Clone)]
pub struct SnsDelivery {
    pub function: String,
    pub topic_arn: String,
    pub message_id: String,
    pub subject: Option<String>,
    pub message: String,
    /// Invocations made so far (1 to 3).
    pub attempts: u32,
    /// The last invocation's answer; `None` while the function works on it.
    pub outcome: Option<Result<Value, LambdaError>>,
}

impl SnsDelivery {
    /// Whether the function is done with it (answered, or failed its last
    /// attempt).
    pub fn finished(&self) -> bool {
        match &self.outcome {
            Some(Ok(_)) => true,
            Some(Err(_)) => self.attempts as usize > RETRY_DELAYS.len(),
            None => false,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }
}

#[derive(Default)]
struct Shared {
    /// Subscribers by name: a function, or `None` for a recorder.
    functions: Mutex<HashMap<String, Option<Arc<LambdaFunction>>>>,
    deliveries: Mutex<Vec<SnsDelivery>>,
    changed: Notify,
}

impl Shared {
    fn update(&self, index: usize, f: impl FnOnce(&mut SnsDelivery)) {
        if let Some(delivery) = lock(&self.deliveries).get_mut(index) {
            f(delivery);
        }
        self.changed.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The HTTP endpoint moto delivers to; stops when dropped.
pub struct SnsBridge {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SnsBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsBridge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SnsBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SnsBridge {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> Result<SnsBridge, HarnessError> {
        let (listener, addr) = http_server::bind_loopback()
            .await
            .map_err(|e| HarnessError(format!("binding the SNS endpoint: {e}")))?;
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let task = http_server::serve(listener, move |request| {
            let state = Arc::clone(&state);
            async move { Some(Response::new(notification(state, &request))) }
        });
        Ok(SnsBridge { addr, shared, task })
    }

    /// Subscribes `function` to the topic over HTTP; returns the
    /// subscription ARN.
    pub async fn subscribe(
        &self,
        aws: &Aws,
        topic_arn: &str,
        function: Arc<LambdaFunction>,
    ) -> Result<String, HarnessError> {
        let name = function.name().to_string();
        self.add(aws, topic_arn, name, Some(function)).await
    }

    /// Subscribes a recorder named `name`: notifications are only kept
    /// (as answered deliveries), nothing is invoked.
    pub async fn subscribe_recorder(
        &self,
        aws: &Aws,
        topic_arn: &str,
        name: &str,
    ) -> Result<String, HarnessError> {
        self.add(aws, topic_arn, name.to_string(), None).await
    }

    async fn add(
        &self,
        aws: &Aws,
        topic_arn: &str,
        name: String,
        function: Option<Arc<LambdaFunction>>,
    ) -> Result<String, HarnessError> {
        lock(&self.shared.functions).insert(name.clone(), function);
        let endpoint = format!("http://{}/sns/{name}", self.addr);
        let out = aws
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("http")
            .endpoint(&endpoint)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| {
                HarnessError(format!(
                    "subscribing {name} to {topic_arn}: {}",
                    kiln::aws::error_chain(&e)
                ))
            })?;
        Ok(out.subscription_arn.unwrap_or_default())
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<SnsDelivery> {
        lock(&self.shared.deliveries).clone()
    }

    /// The deliveries to one function.
    pub fn deliveries_to(&self, function: &str) -> Vec<SnsDelivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.function == function)
            .collect()
    }

    /// Waits up to `timeout` until `function` has finished with at least
    /// `count` deliveries; returns its deliveries either way.
    pub async fn wait_finished(
        &self,
        function: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<SnsDelivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            let deliveries = self.deliveries_to(function);
            let finished = deliveries.iter().filter(|d| d.finished()).count();
            let left = deadline.saturating_duration_since(Instant::now());
            if finished >= count
                || left.is_zero()
                || tokio::time::timeout(left, changed).await.is_err()
            {
                return deliveries;
            }
        }
    }
}

/// One POST from moto: a notification (or a subscription confirmation,
/// which moto never sends since it confirms HTTP subscriptions itself).
/// Answers with the status for moto.
fn notification(shared: Arc<Shared>, request: &Request) -> u16 {
    let function_name = match request.path().strip_prefix("/sns/") {
        Some(name) if request.method == "POST" && !name.contains('/') => name.to_string(),
        _ => return 404,
    };
    let Ok(post) = serde_json::from_slice::<Value>(&request.body) else {
        return 400;
    };
    let text = |key: &str| post.get(key).and_then(Value::as_str).map(str::to_string);
    if text("Type").as_deref() != Some("Notification") {
        return 200;
    }
    let subscriber = lock(&shared.functions).get(&function_name).cloned();
    let Some(function) = subscriber else {
        return 404;
    };
    let delivery = SnsDelivery {
        function: function_name,
        topic_arn: text("TopicArn").unwrap_or_default(),
        message_id: text("MessageId").unwrap_or_default(),
        subject: text("Subject"),
        message: text("Message").unwrap_or_default(),
        attempts: 0,
        outcome: None,
    };
    let mut notification = SnsNotification::new(&delivery.topic_arn, &delivery.message);
    notification.message_id = Some(delivery.message_id.clone());
    notification.subject = delivery.subject.clone();
    let event = sns_event(&[notification]);
    let index = {
        let mut deliveries = lock(&shared.deliveries);
        deliveries.push(delivery);
        deliveries.len() - 1
    };
    shared.changed.notify_waiters();
    let Some(function) = function else {
        shared.update(index, |d| d.outcome = Some(Ok(Value::Null)));
        return 200;
    };
    tokio::spawn(async move {
        for attempt in 0..=RETRY_DELAYS.len() {
            shared.update(index, |d| d.attempts += 1);
            let outcome = function.invoke(event.clone()).await;
            let ok = outcome.is_ok();
            shared.update(index, |d| d.outcome = Some(outcome));
            if ok {
                return;
            }
            if let Some(delay) = RETRY_DELAYS.get(attempt) {
                tokio::time::sleep(*delay).await;
            }
        }
    });
    200
}
