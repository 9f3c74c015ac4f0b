//! `require_gate`: a privileged effect passes only inside an open gate (or
//! privileged span) whose action matches; anything else is a side door,
//! recorded as an `ungated` violation. Through the in-memory destination.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use audit_layer::effect::{UNGATED_SPAN, UNGATED_SPANS_ATTR};
use audit_layer::{
    gate, gate_span, privileged_span, require_gate, Actor, AuditLayer, AuditStatus, FlushGuard,
    MemorySink, Ungated,
};
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_subscriber::layer::SubscriberExt;

/// Counts this thread's allocations, to hold the passing check to its
/// promise of none.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A subscriber with the audit layer, its sink and counters, and the
/// guard that keeps its exporter running.
fn dispatch(strict: bool) -> (Dispatch, MemorySink, AuditStatus, FlushGuard) {
    let sink = MemorySink::default();
    let (layer, guard) = AuditLayer::builder()
        .strict(strict)
        .service_name("billing")
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    let status = guard.status();
    let d = Dispatch::new(tracing_subscriber::registry().with(layer));
    (d, sink, status, guard)
}

fn run(f: impl FnOnce()) -> (MemorySink, AuditStatus) {
    let (d, sink, status, _guard) = dispatch(false);
    tracing::dispatcher::with_default(&d, f);
    (sink, status)
}

fn agent() -> Actor {
    Actor::agent("agt_7f3", "usr_alice")
}

/// The chokepoint of the tests' store: the violation names its caller.
#[track_caller]
fn pay() -> Result<(), Ungated> {
    require_gate("payments.*")
}

#[test]
fn an_effect_inside_a_matching_gate_passes_and_records_nothing_more() {
    let (sink, status) = run(|| {
        let _g = gate(&agent(), "payments.transfer", "acct_42").expect("gate");
        // Inside nested ordinary and privileged spans too.
        tracing::info_span!("db.tx").in_scope(|| {
            privileged_span!(agent(), "ledger.append").in_scope(|| pay().expect("gated"));
        });
        pay().expect("gated");
    });
    assert_eq!(status.ungated(), 0);
    assert!(sink.violations().is_empty(), "{:?}", sink.violations());
    assert_eq!(sink.records().len(), 2, "the gate's row and the child's");
}

#[test]
fn a_privileged_span_whose_name_matches_passes_too() {
    let (_, status) = run(|| {
        privileged_span!(agent(), "payments.refund").in_scope(|| pay().expect("gated"));
    });
    assert_eq!(status.ungated(), 0);
}

#[test]
fn a_side_door_is_an_ungated_violation_naming_its_line() {
    let (sink, status) = run(|| {
        tracing::info_span!("http.request").in_scope(|| {
            let line = line!() + 1;
            let e = pay().expect_err("no gate");
            assert_eq!((e.file, e.line), (file!(), line));
            assert_eq!(e.effect, "payments.*");
            assert_eq!(e.spans, "http.request");
        });
        assert_eq!(pay().expect_err("no gate").spans, "none");
    });
    assert_eq!(status.ungated(), 2);
    assert_eq!(status.violations(), 0, "not a dual-key violation");
    let v = &sink.violations()[0];
    assert_eq!(v.kind.as_deref(), Some("ungated"));
    assert_eq!(v.detected_by, "layer");
    assert_eq!(v.action.as_deref(), Some("payments.*"));
    assert_eq!(v.service_name, "billing");
    assert_eq!(v.span_name.as_deref(), Some(UNGATED_SPAN));
    assert_eq!(v.code_file.as_deref(), Some(file!()));
    assert_eq!(v.attributes[UNGATED_SPANS_ATTR], "http.request");
    assert!(v.reason.contains("payments.*"), "{}", v.reason);
}

#[test]
fn a_gate_whose_action_does_not_match_the_effect_is_no_gate() {
    let (sink, status) = run(|| {
        let _g = gate(&agent(), "reports.export", "q3").expect("gate");
        let e = pay().expect_err("reports.export does not cover payments.*");
        assert_eq!(e.spans, "audit.gate[reports.export]");
    });
    assert_eq!(status.ungated(), 1);
    assert_eq!(sink.violations()[0].kind.as_deref(), Some("ungated"));
    assert_eq!(
        sink.records().len(),
        1,
        "the gate's own row is still written"
    );
}

#[test]
fn a_closed_gate_no_longer_covers_the_effect() {
    let (_, status) = run(|| {
        drop(gate(&agent(), "payments.transfer", "acct_42").expect("gate"));
        pay().expect_err("the gate closed");
    });
    assert_eq!(status.ungated(), 1);
}

#[test]
fn strict_mode_panics_after_recording_the_side_door() {
    let (d, sink, status, _guard) = dispatch(true);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tracing::dispatcher::with_default(&d, || {
            let _ = pay();
        })
    }))
    .expect_err("strict mode panics");
    let msg = panic.downcast_ref::<String>().expect("a message");
    assert!(msg.contains("payments.*") && msg.contains(file!()), "{msg}");
    assert_eq!(status.ungated(), 1);
    assert_eq!(sink.violations().len(), 1, "recorded before the panic");
}

#[test]
fn without_an_audit_layer_the_effect_is_refused() {
    let e = pay().expect_err("nothing can gate it");
    assert_eq!(e.spans, "none");
}

#[test]
fn the_passing_check_does_not_allocate() {
    let (_, status) = run(|| {
        let _g = gate(&agent(), "payments.transfer", "acct_42").expect("gate");
        let _a = tracing::info_span!("db.tx").entered();
        let _b = tracing::info_span!("db.query").entered();
        pay().expect("gated"); // warms the thread's lazily made state
        let before = ALLOCATIONS.with(Cell::get);
        for _ in 0..100 {
            pay().expect("gated");
        }
        assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);
        // The counter does count: the side door's report allocates.
        let _ = require_gate("reports.*");
        assert!(ALLOCATIONS.with(Cell::get) > before);
    });
    assert_eq!(status.ungated(), 1);
}

/// On a multi-threaded runtime: effects inside the gated future pass across
/// awaits, on whichever worker polls them; a task spawned without the span
/// (but with the subscriber) is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_effects_pass_inside_the_gated_future_and_a_bare_spawn_is_caught() {
    let (d, sink, status, _guard) = dispatch(false);
    let d = Arc::new(d);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let d = Dispatch::clone(&d);
        tasks.push(tokio::spawn(
            async move {
                let gated = gate_span(&agent(), "payments.transfer", &format!("acct_{i}"))?;
                let id = gated.event_id().to_owned();
                gated
                    .instrument(async {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                            pay().expect("inside the gated future");
                        }
                        let child = privileged_span!(agent(), "ledger.append");
                        async {
                            tokio::task::yield_now().await;
                            pay().expect("inside a child of the gate");
                        }
                        .instrument(child)
                        .await;
                        // Spawned without the span: a side door.
                        tokio::spawn(async { pay() }.with_current_subscriber())
                            .await
                            .expect("task")
                            .expect_err("spawned without the span");
                    })
                    .await;
                Ok::<_, audit_layer::GateError>(id)
            }
            .with_subscriber(d),
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task").expect("gate"));
    }
    assert_eq!(status.ungated(), 200);
    assert_eq!(sink.violations().len(), 200);
    let records = sink.records();
    let gated: Vec<_> = records
        .iter()
        .filter(|r| r.action == "payments.transfer")
        .collect();
    assert_eq!(gated.len(), 200);
    ids.sort();
    let mut stored: Vec<_> = gated.iter().map(|r| r.event_id.clone()).collect();
    stored.sort();
    assert_eq!(ids, stored, "each gated action's row carries its event id");
}

/// `GateGuard::instrument`: a sync guard handed to a future keeps covering
/// the effect inside it, and the row is written when the future is done.
#[tokio::test]
async fn a_gate_guard_handed_to_a_future_covers_its_effects() {
    let (d, sink, status, _guard) = dispatch(false);
    async {
        let guard = gate(&agent(), "payments.transfer", "acct_42").expect("gate");
        let id = guard.event_id().to_owned();
        let work = guard.instrument(async {
            tokio::task::yield_now().await;
            pay()
        });
        assert!(sink.records().is_empty(), "open while the work is pending");
        work.await.expect("inside the gate");
        assert_eq!(sink.records()[0].event_id, id);
    }
    .with_subscriber(d)
    .await;
    assert_eq!(status.ungated(), 0);
}
