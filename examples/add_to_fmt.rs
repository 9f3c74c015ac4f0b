//! Adding the audit layer to an app that already logs with `fmt`: three
//! lines change. Run a collector first, then this:
//!
//! ```text
//! cargo run --bin audit-collector -- serve &        # OTLP on 127.0.0.1:4317/4318
//! cargo run --example add_to_fmt
//! ```
//!
//! The exporter reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, …).

use audit_layer::{privileged_span, Actor, AuditLayer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before: tracing_subscriber::fmt().init();
    let (audit, guard) = AuditLayer::builder().from_env().build()?; // + this line
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(audit) // + this line
        .init();

    tracing::info!("ordinary logs are untouched");
    let agent = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
    privileged_span!(&agent, "reports.export", target = "q3-revenue")
        .in_scope(|| tracing::info!("exported"));

    // + this line: flush what was recorded before exiting (also on drop).
    guard.shutdown(std::time::Duration::from_secs(10))?;
    Ok(())
}
