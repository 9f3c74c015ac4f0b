//! The store's single writer: group commit into the WAL, then sealing into
//! Parquet and the manifest.
//!
//! Receivers hand a checked [`Batch`] to [`Ingest::submit`], which resolves
//! only once the batch is in the write-ahead log and fsynced: that is the
//! moment the collector may acknowledge. One thread owns the WAL; requests
//! that arrive while it is syncing are committed together by the next fsync.
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

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audit_schema::{AuditRecord, Stamp, ViolationRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::manifest::{self, Body, FileEntry, Manifest};
use crate::metrics::Metrics;
use crate::now_ns;
use crate::partition::{PartitionWriter, SealedFile};
use crate::wal::{self, Wal};

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

/// Settings of the store.
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
}

impl IngestConfig {
    /// Defaults for a data dir and collector id.
    pub fn new(data_dir: impl Into<PathBuf>, collector_id: impl Into<String>) -> Self {
        IngestConfig {
            data_dir: data_dir.into(),
            collector_id: collector_id.into(),
            seal_rows: 200_000,
            seal_interval: Duration::from_secs(60),
            queue_depth: 1024,
            max_buffered_rows: 2_000_000,
            dedup_window: Duration::from_secs(24 * 3600),
            digest_interval: Duration::from_secs(3600),
        }
    }
}

struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<Committed, IngestError>>,
}

enum Msg {
    Append(Job),
    Shutdown(oneshot::Sender<Result<(), IngestError>>),
}

/// One WAL frame: the rows of one request, stamped.
#[derive(Serialize, Deserialize)]
struct Frame {
    actions: Vec<(AuditRecord, Stamp)>,
    violations: Vec<(ViolationRecord, Stamp)>,
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
        let writer = Writer::recover(cfg.clone(), metrics.clone())?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue_depth);
        let thread = std::thread::Builder::new()
            .name("audit-ingest".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| IngestError::Storage(format!("cannot start writer thread: {e}")))?;
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
        let (done, rx) = oneshot::channel();
        match self.tx.try_send(Msg::Append(Job { batch, done })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                Metrics::add(&self.metrics.overloaded_total, 1);
                return Err(IngestError::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => return Err(IngestError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(IngestError::ShuttingDown))
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

struct Writer {
    /// Held for the writer's life: one process appends to a manifest.
    _lock: fs::File,
    cfg: IngestConfig,
    metrics: Arc<Metrics>,
    wal: Wal,
    manifest: Manifest,
    partitions: PartitionWriter,
    next_seq: u64,
    /// Highest seq committed by a seal.
    sealed_seq: u64,
    actions: Vec<(AuditRecord, Stamp)>,
    violations: Vec<(ViolationRecord, Stamp)>,
    oldest: Option<Instant>,
    seen: HashMap<String, Instant>,
    last_prune: Instant,
    /// End of the period the last digest covered, ns.
    last_digest_ns: i64,
    /// Set when the WAL could not be cut back after a failed write: its tail
    /// may hold unacknowledged frames, so nothing more is appended to it.
    wal_broken: bool,
}

fn storage(context: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Storage(format!("{context}: {e}"))
}

impl Writer {
    fn recover(cfg: IngestConfig, metrics: Arc<Metrics>) -> Result<Writer, IngestError> {
        let root = &cfg.data_dir;
        fs::create_dir_all(root).map_err(|e| storage(&root.display().to_string(), e))?;
        let lock = crate::retention::lock(root, &cfg.collector_id)
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        let manifest = Manifest::open(&manifest::manifest_path(root, &cfg.collector_id))
            .map_err(|e| storage("manifest", e))?;
        remove_uncommitted_files(root, &cfg.collector_id, &manifest)?;
        let sealed_seq = manifest.last_seq().unwrap_or(0);
        let wal_dir = root.join("wal").join(&cfg.collector_id);
        let now = Instant::now();
        let mut seen = recent_event_ids(root, &manifest, cfg.dedup_window, now);
        let Unsealed {
            actions,
            violations,
            max_seq,
        } = read_unsealed(&wal_dir, sealed_seq)?;
        seen.extend(actions.iter().map(|(r, _)| (r.event_id.clone(), now)));
        let max_seq = max_seq.max(sealed_seq);
        let recovered = actions.len() + violations.len();
        let wal = Wal::create(&wal_dir, max_seq + 1).map_err(|e| storage("wal", e))?;
        let mut w = Writer {
            _lock: lock,
            partitions: PartitionWriter::new(root.clone(), cfg.collector_id.clone()),
            cfg,
            metrics,
            wal,
            manifest,
            next_seq: max_seq + 1,
            sealed_seq,
            oldest: (recovered > 0).then(Instant::now),
            actions,
            violations,
            seen,
            last_prune: now,
            last_digest_ns: 0,
            wal_broken: false,
        };
        w.last_digest_ns = w.manifest.last_digest_ns().unwrap_or(0);
        if recovered > 0 {
            tracing::info!(
                rows = recovered,
                "recovering acknowledged rows from the WAL"
            );
            w.seal()?;
        }
        // A first digest (or one for the time the collector was down) now.
        w.digest_if_due();
        Ok(w)
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let seal_wait = match self.oldest {
                Some(t) => self.cfg.seal_interval.saturating_sub(t.elapsed()),
                None => self.cfg.seal_interval,
            };
            let first = match rx.recv_timeout(seal_wait.min(self.until_digest())) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if self
                        .oldest
                        .is_some_and(|t| t.elapsed() >= self.cfg.seal_interval)
                    {
                        self.seal_logged();
                    }
                    self.digest_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.seal_logged();
                    return;
                }
            };
            let mut jobs = Vec::new();
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(job) => jobs.push(job),
                    Msg::Shutdown(tx) => shutdown = Some(tx),
                }
                if jobs.len() < 512 && shutdown.is_none() {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(jobs);
            let due = self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.cfg.seal_interval);
            if due || self.buffered() >= self.cfg.seal_rows {
                self.seal_logged();
            }
            if let Some(tx) = shutdown {
                // Requests queued behind the shutdown are answered ShuttingDown
                // when `rx` drops; none of them was acknowledged.
                let _ = tx.send(self.seal());
                return;
            }
        }
    }

    fn buffered(&self) -> usize {
        self.actions.len() + self.violations.len()
    }

    /// Group commit: every job's frame, then one fsync, then the answers.
    fn commit(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        if self.wal_broken {
            for job in jobs {
                let _ = job.done.send(Err(IngestError::Storage(
                    "WAL unusable after a failed write; restart the collector".into(),
                )));
            }
            return;
        }
        if self.buffered() >= self.cfg.max_buffered_rows {
            Metrics::add(&self.metrics.overloaded_total, jobs.len() as u64);
            for job in jobs {
                let _ = job.done.send(Err(IngestError::Overloaded));
            }
            return;
        }
        self.prune_seen();
        let start_len = self.wal.len();
        let start_seq = self.next_seq;
        let received = now_ns();
        let now = Instant::now();
        let mut frames = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        let mut new_ids = Vec::new();
        let mut result: Result<(), IngestError> = Ok(());
        for job in jobs {
            let mut frame = Frame {
                actions: Vec::with_capacity(job.batch.actions.len()),
                violations: Vec::with_capacity(job.batch.violations.len()),
            };
            let mut duplicates = 0;
            for r in job.batch.actions {
                if self.seen.contains_key(&r.event_id) {
                    duplicates += 1;
                    continue;
                }
                self.seen.insert(r.event_id.clone(), now);
                new_ids.push(r.event_id.clone());
                frame.actions.push((r, self.stamp(received)));
            }
            for r in job.batch.violations {
                frame.violations.push((r, self.stamp(received)));
            }
            let stored = frame.actions.len() + frame.violations.len();
            if result.is_ok() && stored > 0 {
                result = encode_frame(&frame)
                    .and_then(|b| self.wal.append(&b).map_err(|e| storage("WAL append", e)));
            }
            frames.push(frame);
            answers.push((job.done, Committed { stored, duplicates }));
        }
        if result.is_ok() {
            result = self.wal.sync().map_err(|e| storage("WAL fsync", e));
            Metrics::add(&self.metrics.wal_fsyncs_total, 1);
        }
        if let Err(e) = result {
            // Withdraw the whole group: none of it is acknowledged.
            if self.wal.truncate(start_len).is_err() {
                self.wal_broken = true;
            }
            self.next_seq = start_seq;
            for id in new_ids {
                self.seen.remove(&id);
            }
            Metrics::add(&self.metrics.storage_errors_total, answers.len() as u64);
            tracing::error!(error = %e, "WAL commit failed; clients will retry");
            for (done, _) in answers {
                let _ = done.send(Err(IngestError::Storage(e.to_string())));
            }
            return;
        }
        for frame in frames {
            Metrics::add(
                &self.metrics.actions_stored_total,
                frame.actions.len() as u64,
            );
            Metrics::add(
                &self.metrics.violations_stored_total,
                frame.violations.len() as u64,
            );
            self.actions.extend(frame.actions);
            self.violations.extend(frame.violations);
        }
        if self.oldest.is_none() && self.buffered() > 0 {
            self.oldest = Some(now);
        }
        for (done, c) in answers {
            Metrics::add(&self.metrics.duplicates_total, c.duplicates as u64);
            let _ = done.send(Ok(c));
        }
    }

    fn stamp(&mut self, received_time_ns: i64) -> Stamp {
        let seq = self.next_seq;
        self.next_seq += 1;
        Stamp {
            received_time_ns,
            seq,
        }
    }

    fn prune_seen(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(60) {
            return;
        }
        let window = self.cfg.dedup_window;
        self.seen.retain(|_, t| t.elapsed() < window);
        self.last_prune = Instant::now();
    }

    fn until_digest(&self) -> Duration {
        let interval = i64::try_from(self.cfg.digest_interval.as_nanos()).unwrap_or(i64::MAX);
        let left = self.last_digest_ns.saturating_add(interval) - now_ns();
        Duration::from_nanos(u64::try_from(left).unwrap_or(0))
    }

    fn digest_if_due(&mut self) {
        if !self.until_digest().is_zero() {
            return;
        }
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
        };
        match self.manifest.append(end, body) {
            Ok(_) => self.last_digest_ns = end,
            Err(e) => tracing::error!(error = %e, "digest append failed; retrying next tick"),
        }
    }

    fn seal_logged(&mut self) {
        if let Err(e) = self.seal() {
            tracing::error!(error = %e, "sealing failed; rows stay in the WAL and sealing will be retried");
        }
    }

    fn seal(&mut self) -> Result<(), IngestError> {
        if self.buffered() == 0 {
            return Ok(());
        }
        let old_segments = self
            .wal
            .rotate(self.next_seq)
            .map_err(|e| storage("WAL rotate", e))?;
        let root = self.cfg.data_dir.clone();
        let files = match self.write_files() {
            Ok(files) => files,
            Err(e) => {
                self.reload_unsealed();
                remove_uncommitted_files(&root, &self.cfg.collector_id, &self.manifest)?;
                return Err(e);
            }
        };
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        let body = Body::Seal {
            seq_first: self.sealed_seq + 1,
            seq_last: self.next_seq - 1,
            files: files.iter().map(file_entry).collect(),
        };
        if let Err(e) = self.manifest.append(now_ns(), body) {
            self.reload_unsealed();
            remove_uncommitted_files(&root, &self.cfg.collector_id, &self.manifest)?;
            return Err(storage("manifest append", e));
        }
        self.sealed_seq = self.next_seq - 1;
        Metrics::add(&self.metrics.sealed_files_total, files.len() as u64);
        Metrics::add(&self.metrics.sealed_rows_total, rows);
        self.oldest = None;
        for seg in &old_segments {
            if let Err(e) = fs::remove_file(seg) {
                tracing::warn!(segment = %seg.display(), error = %e, "could not trim sealed WAL segment; recovery will skip its rows");
            }
        }
        if let Some(dir) = old_segments.first().and_then(|p| p.parent()) {
            let _ = wal::sync_dir(dir);
        }
        tracing::debug!(files = files.len(), rows, "sealed");
        Ok(())
    }

    /// Hands the buffer to the Parquet writer (no copy: if the seal fails,
    /// the rows are read back from the WAL, which still holds them).
    fn write_files(&mut self) -> Result<Vec<SealedFile>, IngestError> {
        let actions = std::mem::take(&mut self.actions);
        let violations = std::mem::take(&mut self.violations);
        let mut files = self
            .partitions
            .seal_audit(actions)
            .map_err(|e| storage("seal audit", e))?;
        files.extend(
            self.partitions
                .seal_violations(violations)
                .map_err(|e| storage("seal violations", e))?,
        );
        Ok(files)
    }

    /// After a failed seal: the unsealed rows, back from the WAL.
    fn reload_unsealed(&mut self) {
        let dir = self.cfg.data_dir.join("wal").join(&self.cfg.collector_id);
        match read_unsealed(&dir, self.sealed_seq) {
            Ok(u) => {
                self.actions = u.actions;
                self.violations = u.violations;
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

/// Event ids of audit files sealed within the dedup window, so that a
/// client resending after a restart still gets no duplicate rows.
fn recent_event_ids(
    root: &Path,
    manifest: &Manifest,
    window: Duration,
    now: Instant,
) -> HashMap<String, Instant> {
    let since = now_ns().saturating_sub(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX));
    let mut seen = HashMap::new();
    for entry in manifest.entries().iter().filter(|e| e.time_ns >= since) {
        let Body::Seal { files, .. } = &entry.body else {
            continue;
        };
        // Remembered as of the seal, so they leave the window on time.
        let age = Duration::from_nanos(u64::try_from(now_ns() - entry.time_ns).unwrap_or(0));
        let at = now.checked_sub(age).unwrap_or(now);
        for f in files.iter().filter(|f| f.path.starts_with("audit/")) {
            match crate::partition::read_event_ids(&root.join(&f.path)) {
                Ok(ids) => seen.extend(ids.into_iter().map(|id| (id, at))),
                Err(e) => {
                    tracing::warn!(file = %f.path, error = %e, "cannot read event ids for deduplication")
                }
            }
        }
    }
    seen
}

/// WAL frame payload format: a tag byte, then the body. Tag 1: postcard
/// (compact binary serde) of [`Frame`].
const FRAME_POSTCARD: u8 = 1;

fn encode_frame(frame: &Frame) -> Result<Vec<u8>, IngestError> {
    let mut out = vec![FRAME_POSTCARD];
    postcard::to_io(frame, &mut out).map_err(|e| storage("encode WAL frame", e))?;
    Ok(out)
}

fn decode_frame(bytes: &[u8]) -> Result<Frame, String> {
    match bytes.split_first() {
        Some((&FRAME_POSTCARD, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
        Some((tag, _)) => Err(format!("unknown frame format {tag}")),
        None => Err("empty frame".into()),
    }
}

/// Rows in the WAL that no committed seal covers.
struct Unsealed {
    actions: Vec<(AuditRecord, Stamp)>,
    violations: Vec<(ViolationRecord, Stamp)>,
    /// Highest seq seen in the WAL (sealed or not; 0 when empty).
    max_seq: u64,
}

fn read_unsealed(wal_dir: &Path, sealed_seq: u64) -> Result<Unsealed, IngestError> {
    let mut u = Unsealed {
        actions: Vec::new(),
        violations: Vec::new(),
        max_seq: 0,
    };
    for (_, path) in wal::segments(wal_dir).map_err(|e| storage("wal", e))? {
        let replay = wal::replay(&path).map_err(|e| storage(&path.display().to_string(), e))?;
        if replay.torn_bytes > 0 {
            tracing::warn!(segment = %path.display(), bytes = replay.torn_bytes, "cut a torn WAL tail (never acknowledged)");
        }
        for bytes in replay.frames {
            let frame = decode_frame(&bytes)
                .map_err(|e| storage(&format!("{}: undecodable frame", path.display()), e))?;
            for (r, s) in frame.actions {
                u.max_seq = u.max_seq.max(s.seq);
                if s.seq > sealed_seq {
                    u.actions.push((r, s));
                }
            }
            for (r, s) in frame.violations {
                u.max_seq = u.max_seq.max(s.seq);
                if s.seq > sealed_seq {
                    u.violations.push((r, s));
                }
            }
        }
    }
    Ok(u)
}

fn file_entry(f: &SealedFile) -> FileEntry {
    FileEntry {
        path: f.path.to_string_lossy().replace('\\', "/"),
        sha256: f.sha256.clone(),
        rows: f.rows,
        seq_min: f.seq_min,
        seq_max: f.seq_max,
        time_min_ns: f.time_min_ns,
        time_max_ns: f.time_max_ns,
        bytes: f.bytes,
    }
}

/// Our files that no committed seal lists (and temp files): the remains of
/// a seal interrupted before its manifest entry. Their rows are still in
/// the WAL and are sealed again.
fn remove_uncommitted_files(
    root: &Path,
    collector_id: &str,
    manifest: &Manifest,
) -> Result<(), IngestError> {
    let committed: std::collections::HashSet<&str> = manifest
        .entries()
        .iter()
        .filter_map(|e| match &e.body {
            Body::Seal { files, .. } => Some(files.iter().map(|f| f.path.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    let ours = format!("part-{collector_id}-");
    for dataset in ["audit", "violations"] {
        for path in walk(&root.join(dataset)) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let temp = name.starts_with(&format!(".{ours}"));
            let uncommitted = name.starts_with(&ours) && !committed.contains(rel.as_str());
            if temp || uncommitted {
                tracing::warn!(file = %rel, "removing a file of an unfinished seal");
                fs::remove_file(&path).map_err(|e| storage(&rel, e))?;
            }
        }
    }
    Ok(())
}

/// All files under `dir`, recursively; a missing dir has none.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
