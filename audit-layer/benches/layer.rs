//! The audit layer against the baselines of the performance issue, in one
//! criterion run: `cargo bench -p audit-layer --bench layer`.
//!
//! One group per comparison, so that ratios come from the same process:
//!
//! - `privileged span`: the same span (actor kind, agent, owner, task from
//!   the actor; the action as the span name, target and scopes as fields)
//!   created, entered and closed through (a) the audit layer delivering to
//!   the in-memory sink, (b) the audit layer handing the record to its
//!   export queue, whose worker sends it over OTLP/gRPC to a receiver in
//!   this process, (c) `tracing-opentelemetry` with the SDK's batch span
//!   processor and `opentelemetry-otlp`'s gRPC exporter sending to the
//!   same receiver (the pipeline a user assembles from those crates: both
//!   encode and send), (d) `tracing-opentelemetry` with a batch exporter
//!   that drops everything (the floor: no encoding, no I/O), (e)
//!   `tracing_subscriber::fmt` writing to `std::io::sink()`; (a) and (e)
//!   are also measured A/B interleaved (as below). After the
//!   two exporting cases' criterion runs, each also runs 100,000 spans and
//!   a flush and prints the whole process's CPU time per span (and per
//!   span the receiver got): the export thread's work, which the time on
//!   the measured thread leaves out when the exporter drops spans.
//!   Those are closed loops: the layer never drops a span, so once its
//!   queue is full the time per span is its export worker's throughput,
//!   while the batch processor drops what its queue cannot take. The two
//!   `open loop` cases measure the application thread when the queue is
//!   not the bottleneck for either: (b) and (c), with the SDK's queue as
//!   large as the layer's, each time runs of a few thousand spans and
//!   flush between runs untimed; the receiver must get every span, and
//!   the process CPU per span (runs and flushes) is printed.
//! - `non-privileged span`: a plain `info_span!` with two fields on the
//!   registry with the audit layer against the bare registry; after the
//!   two criterion cases, the same two measured A/B interleaved (short
//!   rounds alternate between the subscribers; the median ratio and its
//!   quartiles are printed), and so each against the registry with a
//!   layer that does nothing (`Identity`): what any layer costs.
//! - `effect check`: `require_gate("payments.*")` where it passes (inside a
//!   gate, one ordinary span between) against that plain span, on the same
//!   subscriber in the same scope: the cost of leaving the check on.
//!
//! The receiver (its own runtime thread) acknowledges and discards every
//! batch, logs and traces alike, after tonic decoded it: the steady state
//! of an application whose collector keeps up, with the exporting thread
//! encoding and sending on the other core. (An earlier version sent to a
//! closed port; the queue then only grew, and page faults of the growing
//! queue were a tenth of the measure.)

use std::hint::black_box;
use std::time::Duration;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use audit_layer::{gate, require_gate, Actor, AuditLayer, MemorySink};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing::Dispatch;
use tracing_subscriber::layer::{Identity, SubscriberExt};

#[path = "../tests/support/spans.rs"]
mod spans;
use spans::{plain, privileged};

/// The OpenTelemetry baseline's exporter: the SDK's work (span data,
/// attributes, batch queue) without any I/O.
#[derive(Debug)]
struct NoopExporter;

impl SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// Log records and spans the receiver was sent.
static RECEIVED_LOGS: AtomicU64 = AtomicU64::new(0);
static RECEIVED_SPANS: AtomicU64 = AtomicU64::new(0);

/// An OTLP/gRPC receiver of logs and traces that acknowledges everything
/// and keeps nothing but a count.
#[derive(Clone, Copy)]
struct Discard;

#[tonic::async_trait]
impl LogsService for Discard {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let n = (request.get_ref().resource_logs.iter())
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        RECEIVED_LOGS.fetch_add(n, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Discard {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n = (request.get_ref().resource_spans.iter())
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        RECEIVED_SPANS.fetch_add(n, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts [`Discard`] for logs and traces; its URL.
fn discard_receiver() -> String {
    spans::serve(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(Discard))
            .add_service(TraceServiceServer::new(Discard)),
    )
}

/// `opentelemetry-otlp`'s gRPC span exporter to `url`. Its tonic channel
/// lives on a runtime of its own thread, as the layer's export worker has
/// one: the SDK's batch processor thread encodes, that runtime sends.
fn otlp_exporter(url: &str) -> opentelemetry_otlp::SpanExporter {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exporter = {
        let _cx = rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build()
            .unwrap()
    };
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    exporter
}

fn actor() -> Actor {
    Actor::agent("agt_7f3", "usr_alice").task("task_91")
}

fn privileged_group(c: &mut Criterion) {
    let actor = actor();
    let mut g = c.benchmark_group("privileged span");

    let sink = MemorySink::default();
    let (layer, _memory_guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(sink.clone())
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let mut n = 0u32;
        g.bench_function("audit layer -> memory sink", |b| {
            b.iter(|| {
                n += 1;
                if n.is_multiple_of(4096) {
                    sink.take_records();
                }
                privileged(&actor)
            })
        });
    });

    let receiver = discard_receiver();
    let (layer, queue_guard) = AuditLayer::builder()
        .service_name("bench")
        .otlp_grpc(receiver.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let spans = Cell::new(0u64);
    let counted = || {
        spans.set(spans.get() + 1);
        privileged(&actor)
    };
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        g.bench_function("audit layer -> export queue -> receiver", |b| {
            b.iter(counted)
        });
        let before = RECEIVED_LOGS.load(Ordering::Relaxed);
        let cost = pipeline_cost(privileged_spans(&actor), || {
            queue_guard.flush(Duration::from_secs(60)).unwrap()
        });
        cost.print(
            "audit layer",
            RECEIVED_LOGS.load(Ordering::Relaxed) - before,
        );
        spans.set(spans.get() + PIPELINE_SPANS);
    });
    let status = queue_guard.status();
    let flushed = queue_guard.shutdown(Duration::from_secs(60));
    // What each pipeline did with its spans: one that drops spans when
    // its queue is full does less work than one that delivers them all.
    println!(
        "audit layer, in all: {} spans, {} records received, {} dropped; {flushed:?}",
        spans.replace(0),
        RECEIVED_LOGS.swap(0, Ordering::Relaxed),
        status.dropped(),
    );

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(otlp_exporter(&receiver))
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(otel), || {
        g.bench_function("tracing-opentelemetry -> otlp gRPC -> receiver", |b| {
            b.iter(counted)
        });
        let before = RECEIVED_SPANS.load(Ordering::Relaxed);
        let cost = pipeline_cost(privileged_spans(&actor), || provider.force_flush().unwrap());
        let received = RECEIVED_SPANS.load(Ordering::Relaxed) - before;
        cost.print("tracing-opentelemetry", received);
        spans.set(spans.get() + PIPELINE_SPANS);
    });
    let flushed = provider.shutdown();
    println!(
        "tracing-opentelemetry, in all: {} spans, {} received; {flushed:?}",
        spans.replace(0),
        RECEIVED_SPANS.swap(0, Ordering::Relaxed),
    );

    open_loop_cases(&mut g, &actor, &receiver);

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(NoopExporter)
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(otel), || {
        g.bench_function("tracing-opentelemetry -> no-op exporter", |b| {
            b.iter(|| privileged(&actor))
        });
    });
    // Shutdown errors of a no-op exporter are not part of the measure.
    let _ = provider.shutdown();

    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::with_default(fmt, || {
        g.bench_function("fmt -> io::sink", |b| b.iter(|| privileged(&actor)));
    });

    g.finish();
    memory_against_fmt();
}

/// The in-memory sink's case (the record built and checked on the
/// measured thread) against `fmt`, A/B interleaved: the two criterion
/// cases above ran minutes apart on a shared machine.
fn memory_against_fmt() {
    fn span() {
        thread_local! {
            static ACTOR: Actor = actor();
        }
        ACTOR.with(privileged);
    }
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(sink.clone())
        .build()
        .unwrap();
    let memory = Dispatch::new(tracing_subscriber::registry().with(layer));
    let fmt = Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish(),
    );
    let shape = (PRIVILEGED_ROUNDS, PRIVILEGED_ROUND_SPANS);
    let (a, b, [q1, median, q3]) = interleaved(&memory, &fmt, span, shape, &|| {
        sink.take_records();
    });
    assert!(sink.violations().is_empty(), "every span was attributed");
    println!(
        "privileged span, A/B interleaved ({PRIVILEGED_ROUNDS} rounds of \
         {PRIVILEGED_ROUND_SPANS} spans): medians \
         audit layer -> memory sink {a:?}, fmt -> io::sink {b:?}; ratio per round: median \
         {median:.3}, quartiles {q1:.3} {q3:.3}"
    );
}

/// Spans per timed run of the open-loop cases, and both pipelines' queue
/// size there: a run fits in either queue, so neither pipeline waits for
/// room nor drops a span, and the time is the application thread's cost.
const OPEN_RUN: u64 = 8192;
const OPEN_QUEUE: usize = 2 * OPEN_RUN as usize;

/// What an open-loop case made and what it cost, over all its runs.
#[derive(Default)]
struct OpenLoop {
    spans: u64,
    cpu: Duration,
}

impl OpenLoop {
    /// Criterion's `iters` spans in runs of at most [`OPEN_RUN`]: each run
    /// timed, then `flush` (untimed) until the receiver has it all, so the
    /// next run starts with an empty queue. The process CPU of the whole,
    /// flushes included, is kept for the per-span cost of the pipeline.
    fn run(&mut self, iters: u64, actor: &Actor, flush: &dyn Fn()) -> Duration {
        let cpu = process_cpu();
        let mut timed = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(OPEN_RUN);
            let start = Instant::now();
            for _ in 0..n {
                privileged(actor);
            }
            timed += start.elapsed();
            flush();
            left -= n;
        }
        self.spans += iters;
        self.cpu += process_cpu() - cpu;
        timed
    }

    /// Prints the counts and the CPU per span; every span must have
    /// reached the receiver (a pipeline that dropped some did less work).
    fn report(&self, name: &str, received: u64) {
        let per = self.cpu / u32::try_from(self.spans.max(1)).unwrap_or(u32::MAX);
        println!(
            "{name}, open loop: {} spans, {received} received; process CPU {per:?} per span \
             (timed runs and flushes)",
            self.spans
        );
        assert_eq!(
            received, self.spans,
            "{name}: every span reaches the receiver"
        );
    }
}

/// The queue is not the bottleneck: the audit layer and
/// `tracing-opentelemetry` (its batch queue made as large as the layer's)
/// each time runs of [`OPEN_RUN`] spans and flush between them untimed.
fn open_loop_cases(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    actor: &Actor,
    receiver: &str,
) {
    let (layer, guard) = AuditLayer::builder()
        .service_name("bench")
        .otlp_grpc(receiver.to_owned())
        .queue_capacity(OPEN_QUEUE)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut open = OpenLoop::default();
    let before = RECEIVED_LOGS.load(Ordering::Relaxed);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let flush = || guard.flush(Duration::from_secs(60)).unwrap();
        g.bench_function("audit layer -> export queue -> receiver, open loop", |b| {
            b.iter_custom(|iters| open.run(iters, actor, &flush))
        });
    });
    let status = guard.status();
    let flushed = guard.shutdown(Duration::from_secs(60));
    assert_eq!(status.dropped(), 0, "{flushed:?}");
    open.report(
        "audit layer",
        RECEIVED_LOGS.load(Ordering::Relaxed) - before,
    );

    let processor = BatchSpanProcessor::builder(otlp_exporter(receiver))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(OPEN_QUEUE)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let mut open = OpenLoop::default();
    let before = RECEIVED_SPANS.load(Ordering::Relaxed);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(otel), || {
        let flush = || provider.force_flush().unwrap();
        g.bench_function(
            "tracing-opentelemetry (queue 16384) -> otlp gRPC -> receiver, open loop",
            |b| b.iter_custom(|iters| open.run(iters, actor, &flush)),
        );
    });
    provider.shutdown().unwrap();
    open.report(
        "tracing-opentelemetry",
        RECEIVED_SPANS.load(Ordering::Relaxed) - before,
    );
}

/// Spans of the whole-pipeline measure.
const PIPELINE_SPANS: u64 = 100_000;

/// `PIPELINE_SPANS` privileged spans, one after the other.
fn privileged_spans(actor: &Actor) -> impl FnOnce() + '_ {
    move || {
        for _ in 0..PIPELINE_SPANS {
            privileged(actor);
        }
    }
}

/// CPU time of the whole process (every thread: the measured one, the
/// exporter's, the receiver's), user and system.
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: RUSAGE_SELF is valid and `usage` is a writable rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// What a pipeline's spans cost once everything it sends was sent.
struct PipelineCost {
    wall: Duration,
    cpu: Duration,
}

impl PipelineCost {
    fn print(&self, name: &str, received: u64) {
        let per = |d: Duration, n: u64| d / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        println!(
            "{name}, whole pipeline: {PIPELINE_SPANS} spans, {received} received; \
             wall {:?} per span, process CPU {:?} per span, {:?} per span received",
            per(self.wall, PIPELINE_SPANS),
            per(self.cpu, PIPELINE_SPANS),
            per(self.cpu, received),
        );
    }
}

/// Wall and process CPU time of `spans` and then `flush` (which returns
/// when the exporter has sent what it kept): the whole pipeline's work,
/// whatever thread did it, which a time per span on the measured thread
/// does not show (the layer's export worker, or a batch processor that
/// drops spans when its queue is full).
fn pipeline_cost(spans: impl FnOnce(), flush: impl FnOnce()) -> PipelineCost {
    let (wall, cpu) = (Instant::now(), process_cpu());
    spans();
    flush();
    PipelineCost {
        wall: wall.elapsed(),
        cpu: process_cpu() - cpu,
    }
}

/// Rounds of the interleaved A/B measure, and spans per round: short
/// rounds, so that the two halves of a pair see the same machine load.
const ROUNDS: usize = 400;
const ROUND_SPANS: u32 = 2_000;

/// The same for privileged spans, a few µs each: rounds of about a
/// millisecond, shorter than a time slice of the shared machine.
const PRIVILEGED_ROUNDS: usize = 2_000;
const PRIVILEGED_ROUND_SPANS: u32 = 200;

/// Per-span time of `f` under `a` and under `b`, measured in alternating
/// rounds (A then B, then B then A, ...) so that a change of machine load
/// falls on both; the medians of the per-round times, and the quartiles
/// of the per-round ratios a/b.
/// `after_round` runs after each round, untimed.
fn interleaved(
    a: &Dispatch,
    b: &Dispatch,
    f: fn(),
    (rounds, spans): (usize, u32),
    after_round: &dyn Fn(),
) -> (Duration, Duration, [f64; 3]) {
    let time = |d: &Dispatch| {
        let per_span = tracing::dispatcher::with_default(d, || {
            let start = Instant::now();
            for _ in 0..spans {
                f();
            }
            start.elapsed() / spans
        });
        after_round();
        per_span
    };
    // Warm both: registry pools, caches.
    time(a);
    time(b);
    let mut times: Vec<(Duration, Duration)> = (0..rounds)
        .map(|i| {
            if i % 2 == 0 {
                let ta = time(a);
                (ta, time(b))
            } else {
                let tb = time(b);
                (time(a), tb)
            }
        })
        .collect();
    let mut ratios: Vec<f64> = times
        .iter()
        .map(|(ta, tb)| ta.as_secs_f64() / tb.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    times.sort_by_key(|r| r.0);
    let median_a = times[rounds / 2].0;
    times.sort_by_key(|r| r.1);
    let median_b = times[rounds / 2].1;
    let quartiles = [
        ratios[rounds / 4],
        ratios[rounds / 2],
        ratios[3 * rounds / 4],
    ];
    (median_a, median_b, quartiles)
}

fn non_privileged_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("non-privileged span");

    let (layer, _guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(MemorySink::default())
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        g.bench_function("registry + audit layer", |b| b.iter(plain));
    });
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        g.bench_function("bare registry", |b| b.iter(plain));
    });
    g.finish();

    let (layer, _guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(MemorySink::default())
        .build()
        .unwrap();
    let with_layer = Dispatch::new(tracing_subscriber::registry().with(layer));
    let bare = Dispatch::new(tracing_subscriber::registry());
    // Any layer at all: the registry then also frees each span's slot at
    // close (alone, it never does) and keeps a close guard per close.
    let noop_layer = Dispatch::new(tracing_subscriber::registry().with(Identity::new()));
    for (a_name, a_dispatch, b_name, b_dispatch) in [
        (
            "registry + audit layer",
            &with_layer,
            "bare registry",
            &bare,
        ),
        (
            "registry + no-op layer",
            &noop_layer,
            "bare registry",
            &bare,
        ),
        (
            "registry + audit layer",
            &with_layer,
            "registry + no-op layer",
            &noop_layer,
        ),
    ] {
        let (a, b, [q1, median, q3]) =
            interleaved(a_dispatch, b_dispatch, plain, (ROUNDS, ROUND_SPANS), &|| {});
        println!(
            "non-privileged span, A/B interleaved ({ROUNDS} rounds of {ROUND_SPANS} spans): \
             medians {a_name} {a:?}, {b_name} {b:?}; ratio per round: median {median:.3}, \
             quartiles {q1:.3} {q3:.3}"
        );
    }
}

fn effect_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("effect check");
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(sink.clone())
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _gate = gate(&actor(), "payments.transfer", "acct_42").unwrap();
        let _tx = tracing::info_span!("db.tx").entered();
        g.bench_function("plain span", |b| b.iter(plain));
        g.bench_function("require_gate, passing", |b| {
            b.iter(|| black_box(require_gate(black_box("payments.*"))).unwrap())
        });
    });
    assert!(sink.violations().is_empty(), "every check passed");
    g.finish();
}

criterion_group!(
    benches,
    privileged_group,
    non_privileged_group,
    effect_group
);
criterion_main!(benches);
