//! The README's "Add the layer to an existing tracing setup", as a program
//! that compiles: the README shows this file from its first `use` on, and
//! `tests/e2e/docs.rs` checks it verbatim. Run a collector first, then this:
//!
//! ```text
//! cargo run --bin audit-collector -- serve --data-dir ./audit-data &   # OTLP on 127.0.0.1:4317/4318
//! cargo run --example add_to_fmt
//! ```
//!
//! The exporter reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, …).

use audit_layer::{privileged_span, Actor, AuditLayer};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (audit, guard) = AuditLayer::builder().from_env().build()?; // OTEL_EXPORTER_OTLP_* respected
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer()) // what you had
        .with(audit) // + the audit layer
        .init();

    // Typed: forgetting the actor does not compile. Nothing is dangerous by
    // default: `consent` is recorded here, and required only for actions in
    // AUDIT_DANGEROUS_ACTIONS or `Policy::dangerous_action` (see "Consent").
    let (account, consent_id) = ("acct_9", "cns_77");
    let agent = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
    privileged_span!(&agent, "payments.transfer", target = %account, consent = %consent_id)
        .in_scope(transfer);

    // Raw tracing spans work too (target `audit`, or field `audit.privileged = true`):
    let span = tracing::info_span!(target: "audit", "users.invite",
        actor.kind = "human", owner.id = "usr_alice", target = "usr_bob");
    span.in_scope(invite);

    guard.shutdown(std::time::Duration::from_secs(10))?; // flush before exit (also on drop)
    Ok(())
}

fn transfer() {
    tracing::info!("transfer sent");
}

fn invite() {
    tracing::info!("invitation sent");
}
