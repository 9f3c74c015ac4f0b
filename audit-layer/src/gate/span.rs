//! [`GateSpan`]: the gate's answer for async code.
//!
//! A [`GateGuard`] keeps its span entered on the thread that opened it, so
//! it cannot be `Send`, and in an `async` block a local the code borrows
//! (`guard.event_id()`) counts as held across every later `.await`: the
//! task no longer compiles for `tokio::spawn`. A `GateSpan` holds the span
//! without entering it; the span is entered only where the work runs,
//! each time the future is polled, on whichever thread polls it.
//!
//! ```
//! # use audit_layer::{gate_span, Actor, AuditLayer, GateError, MemorySink};
//! # use tracing_subscriber::layer::SubscriberExt;
//! async fn write_ledger(agent: Actor, account: String) -> Result<String, GateError> {
//!     let gated = gate_span(&agent, "ledger.write", &account)?;
//!     let event_id = gated.event_id().to_owned();
//!     gated
//!         .instrument(async {
//!             tokio::task::yield_now().await; // the privileged work, across awaits
//!         })
//!         .await;
//!     Ok(event_id) // the row was written when the instrumented future finished
//! }
//!
//! # let sink = MemorySink::default();
//! # let (layer, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
//! # tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
//! let rt = tokio::runtime::Runtime::new().unwrap(); // multi-threaded
//! let agent = Actor::agent("agt_7f3", "usr_alice");
//! let task = rt.spawn(write_ledger(agent, "acct_42".into())); // Send: it spawns
//! let event_id = rt.block_on(task).unwrap().expect("gated");
//! # assert_eq!(sink.records()[0].event_id, event_id);
//! ```

use std::future::Future;

use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use super::GateGuard;

/// An open privileged span the gate said yes to, not entered: `Send`, so it
/// may be held across `.await`. The audit row is written when the span
/// closes: when this value and every future instrumented with it are
/// dropped.
#[must_use = "the privileged span closes when the GateSpan is dropped"]
#[derive(Debug)]
pub struct GateSpan {
    pub(crate) span: Span,
    pub(crate) event_id: String,
}

impl GateSpan {
    /// The audit row's `event_id` (UUIDv7).
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The privileged span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Records the outcome: `ok`, `error` or `denied` (default `ok`, or
    /// `error` after an `ERROR` event inside).
    pub fn outcome(&self, outcome: &str) {
        self.span.record("outcome", outcome);
    }

    /// Makes the privileged span the span of `fut`: entered whenever the
    /// future is polled, on any thread.
    pub fn instrument<F: Future>(self, fut: F) -> Instrumented<F> {
        fut.instrument(self.span)
    }

    /// Runs `f` inside the privileged span (synchronous work).
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// The span, for `tracing`'s own combinators.
    pub fn into_span(self) -> Span {
        self.span
    }

    /// Enters the span on this thread until the guard drops.
    pub(crate) fn entered(self) -> GateGuard {
        GateGuard {
            entered: self.span.entered(),
            event_id: self.event_id,
        }
    }
}
