//! The audit layer against the baselines of the performance issue, in one
//! criterion run: `cargo bench -p audit-layer --bench layer`.
//!
//! One group per comparison, so that ratios come from the same process:
//!
//! - `privileged span`: the same span (actor kind, agent, owner, task from
//!   the actor; the action as the span name, target and scopes as fields)
//!   created, entered and closed through (a) the audit layer delivering to
//!   the in-memory sink, (b) the audit layer handing the record to its
//!   export queue, (c) `tracing_subscriber::fmt` writing to
//!   `std::io::sink()`, (d)
//!   `tracing-opentelemetry` with an SDK tracer whose batch exporter drops
//!   everything.
//! - `non-privileged span`: a plain `info_span!` with two fields on the
//!   registry with the audit layer against the bare registry.
//! - `effect check`: `require_gate("payments.*")` where it passes (inside a
//!   gate, one ordinary span between) against that plain span, on the same
//!   subscriber in the same scope: the cost of leaving the check on.
//!
//! The queue case exports over gRPC to an OTLP receiver in the same process
//! (its own runtime thread) that acknowledges and discards every batch: the
//! steady state of an application whose collector keeps up, with the export
//! worker encoding and sending on the other core. (An earlier version sent
//! to a closed port; the queue then only grew, and page faults of the
//! growing queue were a tenth of the measure.)

use std::hint::black_box;
use std::time::Duration;

use audit_layer::{gate, privileged_span, require_gate, Actor, AuditLayer, MemorySink};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;

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

/// An OTLP/gRPC logs receiver that acknowledges everything and keeps nothing.
struct Discard;

#[tonic::async_trait]
impl LogsService for Discard {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        black_box(request);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Starts [`Discard`] on 127.0.0.1:0 in a background thread; its URL.
fn discard_receiver() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        rt.block_on(
            tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(Discard))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        )
    });
    url
}

fn actor() -> Actor {
    Actor::agent("agt_7f3", "usr_alice").task("task_91")
}

/// The span every case of the privileged group creates, enters and closes.
fn privileged(actor: &Actor) {
    privileged_span!(
        actor,
        "payments.transfer",
        target = "acct_42",
        scopes = "payments:write,accounts:read"
    )
    .in_scope(|| black_box(1));
}

fn plain() {
    tracing::info_span!("http.request", method = "GET", path = "/accounts/42")
        .in_scope(|| black_box(1));
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

    let (layer, queue_guard) = AuditLayer::builder()
        .service_name("bench")
        .otlp_grpc(discard_receiver())
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        g.bench_function("audit layer -> export queue", |b| {
            b.iter(|| privileged(&actor))
        });
    });
    drop(queue_guard);

    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::with_default(fmt, || {
        g.bench_function("fmt -> io::sink", |b| b.iter(|| privileged(&actor)));
    });

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

    g.finish();
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
