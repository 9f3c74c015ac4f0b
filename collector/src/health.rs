//! Liveness and readiness, as `/healthz` and `/readyz` answer them.
//!
//! - Liveness (`/healthz`): the process answers HTTP. A supervisor that
//!   restarts on a failed liveness probe should only do so when the
//!   collector is wedged, not while it drains or recovers.
//! - Readiness (`/readyz`): the collector would store a record sent now.
//!   Not ready while the WAL is being recovered at start, once shutdown
//!   has begun, while the store is failing (the last WAL write or fsync
//!   errored), while the writer's queue or unsealed buffer is full (a
//!   request would be answered with a retryable error), and once the
//!   witness has failed for longer than `store.witness_grace_secs`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::metrics::Metrics;

/// Where the collector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Recovering the WAL; not accepting records yet.
    Starting,
    /// Serving.
    Serving,
    /// Shutdown began: draining and sealing.
    Stopping,
}

/// Why the collector is not ready.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// WAL recovery has not finished.
    #[error("starting: recovering the WAL")]
    Starting,
    /// Shutdown began.
    #[error("shutting down")]
    Stopping,
    /// The last WAL write or fsync failed.
    #[error("store failing: the last WAL write or fsync failed (see the logs)")]
    StoreFailing,
    /// Requests are waiting for the writer up to the queue's capacity.
    #[error("writer queue full ({depth} of {capacity} requests waiting)")]
    QueueFull {
        /// Requests waiting.
        depth: u64,
        /// The queue's capacity (`store.queue_depth`).
        capacity: u64,
    },
    /// Checkpoints could not be written to the witness for longer than
    /// `store.witness_grace_secs` (ingest goes on; the proofs weaken).
    #[error("witness failing for {secs} s: checkpoints are not reaching it (see the logs)")]
    WitnessFailing {
        /// How long it has been failing.
        secs: u64,
    },
    /// The unsealed buffer is at its cap (sealing is not keeping up).
    #[error("unsealed buffer full ({rows} rows; sealing is behind)")]
    BufferFull {
        /// Rows buffered.
        rows: u64,
    },
}

/// Shared view of the collector's health.
#[derive(Debug)]
pub struct Health {
    phase: AtomicU8,
    metrics: Arc<Metrics>,
    queue_capacity: u64,
    max_buffered_rows: u64,
    witness_grace_secs: std::sync::atomic::AtomicU64,
}

impl Health {
    /// Starts in [`Phase::Starting`]; the store's gauges are read from `metrics`.
    pub fn new(metrics: Arc<Metrics>, queue_capacity: usize, max_buffered_rows: usize) -> Health {
        Health {
            phase: AtomicU8::new(Phase::Starting as u8),
            metrics,
            queue_capacity: queue_capacity as u64,
            max_buffered_rows: max_buffered_rows as u64,
            witness_grace_secs: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// After how long a failing witness makes the collector not ready.
    pub fn set_witness_grace(&self, secs: u64) {
        self.witness_grace_secs.store(secs, Ordering::Relaxed);
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The metrics the store's state is read from.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Stopping,
        }
    }

    /// Ready, or the first reason not to be.
    pub fn readiness(&self) -> Result<(), NotReady> {
        match self.phase() {
            Phase::Starting => return Err(NotReady::Starting),
            Phase::Stopping => return Err(NotReady::Stopping),
            Phase::Serving => {}
        }
        let load = |g: &std::sync::atomic::AtomicU64| g.load(Ordering::Relaxed);
        if load(&self.metrics.store_failing) != 0 {
            return Err(NotReady::StoreFailing);
        }
        let depth = load(&self.metrics.queue_depth);
        if depth >= self.queue_capacity {
            return Err(NotReady::QueueFull {
                depth,
                capacity: self.queue_capacity,
            });
        }
        let rows = load(&self.metrics.buffered_rows);
        if rows >= self.max_buffered_rows {
            return Err(NotReady::BufferFull { rows });
        }
        let since = load(&self.metrics.witness_failing_since_timestamp_seconds);
        if since != 0 {
            let now = u64::try_from(crate::now_ns() / 1_000_000_000).unwrap_or(0);
            let secs = now.saturating_sub(since);
            if secs >= load(&self.witness_grace_secs) {
                return Err(NotReady::WitnessFailing { secs });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_serving_with_a_healthy_unsaturated_store() {
        let m = Arc::new(Metrics::default());
        let h = Health::new(m.clone(), 4, 100);
        assert_eq!(h.readiness(), Err(NotReady::Starting));
        h.set_phase(Phase::Serving);
        assert_eq!(h.readiness(), Ok(()));

        Metrics::set(&m.store_failing, 1);
        assert_eq!(h.readiness(), Err(NotReady::StoreFailing));
        Metrics::set(&m.store_failing, 0);

        Metrics::set(&m.queue_depth, 4);
        assert_eq!(
            h.readiness(),
            Err(NotReady::QueueFull {
                depth: 4,
                capacity: 4
            })
        );
        Metrics::set(&m.queue_depth, 3);
        assert_eq!(h.readiness(), Ok(()));

        h.set_witness_grace(60);
        let now = u64::try_from(crate::now_ns() / 1_000_000_000).unwrap();
        Metrics::set(&m.witness_failing_since_timestamp_seconds, now - 10);
        assert_eq!(h.readiness(), Ok(()), "failing for less than the grace");
        Metrics::set(&m.witness_failing_since_timestamp_seconds, now - 100);
        assert!(matches!(
            h.readiness(),
            Err(NotReady::WitnessFailing { secs }) if secs >= 100
        ));
        Metrics::set(&m.witness_failing_since_timestamp_seconds, 0);

        Metrics::set(&m.buffered_rows, 100);
        assert_eq!(h.readiness(), Err(NotReady::BufferFull { rows: 100 }));
        Metrics::set(&m.buffered_rows, 0);

        h.set_phase(Phase::Stopping);
        assert_eq!(h.readiness(), Err(NotReady::Stopping));
    }
}
