//! Power loss on the collector's durable paths: the recorded runs and the
//! checks at every crash point of them (the harness is
//! [`audit_durable::powerloss`]).
//!
//! This file's run covers, in two sessions of the store: group commits of
//! six and four concurrent requests and a single commit, a seal of both
//! datasets (audit and violations, two partitions each) with its WAL
//! truncation at shutdown; a restart, a group commit of three, 24 single
//! commits and a second seal into the existing partitions. `cargo test`
//! checks every crash point with a few states each;
//! `AUDIT_POWERLOSS_STATES=<n>` draws `n` random states per point (in
//! every run of the harness), and the ignored test records eight more
//! sessions (group commits of eight and five) and draws 24 per point.
//! The other runs: [`pipeline`] (a group appended while an fsync runs,
//! and that fsync failing), [`seal_failure`] (seals whose Parquet or
//! manifest fsync fails),
//! [`retention`] (deleting a day's files), [`push`] (seals
//! pushed to an object store) and [`witness`] (key generation and a first
//! checkpoint).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use audit_schema::ViolationRecord;

use audit_durable::fsio::Op;
use audit_durable::powerloss::model::{materialize, Keep, Model, Rng, State};
use audit_durable::powerloss::{acked, explore, scratch, states_per_point, Event, Recorder};

use crate::config::Config;
use crate::ingest::{Batch, Ingest, IngestConfig};
use crate::metrics::Metrics;
use crate::partition::{read_audit, read_violations};
use crate::test_records::agent_action;

mod collector_id;
mod pipeline;
mod push;
mod retention;
mod seal_failure;
mod witness;

const COLLECTOR: &str = "crash";
const T0: i64 = 1_764_000_000_000_000_000;
const DAY: i64 = 86_400_000_000_000;

fn config(root: &Path) -> IngestConfig {
    let mut c = Config {
        data_dir: root.to_owned(),
        ..Config::default()
    }
    .ingest(COLLECTOR)
    .expect("the default settings are valid");
    // Seals happen where the run asks (at shutdown), never on a timer.
    c.seal_rows = 1_000_000;
    c.seal_interval = Duration::from_secs(86_400);
    c.digest_interval = Duration::from_secs(86_400);
    c
}

fn violation(event_id: String, time: i64) -> ViolationRecord {
    ViolationRecord {
        event_id,
        time_ns: time,
        detected_by: "collector".into(),
        missing: vec!["audit.owner.id".into()],
        reason: "agent action without an owner".into(),
        service_name: "svc".into(),
        ..Default::default()
    }
}

/// The runtime a recorded run submits its requests on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// The store under `root`, started (or recovered) with the run's settings.
fn start_store(root: &Path) -> Ingest {
    Ingest::start(config(root), Arc::new(Metrics::default())).expect("start")
}

/// Numbers the event ids of a run.
#[derive(Default)]
struct Ids(u32);

impl Ids {
    /// A batch of `actions` and `violations` on day `day` after `T0`.
    fn batch(&mut self, actions: usize, violations: usize, day: i64) -> Batch {
        let mut next = || {
            self.0 += 1;
            format!("evt-{:04}", self.0)
        };
        let time = T0 + day * DAY;
        Batch {
            actions: (0..actions).map(|_| agent_action(next(), time)).collect(),
            violations: (0..violations).map(|_| violation(next(), time)).collect(),
        }
    }
}

fn ids(b: &Batch) -> impl Iterator<Item = String> + '_ {
    let a = b.actions.iter().map(|r| r.event_id.clone());
    a.chain(b.violations.iter().map(|v| v.event_id.clone()))
}

/// Polls `f` once, so that its request is queued; finished later.
fn queued<F: Future>(f: F) -> Pin<Box<F>> {
    let mut f = Box::pin(f);
    let first = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(
        first.is_pending(),
        "a submit answered before the writer ran"
    );
    f
}

/// Submits `batches` concurrently and marks them acknowledged. The writer
/// blocks at its first write while the record is held, so the others
/// queue behind it and are committed by one fsync (whichever way the first
/// is grouped).
fn group_commit(
    rt: &tokio::runtime::Runtime,
    rec: &Recorder,
    ingest: &Ingest,
    batches: impl Iterator<Item = Batch>,
) {
    let batches: Vec<Batch> = batches.collect();
    let held = rec.hold();
    let answers: Vec<_> = batches
        .iter()
        .map(|b| queued(ingest.submit(b.clone())))
        .collect();
    drop(held);
    for a in answers {
        rt.block_on(a).expect("stored");
    }
    rec.ack(batches.iter().flat_map(ids));
}

/// Submits `batch` alone, waits for its answer and marks it acknowledged;
/// returns it, for the run's list of what must be stored.
fn commit(rt: &tokio::runtime::Runtime, rec: &Recorder, ingest: &Ingest, batch: Batch) -> Batch {
    rt.block_on(ingest.submit(batch.clone())).expect("stored");
    rec.ack(ids(&batch));
    batch
}

/// Runs the store under `root` (empty) while recording; the record. Each
/// of the `extra` sessions adds a group commit of eight, six single
/// commits, a group commit of five and a seal.
fn recorded_run(root: &Path, extra: usize) -> Vec<Event> {
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let start = || start_store(root);

    let ingest = start();
    group_commit(&rt, &rec, &ingest, (0..6).map(|i| next.batch(2, 1, i % 2)));
    commit(&rt, &rec, &ingest, next.batch(1, 1, 0));
    group_commit(&rt, &rec, &ingest, (0..4).map(|i| next.batch(1, i % 2, 1)));
    // Seals both datasets, then truncates the WAL.
    ingest.shutdown().expect("seal");
    drop(ingest);

    let ingest = start();
    group_commit(&rt, &rec, &ingest, (0..3).map(|i| next.batch(2, 1, i % 2)));
    for i in 0..24 {
        commit(&rt, &rec, &ingest, next.batch(1, i % 2, i as i64 % 2));
    }
    ingest.shutdown().expect("seal");
    drop(ingest);

    for _ in 0..extra {
        let ingest = start();
        group_commit(&rt, &rec, &ingest, (0..8).map(|i| next.batch(1, 1, i % 2)));
        for i in 0..6 {
            commit(&rt, &rec, &ingest, next.batch(1, i % 2, 0));
        }
        group_commit(&rt, &rec, &ingest, (0..5).map(|i| next.batch(2, i % 2, 1)));
        ingest.shutdown().expect("seal");
        drop(ingest);
    }
    rec.finish()
}

/// Recovers from `state` under `root` with `cfg`, seals, and stops.
fn recover(state: &State, root: &Path, cfg: IngestConfig) -> Result<(), String> {
    materialize(state, root).map_err(|e| format!("cannot build the state: {e}"))?;
    let ingest = Ingest::start(cfg, Arc::new(Metrics::default()))
        .map_err(|e| format!("recovery refused: {e}"))?;
    ingest
        .shutdown()
        .map_err(|e| format!("sealing after recovery failed: {e}"))
}

fn verify_clean(root: &Path, opts: &crate::verify::Options) -> Result<(), String> {
    let report = crate::verify::verify(root, opts)
        .map_err(|e| format!("verify refused the data dir: {e}"))?;
    if !report.intact() {
        return Err(format!("verify: {:?}", report.findings));
    }
    Ok(())
}

/// How many times each event id is stored under `root`; none twice.
fn stored(root: &Path) -> Result<BTreeMap<String, usize>, String> {
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    let audit = read_audit(root).map_err(|e| e.to_string())?;
    let violations = read_violations(root).map_err(|e| e.to_string())?;
    let all = audit.into_iter().map(|(r, _, _)| r.event_id);
    for id in all.chain(violations.into_iter().map(|(v, _, _)| v.event_id)) {
        *stored.entry(id).or_default() += 1;
    }
    if let Some((id, n)) = stored.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{id} stored {n} times"));
    }
    Ok(stored)
}

/// Recovers from `state`, seals, and checks the promises.
fn recover_and_check(state: &State, acked: &BTreeSet<String>) -> Result<(), String> {
    let dir = scratch();
    let root = dir.path();
    recover(state, root, config(root))?;
    verify_clean(root, &crate::verify::Options::default())?;
    let stored = stored(root)?;
    if let Some(id) = acked.iter().find(|id| !stored.contains_key(*id)) {
        return Err(format!("acknowledged {id} lost"));
    }
    Ok(())
}

/// What the record must contain for the run to cover what it claims.
fn assert_covers(events: &[Event]) {
    let ops: Vec<&Op> = events
        .iter()
        .filter_map(|e| match e {
            Event::Io(op) => Some(op),
            Event::Ack(_) | Event::SyncFailed(_) => None,
        })
        .collect();
    let in_wal = |p: &Path| p.starts_with("wal");
    let mut writes = 0;
    let mut largest_group = 0;
    for op in &ops {
        match op {
            Op::Write { path, .. } if in_wal(path) => writes += 1,
            Op::Sync(path) if in_wal(path) => {
                largest_group = largest_group.max(writes);
                writes = 0;
            }
            _ => {}
        }
    }
    assert!(largest_group >= 2, "no group commit of several requests");
    for dataset in ["audit", "violations"] {
        let published = ops.iter().any(|op| match op {
            Op::Link { to, .. } | Op::Rename { to, .. } => to.starts_with(dataset),
            _ => false,
        });
        assert!(published, "no {dataset} file published");
    }
    let truncated = ops
        .iter()
        .any(|op| matches!(op, Op::Unlink(p) if in_wal(p)));
    assert!(truncated, "no WAL segment deleted");
}

#[test]
fn every_crash_point_of_commits_seals_and_wal_truncation_recovers_everything_acknowledged() {
    let dir = scratch();
    let events = recorded_run(dir.path(), 0);
    assert_covers(&events);
    let checked = explore(&events, states_per_point(), 0x5eed, recover_and_check).assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() + 1
    );
    // The group commits split a little differently from run to run, so
    // the counts vary (about 190 points and 240 states).
    assert!(events.len() >= 150, "only {} crash points", events.len());
    assert!(checked >= 150, "only {checked} crash states");
}

#[test]
#[ignore = "thousands of crash states; minutes"]
fn thousands_of_crash_states() {
    let dir = scratch();
    let events = recorded_run(dir.path(), 8);
    assert_covers(&events);
    let checked = explore(
        &events,
        states_per_point().max(24),
        0xc0ffee,
        recover_and_check,
    )
    .assert_clean();
    eprintln!(
        "{} crash points, {checked} distinct crash states",
        events.len() + 1
    );
    assert!(checked >= 1500, "only {checked} crash states");
}

#[test]
fn a_flipped_byte_in_an_older_wal_segment_is_refused_with_its_file_and_offset() {
    let dir = scratch();
    let events = recorded_run(dir.path(), 0);
    let mut model = Model::default();
    let wal_dir = Path::new("wal").join(COLLECTOR);
    for event in &events {
        let Event::Io(op) = event else { continue };
        model.apply(op).expect("replayable");
        let mut state = model.crash(Keep::Durable, &mut Rng::new(0));
        let segments: Vec<_> = state
            .keys()
            .filter(|p| p.parent() == Some(&wal_dir) && p.extension().is_some_and(|e| e == "log"))
            .cloned()
            .collect();
        let older = match segments.as_slice() {
            [older, _newer, ..] if state[older].as_ref().is_some_and(|b| b.len() > 9) => older,
            _ => continue,
        };
        // A payload byte of the first frame: the checksum fails at byte 0.
        let bytes = state.get_mut(older).and_then(Option::as_mut).expect("file");
        bytes[9] ^= 0xff;
        let name = older.file_name().and_then(|n| n.to_str()).expect("name");
        let target = scratch();
        materialize(&state, target.path()).expect("state");
        let e = Ingest::start(config(target.path()), Arc::new(Metrics::default()))
            .expect_err("corruption refused");
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains("byte 0"), "{msg}");
        return;
    }
    panic!("the run never left two WAL segments on disk");
}

/// The harness can fail: the same record with its fsyncs taken out (what
/// the SIGKILL tests could not tell apart) loses acknowledged records.
#[test]
fn without_its_fsyncs_the_same_run_loses_acknowledged_records() {
    let dir = scratch();
    let events = recorded_run(dir.path(), 0);
    let unsynced: Vec<Event> = events
        .iter()
        .filter(|e| !matches!(e, Event::Io(Op::Sync(_) | Op::SyncDir(_))))
        .cloned()
        .collect();
    let first_ack = unsynced
        .iter()
        .position(|e| matches!(e, Event::Ack(_)))
        .expect("an acknowledgement");
    let mut model = Model::default();
    for e in &unsynced[..=first_ack] {
        if let Event::Io(op) = e {
            model.apply(op).expect("replayable");
        }
    }
    let state = model.crash(Keep::Durable, &mut Rng::new(0));
    let e = recover_and_check(&state, &acked(&unsynced[..=first_ack]))
        .expect_err("nothing was durable");
    assert!(e.contains("lost"), "{e}");
}
