//! The layer's shortcuts for spans that are not privileged (the policy's
//! class cached per callsite, span ids marked when they carry state) lose
//! nothing: checked through the in-memory destination.

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink, Policy};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn dispatch(policy: Policy) -> (Dispatch, MemorySink, audit_layer::FlushGuard) {
    let sink = MemorySink::default();
    let (layer, guard) = AuditLayer::builder()
        .policy(policy)
        .service_name("billing")
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    let d = Dispatch::new(tracing_subscriber::registry().with(layer));
    (d, sink, guard)
}

/// One callsite, shared by the subscribers below.
fn export_report(actor: &Actor) {
    tracing::info_span!(
        "reports.export",
        audit.actor.kind = actor.kind(),
        gen_ai.agent.id = actor.agent_id(),
        audit.owner.id = actor.owner_id()
    )
    .in_scope(|| {});
}

#[test]
fn each_subscribers_layer_classifies_a_callsite_by_its_own_policy() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (named, named_sink, _g1) = dispatch(Policy::default().span_name("reports.export"));
    let (plain, plain_sink, _g2) = dispatch(Policy::default());
    for _ in 0..3 {
        tracing::dispatcher::with_default(&plain, || export_report(&actor));
        tracing::dispatcher::with_default(&named, || export_report(&actor));
    }
    assert_eq!(named_sink.records().len(), 3);
    assert!(plain_sink.records().is_empty() && plain_sink.violations().is_empty());
}

#[test]
fn plain_spans_closing_among_many_open_privileged_ones_lose_no_record() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (d, sink, _guard) = dispatch(Policy::default());
    tracing::dispatcher::with_default(&d, || {
        // More open privileged spans than the marks have buckets: every
        // plain span's id then shares a bucket with one of them.
        let open: Vec<_> = (0..3_000)
            .map(|i| privileged_span!(&actor, "payments.transfer", target = i))
            .collect();
        for _ in 0..3_000 {
            tracing::info_span!("http.request", method = "GET").in_scope(|| {});
        }
        assert!(sink.records().is_empty(), "nothing closed yet");
        drop(open);
        // Their slots are reused: the marks were taken off with the state.
        for i in 0..100 {
            tracing::info_span!("http.request", method = "GET").in_scope(|| {});
            privileged_span!(&actor, "payments.refund", target = i).in_scope(|| {});
        }
    });
    let records = sink.records();
    assert_eq!(records.len(), 3_100);
    assert_eq!(
        (records.iter())
            .filter(|r| r.action == "payments.refund")
            .count(),
        100
    );
    assert!(sink.violations().is_empty());
}

#[test]
fn a_span_flagged_after_creation_is_still_seen_at_close() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (d, sink, _guard) = dispatch(Policy::default());
    tracing::dispatcher::with_default(&d, || {
        let span = tracing::info_span!(
            "maybe.privileged",
            audit.privileged = tracing::field::Empty,
            gen_ai.agent.id = actor.agent_id(),
            audit.owner.id = actor.owner_id()
        );
        // Entered and recorded on another thread, closed there.
        std::thread::scope(|s| {
            s.spawn(move || {
                span.record("audit.privileged", true);
                span.in_scope(|| {});
            });
        });
    });
    assert_eq!(sink.records().len(), 1);
}
