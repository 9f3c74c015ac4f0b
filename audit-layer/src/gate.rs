//! The gate: the one call a code path makes before a privileged operation.
//!
//! [`gate`] (or [`Privileged`] for consent, scopes and the like) takes the
//! typed [`Actor`], the action and its target, and before anything runs:
//!
//! 1. checks attribution with the same [`audit_schema::Rules`] the layer and
//!    the collector apply (dual key; consent for dangerous actions). An
//!    unattributed call is refused and leaves a violation record
//!    (`detected_by = "layer"`, span name `audit.gate`);
//! 2. checks that the audit path can take the record under the
//!    [`WhenFull`](crate::WhenFull) policy: with `fail_closed` (the
//!    default) the action is refused unless the memory queue has room
//!    *and* a durable place will take the record (the collector is
//!    answering, or a spool has room: the exact rule is in
//!    [`WhenFull`](crate::WhenFull)'s docs); with `block` the call waits
//!    up to its timeout for the same;
//! 3. opens the privileged span (target `audit`, name `audit.gate`, the
//!    action in the `action` field, a fresh UUIDv7 `event.id`) and returns
//!    a [`GateGuard`] that keeps it entered. The audit row is written when
//!    the guard is dropped.
//!
//! Spans opened inside the guard are children of the privileged span:
//! a privileged child that names no actor inherits the gate's dual key, and
//! an `ERROR` event inside makes the outcome `error`.
//!
//! ```
//! use audit_layer::{gate, Actor, AuditLayer, GateError, MemorySink};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let sink = MemorySink::default();
//! let (layer, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     let actor = Actor::agent("agt_7f3", "usr_alice");
//!     match gate(&actor, "payments.transfer", "acct_42") {
//!         Ok(guard) => { /* the privileged work */ drop(guard) }
//!         Err(e) => eprintln!("refused: {e}"), // turn it into a 503 / an error
//!     }
//! });
//! let row = &sink.records()[0];
//! assert_eq!((row.action.as_str(), row.agent_id.as_deref()), ("payments.transfer", Some("agt_7f3")));
//! ```

use std::sync::Arc;
use std::time::Duration;

use audit_schema::{Draft, Field, Rejection};
use tracing::instrument::Instrumented;
use tracing::span::EnteredSpan;
use tracing::{Instrument, Span};

use crate::actor::Actor;
use crate::clock::now_ns;
use crate::core::Core;
use crate::export::Refusal;
use crate::ids;
use crate::layer::AuditLayer;

mod span;
pub use span::GateSpan;

/// The span name of every gated action (the action is in the `action` field).
pub const GATE_SPAN: &str = "audit.gate";

/// Why the gate refused. Every variant means: do not perform the action.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The actor, action or consent do not satisfy the dual-key rules; a
    /// violation record was sent.
    #[error("refused: the action is not properly attributed: {0}")]
    Unattributed(Box<Rejection>),
    /// `fail_closed`: no durable place can take the record (the collector
    /// is not answering and there is no spool, or the spool is full), or
    /// the memory queue is full. [`AuditStatus::last_error`](crate::AuditStatus::last_error)
    /// says why the collector is not answering.
    #[error(
        "refused: no durable place for the audit record (the collector is not answering and \
         there is no spool or it is full, or the queue is full); policy fail_closed"
    )]
    AuditUnavailable,
    /// `block`: no room on the audit path within the configured timeout.
    #[error("refused: no room on the audit path within {0:?}; policy block")]
    TimedOut(Duration),
    /// The exporter has shut down (its [`FlushGuard`](crate::FlushGuard) was dropped).
    #[error("refused: the audit exporter has shut down")]
    ShutDown,
    /// The current `tracing` subscriber has no [`AuditLayer`]:
    /// the action would leave no audit row.
    #[error("refused: no AuditLayer in the current tracing subscriber")]
    NotInstalled,
    /// An identity lifecycle call got an actor of the wrong kind.
    #[error("refused: {0}")]
    Invalid(String),
}

/// Identity lifecycle fields (see [`crate::identity`]); all optional.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdentityFields {
    pub agent: Option<String>,
    pub owner: Option<String>,
    pub owner_previous: Option<String>,
    pub owner_new: Option<String>,
    pub credential_previous: Option<String>,
    pub credential_new: Option<String>,
    pub access_change: Option<String>,
    pub cascade_parent: Option<String>,
    pub cascade_size: Option<u64>,
}

/// A gated privileged action, with optional parts; [`Privileged::open`]
/// runs the gate.
///
/// ```
/// # use audit_layer::{Actor, AuditLayer, MemorySink, Policy, Privileged};
/// # use tracing_subscriber::layer::SubscriberExt;
/// # let sink = MemorySink::default();
/// # let (layer, _g) = AuditLayer::builder().memory(sink.clone())
/// #     .policy(Policy::default().dangerous_action("payments.*")).build().unwrap();
/// # tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
/// let actor = Actor::agent("agt_7f3", "usr_alice");
/// // Dangerous by policy: without consent the gate refuses.
/// assert!(Privileged::new(&actor, "payments.transfer").target("acct_42").open().is_err());
/// let guard = Privileged::new(&actor, "payments.transfer")
///     .target("acct_42")
///     .consent("cns_1")
///     .scopes("payments:write")
///     .open()
///     .expect("attributed, consented, audit path healthy");
/// # drop(guard); });
/// # assert_eq!(sink.records()[0].consent_id.as_deref(), Some("cns_1"));
/// ```
#[derive(Clone, Debug)]
#[must_use = "call .open() to run the gate"]
pub struct Privileged<'a> {
    actor: &'a Actor,
    action: String,
    target: Option<String>,
    consent: Option<String>,
    scopes: Option<String>,
    pub(crate) identity: IdentityFields,
    /// Room to ask for (a cascade asks once for all its rows).
    pub(crate) rows: usize,
    pub(crate) admitted: bool,
}

impl<'a> Privileged<'a> {
    /// `actor` does `action`.
    pub fn new(actor: &'a Actor, action: impl Into<String>) -> Privileged<'a> {
        Privileged {
            actor,
            action: action.into(),
            target: None,
            consent: None,
            scopes: None,
            identity: IdentityFields::default(),
            rows: 1,
            admitted: false,
        }
    }

    /// To what.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The consent (required for dangerous actions): the signed token
    /// when the layer verifies consent, else the consent id.
    pub fn consent(mut self, consent_id: impl Into<String>) -> Self {
        self.consent = Some(consent_id.into());
        self
    }

    /// Authorization scopes, comma- or space-separated.
    pub fn scopes(mut self, scopes: impl Into<String>) -> Self {
        self.scopes = Some(scopes.into());
        self
    }

    /// Runs the gate: attribution, then audit-path health, then the span,
    /// entered on this thread until the guard drops.
    pub fn open(self) -> Result<GateGuard, GateError> {
        self.open_span().map(GateSpan::entered)
    }

    /// Runs the gate like [`open`](Self::open), for async code: the span is
    /// returned open but not entered, in a [`GateSpan`] that is `Send`.
    pub fn open_span(self) -> Result<GateSpan, GateError> {
        let core = current().ok_or(GateError::NotInstalled)?;
        self.open_span_with(&core)
    }

    pub(crate) fn open_with(self, core: &Core) -> Result<GateGuard, GateError> {
        self.open_span_with(core).map(GateSpan::entered)
    }

    fn open_span_with(self, core: &Core) -> Result<GateSpan, GateError> {
        // 1. Attribution, with the rules the layer and the collector apply.
        let a = self.actor;
        let mut d = Draft {
            start_time_ns: Some(now_ns()),
            ..Draft::default()
        };
        d.set(Field::ActorKind, a.kind().to_owned());
        for (f, v) in [
            (Field::AgentId, a.agent_id()),
            (Field::OwnerId, Some(a.owner_id())),
            (Field::Action, Some(self.action.as_str())),
            (Field::ConsentId, self.consent.as_deref()),
            // A consent token is checked against these too.
            (Field::Target, self.target.as_deref()),
            (Field::Scopes, self.scopes.as_deref()),
            (Field::Delegation, a.delegation_json()),
            (Field::OriginId, a.origin_id()),
        ] {
            if let Some(v) = v {
                d.set(f, v.to_owned());
            }
        }
        d.dangerous = core.rules().is_dangerous_action(&self.action);
        if let Err(rejection) = core.precheck(d) {
            core.report_rejection(&rejection, gate_metadata(), now_ns());
            return Err(GateError::Unattributed(Box::new(rejection)));
        }
        // 2. The audit path can take the record(s).
        if !self.admitted {
            core.sink.admit(self.rows).map_err(|r| match r {
                Refusal::Full => GateError::AuditUnavailable,
                Refusal::TimedOut(t) => GateError::TimedOut(t),
                Refusal::ShutDown => GateError::ShutDown,
            })?;
        }
        // 3. The privileged span.
        let event_id = ids::event_id();
        let i = &self.identity;
        let span = tracing::info_span!(
            target: "audit",
            "audit.gate",
            actor.kind = a.kind(),
            agent.id = a.agent_id(),
            owner.id = a.owner_id(),
            agent.credential = a.credential_id(),
            agent.name = a.agent_name(),
            initiator.id = a.initiator_id(),
            task.id = a.task_id(),
            delegation = a.delegation_json(),
            origin.id = a.origin_id(),
            delegation.from = a.delegation_from(),
            action = self.action.as_str(),
            target = self.target.as_deref(),
            consent = self.consent.as_deref(),
            scopes = self.scopes.as_deref(),
            event.id = event_id.as_str(),
            outcome = tracing::field::Empty,
            identity.agent.id = i.agent.as_deref(),
            identity.owner.id = i.owner.as_deref(),
            identity.owner.previous = i.owner_previous.as_deref(),
            identity.owner.new = i.owner_new.as_deref(),
            identity.credential.previous = i.credential_previous.as_deref(),
            identity.credential.new = i.credential_new.as_deref(),
            identity.access.change = i.access_change.as_deref(),
            identity.cascade.parent = i.cascade_parent.as_deref(),
            identity.cascade.size = i.cascade_size,
        );
        Ok(GateSpan { span, event_id })
    }
}

/// `actor` does `action` to `target`: runs the gate (see the [module
/// docs](mod@crate::gate)). On `Ok`, do the work while the guard lives; on
/// `Err`, refuse the operation.
pub fn gate(actor: &Actor, action: &str, target: &str) -> Result<GateGuard, GateError> {
    Privileged::new(actor, action).target(target).open()
}

/// [`gate()`] for async code: the same checks, and a [`GateSpan`] (`Send`,
/// not entered) to `.instrument(fut)` with.
pub fn gate_span(actor: &Actor, action: &str, target: &str) -> Result<GateSpan, GateError> {
    Privileged::new(actor, action).target(target).open_span()
}

/// The shared core of the layer in the current dispatcher.
pub(crate) fn current() -> Option<Arc<Core>> {
    // Cloned out of the closure: creating a span inside `get_default` would
    // reach a no-op dispatcher (re-entrancy), losing the audit row.
    tracing::dispatcher::get_default(|d| d.downcast_ref::<AuditLayer>().map(|l| l.core.clone()))
}

/// Callsite metadata for violations found by the gate itself.
fn gate_metadata() -> &'static tracing::Metadata<'static> {
    struct Cs;
    static CS: Cs = Cs;
    impl tracing_core::callsite::Callsite for Cs {
        fn set_interest(&self, _: tracing_core::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            &META
        }
    }
    static META: tracing::Metadata<'static> = tracing::Metadata::new(
        GATE_SPAN,
        "audit",
        tracing::Level::INFO,
        Some(file!()),
        Some(line!()),
        Some(module_path!()),
        tracing_core::field::FieldSet::new(&[], tracing_core::identify_callsite!(&CS)),
        tracing_core::metadata::Kind::SPAN,
    );
    &META
}

/// An open, entered privileged span: the gate said yes. The audit row is
/// written when it is dropped (the span closes).
///
/// It keeps the span entered on this thread, so it is not `Send`: in async
/// code use [`gate_span`] (or [`Privileged::open_span`]), whose
/// [`GateSpan`] can be held across `.await`, or hand the span over with
/// [`GateGuard::instrument`].
#[must_use = "the privileged span closes when the guard is dropped"]
#[derive(Debug)]
pub struct GateGuard {
    pub(crate) entered: EnteredSpan,
    pub(crate) event_id: String,
}

impl GateGuard {
    /// The audit row's `event_id` (UUIDv7): reference it in the application's
    /// own records or responses.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The privileged span.
    pub fn span(&self) -> &Span {
        &self.entered
    }

    /// Records the outcome: `ok`, `error` or `denied` (default `ok`, or
    /// `error` after an `ERROR` event inside).
    pub fn outcome(&self, outcome: &str) {
        self.entered.record("outcome", outcome);
    }

    /// Exits the span and hands it over (still open) for async code:
    /// `work().instrument(guard.exit()).await`.
    pub fn exit(self) -> Span {
        self.entered.exit()
    }

    /// Exits the span and makes it the span of `fut`: the privileged work
    /// runs inside it wherever the future is polled, and the row is written
    /// when the future is dropped (done).
    pub fn instrument<F: std::future::Future>(self, fut: F) -> Instrumented<F> {
        fut.instrument(self.exit())
    }
}
