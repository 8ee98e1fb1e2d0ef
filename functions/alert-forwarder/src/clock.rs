//! Time, as a port: the handler asks a [`Clock`] for "now" and to wait, so
//! tests can run the retry waits and the re-post arithmetic on virtual time.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock for tests: starts at a given instant, never really sleeps, and
/// moves forward by exactly what was slept (or what a test advances it by).
/// Records every wait.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: std::sync::Arc<std::sync::Mutex<(OffsetDateTime, Vec<Duration>)>>,
}

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    pub fn at(now: OffsetDateTime) -> Self {
        ManualClock {
            state: std::sync::Arc::new(std::sync::Mutex::new((now, Vec::new()))),
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.0 += by;
        }
    }

    /// Every wait so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().map(|s| s.1.clone()).unwrap_or_default()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.state
            .lock()
            .map(|s| s.0)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    async fn sleep(&self, duration: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.0 += duration;
            state.1.push(duration);
        }
    }
}
