//! Power loss during retention: a seal of two days, then a run that
//! deletes the older day's files, checked at every crash point of the
//! deletion.
//!
//! On each state: the collector restarts and seals; `verify` (with the
//! operator's key) is clean; every acknowledged record of the kept day is
//! stored exactly once; records of the older day are stored at most once,
//! and not at all once the run had returned (a deletion reported done
//! stays done). Then retention runs again and finishes what was recorded:
//! the older day is gone, `verify` is still clean.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, NaiveDate};

use audit_durable::fsio::Op;
use audit_durable::powerloss::model::State;
use audit_durable::powerloss::{explore_from, scratch, states_per_point, Event, Recorder};

use super::{recover, stored, verify_clean, Ids, DAY, T0};
use crate::checkpoint::{NoteSigner, NoteVerifier};
use crate::ingest::{Batch, Ingest};
use crate::retention::{self, Authority, RetentionPolicy};

/// Marks the run's acknowledgements: a record of the older day, one of
/// the kept day, and the end of the retention run (its files are gone).
const OLD: &str = "old:";
const KEPT: &str = "kept:";
const DELETED: &str = "retention returned";

struct Operator {
    signer: NoteSigner,
    public: String,
}

impl Operator {
    fn new() -> Operator {
        let (private, public) = crate::checkpoint::generate("operator").expect("key");
        Operator {
            signer: NoteSigner::parse(&private).expect("private key"),
            public,
        }
    }

    fn verify_options(&self) -> crate::verify::Options {
        crate::verify::Options {
            operator_keys: vec![NoteVerifier::parse(&self.public).expect("public key")],
        }
    }

    /// Deletes every file whose newest row is older than the kept day;
    /// how many files were deleted.
    fn run_retention(&self, root: &Path) -> Result<usize, String> {
        let policy = RetentionPolicy {
            min_days: 0,
            max_days: None,
            legal_holds: Vec::new(),
            operator_keys: vec![self.public.clone()],
        };
        let today = chrono::Utc::now().date_naive();
        let plan = retention::plan(root, &policy, today, Some(kept_day()))
            .map_err(|e| format!("retention plan: {e}"))?;
        let auth = Authority {
            signer: &self.signer,
            min_days: 0,
            max_days: None,
            before: Some(kept_day()),
        };
        retention::apply(root, &plan, "retention: older than the kept day", &auth)
            .map_err(|e| format!("retention apply: {e}"))
    }
}

fn kept_day() -> NaiveDate {
    DateTime::from_timestamp_nanos(T0 + DAY).date_naive()
}

fn marked<'a>(marks: &'a BTreeSet<String>, kind: &'a str) -> impl Iterator<Item = &'a str> {
    marks.iter().filter_map(move |m| m.strip_prefix(kind))
}

/// Stores records of the older and the kept day and seals (not checked
/// here: the store's own run covers it), then deletes the older day; the
/// record and where the deletion starts.
fn recorded_run(root: &Path, operator: &Operator) -> (Vec<Event>, usize) {
    let rt = super::runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let ingest = Ingest::start(super::config(root), Default::default()).expect("start");
    for i in 0..6 {
        let (day, mark) = if i % 2 == 0 { (0, OLD) } else { (1, KEPT) };
        let batch: Batch = next.batch(2, 1, day);
        rt.block_on(ingest.submit(batch.clone())).expect("stored");
        rec.ack(super::ids(&batch).map(|id| format!("{mark}{id}")));
    }
    ingest.shutdown().expect("seal");
    drop(ingest);
    let start = rec.position();
    let deleted = operator.run_retention(root).expect("retention");
    assert_eq!(deleted, 2, "the older day's audit and violations files");
    rec.ack([DELETED.to_owned()]);
    (rec.finish(), start)
}

fn check(state: &State, marks: &BTreeSet<String>, operator: &Operator) -> Result<(), String> {
    let dir = scratch();
    let root = dir.path();
    recover(state, root, super::config(root))?;
    verify_clean(root, &operator.verify_options())?;
    let stored = stored(root)?;
    if let Some(id) = marked(marks, KEPT).find(|id| !stored.contains_key(*id)) {
        return Err(format!("kept record {id} lost"));
    }
    if marks.contains(DELETED) {
        if let Some(id) = marked(marks, OLD).find(|id| stored.contains_key(*id)) {
            return Err(format!("{id} back after retention returned"));
        }
    }
    operator
        .run_retention(root)
        .map_err(|e| format!("second run: {e}"))?;
    verify_clean(root, &operator.verify_options())?;
    let stored = super::stored(root)?;
    if let Some(id) = marked(marks, OLD).find(|id| stored.contains_key(*id)) {
        return Err(format!("{id} still there after the second run"));
    }
    if let Some(id) = marked(marks, KEPT).find(|id| !stored.contains_key(*id)) {
        return Err(format!("kept record {id} lost by the second run"));
    }
    Ok(())
}

#[test]
fn every_crash_point_of_a_retention_run_keeps_the_chain_verifiable_and_the_deletion_done() {
    let operator = Operator::new();
    let dir = scratch();
    let (events, start) = recorded_run(dir.path(), &operator);
    let unlinks = events[start..]
        .iter()
        .filter(|e| matches!(e, Event::Io(Op::Unlink(p)) if !p.starts_with("wal")))
        .count();
    assert_eq!(unlinks, 2, "the run deletes two sealed files");
    let checked = explore_from(&events, start, states_per_point(), 0x7e7e, |s, m| {
        check(s, m, &operator)
    })
    .assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() - start + 1
    );
    assert!(checked >= 8, "only {checked} crash states");
}

/// A deletion reported done must not come back: without the directory
/// fsync after the unlink, a power loss right after the run returned
/// could bring the file back (the harness can tell).
#[test]
fn without_the_directory_fsync_a_deleted_file_comes_back() {
    let operator = Operator::new();
    let dir = scratch();
    let (events, start) = recorded_run(dir.path(), &operator);
    let mut unsynced = events[..start].to_vec();
    unsynced.extend(
        events[start..]
            .iter()
            .filter(|e| !matches!(e, Event::Io(Op::SyncDir(_))))
            .cloned(),
    );
    let failures =
        explore_from(&unsynced, start, 2, 0x7e7f, |s, m| check(s, m, &operator)).failures;
    assert!(
        failures
            .iter()
            .any(|f| f.contains("back after retention returned")),
        "{failures:?}"
    );
}
