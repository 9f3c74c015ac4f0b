//! Heap allocations a span costs the application's thread, counted by a
//! global allocator of this test binary only: a privileged span closing
//! into the export queue (a live OTLP/gRPC receiver in the test keeps the
//! queue drained), and a non-privileged span beside the layer. The budget
//! is the figure measured when the allocations were cut; one allocation
//! more per span fails the test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_layer::{Actor, AuditLayer};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tracing_subscriber::layer::SubscriberExt;

#[path = "support/spans.rs"]
mod spans;
use spans::{plain, privileged};

/// Counts the allocations of the thread that makes them.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the allocator runs while thread-locals are torn down.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A growing buffer is an allocation too.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations per privileged span on the application thread, at most:
/// the box the registry puts the layer's per-span state in, and the box of
/// the span's fields, which is handed to the export queue as it is instead
/// of copying its ~1.5 KB of inline values three times. The fields are
/// short enough to be kept inline, and the record is built and checked on
/// the export worker's thread (BENCHMARKS.md, "Layer: allocations").
const PRIVILEGED_BUDGET: u64 = 2;

/// Spans measured; the allowance for amortised growth (the queue's buffer)
/// is a tenth of a span each, so one allocation more per span fails.
const SPANS: u64 = 2_000;

/// An OTLP/gRPC receiver that keeps every record.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<LogRecord>>>);

#[tonic::async_trait]
impl LogsService for Keep {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let records = request
            .into_inner()
            .resource_logs
            .into_iter()
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records);
        self.0.lock().unwrap().extend(records);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Allocations on this thread per call of `f`, after as many calls to warm
/// up (the registry's span pool, the queue's buffer, the per-thread id
/// generator and whatever else is made once per thread).
fn allocations_per(f: impl Fn()) -> u64 {
    for _ in 0..SPANS {
        f();
    }
    let before = allocations();
    for _ in 0..SPANS {
        f();
    }
    allocations() - before
}

fn string_attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a str> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

#[test]
fn spans_allocate_within_their_budget_on_the_application_thread() {
    let keep = Keep::default();
    let (layer, guard) = AuditLayer::builder()
        .service_name("alloc-test")
        .otlp_grpc(spans::serve(
            tonic::transport::Server::builder().add_service(LogsServiceServer::new(keep.clone())),
        ))
        .build()
        .expect("gRPC destination builds");
    let actor = Actor::agent("agt_7f3", "usr_alice").task("task_91");
    // A delegated agent: its chain (JSON) is too long to be kept inline.
    let delegated = Actor::agent("agt_worker", "usr_alice")
        .credential("key_2026_11")
        .on_behalf_of(&Actor::human("usr_alice"));
    assert!(delegated.delegation_json().is_some_and(|j| j.len() > 64));
    let subscriber = tracing_subscriber::registry().with(layer);
    let (privileged_allocs, delegated_allocs, plain_allocs) =
        tracing::subscriber::with_default(subscriber, || {
            (
                allocations_per(|| privileged(&actor)),
                allocations_per(|| privileged(&delegated)),
                allocations_per(plain),
            )
        });
    println!(
        "per span on the application thread: privileged {:.2}, privileged with a delegation \
         chain {:.2}, non-privileged {:.2}",
        privileged_allocs as f64 / SPANS as f64,
        delegated_allocs as f64 / SPANS as f64,
        plain_allocs as f64 / SPANS as f64
    );

    // The records are real: every span reached the receiver, attributed.
    guard.flush(Duration::from_secs(20)).expect("delivered");
    let records = keep.0.lock().unwrap().clone();
    assert_eq!(records.len() as u64, 4 * SPANS);
    let (direct, chained) = records.split_at(2 * SPANS as usize);
    for r in direct {
        assert_eq!(string_attr(r, "audit.owner.id"), Some("usr_alice"));
        assert_eq!(string_attr(r, "gen_ai.agent.id"), Some("agt_7f3"));
        assert_eq!(string_attr(r, "audit.task.id"), Some("task_91"));
        assert_eq!(string_attr(r, "audit.delegation"), None);
    }
    for r in chained {
        assert_eq!(string_attr(r, "gen_ai.agent.id"), Some("agt_worker"));
        assert_eq!(string_attr(r, "audit.origin.id"), Some("usr_alice"));
        assert_eq!(
            string_attr(r, "audit.delegation"),
            delegated.delegation_json()
        );
    }
    for r in &records {
        assert_eq!(string_attr(r, "audit.target"), Some("acct_42"));
        assert_eq!(r.trace_id.len(), 16);
        assert_eq!(r.span_id.len(), 8);
    }
    let mut ids: Vec<_> = records
        .iter()
        .map(|r| string_attr(r, "audit.event.id").expect("an event id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, 4 * SPANS, "event ids are unique");

    for (allocs, what) in [
        (privileged_allocs, "privileged spans"),
        (delegated_allocs, "privileged spans with a delegation chain"),
    ] {
        assert!(
            allocs <= PRIVILEGED_BUDGET * SPANS + SPANS / 10,
            "{allocs} allocations for {SPANS} {what}: more than {PRIVILEGED_BUDGET} each"
        );
    }
    assert!(
        plain_allocs <= SPANS / 10,
        "{plain_allocs} allocations for {SPANS} non-privileged spans: they should cost none"
    );
}
