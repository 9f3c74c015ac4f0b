//! The collector's own log events that need more than a `tracing` macro:
//! events that can come thousands of times a second under load are
//! summarized, at most one line per [`SUMMARY_EVERY`], so that an overload
//! does not also flood the logs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two summary lines of the same kind.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts of one frequent event since its last line.
#[derive(Debug)]
pub struct Summary {
    state: Mutex<Option<(Instant, u64)>>,
}

impl Summary {
    /// A summary that has not logged yet (its first event is logged at once).
    pub const fn new() -> Summary {
        Summary {
            state: Mutex::new(None),
        }
    }

    /// Counts one event; returns how many to report (this one included)
    /// when a line is due, else `None`.
    pub fn due(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().ok()?;
        match &mut *s {
            Some((last, n)) if now.duration_since(*last) < SUMMARY_EVERY => {
                *n += 1;
                None
            }
            Some((last, n)) => {
                let count = *n + 1;
                *last = now;
                *n = 0;
                Some(count)
            }
            None => {
                *s = Some((now, 0));
                Some(1)
            }
        }
    }
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

static THROTTLED: Summary = Summary::new();

/// A request was answered with a retryable error (the client backs off).
pub fn throttled(reason: &'static str, message: &str) {
    if let Some(requests) = THROTTLED.due(Instant::now()) {
        tracing::warn!(
            reason,
            requests,
            error = message,
            "throttling clients: requests answered with a retryable error since the last line"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_events_give_one_line_per_period_with_the_count() {
        let s = Summary::new();
        let t0 = Instant::now();
        assert_eq!(s.due(t0), Some(1), "the first one is logged at once");
        for _ in 0..99 {
            assert_eq!(s.due(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(s.due(t0 + SUMMARY_EVERY), Some(100));
        assert_eq!(s.due(t0 + SUMMARY_EVERY), None);
    }
}
