//! `verify`: recompute everything the manifests promise and report every
//! difference — a file modified, missing, added or renamed; a manifest
//! entry edited, dropped or reordered; a hole in `seq`.
//!
//! What `verify` cannot see on its own: a manifest whose tail was cut off
//! cleanly (with the files it listed) looks like a shorter, intact history.
//! That is what signed checkpoints kept elsewhere are for.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::fsio::walk;
use crate::manifest::{self, Body, Entry, GENESIS};
use crate::partition;
use crate::policy_chain::Replay;

/// One thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Short machine-readable kind, e.g. `file_modified`.
    pub kind: &'static str,
    /// The file or manifest concerned.
    pub path: String,
    /// What exactly.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Manifests checked (one per collector).
    pub manifests: usize,
    /// Manifest entries checked.
    pub entries: usize,
    /// Data files checked.
    pub files: usize,
    /// Rows covered by the checked seals.
    pub rows: u64,
    /// Files deleted by retention (recorded in the chain).
    pub deleted: usize,
    /// Digest entries.
    pub digests: usize,
    /// Per collector, the time up to which everything it acknowledged is
    /// sealed, so covered by this verification (RFC 3339).
    pub sealed_through: Vec<crate::coverage::SealedThrough>,
    /// Checkpoints found in the witness and checked.
    pub witnessed: usize,
    /// Everything wrong; empty means intact.
    pub findings: Vec<Finding>,
    /// What is not wrong but limits what the data proves (a window nobody
    /// was listening, a witness lacking a collector).
    pub warnings: Vec<Finding>,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }

    fn note_sealed(&mut self, collector_id: String, entries: &[Entry]) {
        let through = crate::coverage::sealed_through_ns(entries).map(crate::coverage::rfc3339);
        self.sealed_through.push(crate::coverage::SealedThrough {
            collector_id,
            through,
            gaps: Vec::new(),
        });
    }

    fn warn(&mut self, kind: &'static str, path: impl Into<String>, detail: impl Into<String>) {
        self.warnings.push(Finding {
            kind,
            path: path.into(),
            detail: detail.into(),
        });
    }

    fn add(&mut self, kind: &'static str, path: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            path: path.into(),
            detail: detail.into(),
        });
    }
}

/// What `verify` trusts beyond the data itself.
#[derive(Debug, Default)]
pub struct Options {
    /// Operator keys: a deletion is valid only under a retention policy
    /// one of them signed; none given, no deletion is valid.
    pub operator_keys: Vec<crate::checkpoint::NoteVerifier>,
}

/// Verifies the data dir `root`; a directory without any manifest is
/// refused, not reported intact.
pub fn verify(root: &Path, opts: &Options) -> Result<Report, crate::coverage::CoverageError> {
    crate::coverage::require_local(root)?;
    let mut report = Report::default();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let manifest_dir = root.join("manifest");
    for path in walk(&manifest_dir) {
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        report.manifests += 1;
        let name = path
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match manifest::read(&path) {
            Ok((entries, good_len)) => {
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if len != good_len {
                    report.add(
                        "manifest_torn",
                        &name,
                        format!("{} bytes after the last whole entry", len - good_len),
                    );
                }
                let mut check = |f: &manifest::FileEntry,
                                 seqs: &mut BTreeMap<u64, usize>,
                                 report: &mut Report| {
                    let path = root.join(&f.path);
                    let content = fs::read(&path).map(Bytes::from).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Unread::Missing
                        } else {
                            Unread::Failed(e.to_string())
                        }
                    });
                    check_file(f, &path, content, seqs, report)
                };
                let id = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                let chain = Chain {
                    id: id.unwrap_or_default(),
                    name,
                    entries: &entries,
                };
                chain.check(opts, &mut listed, &mut report, &mut check);
            }
            Err(e) => report.add("manifest_unreadable", &name, e.to_string()),
        }
    }
    for dataset in ["audit", "violations"] {
        for path in walk(&root.join(dataset)) {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let is_data = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'));
            if is_data && !listed.contains(&rel) {
                report.add("file_added", rel, "not listed in any manifest");
            }
        }
    }
    Ok(report)
}

/// Checks a manifest against a verified checkpoint kept elsewhere: the
/// entries it counted must all still be there, ending in the hash it signed.
pub fn check_checkpoint(root: &Path, cp: &crate::checkpoint::Checkpoint, report: &mut Report) {
    let Some(collector_id) = cp.origin.strip_prefix("audit-collector/") else {
        report.add(
            "checkpoint_origin",
            &cp.origin,
            "not an audit-collector checkpoint",
        );
        return;
    };
    let path = manifest::manifest_path(root, collector_id);
    let name = format!("manifest/{collector_id}.jsonl");
    match manifest::read(&path) {
        Ok((entries, _)) => check_checkpoint_entries(&name, &entries, cp, report),
        Err(e) => report.add("manifest_unreadable", &name, e.to_string()),
    }
}

/// [`check_checkpoint`] against entries already read.
pub(crate) fn check_checkpoint_entries(
    name: &str,
    entries: &[Entry],
    cp: &crate::checkpoint::Checkpoint,
    report: &mut Report,
) {
    let size = usize::try_from(cp.size).unwrap_or(usize::MAX);
    if size == 0 {
        return;
    }
    match entries.get(size - 1) {
        None => report.add(
            "manifest_truncated",
            name,
            format!(
                "the signed checkpoint counts {} entries; the manifest has {}",
                cp.size,
                entries.len()
            ),
        ),
        Some(e) if e.hash != cp.head_hex => report.add(
            "checkpoint_mismatch",
            name,
            format!(
                "entry {} hash differs from the signed checkpoint (history rewritten)",
                size - 1
            ),
        ),
        Some(_) => {}
    }
}

/// Checks one file's content against its manifest entry, counting its
/// seqs into `seqs`.
type CheckFile<'a> = dyn FnMut(&manifest::FileEntry, &mut BTreeMap<u64, usize>, &mut Report) + 'a;

/// Why a listed file's content could not be had.
enum Unread {
    /// Not there.
    Missing,
    /// Any other failure, said.
    Failed(String),
}

/// One collector's chain, as read.
struct Chain<'a> {
    id: String,
    name: String,
    entries: &'a [Entry],
}

impl Chain<'_> {
    /// Checks the chain, its files and its policy; notes how far it sealed.
    fn check(
        self,
        opts: &Options,
        listed: &mut BTreeSet<String>,
        report: &mut Report,
        check_file: &mut CheckFile<'_>,
    ) {
        let mut replay = Replay::new(&self.id, &opts.operator_keys, crate::now_ns());
        check_chain(
            &self.name,
            self.entries,
            listed,
            report,
            check_file,
            &mut replay,
        );
        report.note_sealed(self.id, self.entries);
    }
}

fn check_chain(
    name: &str,
    entries: &[Entry],
    listed: &mut BTreeSet<String>,
    report: &mut Report,
    check_file: &mut CheckFile<'_>,
    replay: &mut Replay<'_>,
) {
    let mut prev = GENESIS.to_owned();
    let mut next_seq = 1u64;
    let mut last_digest_end: Option<i64> = None;
    // Deletions come after the seals they undo; collect them first.
    let deleted: BTreeMap<&str, &manifest::FileEntry> = entries
        .iter()
        .filter_map(|e| match &e.body {
            Body::Delete { file, .. } => Some((file.path.as_str(), file)),
            _ => None,
        })
        .collect();
    for (i, e) in entries.iter().enumerate() {
        report.entries += 1;
        let at = format!("{name} entry {i}");
        if e.index != i as u64 {
            report.add(
                "entry_reordered",
                &at,
                format!("index {} at position {i}", e.index),
            );
        }
        if e.prev != prev {
            report.add(
                "chain_broken",
                &at,
                "`prev` is not the previous entry's hash (an entry was dropped, inserted or reordered)",
            );
        }
        if e.compute_hash() != e.hash {
            report.add("entry_edited", &at, "content does not match its hash");
        }
        prev = e.hash.clone();
        for (kind, detail) in replay.step(e) {
            report.add(kind, &at, detail);
        }
        match &e.body {
            Body::Seal {
                seq_first,
                seq_last,
                files,
            } => {
                if *seq_first != next_seq {
                    report.add(
                        "seq_hole",
                        &at,
                        format!("seal starts at seq {seq_first}, expected {next_seq}"),
                    );
                }
                next_seq = seq_last + 1;
                let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
                let mut deleted_rows = 0u64;
                for f in files {
                    listed.insert(f.path.clone());
                    if deleted.contains_key(f.path.as_str()) {
                        // Gone by policy: its rows are accounted by the
                        // (hash-chained) entry, since they cannot be read.
                        deleted_rows += f.rows;
                        report.deleted += 1;
                        continue;
                    }
                    report.files += 1;
                    check_file(f, &mut seqs, report);
                }
                let expected = seq_last + 1 - seq_first;
                let covered = seqs.range(seq_first..=seq_last).count() as u64 + deleted_rows;
                report.rows += covered;
                if covered != expected || seqs.len() as u64 + deleted_rows != covered {
                    report.add(
                        "seq_hole",
                        &at,
                        format!(
                            "seal covers seq {seq_first}..={seq_last} ({expected} rows) but its files hold {} distinct seqs, {covered} in range",
                            seqs.len()
                        ),
                    );
                }
                if let Some((seq, n)) = seqs.iter().find(|(_, n)| **n > 1) {
                    report.add("seq_duplicate", &at, format!("seq {seq} appears {n} times"));
                }
            }
            Body::Digest {
                seq_last,
                period_start_ns,
                period_end_ns,
                ..
            } => {
                report.digests += 1;
                if *seq_last + 1 != next_seq {
                    report.add(
                        "digest_mismatch",
                        &at,
                        format!(
                            "digest says seq {seq_last} sealed, the chain says {}",
                            next_seq - 1
                        ),
                    );
                }
                if last_digest_end.is_some_and(|end| end != *period_start_ns) {
                    report.add(
                        "digest_gap",
                        &at,
                        "period does not start where the previous digest ended",
                    );
                }
                last_digest_end = Some(*period_end_ns);
            }
            Body::Delete { file, .. } => {
                if !listed.contains(&file.path) {
                    report.add(
                        "delete_unknown",
                        &at,
                        format!("deletes {}, which no earlier seal lists", file.path),
                    );
                }
            }
            Body::Gap { from_ns, to_ns, .. } => report.warn(
                "coverage_gap",
                &at,
                format!(
                    "nothing was listening from {} to {} ({} s): no rows there is not proof of absence",
                    crate::coverage::rfc3339(*from_ns),
                    crate::coverage::rfc3339(*to_ns),
                    (to_ns - from_ns) / 1_000_000_000
                ),
            ),
            Body::Policy(_) | Body::Hold(_) => {}
        }
    }
}

fn check_file(
    f: &manifest::FileEntry,
    name: &Path,
    content: Result<Bytes, Unread>,
    seqs: &mut BTreeMap<u64, usize>,
    report: &mut Report,
) {
    let bytes = match content {
        Err(Unread::Missing) => {
            report.add("file_missing", &f.path, "listed in the manifest, not found");
            return;
        }
        Err(Unread::Failed(e)) => {
            report.add("file_unreadable", &f.path, e);
            return;
        }
        Ok(bytes) => bytes,
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != f.sha256 {
        report.add(
            "file_modified",
            &f.path,
            format!("sha256 {sha}, manifest says {}", f.sha256),
        );
        return;
    }
    let stamps = if f.path.starts_with("audit/") {
        partition::read_audit_bytes(bytes, name)
            .map(|rows| rows.into_iter().map(|r| r.1.seq).collect())
    } else {
        partition::read_violations_bytes(bytes, name)
            .map(|rows| rows.into_iter().map(|r| r.1.seq).collect::<Vec<u64>>())
    };
    match stamps {
        Ok(list) => {
            if list.len() as u64 != f.rows {
                report.add(
                    "row_count",
                    &f.path,
                    format!("{} rows, manifest says {}", list.len(), f.rows),
                );
            }
            for s in list {
                *seqs.entry(s).or_default() += 1;
            }
        }
        Err(e) => report.add("file_unreadable", &f.path, e.to_string()),
    }
}

mod remote;
mod witnessed;
pub use remote::{verify_store, VerifyStoreError};
pub use witnessed::check_witness;
