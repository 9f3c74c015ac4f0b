//! The store's single writer: group commit into the WAL, then sealing into
//! Parquet and the manifest.
//!
//! Receivers hand a checked [`Batch`] to [`Ingest::submit`], which resolves
//! only once the batch is in the write-ahead log and fsynced: that is the
//! moment the collector may acknowledge. One thread owns the WAL; requests
//! that arrive while an fsync runs (on a thread of its own) are appended
//! meanwhile and committed together by the next fsync (see `group`).
//! A seal's files are written on a thread of their own too (see `seal`).
//!
//! Sealing (size, age, shutdown) commits in this order, so that a crash at
//! any point loses nothing acknowledged and duplicates nothing:
//! 1. rotate the WAL, so the old segments hold exactly the buffered rows;
//! 2. write the Parquet files (temp name, fsync, rename, read-only);
//! 3. append the seal to the manifest (the commit point);
//! 4. delete the old WAL segments.
//!
//! Recovery undoes an unfinished step 2 (files the manifest does not list are
//! removed), skips WAL rows a committed seal covers, and seals the rest.
//!
//! With an object store ([`IngestConfig::remote`]), step 4 waits until the
//! seal's files and manifest entry are in the store; see the `remote`
//! module for the order of uploads and what a crash at each step leaves.

use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use audit_schema::{AuditRecord, ViolationRecord};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

mod group;
mod recover;
mod remote;
mod seal;
mod writer;

use crate::wal::EncodedRows;
use group::Syncer;
use writer::Writer;

/// Records that passed the checks, ready to store.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Attributed actions.
    pub actions: Vec<AuditRecord>,
    /// Violations (reported by clients or found by the collector).
    pub violations: Vec<ViolationRecord>,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.actions.len() + self.violations.len()
    }

    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a durable commit stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Rows newly stored.
    pub stored: usize,
    /// Rows skipped as already stored (same `event_id`).
    pub duplicates: usize,
}

/// Why a batch was not stored. All are retryable by the client.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The queue or the unsealed buffer is full.
    #[error("collector overloaded: retry later")]
    Overloaded,
    /// The collector is stopping.
    #[error("collector shutting down: retry against another instance or later")]
    ShuttingDown,
    /// The WAL could not be written or synced.
    #[error("storage error: {0}")]
    Storage(String),
}

impl IngestError {
    /// A fixed word for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Overloaded => "overloaded",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::Storage(_) => "storage_error",
        }
    }
}

/// Settings of the store, made from the collector's by
/// [`crate::config::Config::ingest`] (which also checks them); it has no
/// defaults of its own.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// This collector's id (file names, manifest, `collector_id` column).
    pub collector_id: String,
    /// Seal when this many rows are buffered.
    pub seal_rows: usize,
    /// Seal when the oldest buffered row is this old.
    pub seal_interval: Duration,
    /// Requests waiting for the writer before new ones are refused.
    pub queue_depth: usize,
    /// Unsealed rows held before new requests are refused (sealing stuck).
    pub max_buffered_rows: usize,
    /// How long an `event_id` is remembered for deduplication.
    pub dedup_window: Duration,
    /// A digest entry is appended to the manifest this often, sealed or not.
    pub digest_interval: Duration,
    /// Where sealed files and manifest entries go; `None` keeps them in
    /// `data_dir` (the WAL stays there either way).
    pub remote: Option<RemoteTarget>,
    /// Where a signed checkpoint of the manifest head goes at every digest.
    pub witness: Option<crate::witness::WitnessConfig>,
}

/// An object store that receives every seal.
#[derive(Clone, Debug)]
pub struct RemoteTarget {
    /// The dataset's location in the store.
    pub location: crate::store::Location,
    /// S3 Object Lock settings of uploads, if any.
    pub object_lock: Option<crate::store::lock::ObjectLock>,
}

struct Job {
    batch: Batch,
    /// The batch's rows serialized for the WAL by the submitting thread,
    /// so that the single writer only copies them into its frame.
    actions: EncodedRows,
    violations: EncodedRows,
    /// The answer, with the batch handed back: its records are freed on
    /// the submitting thread, not the writer's.
    done: oneshot::Sender<(Result<Committed, IngestError>, Batch)>,
}

enum Msg {
    Append(Job),
    Shutdown(oneshot::Sender<Result<(), IngestError>>),
}

/// Handle to the store's writer thread.
#[derive(Debug)]
pub struct Ingest {
    tx: SyncSender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// Recovers what a previous run left (see module docs), then starts the writer.
    pub fn start(cfg: IngestConfig, metrics: Arc<Metrics>) -> Result<Ingest, IngestError> {
        let (tx, rx) = mpsc::sync_channel(cfg.queue_depth);
        let syncer = Syncer::start().map_err(|e| storage("cannot start WAL sync thread", e))?;
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let m = metrics.clone();
        // Recovery runs on the writer's own thread: with an object store it
        // drives the store's async client there, outside any runtime.
        let thread = std::thread::Builder::new()
            .name("audit-ingest".into())
            .spawn(move || match Writer::recover(cfg, m) {
                Ok(writer) => {
                    let _ = ready_tx.send(Ok(()));
                    writer.run(rx, syncer)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| IngestError::Storage(format!("cannot start writer thread: {e}")))?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(IngestError::Storage("recovery panicked".into())));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Ingest {
            tx,
            thread: Mutex::new(Some(thread)),
            metrics,
        })
    }

    /// Stores a batch; resolves once it is durable.
    pub async fn submit(&self, batch: Batch) -> Result<Committed, IngestError> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let actions =
            EncodedRows::new(&batch.actions).map_err(|e| storage("encode WAL rows", e))?;
        let violations =
            EncodedRows::new(&batch.violations).map_err(|e| storage("encode WAL rows", e))?;
        let (done, rx) = oneshot::channel();
        // Counted before the send so that the writer's decrement (when it
        // takes the job) can never come first.
        Metrics::add(&self.metrics.queue_depth, 1);
        let sent = self.tx.try_send(Msg::Append(Job {
            batch,
            actions,
            violations,
            done,
        }));
        if sent.is_err() {
            Metrics::sub(&self.metrics.queue_depth, 1);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                Metrics::add(&self.metrics.overloaded_total, 1);
                return Err(IngestError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => return Err(IngestError::ShuttingDown),
        }
        match rx.await {
            Ok((result, _spent)) => result,
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }

    /// Seals everything buffered and stops the writer. Blocks; call it from
    /// a blocking context. Later submits fail with `ShuttingDown`.
    pub fn shutdown(&self) -> Result<(), IngestError> {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        // `send` waits for room: shutdown must not be refused as overload.
        let result = match self.tx.send(Msg::Shutdown(tx)) {
            Ok(()) => rx.blocking_recv().unwrap_or(Err(IngestError::ShuttingDown)),
            Err(_) => Err(IngestError::ShuttingDown),
        };
        let _ = thread.join();
        result
    }
}

fn storage(context: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Storage(format!("{context}: {e}"))
}
