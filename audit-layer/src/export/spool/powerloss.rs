//! Power loss on the spool: every crash point of appends, a restart and
//! resends (the harness is [`audit_durable::powerloss`]).
//!
//! The promises checked on each state a power loss could leave: the spool
//! opens; every record whose append returned is read back exactly once,
//! unless its segment was deleted after delivery; nothing read back
//! differs from what was written; and records the segment names promise
//! but no valid frame holds are counted as lost, never resent garbled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use audit_durable::fsio::Op;
use audit_durable::powerloss::model::{materialize, Keep, Model, Rng, State};
use audit_durable::powerloss::{acked, explore, scratch, states_per_point, Event, Recorder};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Spool;

const MAX_BYTES: u64 = 1 << 20;
/// Marks: a record whose append returned; one the collector acknowledged
/// (resent); one whose segment's deletion returned after that.
const SPOOLED: &str = "spooled:";
const SENT: &str = "sent:";
const DELETED: &str = "deleted:";

/// The spool's directory under the recorded root: two levels that do not
/// exist yet, so their creation is part of the record.
fn spool_dir(root: &Path) -> std::path::PathBuf {
    root.join("app").join("spool")
}

fn resource() -> Resource {
    Resource {
        attributes: vec![KeyValue {
            key: "service.instance.id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("instance-1".into())),
            }),
            ..KeyValue::default()
        }],
        ..Resource::default()
    }
}

/// Record `i`: its id is its time; its body makes frames long enough to
/// tear in many places.
fn record(i: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: i,
        event_name: "audit.action".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "record {i} {}",
                "x".repeat(40)
            ))),
        }),
        ..LogRecord::default()
    }
}

fn id(r: &LogRecord) -> String {
    r.time_unix_nano.to_string()
}

/// Drives a spool under `root` while recording: appends in one process,
/// then a restart, resends of the oldest segments, more appends.
fn recorded_run(root: &Path) -> Vec<Event> {
    let rec = Recorder::start(root);
    let res = resource();
    let mut next = 0;
    let mut append = |spool: &mut Spool, n: u64| {
        let records: Vec<_> = (next..next + n).map(record).collect();
        next += n;
        assert!(
            spool.append_records(&res, &records).expect("append"),
            "fits"
        );
        rec.ack(records.iter().map(|r| format!("{SPOOLED}{}", id(r))));
    };
    let resend = |spool: &mut Spool| {
        let batch = spool.head().expect("a segment").expect("readable");
        let records = batch.records.decoded();
        let ids = || records.iter().map(id);
        rec.ack(ids().map(|id| format!("{SENT}{id}")));
        spool.pop_head().expect("pop");
        rec.ack(ids().map(|id| format!("{DELETED}{id}")));
    };
    {
        let mut spool = Spool::open(&spool_dir(root), MAX_BYTES).expect("open");
        for n in [3, 1, 2, 4] {
            append(&mut spool, n);
        }
        resend(&mut spool);
    }
    // The application restarts during the outage.
    let mut spool = Spool::open(&spool_dir(root), MAX_BYTES).expect("reopen");
    append(&mut spool, 2);
    resend(&mut spool);
    resend(&mut spool);
    append(&mut spool, 1);
    append(&mut spool, 5);
    resend(&mut spool);
    drop(spool);
    rec.finish()
}

/// What a restarted spool resends from `state`.
struct Resent {
    /// Times each record id was read back.
    records: BTreeMap<String, usize>,
    /// Records counted as lost.
    lost: u64,
}

/// Opens the spool on `state` and resends everything, checking that each
/// record read back is one that was written, with its resource.
fn resend_all(state: &State) -> Result<Resent, String> {
    let dir = scratch();
    materialize(state, dir.path()).map_err(|e| format!("cannot build the state: {e}"))?;
    let mut spool =
        Spool::open(&spool_dir(dir.path()), MAX_BYTES).map_err(|e| format!("open: {e}"))?;
    let mut out = Resent {
        records: BTreeMap::new(),
        lost: 0,
    };
    while let Some(batch) = spool.head() {
        let batch = batch.map_err(|e| format!("read: {e}"))?;
        if batch.records.len() != 0 && batch.resource != resource() {
            return Err("resent under a garbled resource".into());
        }
        for r in &batch.records.decoded() {
            if *r != record(r.time_unix_nano) {
                return Err(format!("record {} resent garbled", id(r)));
            }
            *out.records.entry(id(r)).or_default() += 1;
        }
        out.lost += batch.lost;
        spool.pop_head().map_err(|e| format!("pop: {e}"))?;
    }
    Ok(out)
}

/// The ids in `marks` under `kind`.
fn marked<'a>(marks: &'a BTreeSet<String>, kind: &'a str) -> impl Iterator<Item = &'a str> {
    marks.iter().filter_map(move |m| m.strip_prefix(kind))
}

/// Spooled records not delivered before the crash point: what a restart
/// must resend.
fn owed(marks: &BTreeSet<String>) -> impl Iterator<Item = &str> {
    let sent: BTreeSet<&str> = marked(marks, SENT).collect();
    marked(marks, SPOOLED).filter(move |id| !sent.contains(id))
}

/// Nothing resent twice, and every owed record resent or counted as lost
/// (a segment not yet acknowledged may be counted too: its append did not
/// return, its records were still in memory).
fn accounted(resent: &Resent, marks: &BTreeSet<String>) -> Result<(), String> {
    if let Some((id, n)) = resent.records.iter().find(|(_, n)| **n > 1) {
        return Err(format!("record {id} resent {n} times"));
    }
    let missing = owed(marks)
        .filter(|id| !resent.records.contains_key(*id))
        .count() as u64;
    if missing > resent.lost {
        return Err(format!(
            "{missing} spooled records missing, only {} counted as lost",
            resent.lost
        ));
    }
    Ok(())
}

/// The promises of a correctly ordered spool on one crash state.
fn check(state: &State, marks: &BTreeSet<String>) -> Result<(), String> {
    let resent = resend_all(state)?;
    accounted(&resent, marks)?;
    if let Some(id) = owed(marks).find(|id| !resent.records.contains_key(*id)) {
        return Err(format!("spooled record {id} lost"));
    }
    // Between the acknowledgement and the deletion a segment may be resent
    // (the collector stores an event id once); after it, never.
    if let Some(id) = marked(marks, DELETED).find(|id| resent.records.contains_key(*id)) {
        return Err(format!("record {id} resent after its segment was deleted"));
    }
    Ok(())
}

/// Which operations the record must contain for the run to cover a spool
/// append and resend.
fn assert_covers(events: &[Event]) {
    let ops = || {
        events.iter().filter_map(|e| match e {
            Event::Io(op) => Some(op),
            Event::Ack(_) | Event::SyncFailed(_) => None,
        })
    };
    let spooled = |p: &Path| p.extension().is_some_and(|e| e == "spool");
    assert!(ops().any(|op| matches!(op, Op::Rename { to, .. } if spooled(to))));
    assert!(ops().any(|op| matches!(op, Op::Unlink(p) if spooled(p))));
    assert!(ops().any(|op| matches!(op, Op::Mkdir(_))));
}

#[test]
fn every_crash_point_of_spool_appends_and_resends_keeps_what_was_spooled() {
    let dir = scratch();
    let events = recorded_run(dir.path());
    assert_covers(&events);
    let checked = explore(&events, states_per_point(), 0x5b001, check).assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() + 1
    );
    // Most points leave the same files: a segment is whole or absent.
    assert!(events.len() >= 60, "only {} crash points", events.len());
    assert!(checked >= 55, "only {checked} crash states");
}

/// Found by the harness: the spool created its directories without
/// fsyncing their parents, so a power loss after the first append
/// returned could take the directory, and the segment, with it.
#[test]
fn the_first_segment_in_a_new_spool_directory_survives_a_power_loss() {
    let dir = scratch();
    let rec = Recorder::start(dir.path());
    let mut spool = Spool::open(&spool_dir(dir.path()), MAX_BYTES).expect("open");
    assert!(spool
        .append_records(&resource(), &[record(7)])
        .expect("append"));
    let events = rec.finish();
    assert_eq!(resent_after_power_loss(&events), ["7"]);
}

/// The ids resent from what a power loss at the end of `events` leaves
/// when only what was fsynced survives.
fn resent_after_power_loss(events: &[Event]) -> Vec<String> {
    let mut model = Model::default();
    for e in events {
        if let Event::Io(op) = e {
            model.apply(op).expect("every path made through fsio");
        }
    }
    let resent = resend_all(&model.crash(Keep::Durable, &mut Rng::new(0))).expect("resent");
    resent.records.keys().cloned().collect()
}

/// An open whose fsync of the new spool directory's name fails refuses;
/// the next open finds the directory there and must still make its name
/// durable before an append returns.
#[test]
fn a_spool_directory_whose_fsync_failed_is_made_durable_by_the_next_open() {
    let dir = scratch();
    let rec = Recorder::start(dir.path());
    rec.fail_dir_syncs_under("app", 1);
    assert!(
        Spool::open(&spool_dir(dir.path()), MAX_BYTES).is_err(),
        "opened with its directory's fsync failed"
    );
    let mut spool = Spool::open(&spool_dir(dir.path()), MAX_BYTES).expect("open");
    assert!(spool
        .append_records(&resource(), &[record(7)])
        .expect("append"));
    let events = rec.finish();
    assert!(
        events.iter().any(|e| matches!(e, Event::SyncFailed(_))),
        "no fsync failed"
    );
    assert_eq!(resent_after_power_loss(&events), ["7"]);
}

/// The harness can fail, and a torn segment is counted, never resent
/// garbled: the same run with the segments' fsync taken out (a rename may
/// then publish a torn file) loses spooled records, and counts every one
/// it loses.
#[test]
fn without_the_segment_fsync_torn_frames_are_dropped_and_counted() {
    let dir = scratch();
    let events: Vec<Event> = recorded_run(dir.path())
        .into_iter()
        .filter(|e| !matches!(e, Event::Io(Op::Sync(_))))
        .collect();
    let mut counted = 0;
    explore(&events, states_per_point(), 0x7041, |state, marks| {
        let resent = resend_all(state)?;
        counted += resent.lost;
        accounted(&resent, marks)
    })
    .assert_clean();
    assert!(counted > 0, "no state tore a frame");
}

/// `acked` sees every kind of mark; the run makes them all.
#[test]
fn the_run_marks_spooled_sent_and_deleted_records() {
    let dir = scratch();
    let marks = acked(&recorded_run(dir.path()));
    assert_eq!(marked(&marks, SPOOLED).count(), 18);
    assert_eq!(marked(&marks, SENT).count(), 10);
    assert_eq!(marked(&marks, DELETED).count(), 10);
}
