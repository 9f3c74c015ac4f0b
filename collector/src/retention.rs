//! Retention: which sealed files a policy lets go, and deleting them so
//! that the deletion is itself evidence.
//!
//! Each deletion is appended to the collector's manifest (hash-chained)
//! *before* the file is unlinked, so `verify` tells a policy deletion from
//! a missing file. A crash between the two leaves a recorded deletion whose
//! file is still there; the next run finishes it. The policy itself is
//! recorded first, signed by the operator's key, and legal holds are
//! signed entries too ([`crate::policy_chain`]): a deletion no signed
//! policy allows is a `verify` finding, whoever appended it.
//!
//! ```toml
//! [retention]
//! min_days = 30        # never delete anything younger, whatever is asked
//! max_days = 400       # delete once the newest row of a file is older
//! legal_holds = [{ from = "2026-01-01", to = "2026-03-31", reason = "case 1142" }]
//! operator_keys = ["operator+1a2b3c4d+AQ…"]   # public keys from `keygen`
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Days, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::checkpoint::NoteSigner;
use crate::manifest::{self, Body, FileEntry, Manifest};
use crate::policy_chain::{self, Hold, Policy};

/// A date range (inclusive) whose data must not be deleted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LegalHold {
    /// First day held (UTC).
    pub from: NaiveDate,
    /// Last day held (UTC).
    pub to: NaiveDate,
    /// Why (case, ticket).
    #[serde(default)]
    pub reason: String,
}

/// The retention policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Nothing younger than this many days is ever deleted.
    pub min_days: u64,
    /// Files whose newest row is older than this many days are deleted;
    /// `None` keeps everything.
    pub max_days: Option<u64>,
    /// Ranges that block deletion.
    pub legal_holds: Vec<LegalHold>,
    /// Operator public keys (note format, `NAME+HASH+DATA`): `verify`
    /// accepts a deletion only under a policy one of them signed, and
    /// `retention --apply` refuses a key not among them. Empty: no
    /// deletion is valid.
    pub operator_keys: Vec<String>,
}

impl Default for RetentionPolicy {
    /// [`crate::config::Config::default`]'s.
    fn default() -> Self {
        crate::config::Config::default().retention
    }
}

/// Why retention refused to act.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The policy contradicts itself.
    #[error("invalid retention policy: {0}")]
    Policy(String),
    /// A deletion would reach inside the minimum retention.
    #[error("refused: deleting data before {before} reaches inside the minimum retention of {min_days} days (nothing after {floor} may be deleted)")]
    InsideMinimum {
        /// Requested cut-off.
        before: NaiveDate,
        /// The policy's minimum.
        min_days: u64,
        /// Latest day that may be deleted.
        floor: NaiveDate,
    },
    /// The manifest is in use by a running collector.
    #[error("collector {0} is running on this data dir (its manifest lock is held): stop it first; one process at a time writes its manifest (serve, retention --apply, hold)")]
    Locked(String),
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RetentionError {
    let context = context.into();
    move |source| RetentionError::Io { context, source }
}

/// One sealed file the plan is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Collector whose manifest lists it.
    pub collector_id: String,
    /// The file as sealed.
    pub file: FileEntry,
    /// Day of its newest row (UTC).
    pub newest_day: NaiveDate,
    /// Whether the deletion is already recorded and only the unlink is left.
    pub pending: bool,
}

/// What a run would do.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Files whose newest row is before this day expire.
    pub cutoff: Option<NaiveDate>,
    /// To delete.
    pub delete: Vec<Candidate>,
    /// Expired but kept, with the hold that keeps them.
    pub held: Vec<(Candidate, String)>,
}

fn day(ns: i64) -> NaiveDate {
    DateTime::from_timestamp_nanos(ns).date_naive()
}

/// Works out what `policy` deletes on `today`; `before` asks for an
/// earlier cut-off than `max_days`, refused inside `min_days`.
pub fn plan(
    root: &Path,
    policy: &RetentionPolicy,
    today: NaiveDate,
    before: Option<NaiveDate>,
) -> Result<Plan, RetentionError> {
    if policy.max_days.is_some_and(|m| m < policy.min_days) {
        return Err(RetentionError::Policy(format!(
            "max_days ({}) is less than min_days ({})",
            policy.max_days.unwrap_or_default(),
            policy.min_days
        )));
    }
    let floor = today
        .checked_sub_days(Days::new(policy.min_days))
        .unwrap_or(NaiveDate::MIN);
    if let Some(b) = before {
        if b > floor {
            return Err(RetentionError::InsideMinimum {
                before: b,
                min_days: policy.min_days,
                floor,
            });
        }
    }
    let cutoff = before.or_else(|| {
        policy
            .max_days
            .and_then(|m| today.checked_sub_days(Days::new(m)))
    });
    let mut out = Plan {
        cutoff,
        ..Plan::default()
    };
    let all = manifest::read_all(root).map_err(io(root.join("manifest").display().to_string()))?;
    for (collector_id, entries) in all {
        // Holds recorded in the chain keep their files whatever the
        // config says; the config's add to them.
        let holds: Vec<LegalHold> = policy
            .legal_holds
            .iter()
            .cloned()
            .chain(crate::policy_chain::active_holds(&entries))
            .collect();
        let deleted: BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| match &e.body {
                Body::Delete { file, .. } => Some(file.path.as_str()),
                _ => None,
            })
            .collect();
        for e in &entries {
            let Body::Seal { files, .. } = &e.body else {
                continue;
            };
            for f in files {
                let pending = deleted.contains(f.path.as_str());
                if pending && !root.join(&f.path).exists() {
                    continue; // already gone, as recorded
                }
                let c = Candidate {
                    collector_id: collector_id.clone(),
                    file: f.clone(),
                    newest_day: day(f.time_max_ns),
                    pending,
                };
                if pending {
                    out.delete.push(c);
                    continue;
                }
                if cutoff.is_none_or(|cut| c.newest_day >= cut) {
                    continue;
                }
                let (first, last) = (day(f.time_min_ns), c.newest_day);
                match holds.iter().find(|h| first <= h.to && h.from <= last) {
                    Some(h) => out.held.push((
                        c,
                        format!("legal hold {}..{} {}", h.from, h.to, h.reason)
                            .trim()
                            .to_owned(),
                    )),
                    None => out.delete.push(c),
                }
            }
        }
    }
    Ok(out)
}

/// The lock a running collector holds on its manifest.
pub fn lock_path(root: &Path, collector_id: &str) -> PathBuf {
    root.join("manifest").join(format!("{collector_id}.lock"))
}

/// A collector's manifest lock, released when dropped.
#[derive(Debug)]
pub struct ManifestLock(File);

impl Drop for ManifestLock {
    fn drop(&mut self) {
        // Unlock before closing: a child process forked meanwhile (by a
        // test harness, or an application embedding the collector) holds a
        // copy of the descriptor until it execs, and the lock would outlive
        // this holder by that long; the next start would find it held.
        let _ = self.0.unlock();
    }
}

/// Takes a collector's manifest lock, or says who holds it.
pub fn lock(root: &Path, collector_id: &str) -> Result<ManifestLock, RetentionError> {
    let path = lock_path(root, collector_id);
    if let Some(dir) = path.parent() {
        crate::fsio::create_dir_synced(dir).map_err(io(dir.display().to_string()))?;
    }
    let file = File::create(&path).map_err(io(path.display().to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(ManifestLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(RetentionError::Locked(collector_id.to_owned()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(path.display().to_string())(e)),
    }
}

/// The operator's signature over the policy a run applies.
#[derive(Debug)]
pub struct Authority<'a> {
    /// The operator's key.
    pub signer: &'a NoteSigner,
    /// The policy's minimum.
    pub min_days: u64,
    /// The policy's maximum.
    pub max_days: Option<u64>,
    /// A one-off cut-off day.
    pub before: Option<NaiveDate>,
}

/// Records a signed policy in a manifest unless the newest one recorded
/// has the same terms.
fn record_policy(m: &mut Manifest, id: &str, auth: &Authority<'_>) -> std::io::Result<()> {
    let policy = Policy::signed(
        auth.signer,
        id,
        m.head(),
        auth.min_days,
        auth.max_days,
        auth.before,
    );
    if policy_chain::last_policy(m.entries()).is_some_and(|p| p.same_terms(&policy)) {
        return Ok(());
    }
    m.append(crate::now_ns(), Body::Policy(policy)).map(|_| ())
}

/// Appends a signed legal hold statement to every collector's manifest
/// (each under its lock); returns the collector ids.
pub fn record_hold(
    root: &Path,
    signer: &NoteSigner,
    hold: &Hold,
) -> Result<Vec<String>, RetentionError> {
    let all = manifest::read_all(root).map_err(io(root.join("manifest").display().to_string()))?;
    let mut done = Vec::new();
    for id in all.into_keys() {
        let _lock = lock(root, &id)?;
        let path = manifest::manifest_path(root, &id);
        let mut m = Manifest::open(&path).map_err(io(path.display().to_string()))?;
        let signed = hold.clone().signed(signer, &id, m.head());
        m.append(crate::now_ns(), Body::Hold(signed))
            .map_err(io(format!("recording legal hold {}", hold.id)))?;
        done.push(id);
    }
    Ok(done)
}

/// Carries out a plan: record the operator-signed policy, then each
/// deletion, then unlink the file.
pub fn apply(
    root: &Path,
    plan: &Plan,
    reason: &str,
    auth: &Authority<'_>,
) -> Result<usize, RetentionError> {
    let mut by_collector: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in &plan.delete {
        by_collector.entry(&c.collector_id).or_default().push(c);
    }
    let mut done = 0;
    for (id, files) in by_collector {
        let _lock = lock(root, id)?;
        let path = manifest::manifest_path(root, id);
        let mut m = Manifest::open(&path).map_err(io(path.display().to_string()))?;
        record_policy(&mut m, id, auth).map_err(io("recording the signed retention policy"))?;
        for c in files {
            if !c.pending {
                let body = Body::Delete {
                    file: c.file.clone(),
                    reason: reason.to_owned(),
                };
                m.append(crate::now_ns(), body)
                    .map_err(io(format!("recording deletion of {}", c.file.path)))?;
            }
            let file = root.join(&c.file.path);
            // Through fsio, then the directory fsync: a deletion reported
            // done stays done after a power loss.
            match crate::fsio::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("deleting {}", c.file.path))(e)),
            }
            if let Some(dir) = file.parent() {
                crate::fsio::sync_dir(dir).map_err(io(dir.display().to_string()))?;
            }
            done += 1;
        }
    }
    Ok(done)
}
