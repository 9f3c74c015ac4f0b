//! Sealing beside ingest: the Parquet files of a seal are written on a
//! thread of their own while the writer goes on committing requests into
//! a fresh unsealed buffer and the new WAL segment.
//!
//! The order of the module docs still holds for each seal: the WAL is
//! rotated when the seal begins (the old segments hold exactly the rows
//! handed to the seal thread), the files are written, the manifest entry
//! is appended by the writer once the thread is done (the commit point),
//! then the old segments go. One seal runs at a time; a seal that falls
//! due while one runs waits for it. Until its manifest entry, a seal's
//! rows are deduplicated by their exact ids (set apart from the ids
//! acknowledged meanwhile). If it fails, every unsealed row (the seal's
//! and those committed since) is read back from the WAL.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::Instant;

use audit_schema::{AuditRecord, ViolationRecord};

use super::recover::{file_entry, read_unsealed, remove_uncommitted_files};
use super::writer::{remove_segments, Writer};
use super::{storage, IngestError};
use crate::manifest::Body;
use crate::metrics::Metrics;
use crate::now_ns;
use crate::partition::{PartitionWriter, SealedFile, Unsealed};

type Written = Result<Vec<SealedFile>, IngestError>;

/// The thread that writes seals' files: one for the writer's life, so
/// that its allocations stay in one allocator arena instead of a new
/// thread's each seal.
pub(super) struct Sealer {
    tx: SyncSender<(Unsealed<AuditRecord>, Unsealed<ViolationRecord>)>,
    rx: Receiver<Written>,
}

impl Sealer {
    pub(super) fn start(partitions: PartitionWriter) -> Result<Sealer, IngestError> {
        let (tx, jobs) =
            mpsc::sync_channel::<(Unsealed<AuditRecord>, Unsealed<ViolationRecord>)>(1);
        let (done, rx) = mpsc::sync_channel(1);
        // Ends when the writer drops its end.
        std::thread::Builder::new()
            .name("audit-seal".into())
            .spawn(move || {
                while let Ok((actions, violations)) = jobs.recv() {
                    let written = partitions
                        .seal(actions)
                        .map_err(|e| storage("seal audit", e))
                        .and_then(|mut files| {
                            files.extend(
                                partitions
                                    .seal(violations)
                                    .map_err(|e| storage("seal violations", e))?,
                            );
                            Ok(files)
                        });
                    if done.send(written).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| storage("cannot start seal thread", e))?;
        Ok(Sealer { tx, rx })
    }
}

/// A seal whose files are being written.
pub(super) struct Sealing {
    /// What the seal thread answered, once it has.
    written: Option<Written>,
    /// WAL segments of the seal's rows, removed once it is committed.
    old_segments: Vec<PathBuf>,
    /// The seal's last seq.
    seq_last: u64,
    /// When its oldest row came, restored if it fails.
    oldest: Option<Instant>,
}

impl Writer {
    /// Seals every buffered row and waits for it (and for a seal under way).
    pub(super) fn seal(&mut self) -> Result<(), IngestError> {
        self.begin_seal()?;
        self.finish_seal()
    }

    pub(super) fn seal_logged(&mut self) {
        if let Err(e) = self.seal() {
            log_failed(&e);
        }
    }

    /// Whether the seal under way has written its files (so that
    /// [`Writer::finish_seal`] will not wait).
    pub(super) fn seal_written(&mut self) -> bool {
        let Some(s) = self.sealing.as_mut() else {
            return false;
        };
        if s.written.is_none() {
            s.written = match self.sealer.rx.try_recv() {
                Ok(w) => Some(w),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Err(stopped())),
            };
        }
        s.written.is_some()
    }

    /// Starts a seal of every buffered row, once the one under way (if
    /// any) is finished. The caller has no group of requests in flight:
    /// the buffer holds every acknowledged row.
    pub(super) fn begin_seal(&mut self) -> Result<(), IngestError> {
        self.finish_seal()?;
        if self.commit_unknown {
            return Err(IngestError::Storage(COMMIT_UNKNOWN.into()));
        }
        if self.buffered() == 0 {
            return Ok(());
        }
        let old_segments = self
            .wal
            .rotate(self.next_seq)
            .map_err(|e| storage("WAL rotate", e))?;
        let actions = std::mem::take(&mut self.actions);
        let violations = std::mem::take(&mut self.violations);
        self.actions_seen.begin_seal();
        self.violations_seen.begin_seal();
        let oldest = self.oldest.take();
        Metrics::set(&self.metrics.buffered_rows, 0);
        if self.sealer.tx.send((actions, violations)).is_err() {
            // The rows went with the message; the WAL still has them.
            self.oldest = oldest;
            self.seal_failed();
            return Err(stopped());
        }
        self.sealing = Some(Sealing {
            written: None,
            old_segments,
            seq_last: self.next_seq - 1,
            oldest,
        });
        Ok(())
    }

    /// Waits for the seal under way, if any, and commits it (the manifest
    /// entry). The caller has no group of requests in flight.
    pub(super) fn finish_seal(&mut self) -> Result<(), IngestError> {
        let Some(s) = self.sealing.take() else {
            return Ok(());
        };
        let root = self.cfg.data_dir.clone();
        let written = match s.written {
            Some(w) => w,
            None => self.sealer.rx.recv().unwrap_or_else(|_| Err(stopped())),
        };
        let files = match written {
            Ok(files) => files,
            Err(e) => {
                self.oldest = s.oldest.or(self.oldest);
                self.seal_failed();
                remove_uncommitted_files(&root, &self.cfg.collector_id, &self.manifest)?;
                return Err(e);
            }
        };
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        let body = Body::Seal {
            seq_first: self.sealed_seq + 1,
            seq_last: s.seq_last,
            files: files.iter().map(file_entry).collect(),
        };
        if let Err(e) = self.manifest.append(now_ns(), body) {
            self.oldest = s.oldest.or(self.oldest);
            self.seal_failed();
            if self.manifest.uncertain() {
                // The entry was written and its fsync failed: it may be on
                // disk, or come back after a power loss although the
                // append cut it off again. Its files must stay (an entry
                // naming missing files would hide its rows from the
                // recovery), and this process cannot know which it is.
                self.commit_unknown = true;
                Metrics::set(&self.metrics.store_failing, 1);
            } else {
                remove_uncommitted_files(&root, &self.cfg.collector_id, &self.manifest)?;
            }
            return Err(storage("manifest append", e));
        }
        self.sealed_seq = s.seq_last;
        let rels = files
            .iter()
            .map(|f| f.path.to_string_lossy().replace('\\', "/"));
        let (audit, violations): (Vec<String>, Vec<String>) =
            rels.partition(|rel| rel.starts_with("audit/"));
        let sealed_at = now_ns();
        self.actions_seen.sealed(sealed_at, audit);
        self.violations_seen.sealed(sealed_at, violations);
        Metrics::add(&self.metrics.sealed_files_total, files.len() as u64);
        Metrics::add(&self.metrics.sealed_rows_total, rows);
        Metrics::add(&self.metrics.sealed_bytes_total, bytes);
        Metrics::add(&self.metrics.stored_bytes, bytes);
        tracing::info!(
            files = files.len(),
            rows,
            bytes,
            seq_last = self.sealed_seq,
            "sealed"
        );
        if self.remote.is_some() {
            // Committed locally; the rows leave the WAL once in the store.
            self.unpushed_segments.extend(s.old_segments);
            self.push_logged();
        } else {
            remove_segments(&s.old_segments);
        }
        Ok(())
    }

    pub(super) fn begin_seal_logged(&mut self) {
        if let Err(e) = self.begin_seal() {
            log_failed(&e);
        }
    }

    pub(super) fn finish_seal_logged(&mut self) {
        if let Err(e) = self.finish_seal() {
            log_failed(&e);
        }
    }

    /// After a failed seal: every unsealed row (the seal's and those
    /// committed since) back from the WAL, which still holds them all, and
    /// the seal's ids pending again.
    fn seal_failed(&mut self) {
        self.actions_seen.seal_failed();
        self.violations_seen.seal_failed();
        let dir = self.cfg.data_dir.join("wal").join(&self.cfg.collector_id);
        match read_unsealed(&dir, self.sealed_seq, |_, _| {}) {
            Ok(u) => {
                self.actions = u.actions;
                self.violations = u.violations;
                Metrics::set(&self.metrics.buffered_rows, self.buffered() as u64);
            }
            Err(e) => {
                // The rows are safe in the WAL, but this process can no
                // longer seal them in order: stop taking writes; a restart
                // recovers them.
                tracing::error!(error = %e, "cannot re-read the WAL after a failed seal");
                self.wal_broken = true;
            }
        }
    }
}

/// Why nothing is stored or sealed after [`Writer::commit_unknown`] is set.
pub(super) const COMMIT_UNKNOWN: &str =
    "a seal's manifest entry failed its fsync; restart the collector (its recovery keeps the seal or removes its files)";

/// The seal thread is gone (it panicked): rows stay in the WAL.
fn stopped() -> IngestError {
    IngestError::Storage("seal thread stopped".into())
}

fn log_failed(e: &IngestError) {
    tracing::error!(error = %e, "sealing failed; rows stay in the WAL and sealing will be retried");
}
