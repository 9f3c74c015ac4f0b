//! The writer thread: group commit, sealing, digests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_schema::{AuditRecord, ViolationRecord};

use super::group::{Group, Syncer};
use super::remote::Remote;
use super::seal::{Sealer, Sealing};
use super::{IngestConfig, IngestError, Job, Msg};

use crate::dedup::Dedup;
use crate::fsio;
use crate::manifest::{Body, Manifest};
use crate::metrics::Metrics;
use crate::now_ns;
use crate::partition::Unsealed;
use crate::wal::Wal;

/// Where the answer to a shutdown goes.
pub(super) type Shutdown = tokio::sync::oneshot::Sender<Result<(), IngestError>>;

/// Owns the WAL, the unsealed buffer and the manifest; runs on its own thread.
pub(super) struct Writer {
    /// Held for the writer's life: one process appends to a manifest.
    pub(super) _lock: crate::retention::ManifestLock,
    pub(super) cfg: IngestConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) wal: Wal,
    pub(super) manifest: Manifest,
    pub(super) next_seq: u64,
    /// Highest seq committed by a seal.
    pub(super) sealed_seq: u64,
    /// Unsealed rows, in columns (see [`Unsealed`] for why).
    pub(super) actions: Unsealed<AuditRecord>,
    pub(super) violations: Unsealed<ViolationRecord>,
    pub(super) oldest: Option<Instant>,
    /// Action ids stored within the dedup window.
    pub(super) actions_seen: Dedup,
    /// Violation ids stored within the dedup window.
    pub(super) violations_seen: Dedup,
    pub(super) last_prune: Instant,
    /// End of the period the last digest covered, ns.
    pub(super) last_digest_ns: i64,
    /// Set when the WAL could not be cut back after a failed write: its tail
    /// may hold unacknowledged frames, so nothing more is appended to it.
    pub(super) wal_broken: bool,
    /// Set when a seal's manifest entry failed its fsync: the entry may be
    /// on disk or not (a power loss can keep the write and lose the cut
    /// that followed it), so the seal's files stay, and nothing more is
    /// acknowledged or sealed until a restart's recovery settles it.
    pub(super) commit_unknown: bool,
    /// The object store seals are pushed to, if any.
    pub(super) remote: Option<Remote>,
    /// WAL segments of sealed rows whose seal is not in the store yet.
    pub(super) unpushed_segments: Vec<PathBuf>,
    /// When a failed push is tried again.
    pub(super) push_retry_at: Option<Instant>,
    /// Where each digest's checkpoint goes, if anywhere.
    pub(super) witness: Option<crate::witness::Witness>,
    /// The seal whose files are being written, if any.
    pub(super) sealing: Option<Sealing>,
    pub(super) sealer: Sealer,
}

/// While a seal runs, up to `seal_rows / SEALING_SHARE` rows committed
/// meanwhile are buffered beside it; then the writer waits for it.
const SEALING_SHARE: usize = 4;

/// How often an idle writer looks whether a seal's files are written.
const SEAL_POLL: Duration = Duration::from_millis(10);

/// Wait before pushing again after a push gave up.
const PUSH_RETRY: Duration = Duration::from_secs(5);

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Msg>, syncer: Syncer) {
        // The group whose fsync is under way, if any (see `group`).
        let mut syncing: Option<Group> = None;
        loop {
            let shutdown = match syncing.take() {
                Some(g) => {
                    let (next, shutdown) = self.append_while_syncing(&rx, &syncer, g);
                    syncing = next.and_then(|n| self.begin_sync(&syncer, n));
                    shutdown
                }
                None => {
                    let first = match self.wait_for_work(&rx) {
                        Some(Ok(m)) => m,
                        Some(Err(())) => return,
                        None => continue,
                    };
                    let (jobs, shutdown) = self.gather(first, &rx);
                    syncing = self
                        .prepare(jobs, 0)
                        .and_then(|g| self.begin_sync(&syncer, g));
                    shutdown
                }
            };
            let due = self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.cfg.seal_interval);
            let unsealed = self.buffered() + syncing.as_ref().map_or(0, Group::rows);
            let full = unsealed >= self.cfg.seal_rows;
            // While a seal runs, rows committed meanwhile are held beside
            // its own: at most a quarter of `seal_rows` of them before the
            // writer waits for it, which bounds the memory.
            let finish = self.seal_written()
                || (self.sealing.is_some() && unsealed >= self.cfg.seal_rows / SEALING_SHARE);
            if due || full || finish || shutdown.is_some() {
                // A seal takes every acknowledged row, and a failed one
                // reads them back from the WAL: no group may be in flight.
                if let Some(g) = syncing.take() {
                    self.settle_now(&syncer, g);
                }
            }
            if let Some(tx) = shutdown {
                // Requests queued behind the shutdown are answered ShuttingDown
                // when `rx` drops; none of them was acknowledged.
                let _ = tx.send(self.seal().and_then(|()| self.push()));
                return;
            }
            if finish {
                self.finish_seal_logged();
            }
            if due || full {
                self.begin_seal_logged();
            }
        }
    }

    /// `first` and the messages queued behind it, up to a group's worth:
    /// the requests, and a shutdown if one came.
    pub(super) fn gather(
        &mut self,
        first: Msg,
        rx: &Receiver<Msg>,
    ) -> (Vec<Job>, Option<Shutdown>) {
        let mut jobs = Vec::new();
        let mut shutdown = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Append(job) => {
                    Metrics::sub(&self.metrics.queue_depth, 1);
                    jobs.push(job)
                }
                Msg::Shutdown(tx) => shutdown = Some(tx),
            }
            if jobs.len() < 512 && shutdown.is_none() {
                next = rx.try_recv().ok();
            }
        }
        (jobs, shutdown)
    }

    /// Blocks for the next message, doing timed work (seal by age, push
    /// retry, digest) as it falls due: `None` after timed work, `Err` when
    /// every sender is gone (everything sealed).
    fn wait_for_work(&mut self, rx: &Receiver<Msg>) -> Option<Result<Msg, ()>> {
        let seal_wait = match self.oldest {
            Some(t) => self.cfg.seal_interval.saturating_sub(t.elapsed()),
            None => self.cfg.seal_interval,
        };
        let push_wait = self.push_retry_at.map_or(Duration::MAX, |t| {
            t.saturating_duration_since(Instant::now())
        });
        // A seal under way is committed soon after its files are written.
        let seal_done_wait = match self.sealing {
            Some(_) => SEAL_POLL,
            None => Duration::MAX,
        };
        let wait = seal_wait
            .min(self.until_digest())
            .min(push_wait)
            .min(seal_done_wait);
        match rx.recv_timeout(wait) {
            Ok(m) => Some(Ok(m)),
            Err(RecvTimeoutError::Timeout) => {
                if self.seal_written() {
                    self.finish_seal_logged();
                }
                if self.push_retry_at.is_some_and(|t| t <= Instant::now()) {
                    self.push_logged();
                }
                if self
                    .oldest
                    .is_some_and(|t| t.elapsed() >= self.cfg.seal_interval)
                {
                    self.seal_logged();
                }
                self.digest_if_due();
                None
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.seal_logged();
                Some(Err(()))
            }
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.actions.len() + self.violations.len()
    }

    /// The ids one dataset has stored within the window.
    pub(super) fn seen(&mut self, violations: bool) -> &mut Dedup {
        if violations {
            &mut self.violations_seen
        } else {
            &mut self.actions_seen
        }
    }

    /// Whether `id` was stored within the window, reading sealed files
    /// (local, else from the store) when its range says it may be in one.
    pub(super) fn is_duplicate(&mut self, violations: bool, id: &str) -> bool {
        let root = &self.cfg.data_dir;
        let remote = self.remote.as_ref();
        let seen = if violations {
            &mut self.violations_seen
        } else {
            &mut self.actions_seen
        };
        seen.contains(id, &|rel| read_sealed(root, remote, rel))
    }

    pub(super) fn prune_seen(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(60) {
            return;
        }
        let now = now_ns();
        self.actions_seen.prune(now);
        self.violations_seen.prune(now);
        self.last_prune = Instant::now();
    }

    fn until_digest(&self) -> Duration {
        let interval = i64::try_from(self.cfg.digest_interval.as_nanos()).unwrap_or(i64::MAX);
        let left = self.last_digest_ns.saturating_add(interval) - now_ns();
        Duration::from_nanos(u64::try_from(left).unwrap_or(0))
    }

    pub(super) fn digest_if_due(&mut self) {
        if !self.until_digest().is_zero() {
            return;
        }
        // Sealing first makes the digest's time a point up to which every
        // acknowledged row is readable ("sealed through" in answers).
        self.seal_logged();
        let seals = self
            .manifest
            .entries()
            .iter()
            .rev()
            .take_while(|e| !matches!(e.body, Body::Digest { .. }))
            .filter(|e| matches!(e.body, Body::Seal { .. }))
            .count() as u64;
        let end = now_ns();
        let body = Body::Digest {
            seq_last: self.sealed_seq,
            period_start_ns: self.last_digest_ns,
            period_end_ns: end,
            seals,
            unsealed: self.buffered() as u64,
        };
        match self.manifest.append(end, body) {
            Ok(_) => {
                self.last_digest_ns = end;
                self.push_logged();
                self.witness_checkpoint();
            }
            Err(e) => tracing::error!(error = %e, "digest append failed; retrying next tick"),
        }
    }

    /// At start: if the last digest is older than the interval plus slack,
    /// records the window nobody was listening as a `gap` entry, so that an
    /// empty answer over it is not taken for proof of absence.
    pub(super) fn note_gap(&mut self) {
        let entries = self.manifest.entries();
        let Some(last_digest) = entries
            .iter()
            .rposition(|e| matches!(e.body, Body::Digest { .. }))
        else {
            return;
        };
        let interval = i64::try_from(self.cfg.digest_interval.as_nanos()).unwrap_or(i64::MAX);
        let slack = (interval / 10).max(1_000_000_000);
        let now = now_ns();
        if now.saturating_sub(self.last_digest_ns) <= interval.saturating_add(slack) {
            return;
        }
        let from_ns = entries
            .last()
            .map_or(self.last_digest_ns, |e| e.time_ns.max(self.last_digest_ns));
        let body = Body::Gap {
            last_digest: last_digest as u64,
            from_ns,
            to_ns: now,
        };
        match self.manifest.append(now, body) {
            Ok(_) => tracing::warn!(
                from = %crate::coverage::rfc3339(from_ns),
                to = %crate::coverage::rfc3339(now),
                "coverage gap: nothing was listening since the last digest; recorded in the manifest"
            ),
            Err(e) => tracing::error!(error = %e, "cannot record the coverage gap"),
        }
    }

    /// Writes the signed checkpoint of the manifest head to the witness; a
    /// failure is counted and logged, and ingest goes on.
    fn witness_checkpoint(&mut self) {
        let Some(w) = &self.witness else { return };
        let since = &self.metrics.witness_failing_since_timestamp_seconds;
        match w.record(&self.manifest) {
            Ok(()) => {
                Metrics::add(&self.metrics.witness_checkpoints_total, 1);
                Metrics::set(since, 0);
            }
            Err(e) => {
                Metrics::add(&self.metrics.witness_failures_total, 1);
                if since.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                    Metrics::set(since, u64::try_from(now_ns() / 1_000_000_000).unwrap_or(1));
                }
                tracing::error!(error = %e, "cannot write the checkpoint to the witness; retrying at the next digest");
            }
        }
    }

    /// Pushes what the store lacks; once it has everything, the WAL
    /// segments of the pushed seals go.
    pub(super) fn push(&mut self) -> Result<(), IngestError> {
        let Some(remote) = self.remote.as_mut() else {
            return Ok(());
        };
        if let Err(e) = remote.push(&self.manifest, &self.cfg.data_dir) {
            Metrics::add(&self.metrics.storage_errors_total, 1);
            self.push_retry_at = Some(Instant::now() + PUSH_RETRY);
            return Err(e);
        }
        self.push_retry_at = None;
        let segments = std::mem::take(&mut self.unpushed_segments);
        remove_segments(&segments);
        Ok(())
    }

    pub(super) fn push_logged(&mut self) {
        if let Err(e) = self.push() {
            tracing::error!(error = %e, "pushing sealed files to the store failed; they stay in the data dir and the WAL, retrying in {}s", PUSH_RETRY.as_secs());
        }
    }
}

/// A sealed file's bytes: the local copy, else the store's.
pub(super) fn read_sealed(
    root: &Path,
    remote: Option<&Remote>,
    rel: &str,
) -> Result<bytes::Bytes, String> {
    match fs::read(root.join(rel)) {
        Ok(b) => Ok(b.into()),
        Err(e) => match remote {
            Some(r) if e.kind() == std::io::ErrorKind::NotFound => r.read_bytes(rel),
            _ => Err(format!("{rel}: {e}")),
        },
    }
}

/// Deletes WAL segments whose rows are sealed (for good).
pub(super) fn remove_segments(segments: &[PathBuf]) {
    for seg in segments {
        if let Err(e) = fsio::remove_file(seg) {
            tracing::warn!(segment = %seg.display(), error = %e, "could not trim sealed WAL segment; recovery will skip its rows");
        }
    }
    if let Some(dir) = segments.first().and_then(|p| p.parent()) {
        let _ = fsio::sync_dir(dir);
    }
}
