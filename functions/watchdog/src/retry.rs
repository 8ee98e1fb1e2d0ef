//! Retrying transient AWS failures within the invocation's remaining time.
//!
//! Scaling to zero is the whole point of watchdog, so a busy Auto Scaling
//! group (a scaling activity in progress, contention, throttling) is waited
//! out rather than failed on, but never past the Lambda deadline: a retry
//! that the runtime would cut off is worse than a clear error.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// When the invocation must be finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline known: retries stop after [`Backoff::max_attempts`].
    pub const NONE: Deadline = Deadline(None);

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// From the Lambda context's deadline, in milliseconds since the Unix
    /// epoch. `0` (a context built by hand) means no deadline.
    pub fn from_epoch_millis(deadline_ms: u64) -> Self {
        if deadline_ms == 0 {
            return Deadline::NONE;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let remaining = u128::from(deadline_ms).saturating_sub(now_ms);
        let remaining = Duration::from_millis(u64::try_from(remaining).unwrap_or(u64::MAX));
        Deadline(Instant::now().checked_add(remaining))
    }

    /// Time left, if a deadline is known.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// Exponential backoff: `first_delay`, doubling, capped at `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Time kept back for the work after the retried call (publishing the
    /// alert): a retry that would eat into it is not started.
    pub reserve: Duration,
    /// The limit on attempts when no deadline is known.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            reserve: Duration::from_secs(3),
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// Near-instant retries, for tests.
    pub fn immediate(max_attempts: u32) -> Self {
        Backoff {
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            reserve: Duration::ZERO,
            max_attempts,
        }
    }

    /// The pause before attempt `attempt + 1` (attempts count from 1).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Whether another attempt after `attempt` fits.
    fn may_retry(&self, attempt: u32, deadline: Deadline) -> bool {
        match deadline.remaining() {
            Some(left) => self.delay_after(attempt) + self.reserve < left,
            None => attempt < self.max_attempts,
        }
    }
}

/// A failure after retrying: the last error and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted<E> {
    pub error: E,
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, or
/// the next attempt would not fit before the deadline.
pub async fn retry<T, E, F, Fut>(
    backoff: &Backoff,
    deadline: Deadline,
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, Exhausted<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if retryable(&error) && backoff.may_retry(attempt, deadline) => {
                let delay = backoff.delay_after(attempt);
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(Exhausted {
                    error,
                    attempts: attempt,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<u64> = (1..=7)
            .map(|a| b.delay_after(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(b.delay_after(200), Duration::from_secs(4));
    }

    #[test]
    fn deadline_from_context() {
        assert_eq!(Deadline::from_epoch_millis(0), Deadline::NONE);
        let in_a_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        let left = Deadline::from_epoch_millis(in_a_minute)
            .remaining()
            .unwrap();
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
        assert_eq!(
            Deadline::from_epoch_millis(1).remaining(),
            Some(Duration::ZERO)
        );
    }

    #[tokio::test]
    async fn retries_transient_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result: Result<u32, Exhausted<&str>> = retry(
            &Backoff::immediate(5),
            Deadline::NONE,
            |e| *e == "busy",
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 { Err("busy") } else { Ok(n) }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn stops_on_permanent_errors_and_at_the_attempt_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(
            &Backoff::immediate(5),
            Deadline::NONE,
            |e| *e == "busy",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("denied")
            },
        )
        .await;
        assert_eq!(
            result,
            Err(Exhausted {
                error: "denied",
                attempts: 1
            })
        );

        let result: Result<(), _> = retry(
            &Backoff::immediate(4),
            Deadline::NONE,
            |_| true,
            || async { Err("busy") },
        )
        .await;
        assert_eq!(
            result,
            Err(Exhausted {
                error: "busy",
                attempts: 4
            })
        );
    }

    #[tokio::test]
    async fn never_retries_past_the_deadline() {
        // 250 ms backoff plus 3 s reserve does not fit in 1 s: one attempt.
        let deadline = Deadline::at(Instant::now() + Duration::from_secs(1));
        let result: Result<(), _> = retry(
            &Backoff::default(),
            deadline,
            |_| true,
            || async { Err("busy") },
        )
        .await;
        assert_eq!(result.unwrap_err().attempts, 1);
    }
}
