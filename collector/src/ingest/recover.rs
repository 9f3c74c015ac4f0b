//! Start-up recovery: the manifest, the WAL rows no seal covers, and the
//! files an interrupted seal left.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_schema::{AuditRecord, ViolationRecord};

use super::remote::Remote;
use super::writer::Writer;
use super::{storage, IngestConfig, IngestError};
use crate::dedup::Dedup;
use crate::fsio::walk;
use crate::manifest::{self, Body, FileEntry, Manifest};
use crate::metrics::Metrics;
use crate::now_ns;
use crate::partition::{PartitionWriter, SealedFile, Unsealed};
use crate::wal::{self, Frame, Wal};

impl Writer {
    pub(super) fn recover(cfg: IngestConfig, metrics: Arc<Metrics>) -> Result<Writer, IngestError> {
        let root = &cfg.data_dir;
        // Every level above too: an earlier start may have made the data
        // directory and been killed before its fsync.
        crate::fsio::create_dir_synced(root)
            .and_then(|()| crate::fsio::sync_ancestors(root))
            .map_err(|e| storage(&root.display().to_string(), e))?;
        let lock = crate::retention::lock(root, &cfg.collector_id)
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        // The WAL's and the manifest's directories, every level: an earlier
        // start may have created them and failed (or been killed) before
        // their names were durable, and the next would then trust them.
        let wal_dir = root.join("wal").join(&cfg.collector_id);
        let manifest_path = manifest::manifest_path(root, &cfg.collector_id);
        for dir in [Some(wal_dir.as_path()), manifest_path.parent()]
            .into_iter()
            .flatten()
        {
            crate::fsio::create_dir_durable(root, dir)
                .map_err(|e| storage("create directory", e))?;
        }
        let mut manifest = Manifest::open(&manifest_path).map_err(|e| storage("manifest", e))?;
        let remote = match &cfg.remote {
            Some(target) => Some(Remote::connect(target, &cfg.collector_id, &mut manifest)?),
            None => None,
        };
        remove_uncommitted_files(root, &cfg.collector_id, &manifest)?;
        if let Some(r) = &remote {
            r.clean_pushed(&manifest, root);
        }
        count_stored(&manifest, &metrics);
        let sealed_seq = manifest.last_seq().unwrap_or(0);
        let now = Instant::now();
        let (mut actions_seen, mut violations_seen) =
            recent_files(root, &manifest, remote.as_ref(), cfg.dedup_window);
        let WalRows {
            actions,
            violations,
            max_seq,
        } = read_unsealed(&wal_dir, sealed_seq, |violation, id| {
            let seen = if violation {
                &mut violations_seen
            } else {
                &mut actions_seen
            };
            seen.insert(id.to_owned());
        })?;
        let max_seq = max_seq.max(sealed_seq);
        let recovered = actions.len() + violations.len();
        let wal = Wal::create(&wal_dir, max_seq + 1).map_err(|e| storage("wal", e))?;
        let witness = match &cfg.witness {
            Some(w) => {
                let w = crate::witness::Witness::open(w, root, &cfg.collector_id)
                    .map_err(|e| IngestError::Storage(e.to_string()))?;
                tracing::info!(
                    public_key = w.public_key(),
                    "signing a checkpoint to the witness at every digest"
                );
                Some(w)
            }
            None => None,
        };
        let partitions = PartitionWriter::new(root.clone(), cfg.collector_id.clone());
        let mut w = Writer {
            _lock: lock,
            cfg,
            metrics,
            wal,
            manifest,
            next_seq: max_seq + 1,
            sealed_seq,
            oldest: (recovered > 0).then(Instant::now),
            actions,
            violations,
            actions_seen,
            violations_seen,
            last_prune: now,
            last_digest_ns: 0,
            wal_broken: false,
            commit_unknown: false,
            remote,
            unpushed_segments: Vec::new(),
            push_retry_at: None,
            witness,
            sealing: None,
            sealer: super::seal::Sealer::start(partitions)?,
        };
        w.last_digest_ns = w.manifest.last_digest_ns().unwrap_or(0);
        // Before the recovery seal, whose entry would hide the last sign of life.
        w.note_gap();
        if recovered > 0 {
            tracing::info!(
                rows = recovered,
                "recovering acknowledged rows from the WAL"
            );
            w.seal()?;
        }
        if w.remote.as_ref().is_some_and(|r| r.pending(&w.manifest)) {
            tracing::info!("pushing seals committed before the stop to the store");
            // A store that is down now does not stop ingestion: the seals
            // stay local and are pushed on the retry ticks.
            w.push_logged();
        }
        tracing::info!(
            rows = recovered,
            seq_last = w.sealed_seq,
            manifest_entries = w.manifest.entries().len(),
            "recovery finished"
        );
        // A first digest (or one for the time the collector was down) now.
        w.digest_if_due();
        Ok(w)
    }
}

/// What the manifest says is stored and what retention deleted, so that
/// the gauges and counters start from the data dir's state, not from zero.
fn count_stored(manifest: &Manifest, metrics: &Metrics) {
    let (mut stored, mut deleted, mut deletions) = (0u64, 0u64, 0u64);
    for e in manifest.entries() {
        match &e.body {
            Body::Seal { files, .. } => stored += files.iter().map(|f| f.bytes).sum::<u64>(),
            Body::Delete { file, .. } => {
                deleted += file.bytes;
                deletions += 1;
            }
            _ => {}
        }
    }
    Metrics::set(&metrics.stored_bytes, stored.saturating_sub(deleted));
    Metrics::set(&metrics.retention_deletions_total, deletions);
}

/// The files sealed within the dedup window, actions and violations, each
/// remembered by the range of its ids (read once here, then dropped), so
/// that a client resending after a restart still gets no duplicate rows.
fn recent_files(
    root: &Path,
    manifest: &Manifest,
    remote: Option<&Remote>,
    window: Duration,
) -> (Dedup, Dedup) {
    let mut actions = Dedup::new(window, crate::dedup::DEFAULT_CACHE_BYTES);
    let mut violations = Dedup::new(window, crate::dedup::DEFAULT_CACHE_BYTES);
    let since = now_ns().saturating_sub(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX));
    for entry in manifest.entries().iter().filter(|e| e.time_ns >= since) {
        let Body::Seal { files, .. } = &entry.body else {
            continue;
        };
        for f in files {
            let ids = super::writer::read_sealed(root, remote, &f.path).and_then(|bytes| {
                crate::partition::read_event_ids_bytes(bytes, Path::new(&f.path))
                    .map_err(|e| e.to_string())
            });
            let seen = if f.path.starts_with("audit/") {
                &mut actions
            } else {
                &mut violations
            };
            match ids {
                // Remembered as of the seal, so they leave the window on time.
                Ok(ids) => seen.add_file(entry.time_ns, f.path.clone(), &ids),
                Err(e) => {
                    tracing::warn!(file = %f.path, error = %e, "cannot read event ids for deduplication")
                }
            }
        }
    }
    (actions, violations)
}

/// Rows in the WAL that no committed seal covers.
pub(super) struct WalRows {
    pub(super) actions: Unsealed<AuditRecord>,
    pub(super) violations: Unsealed<ViolationRecord>,
    /// Highest seq seen in the WAL (sealed or not; 0 when empty).
    pub(super) max_seq: u64,
}

/// Reads them, telling `seen` each one's dataset (`true` for a violation)
/// and `event_id`.
pub(super) fn read_unsealed(
    wal_dir: &Path,
    sealed_seq: u64,
    mut seen: impl FnMut(bool, &str),
) -> Result<WalRows, IngestError> {
    let mut u = WalRows {
        actions: Unsealed::default(),
        violations: Unsealed::default(),
        max_seq: 0,
    };
    let segments = wal::segments(wal_dir).map_err(|e| storage("wal", e))?;
    let last = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.into_iter().enumerate() {
        let replay =
            wal::replay(&path, i == last).map_err(|e| storage(&path.display().to_string(), e))?;
        if let Some(saved) = &replay.torn_saved {
            tracing::warn!(
                segment = %path.display(),
                bytes = replay.torn_bytes,
                saved = %saved.display(),
                "cut a torn WAL tail (unacknowledged after a crash; kept beside the segment)"
            );
        }
        for bytes in replay.frames {
            let frame = Frame::decode(&bytes)
                .map_err(|e| storage(&format!("{}: undecodable frame", path.display()), e))?;
            for (r, s) in frame.actions {
                u.max_seq = u.max_seq.max(s.seq);
                if s.seq > sealed_seq {
                    seen(false, &r.event_id);
                    u.actions.push(&r, s);
                }
            }
            for (r, s) in frame.violations {
                u.max_seq = u.max_seq.max(s.seq);
                if s.seq > sealed_seq {
                    seen(true, &r.event_id);
                    u.violations.push(&r, s);
                }
            }
        }
    }
    Ok(u)
}

pub(super) fn file_entry(f: &SealedFile) -> FileEntry {
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
pub(super) fn remove_uncommitted_files(
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
                crate::fsio::remove_file(&path).map_err(|e| storage(&rel, e))?;
            }
        }
    }
    Ok(())
}
