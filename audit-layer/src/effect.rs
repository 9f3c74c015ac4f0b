//! The check at the effect: [`require_gate`] finds side doors, the code
//! paths that perform a privileged effect without passing the gate.
//!
//! The gate records intent; a side door (a new endpoint that writes to the
//! ledger table directly, a job that calls the payments client) leaves no
//! row and no violation. Put one call where the effect happens, at its
//! chokepoint (the repository method, the client of the payments API, the
//! queue publisher):
//!
//! ```
//! # use audit_layer::{gate, require_gate, Actor, AuditLayer, MemorySink, Ungated};
//! # use tracing_subscriber::layer::SubscriberExt;
//! struct Ledger(std::sync::Mutex<Vec<String>>);
//!
//! impl Ledger {
//!     #[track_caller] // the violation then names the caller: the side door
//!     fn write(&self, entry: &str) -> Result<(), Ungated> {
//!         require_gate("ledger.*")?;
//!         self.0.lock().unwrap().push(entry.to_owned());
//!         Ok(())
//!     }
//! }
//! # let sink = MemorySink::default();
//! # let (layer, guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
//! # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//! let ledger = Ledger(Default::default());
//! let agent = Actor::agent("agt_7f3", "usr_alice");
//! let g = gate(&agent, "ledger.write", "acct_42").expect("gate");
//! ledger.write("+100").expect("through the gate"); // passes
//! drop(g);
//! assert!(ledger.write("-100").is_err()); // a side door: refused, recorded
//! # });
//! # assert_eq!(guard.status().ungated(), 1);
//! # assert_eq!(sink.violations()[0].kind.as_deref(), Some("ungated"));
//! ```
//!
//! It passes when a privileged span (a [`gate()`](crate::gate()), a
//! [`privileged_span!`](crate::privileged_span!)) whose action matches the
//! pattern is open around the call: entered on this thread, or the span of
//! the future being polled (`.instrument(span)`), so it holds across
//! `.await` on any runtime, and a task spawned without the span is caught.
//! Otherwise it records an `ungated` violation (the callsite's file and
//! line, the effect, the service, the spans it did find), counts it in
//! [`AuditStatus::ungated`](crate::AuditStatus::ungated), panics in strict
//! mode ([`AuditLayerBuilder::strict`](crate::AuditLayerBuilder::strict)),
//! and returns [`Ungated`]: `?` refuses the effect as the gate refuses an
//! action, `.ok()` only records it.
//!
//! The passing check walks the open spans in place and matches the pattern
//! without allocating; the `layer` bench measures it against a plain span.

use std::ops::ControlFlow;
use std::panic::Location;
use std::sync::Arc;

use audit_schema::rules::glob_match;
use audit_schema::wire::violation_kind::UNGATED;
use audit_schema::ViolationRecord;

use crate::clock::now_ns;
use crate::core::Core;
use crate::export::Item;
use crate::ids;
use crate::layer::{AuditLayer, OpenSpan};

/// Span name recorded on `ungated` violations (no span of their own).
pub const UNGATED_SPAN: &str = "audit.require_gate";
/// Attribute of an `ungated` violation: the open spans found, outermost
/// first (`name` or `name[action]` for a privileged one), ` > ` between.
pub const UNGATED_SPANS_ATTR: &str = "audit.ungated.spans";

/// A privileged effect ran outside any gate whose action matches it; the
/// violation was recorded (when an [`AuditLayer`] is installed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "privileged effect `{effect}` at {file}:{line} ran outside a gate whose action matches it \
     (open spans: {spans})"
)]
pub struct Ungated {
    /// The effect's pattern, as given to [`require_gate`].
    pub effect: String,
    /// The callsite's file.
    pub file: &'static str,
    /// The callsite's line.
    pub line: u32,
    /// The open spans found, outermost first, or `none`.
    pub spans: String,
}

/// Passes when a privileged span whose action matches `effect` (`*`
/// matches any run: `payments.*`) is open around the call; otherwise
/// records an `ungated` violation naming the caller's file and line (see
/// the [module docs](self)). Mark the chokepoint `#[track_caller]` to have
/// the violation name its caller instead.
#[track_caller]
pub fn require_gate(effect: &str) -> Result<(), Ungated> {
    let at = Location::caller();
    let verdict = tracing::dispatcher::get_default(|d| {
        let layer = d.downcast_ref::<AuditLayer>()?;
        let current = d.current_span();
        let mut spans = Vec::new();
        // `scope` is set when the layer joins a subscriber; a layer that
        // never did cannot see the gate, and says so rather than pass.
        if let (Some(walk), Some(id)) = (layer.scope, current.id()) {
            let mut gated = false;
            walk(d, id, &mut |s: &OpenSpan<'_>| {
                gated = s.action.is_some_and(|a| glob_match(effect, a));
                if gated {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if gated {
                return Some(Verdict::Gated);
            }
            // Only a side door pays for naming what it found.
            walk(d, id, &mut |s: &OpenSpan<'_>| {
                spans.push(match s.action {
                    Some(a) => format!("{}[{a}]", s.name),
                    None => s.name.to_owned(),
                });
                ControlFlow::Continue(())
            });
        }
        spans.reverse();
        Some(Verdict::Ungated {
            core: layer.core.clone(),
            strict: layer.strict,
            spans,
        })
    });
    let (core, strict, spans) = match verdict {
        Some(Verdict::Gated) => return Ok(()),
        Some(Verdict::Ungated {
            core,
            strict,
            spans,
        }) => (Some(core), strict, spans),
        None => (None, false, Vec::new()),
    };
    let ungated = Ungated {
        effect: effect.to_owned(),
        file: at.file(),
        line: at.line(),
        spans: if spans.is_empty() {
            "none".to_owned()
        } else {
            spans.join(" > ")
        },
    };
    if let Some(core) = core {
        report(&core, &ungated);
        // Panicking while already unwinding would abort the process.
        if strict && !std::thread::panicking() {
            panic!("audit-layer (strict): {ungated}");
        }
    }
    Err(ungated)
}

enum Verdict {
    Gated,
    Ungated {
        core: Arc<Core>,
        strict: bool,
        spans: Vec<String>,
    },
}

/// Counts the side door and sends its violation record.
fn report(core: &Core, u: &Ungated) {
    core.status.add_ungated(1);
    let service = core.resource.service_name.as_deref();
    let v = ViolationRecord {
        event_id: ids::event_id(),
        time_ns: now_ns(),
        detected_by: "layer".to_owned(),
        kind: Some(UNGATED.to_owned()),
        reason: u.to_string(),
        span_target: Some("audit".to_owned()),
        span_name: Some(UNGATED_SPAN.to_owned()),
        code_file: Some(u.file.to_owned()),
        code_line: Some(i64::from(u.line)),
        action: Some(u.effect.clone()),
        service_name: service
            .unwrap_or(audit_schema::wire::UNKNOWN_SERVICE)
            .to_owned(),
        service_instance_id: core.resource.service_instance_id.clone(),
        attributes: [(UNGATED_SPANS_ATTR.to_owned(), u.spans.clone())].into(),
        ..ViolationRecord::default()
    };
    core.send(Item::Violation(v));
}
