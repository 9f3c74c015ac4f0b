//! Finding side doors: one store, two write paths to it. `transfer` goes
//! through the gate; `adjust`, a "quick fix" endpoint added later, writes
//! to the ledger directly. The ledger's one write method checks for the
//! gate (`require_gate`), so the side door leaves an `ungated` violation
//! naming its file and line, and fails its test in strict mode (the tests
//! at the end of this file; `tests/e2e` runs them).
//!
//! Run a collector first, then this (it prints what it wrote as JSON):
//!
//! ```text
//! cargo run --bin audit-collector -- serve &        # OTLP on 127.0.0.1:4317/4318
//! cargo run --example side_doors
//! ```
//!
//! The exporter reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, …).
#![allow(dead_code)] // included by tests that use only part of it

use std::sync::Mutex;
use std::time::Duration;

use audit_layer::{gate, require_gate, Actor, AuditLayer, AuditLayerBuilder, GateError, Ungated};
use tracing_subscriber::layer::SubscriberExt;

/// The store both paths write to.
#[derive(Default)]
pub struct Ledger {
    entries: Mutex<Vec<(String, i64)>>,
}

impl Ledger {
    /// The chokepoint: every write to the ledger is this call.
    /// `#[track_caller]`: a violation names the code that called it.
    #[track_caller]
    pub fn append(&self, account: &str, amount: i64) -> Result<(), Ungated> {
        require_gate("ledger.*")?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push((account.to_owned(), amount));
        Ok(())
    }

    /// How many entries were written.
    pub fn written(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The gate said no.
    #[error(transparent)]
    Refused(#[from] GateError),
    /// A write that did not pass the gate.
    #[error(transparent)]
    Ungated(#[from] Ungated),
}

/// The gated path: returns the audit row's event id.
pub fn transfer(
    ledger: &Ledger,
    agent: &Actor,
    account: &str,
    amount: i64,
) -> Result<String, AppError> {
    let guard = gate(agent, "ledger.transfer", account)?;
    ledger.append(account, amount)?;
    Ok(guard.event_id().to_owned())
}

/// The side door: no gate, so no audit row.
pub fn adjust(ledger: &Ledger, account: &str, amount: i64) -> Result<(), AppError> {
    ledger.append(account, amount)?; // the side door
    Ok(())
}

/// Runs both paths once through a layer built by `builder` (destination,
/// strictness); returns the gated action's event id and the side door's
/// refusal.
pub fn run(builder: AuditLayerBuilder) -> anyhow::Result<(String, Ungated)> {
    let (layer, guard) = builder.service_name("ledger").build()?;
    let outcome =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let ledger = Ledger::default();
            let agent = Actor::agent("agt_ledger", "usr_alice");
            let event_id = transfer(&ledger, &agent, "acct_42", 100)?;
            let side_door = match adjust(&ledger, "acct_42", -100) {
                Err(AppError::Ungated(u)) => u,
                other => anyhow::bail!("the side door was not caught: {other:?}"),
            };
            Ok((event_id, side_door))
        });
    guard.shutdown(Duration::from_secs(20))?;
    outcome
}

fn main() -> anyhow::Result<()> {
    let (event_id, side_door) = run(AuditLayer::builder().from_env())?;
    // One JSON line for scripts.
    println!(
        "{}",
        serde_json::json!({
            "gated_event_id": event_id,
            "side_door": { "file": side_door.file, "line": side_door.line },
        })
    );
    Ok(())
}

/// The habit: the application's own tests run with the layer in strict
/// mode, so a tested write path that bypasses the gate fails its test.
#[cfg(test)]
mod tests {
    use super::*;

    /// The application's tests' subscriber: strict, in memory.
    fn strict<T>(f: impl FnOnce() -> T) -> T {
        let sink = audit_layer::MemorySink::default();
        let (layer, _guard) = AuditLayer::builder()
            .strict(true)
            .memory(sink)
            .build()
            .expect("layer");
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f)
    }

    #[test]
    fn transfer_writes_through_the_gate() {
        strict(|| {
            let ledger = Ledger::default();
            transfer(&ledger, &Actor::agent("agt_1", "usr_1"), "acct_1", 5).expect("gated");
            assert_eq!(ledger.written(), 1);
        });
    }

    /// In an application this test fails, and that is the point: it names
    /// the side door. Here it states the failure it would have.
    #[test]
    #[should_panic(expected = "privileged effect `ledger.*`")]
    fn adjust_is_a_side_door_and_fails_its_test() {
        strict(|| {
            let ledger = Ledger::default();
            let _ = adjust(&ledger, "acct_1", 5);
        });
    }
}
