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
//!
//! The queue case exports over gRPC to a port nobody listens on, with
//! `WhenFull::Drop`: nothing leaves the process, the worker holds what it
//! has and retries, so once the queue holds `queue_capacity` records the
//! figure is the layer's full path with the final push counted as a drop
//! (same lock and length check, no append). The capacity is large enough
//! for criterion's warm-up and most of the samples to append.

use std::hint::black_box;
use std::time::Duration;

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink, WhenFull};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
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
        .otlp_grpc("http://127.0.0.1:9")
        .when_full(WhenFull::Drop)
        .queue_capacity(1 << 19)
        .max_backoff(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_millis(100))
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

criterion_group!(benches, privileged_group, non_privileged_group);
criterion_main!(benches);
