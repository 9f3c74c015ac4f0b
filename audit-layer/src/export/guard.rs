//! The guard the application holds: flush, shutdown, and shutdown on drop.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::stats::AuditStatus;

/// Why a flush or shutdown did not complete, or completed with losses.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Not every record was acknowledged or refused in time. The records
    /// still wait: in the spool when there is one (durable), otherwise in
    /// memory only, where they are lost if the process exits before the
    /// collector answers. [`AuditStatus`] says how many and why
    /// (`queued`, `spooled`, `last_error`).
    #[error("audit export did not finish within {0:?}; see AuditStatus for what was delivered")]
    TimedOut(Duration),
    /// Audit records were lost: dropped with the queue and spool full,
    /// unreadable in the spool, or (at shutdown) not delivered with no
    /// spool room to keep them.
    #[error("{0}")]
    Lost(Loss),
    /// The worker thread is gone (it panicked or was shut down).
    #[error("the audit export worker is not running")]
    WorkerGone,
}

/// How many records were lost, and the last delivery error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Dropped: the memory queue and the spool were full
    /// ([`AuditStatus::dropped`]); reported to the collector as a
    /// violation record once delivery resumes.
    pub dropped: u64,
    /// Not delivered and not kept: still queued at shutdown with the
    /// collector not answering and no spool room, or unreadable in the
    /// spool ([`AuditStatus::export_failures`]).
    pub failed: u64,
    /// The last delivery error, if any ([`AuditStatus::last_error`]).
    pub last_error: Option<String>,
}

impl Loss {
    /// Every lost record.
    pub fn total(&self) -> u64 {
        self.dropped + self.failed
    }

    /// Losses counted in `status`, minus those already returned (`seen`).
    fn since(status: &AuditStatus, seen: &Loss) -> Option<Loss> {
        let loss = Loss {
            dropped: status.dropped().saturating_sub(seen.dropped),
            failed: status.export_failures().saturating_sub(seen.failed),
            last_error: status.last_error(),
        };
        (loss.total() > 0).then_some(loss)
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} audit records were lost: {} dropped with the queue and spool full, {} not \
             delivered and not kept (no spool room at shutdown, or unreadable in the spool)",
            self.total(),
            self.dropped,
            self.failed
        )?;
        if let Some(e) = &self.last_error {
            write!(f, "; last delivery error: {e}")?;
        }
        Ok(())
    }
}

struct WorkerHandle {
    shared: Arc<Shared>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Owns delivery: dropping it (or [`FlushGuard::shutdown`]) sends everything
/// queued to the collector within a bounded time and stops the worker; what
/// the collector cannot take by then waits in the spool, or, with no spool
/// (or no room in it), is lost: `shutdown` returns [`FlushError::Lost`] and
/// dropping the guard says so on stderr.
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
    /// The losses the last flush returned: each is returned once by
    /// `flush`, and all of them by `shutdown`.
    returned: Mutex<Loss>,
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
            returned: Mutex::new(Loss::default()),
        }
    }

    /// A guard without a worker (the in-memory destination delivers inline).
    pub(crate) fn inline(status: AuditStatus) -> FlushGuard {
        FlushGuard {
            worker: None,
            status,
            shutdown_timeout: Duration::ZERO,
            returned: Mutex::new(Loss::default()),
        }
    }

    /// The layer's counters.
    pub fn status(&self) -> AuditStatus {
        self.status.clone()
    }

    /// Waits until every record accepted before this call (and every record
    /// found in the spool at start) has been acknowledged or refused by the
    /// collector.
    ///
    /// Returns [`FlushError::Lost`] when records were lost since the
    /// previous flush (each loss is returned once), else
    /// [`FlushError::TimedOut`] while the collector does not answer: the
    /// records wait, durably only when there is a spool.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let waited = self.wait_delivered(timeout);
        let mut returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loss) = Loss::since(&self.status, &returned) {
            returned.dropped += loss.dropped;
            returned.failed += loss.failed;
            return Err(FlushError::Lost(loss));
        }
        waited
    }

    fn wait_delivered(&self, timeout: Duration) -> Result<(), FlushError> {
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
                .wait_progress(st, left.min(Duration::from_millis(50)));
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
    ///
    /// Returns [`FlushError::Lost`] when any record was lost during the
    /// exporter's life, including those still queued now that neither the
    /// collector nor a spool took (with no spool, every record not
    /// delivered by the deadline): `?` sees it, and the count is in the
    /// error. Records left in the spool are not lost: the next start with
    /// the same spool directory sends them.
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
                // A panicked worker took what it held with it: not a clean stop.
                if w.thread.join().is_err() {
                    return Err(FlushError::WorkerGone);
                }
            }
            // Leave the thread detached rather than block the caller longer.
            Err(RecvTimeoutError::Timeout) => return Err(FlushError::TimedOut(timeout)),
        }
        match Loss::since(&self.status, &Loss::default()) {
            Some(loss) => Err(FlushError::Lost(loss)),
            None => Ok(()),
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
