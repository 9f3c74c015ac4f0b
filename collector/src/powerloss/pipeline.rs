//! Power loss while requests arrive during a WAL fsync. The writer appends
//! the next group while the fsync of the one before runs on its own
//! thread; that next group is durable only once an fsync *begun after*
//! its frames returns, and must not be answered before.

use std::time::{Duration, Instant};

use super::*;

/// How long the test waits for the writer at each step (it normally takes
/// microseconds; the bound only keeps a hang from lasting forever).
const STEP: Duration = Duration::from_secs(30);

#[test]
fn a_group_appended_while_an_fsync_runs_is_answered_only_after_its_own_fsync() {
    let dir = scratch();
    let root = dir.path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let rec = Recorder::start(root);
    let mut next = Ids::default();
    let ingest = Ingest::start(config(root), Arc::new(Metrics::default())).expect("start");
    // The WAL segment and its directory exist before the fsyncs are held.
    let warm = next.batch(1, 0, 0);
    rt.block_on(ingest.submit(warm.clone())).expect("stored");
    rec.ack(ids(&warm));

    let hold = rec.hold_syncs();
    let first = next.batch(2, 0, 0);
    let first_answer = queued(ingest.submit(first.clone()));
    assert!(
        hold.wait_for_sync(STEP),
        "the first group's fsync never began"
    );
    let before = rec.position();
    let behind = next.batch(2, 1, 0);
    let behind_answer = queued(ingest.submit(behind.clone()));
    let deadline = Instant::now() + STEP;
    while rec.position() == before {
        assert!(
            Instant::now() < deadline,
            "the writer did not append the second group while the fsync ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
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
