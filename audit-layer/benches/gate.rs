//! The cost of a privileged action through the gate against a plain
//! `tracing` span, on the same subscriber (registry + audit layer), in
//! one run: `cargo bench -p audit-layer`.
//!
//! The layer delivers to a `MemorySink` (emptied as it goes) so that the
//! figure is the application thread's cost: the gate's attribution and
//! health checks, the span, the record built at close. Export happens on
//! the worker thread and is measured by the collector's ingest bench.

use std::hint::black_box;

use audit_layer::{gate, privileged_span, Actor, AuditLayer, MemorySink};
use criterion::{criterion_group, criterion_main, Criterion};
use tracing_subscriber::layer::SubscriberExt;

fn bench(c: &mut Criterion) {
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .service_name("bench")
        .memory(sink.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let actor = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
        let mut g = c.benchmark_group("span");
        g.bench_function("plain tracing span", |b| {
            b.iter(|| {
                tracing::info_span!("payments.transfer", target = "acct_42")
                    .in_scope(|| black_box(1))
            })
        });
        let mut n = 0u32;
        g.bench_function("privileged_span! (no gate)", |b| {
            b.iter(|| {
                n += 1;
                if n.is_multiple_of(4096) {
                    sink.take_records();
                }
                privileged_span!(&actor, "payments.transfer", target = "acct_42")
                    .in_scope(|| black_box(1))
            })
        });
        g.bench_function("gate() privileged span", |b| {
            b.iter(|| {
                n += 1;
                if n.is_multiple_of(4096) {
                    sink.take_records();
                }
                let guard = gate(&actor, "payments.transfer", "acct_42").unwrap();
                black_box(guard.event_id());
            })
        });
        g.finish();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
