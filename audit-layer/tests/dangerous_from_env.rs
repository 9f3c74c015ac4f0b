//! `AUDIT_DANGEROUS_ACTIONS` adds dangerous-action patterns when the layer
//! is built, as the collector's variable adds to its config. A test binary
//! of its own: the environment is the process's.

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
use tracing_subscriber::layer::SubscriberExt;

fn transfer_without_consent() -> MemorySink {
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .memory(sink.clone())
        .build()
        .expect("builds");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        privileged_span!(&Actor::agent("agt_7f3", "usr_alice"), "payments.transfer")
            .in_scope(|| {});
    });
    sink
}

#[test]
fn nothing_is_dangerous_by_default_and_the_variable_adds_patterns() {
    std::env::remove_var("AUDIT_DANGEROUS_ACTIONS");
    let sink = transfer_without_consent();
    assert_eq!(sink.records().len(), 1, "no pattern: no consent needed");

    std::env::set_var("AUDIT_DANGEROUS_ACTIONS", "reports.*, payments.*");
    let sink = transfer_without_consent();
    assert!(sink.records().is_empty());
    let v = sink.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].missing, ["audit.consent.id"]);
}
