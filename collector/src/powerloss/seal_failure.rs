//! Power loss around seals and starts whose fsyncs fail: a Parquet
//! file's, the manifest's, and directories' (a sealed file's, a new day's,
//! a start's WAL and manifest directories). A failed seal must keep every
//! acknowledged row in the WAL (the next start seals them), publish
//! nothing a reader would take for a sealed file, and leave no crash point
//! where an acknowledged id is lost; a failed start must touch nothing.

use super::*;
use crate::ingest::IngestError;

/// Shuts the store down with the next fsync under `dir` failing: the
/// shutdown seal must fail with a storage error.
fn failed_shutdown_seal(rec: &Recorder, ingest: Ingest, dir: &str) {
    rec.fail_syncs_under(dir, 1);
    match ingest.shutdown() {
        Err(IngestError::Storage(e)) => assert!(e.contains("fsync"), "{dir}: {e}"),
        other => panic!("the seal went on after a failed fsync under {dir}: {other:?}"),
    }
}

#[test]
fn a_seal_whose_fsync_fails_keeps_its_rows_for_the_next_start() {
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let start = || start_store(root);
    let submit = |ingest: &Ingest, b: Batch| commit(&rt, &rec, ingest, b);

    // A first seal that succeeds, so the failed ones land beside
    // published files and a manifest with entries.
    let ingest = start();
    let mut all = vec![submit(&ingest, next.batch(2, 1, 0))];
    ingest.shutdown().expect("seal");
    drop(ingest);

    // The Parquet file's fsync fails.
    let ingest = start();
    all.push(submit(&ingest, next.batch(2, 1, 0)));
    all.push(submit(&ingest, next.batch(1, 0, 1)));
    failed_shutdown_seal(&rec, ingest, "audit");

    // The next start recovers them; more arrive; the manifest's fsync
    // (the seal's commit point) fails.
    let ingest = start();
    all.push(submit(&ingest, next.batch(1, 1, 1)));
    failed_shutdown_seal(&rec, ingest, "manifest");

    // Then a start whose seal succeeds.
    let ingest = start();
    all.push(submit(&ingest, next.batch(1, 0, 0)));
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();

    let failed = failed_syncs(&events, |_| true);
    assert!(
        failed.iter().any(|p| p.starts_with("audit"))
            && failed.iter().any(|p| p.starts_with("manifest")),
        "the failed fsyncs are not in the record: {failed:?}"
    );
    every_ack_sealed(root, &events, &all, 0x5ea1);
}

/// After an entry's fsync fails, the handle appends nothing more (the
/// entry may yet be on disk); opening the file again settles it.
#[test]
fn a_manifest_entry_whose_fsync_failed_stops_the_handle_until_reopened() {
    use crate::manifest::{Body, Manifest};
    let dir = scratch();
    let path = dir.path().join("manifest").join("m.jsonl");
    let seal = |first| Body::Seal {
        seq_first: first,
        seq_last: first,
        files: vec![],
    };
    let rec = Recorder::start(dir.path());
    let mut m = Manifest::open(&path).expect("open");
    m.append(1, seal(1)).expect("first entry");
    rec.fail_syncs_under("manifest", 1);
    assert!(
        m.append(2, seal(2)).is_err(),
        "an append whose fsync failed"
    );
    assert!(m.uncertain());
    let refused = m
        .append(3, seal(2))
        .expect_err("appended after an uncertain entry");
    assert!(refused.to_string().contains("reopen"), "{refused}");
    drop(m);
    let mut m = Manifest::open(&path).expect("reopen");
    assert!(!m.uncertain());
    assert_eq!(m.entries().len(), 1, "the failed entry was cut off");
    m.append(4, seal(2)).expect("appends again");
    drop(rec.finish());
    assert_eq!(Manifest::open(&path).expect("open").entries().len(), 2);
}

/// A running store whose seal's manifest fsync failed refuses every write
/// (retryable) until it is restarted, instead of acknowledging rows it may
/// not be able to seal in order; the restart seals what it had taken.
#[test]
fn after_an_uncertain_manifest_entry_the_running_store_refuses_writes() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let mut cfg = config(root);
    // A seal falls due as soon as two rows are buffered.
    cfg.seal_rows = 2;
    let metrics = Arc::new(Metrics::default());
    let ingest = Ingest::start(cfg, metrics.clone()).expect("start");
    rec.fail_syncs_under("manifest", 1);
    let first = commit(&rt, &rec, &ingest, next.batch(2, 0, 0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while metrics.store_failing.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the seal never failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    match rt.block_on(ingest.submit(next.batch(1, 0, 0))) {
        Err(IngestError::Storage(e)) => assert!(e.contains("restart"), "{e}"),
        other => panic!("a write was taken after an uncertain manifest entry: {other:?}"),
    }
    assert!(
        ingest.shutdown().is_err(),
        "no seal is possible until a restart"
    );
    drop(ingest);

    let ingest = start_store(root);
    let later = commit(&rt, &rec, &ingest, next.batch(1, 1, 0));
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();
    every_ack_sealed(root, &events, &[first, later], 0xc0de);
}

/// Directory fsyncs that fail: after a sealed file was given its name
/// (its data durable, the name not); at a start, the WAL directory's and
/// then the manifest directory's; at a seal into a new day, the fsync
/// that makes the new directory's name durable. Each seal must publish
/// nothing and keep its rows; each start must refuse without touching
/// them; the last start seals them all.
#[test]
fn failed_directory_fsyncs_of_a_seal_and_of_a_start_lose_nothing() {
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let submit = |ingest: &Ingest, b: Batch| commit(&rt, &rec, ingest, b);

    // A first seal that succeeds, so the hour's directory already exists
    // and the failing fsync is the one after the file is named.
    let ingest = start_store(root);
    let mut all = vec![submit(&ingest, next.batch(2, 0, 0))];
    ingest.shutdown().expect("seal");
    drop(ingest);
    let files = |root: &Path| {
        crate::partition::data_files(root, crate::partition::Dataset::Audit)
            .expect("list the sealed files")
    };
    let published = |root: &Path| files(root).len();
    let before = published(root);
    // The hour's directory: the seal fsyncs it only once the file is named.
    let hour = files(root)
        .first()
        .and_then(|f| f.parent()?.strip_prefix(root).ok().map(Path::to_owned))
        .expect("the first seal published a file");

    let ingest = start_store(root);
    all.push(submit(&ingest, next.batch(2, 0, 0)));
    rec.fail_dir_syncs_under(&hour, 1);
    match ingest.shutdown() {
        Err(IngestError::Storage(e)) => assert!(e.contains("fsync directory"), "{e}"),
        other => panic!("the seal went on after a failed directory fsync: {other:?}"),
    }
    assert_eq!(
        published(root),
        before,
        "a file whose name was never made durable is left published"
    );

    // The rows are in the WAL only; a start whose WAL or manifest
    // directory fsync fails must refuse to start and leave them there.
    for dir in ["wal", "manifest"] {
        rec.fail_dir_syncs_under(dir, 1);
        match Ingest::start(config(root), Arc::new(Metrics::default())) {
            Err(e) => assert!(e.to_string().contains("fsync"), "{dir}: {e}"),
            Ok(_) => panic!("started with its {dir} directory's fsync failed"),
        }
    }

    // A day not seen yet: the seal creates its directories.
    // (Its recovery sealed the rows the failed seal kept.)
    let ingest = start_store(root);
    let before = published(root);
    all.push(submit(&ingest, next.batch(1, 0, 1)));
    rec.fail_dir_syncs_under("audit", 1);
    match ingest.shutdown() {
        Err(IngestError::Storage(e)) => assert!(e.contains("fsync"), "{e}"),
        other => panic!("the seal went on after a new directory's failed fsync: {other:?}"),
    }
    assert_eq!(published(root), before);

    let ingest = start_store(root);
    all.push(submit(&ingest, next.batch(1, 0, 0)));
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();

    let failed = failed_syncs(&events, |op| matches!(op, Op::SyncDir(_)));
    for dir in ["audit", "wal", "manifest"] {
        assert!(
            failed.iter().any(|p| p.starts_with(dir)),
            "no failed directory fsync under {dir} in the record: {failed:?}"
        );
    }
    assert_eq!(failed.len(), 4, "{failed:?}");
    every_ack_sealed(root, &events, &all, 0xd1e5);
}

/// A first start whose fsync of the WAL's directory entry fails refuses;
/// the next finds the directory there and must still make its name durable
/// before it acknowledges anything written in it.
#[test]
fn a_start_after_a_failed_wal_directory_fsync_makes_the_directory_durable() {
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    rec.fail_dir_syncs_under("wal", 1);
    assert!(
        Ingest::start(config(root), Arc::new(Metrics::default())).is_err(),
        "started with its WAL directory's fsync failed"
    );
    let ingest = start_store(root);
    let batch = commit(&rt, &rec, &ingest, next.batch(2, 1, 0));
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();
    let failed = failed_syncs(&events, |op| matches!(op, Op::SyncDir(_)));
    assert_eq!(failed, [Path::new("wal")], "{failed:?}");
    every_ack_sealed(root, &events, &[batch], 0x3a1d);
}

/// The paths of the fsyncs that failed in `events`; each must be `wanted`.
fn failed_syncs(events: &[Event], wanted: impl Fn(&Op) -> bool) -> Vec<std::path::PathBuf> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SyncFailed(op @ (Op::Sync(p) | Op::SyncDir(p))) => {
                assert!(wanted(op), "an fsync the test did not mean to fail: {op:?}");
                Some(p.clone())
            }
            _ => None,
        })
        .collect()
}

/// After the run: `verify` clean, every acknowledged id of `batches`
/// sealed once, and so at every crash point of `events`.
fn every_ack_sealed(root: &Path, events: &[Event], batches: &[Batch], seed: u64) {
    verify_clean(root, &crate::verify::Options::default()).expect("verify after the run");
    let stored = stored(root).expect("each id stored once");
    for id in batches.iter().flat_map(ids) {
        assert!(stored.contains_key(&id), "acknowledged {id} not sealed");
    }
    explore(events, states_per_point(), seed, recover_and_check).assert_clean();
}
