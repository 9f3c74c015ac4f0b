//! Power loss while requests arrive during a WAL fsync. The writer appends
//! the next group while the fsync of the one before runs on its own
//! thread; that next group is durable only once an fsync *begun after*
//! its frames returns, and must not be answered before. And when that
//! fsync fails, both groups are withdrawn.

use std::time::{Duration, Instant};

use audit_durable::powerloss::SyncHold;

use super::*;
use crate::ingest::{Committed, IngestError};

/// How long the test waits for the writer at each step (it normally takes
/// microseconds; the bound only keeps a hang from lasting forever).
const STEP: Duration = Duration::from_secs(30);

/// Where both runs stand once a group's WAL fsync is held and a second
/// group has been appended behind it: both requests are still unanswered.
struct Held<'a, F> {
    hold: SyncHold<'a>,
    /// Stored (and acknowledged) before the hold, so that the WAL segment
    /// and its directory exist before fsyncs are held.
    warm: Batch,
    first: Batch,
    first_answer: Pin<Box<F>>,
    behind: Batch,
    behind_answer: Pin<Box<F>>,
    /// Events recorded before `behind` was submitted (the held fsync among them).
    before: usize,
}

/// Stores a first batch, holds the WAL fsyncs, submits a group and waits
/// until its fsync is held, then submits `behind` and waits until the
/// writer has appended it.
fn hold_an_fsync_with_a_group_behind<'a>(
    rt: &tokio::runtime::Runtime,
    rec: &'a Recorder,
    ingest: &'a Ingest,
    next: &mut Ids,
    behind: Batch,
) -> Held<'a, impl Future<Output = Result<Committed, IngestError>> + 'a> {
    let warm = commit(rt, rec, ingest, next.batch(1, 0, 0));

    let hold = rec.hold_syncs();
    let first = next.batch(2, 0, 0);
    let first_answer = queued(ingest.submit(first.clone()));
    assert!(
        hold.wait_for_sync(STEP),
        "the first group's fsync never began"
    );
    let before = rec.position();
    let behind_answer = queued(ingest.submit(behind.clone()));
    let deadline = Instant::now() + STEP;
    while rec.position() == before {
        assert!(
            Instant::now() < deadline,
            "the writer did not append the second group while the fsync ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    Held {
        hold,
        warm,
        first,
        first_answer,
        behind,
        behind_answer,
        before,
    }
}

#[test]
fn a_group_appended_while_an_fsync_runs_is_answered_only_after_its_own_fsync() {
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let ingest = start_store(root);
    let behind = next.batch(2, 1, 0);
    let Held {
        hold,
        first,
        first_answer,
        behind,
        behind_answer,
        before,
        ..
    } = hold_an_fsync_with_a_group_behind(&rt, &rec, &ingest, &mut next, behind);
    drop(hold);
    rt.block_on(first_answer).expect("stored");
    rec.ack(ids(&first));
    rt.block_on(behind_answer).expect("stored");
    rec.ack(ids(&behind));
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();

    // The record holds the case: a WAL write after the held fsync began
    // (it was recorded before `before`) and before the first group's
    // answer. The second group's own fsync may be recorded before that
    // answer too: the writer begins it as soon as the first is settled.
    let first_ack = events
        .iter()
        .position(|e| matches!(e, Event::Ack(a) if a.contains(&ids(&first).next().expect("id"))))
        .expect("the first group's ack");
    assert!(
        events[..before]
            .iter()
            .any(|e| matches!(e, Event::Io(Op::Sync(p)) if p.starts_with("wal"))),
        "the held fsync is not in the record"
    );
    assert!(
        events[before..first_ack]
            .iter()
            .any(|e| matches!(e, Event::Io(Op::Write { path, .. }) if path.starts_with("wal"))),
        "no WAL write landed during the fsync"
    );
    explore(&events, states_per_point(), 0xb0b, recover_and_check).assert_clean();
}

/// A failed fsync withdraws its group and the group appended behind it
/// while it ran: both are answered with the error, their frames are cut
/// from the WAL and their ids forgotten, so that the clients' retries are
/// stored (once) rather than counted as duplicates of rows that were never
/// durable; and at no crash point of the run is an acknowledged id lost.
#[test]
fn a_failed_fsync_withdraws_its_group_and_the_one_behind_it() {
    let dir = scratch();
    let root = dir.path();
    let rt = runtime();
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let metrics = Arc::new(Metrics::default());
    let ingest = Ingest::start(config(root), metrics.clone()).expect("start");
    let behind = next.batch(1, 1, 0);
    let Held {
        hold,
        warm,
        first,
        first_answer,
        behind,
        behind_answer,
        ..
    } = hold_an_fsync_with_a_group_behind(&rt, &rec, &ingest, &mut next, behind);
    rec.fail_syncs(1);
    drop(hold);
    for (what, answer) in [("first", first_answer), ("behind", behind_answer)] {
        match rt.block_on(answer) {
            Err(IngestError::Storage(e)) => assert!(e.contains("fsync"), "{what}: {e}"),
            other => panic!("{what}: answered {other:?} after its fsync failed"),
        }
    }
    assert_eq!(
        metrics
            .storage_errors_total
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "one storage error per withdrawn request"
    );

    // The clients retry: stored as new rows, not as duplicates.
    for batch in [&first, &behind] {
        let c = rt.block_on(ingest.submit(batch.clone())).expect("stored");
        let retried: Vec<String> = ids(batch).collect();
        assert_eq!((c.stored, c.duplicates), (2, 0), "retry of {retried:?}");
        rec.ack(ids(batch));
    }
    ingest.shutdown().expect("seal");
    drop(ingest);
    let events = rec.finish();
    assert!(
        events.iter().any(|e| matches!(e, Event::SyncFailed(_))),
        "the failed fsync is not in the record"
    );
    let sealed = stored(root).expect("each id stored once");
    for id in ids(&warm).chain(ids(&first)).chain(ids(&behind)) {
        assert!(sealed.contains_key(&id), "{id} not stored after its retry");
    }
    explore(&events, states_per_point(), 0xfa11, recover_and_check).assert_clean();
}
