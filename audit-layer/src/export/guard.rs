//! The guard the application holds: flush, shutdown, and shutdown on drop.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::stats::AuditStatus;

/// Why a flush or shutdown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The worker did not finish in time; records may still be in flight
    /// (they are not lost: they wait in memory or in the spool).
    #[error("audit export did not finish within {0:?}; see AuditStatus for what was delivered")]
    TimedOut(Duration),
    /// The worker thread is gone (it panicked or was shut down).
    #[error("the audit export worker is not running")]
    WorkerGone,
}

struct WorkerHandle {
    shared: Arc<Shared>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Owns delivery: dropping it (or [`FlushGuard::shutdown`]) sends everything
/// queued to the collector within a bounded time and stops the worker; what
/// the collector cannot take by then waits in the spool.
/// Keep it alive for as long as the application may create audit records,
/// typically as a `let _guard` in `main`.
///
/// Dropping it inside an async runtime (current-thread or multi-thread) or
/// outside any runtime is fine: the worker has its own runtime on its own
/// thread, so the guard only signals it and waits (with a timeout) for the
/// thread to finish.
///
/// ```
/// use std::time::Duration;
/// # let (_layer, guard) = audit_layer::AuditLayer::builder()
/// #     .memory(audit_layer::MemorySink::default()).build().unwrap();
/// guard.flush(Duration::from_secs(1)).unwrap();
/// println!("{:?}", guard.status().snapshot());
/// guard.shutdown(Duration::from_secs(5)).unwrap();
/// ```
#[must_use = "dropping the guard stops audit export; keep it alive (`let _guard = ...`)"]
pub struct FlushGuard {
    worker: Option<WorkerHandle>,
    status: AuditStatus,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard")
            .field("worker", &self.worker.is_some())
            .field("status", &self.status.snapshot())
            .finish()
    }
}

impl FlushGuard {
    /// The guard of a started worker thread.
    pub(super) fn running(
        shared: Arc<Shared>,
        done: Receiver<()>,
        thread: JoinHandle<()>,
        status: AuditStatus,
        shutdown_timeout: Duration,
    ) -> FlushGuard {
        FlushGuard {
            worker: Some(WorkerHandle {
                shared,
                done,
                thread,
            }),
            status,
            shutdown_timeout,
        }
    }

    /// A guard without a worker (the in-memory destination delivers inline).
    pub(crate) fn inline(status: AuditStatus) -> FlushGuard {
        FlushGuard {
            worker: None,
            status,
            shutdown_timeout: Duration::ZERO,
        }
    }

    /// The layer's counters.
    pub fn status(&self) -> AuditStatus {
        self.status.clone()
    }

    /// Waits until every record accepted before this call (and every record
    /// found in the spool at start) has been acknowledged or refused by the
    /// collector. While the collector is unreachable this times out: the
    /// records are not lost, they wait.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = &self.worker else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        let mut st = w.shared.lock();
        let target = st.accepted;
        st.flush_requested = true;
        w.shared.work.notify_one();
        while st.resolved < target {
            if st.worker_gone {
                return Err(FlushError::WorkerGone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FlushError::TimedOut(timeout));
            }
            st = w
                .shared
                .progress
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            // Records queued while we wait may need another nudge past linger.
            if !st.items.is_empty() {
                st.flush_requested = true;
                w.shared.work.notify_one();
            }
        }
        Ok(())
    }

    /// Delivers everything queued and stops the worker, waiting at most
    /// `timeout` (plus the time to write the remainder to the spool).
    /// Records created after this are counted as dropped.
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), FlushError> {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = self.worker.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        {
            let mut st = w.shared.lock();
            st.closed = true;
            st.shutdown = Some(deadline);
        }
        w.shared.work.notify_all();
        w.shared.progress.notify_all();
        // Grace past the deadline for the worker to spill, count and exit.
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        match w.done.recv_timeout(grace) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = w.thread.join();
                Ok(())
            }
            // Leave the thread detached rather than block the caller longer.
            Err(RecvTimeoutError::Timeout) => Err(FlushError::TimedOut(timeout)),
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop(self.shutdown_timeout) {
            eprintln!("audit-layer: {e}");
        }
    }
}
