//! # audit-layer
//!
//! A [`tracing_subscriber::Layer`] that turns *privileged* spans into audit
//! records carrying the **dual key**: the agent that acted and the human
//! accountable for it. It ships them over OTLP to the audit collector.
//! A privileged span without the dual key never becomes an audit row: it
//! becomes a *violation* record, a counter goes up, and in strict mode the
//! layer panics.
//!
//! Add it next to whatever you already have:
//!
//! ```
//! use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let sink = MemorySink::default(); // or .otlp_grpc(..) / .otlp_http(..) / .from_env()
//! let (audit, _guard) = AuditLayer::builder()
//!     .service_name("billing")
//!     .memory(sink.clone())
//!     .build()
//!     .expect("valid audit configuration");
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(audit);
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     // Typed: forgetting the actor does not compile.
//!     let actor = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
//!     privileged_span!(&actor, "payments.transfer", target = "acct_42", amount = 100)
//!         .in_scope(|| { /* the privileged work */ });
//!
//!     // Raw tracing spans work too: target `audit`, fields by alias.
//!     tracing::info_span!(target: "audit", "users.invite",
//!         actor.kind = "human", owner.id = "usr_alice", target = "usr_bob")
//!         .in_scope(|| {});
//!
//!     // Unattributed: rejected, reported as a violation.
//!     tracing::info_span!(target: "audit", "users.delete").in_scope(|| {});
//! });
//!
//! let records = sink.records();
//! assert_eq!(records[0].agent_id.as_deref(), Some("agt_7f3"));
//! assert_eq!(records[0].attributes["amount"], "100");
//! assert_eq!(records[1].actor_kind, audit_schema::ActorKind::Human);
//! assert_eq!(sink.violations()[0].missing, ["audit.actor.kind"]);
//! ```
//!
//! ## Privileged spans
//!
//! By default a span is privileged when its target is `audit` or lies under
//! it (`audit::payments`), or when it records `audit.privileged = true`; see
//! [`Policy`] for extra targets, span names and predicates. Everything else
//! passes through untouched: the decision is made from static metadata and
//! costs no allocation. The flag can only add privilege: a span the policy
//! names stays privileged whatever it records.
//!
//! ## Span fields
//!
//! A field is read by its short alias or by its wire name; both are
//! accepted on spans. Any other field is kept in the record's `attributes`,
//! stringified. The action is the span name unless an `action` field says
//! otherwise; an `ERROR` event inside the span makes the outcome `error`
//! unless an `outcome` was recorded. Fields may be declared
//! `tracing::field::Empty` and recorded later with `Span::record`: the rules
//! are checked when the span closes.
//!
//! This table is `audit_schema::wire::markdown_fields()` (a test keeps it so):
//!
//! | on a `tracing` span | on the wire | meaning |
//! |---|---|---|
//! | `event.id` | `audit.event.id` | UUIDv7 made by the client; idempotency key end to end |
//! | `end_time_unix_nano` | `audit.end_time_unix_nano` | span close time (int, ns since the epoch) |
//! | `actor.kind` | `audit.actor.kind` | `agent` or `human`; a human must be stated, never inferred |
//! | `agent.id` | `gen_ai.agent.id` | stable agent principal id; survives credential rotation |
//! | `agent.name` | `gen_ai.agent.name` | display name of the agent |
//! | `agent.credential` | `audit.agent.credential.id` | which credential the agent used |
//! | `owner.id` | `audit.owner.id` | the accountable human |
//! | `initiator.id` | `audit.initiator.id` | who started the task |
//! | `task.id` | `audit.task.id` | which task |
//! | `action` | `audit.action` | what was done (the span name when absent) |
//! | `target` | `audit.target` | to what |
//! | `outcome` | `audit.outcome` | `ok`, `error` or `denied` |
//! | `scopes` | `audit.scopes` | authorization scopes (string array; comma-separated on spans) |
//! | `consent` | `audit.consent.id` | consent id, required for dangerous actions; a signed consent token is accepted here too |
//! | `consent.token` | `audit.consent.token` | signed consent token (compact JWS, EdDSA) from the approval service |
//! | `inputs.sha256` | `audit.inputs.sha256` | SHA-256 of the inputs the agent acted on |
//! | `delegation` | `audit.delegation` | delegation chain (v2): JSON array of hops `{kind, id, owner_id, credential_id, scopes}`, origin first, acting actor last |
//! | `origin.id` | `audit.origin.id` | the human at the start of the delegation chain (v2) |
//! | `delegation.from` | `audit.delegation.from` | the service that sent the chain in a request header: the chain is its claim (v2) |
//! | `audit.privileged` | `audit.privileged` | `true` makes a span privileged whatever its target |
//! | `audit.dangerous` | `audit.dangerous` | `true` makes an action dangerous: consent required |
//!
//! ## Delivery guarantees and the gate
//!
//! The layer is the one shared write path for privileged actions, and
//! every record it accepted ends acknowledged, refused, spooled, or counted
//! as lost and reported (see [`export`], "Where every record ends").
//! A record leaves the layer's hands only
//! when the collector has **acknowledged** it (the collector acks only what
//! it has made durable) or has **refused** it; refusals (`partial_success`)
//! are counted, logged once with the collector's reason and visible through
//! [`AuditStatus`] (`refused`, `last_refusal`). Everything else is retried
//! with jittered exponential backoff that honours the collector's throttling
//! hints (HTTP `Retry-After`, gRPC `RetryInfo`), with no deadline while the
//! application runs; the first failure is logged at once with the endpoint,
//! protocol and cause. While the collector is unreachable, records wait in
//! memory and then in a local **disk spool** (configurable directory and size
//! cap; checksummed frames, fsynced); an application restarted during the
//! outage resends its spool when the collector returns, and the collector's
//! `event_id` deduplication makes such resends harmless: delivery is **at
//! least once, stored exactly once**. Without a spool, records still
//! queued when the application shuts down during an outage are lost, and
//! [`FlushGuard::shutdown`] returns [`FlushError::Lost`] with the count:
//! configure a spool in production. When no durable place can take a
//! record, a stated [`WhenFull`] policy applies: `fail_closed` (the
//! default) refuses new privileged actions *before they run* (the exact
//! rule is in [`WhenFull`]'s docs); `block` waits up to a timeout,
//! then refuses; `drop` (explicit opt-in) admits the action, counts every
//! dropped record and reports the count to the collector as a violation once
//! delivery resumes. Nothing is dropped silently. Code paths call
//! [`gate()`] (or [`Privileged`]) before a privileged operation: it checks
//! the dual key with the same [`audit_schema::Rules`] as the collector,
//! checks that the audit path can take the record under the policy, opens
//! the privileged span and returns a [`GateGuard`], or a [`GateError`] that
//! the application turns into a refusal. Spans inside a gated action inherit
//! its dual key. Identity lifecycle events (credential rotation, agent
//! creation and revocation, owner transfer, an owner's access change with
//! one row per affected agent) go through the same gate: see [`identity`].
//!
//! [`AuditLayerBuilder::build`] returns the layer and a [`FlushGuard`]:
//! records travel through a bounded queue to a worker thread that batches
//! them into OTLP log records (gRPC or HTTP/protobuf). Drop the guard last;
//! it delivers what is queued within a bounded time (what the collector
//! cannot take by then stays in the spool), on a current-thread or
//! multi-thread tokio runtime or outside any. See [`export`] for the
//! details, and for the `OTEL_*` variables read by
//! [`AuditLayerBuilder::from_env`].
//!
//! ```no_run
//! use std::time::Duration;
//! use audit_layer::{gate, Actor, AuditLayer, WhenFull};
//!
//! let (layer, _guard) = AuditLayer::builder()
//!     .otlp_grpc("http://127.0.0.1:4317")
//!     .spool_dir("/var/lib/billing/audit-spool")
//!     .spool_max_bytes(512 << 20)
//!     .when_full(WhenFull::FailClosed)
//!     .build()?;
//! # let _ = layer;
//! let actor = Actor::agent("agt_7f3", "usr_alice");
//! match gate(&actor, "payments.transfer", "acct_42") {
//!     Ok(_guard) => { /* transfer; the row is written when the guard drops */ }
//!     Err(refused) => { /* answer 503: {refused} */ }
//! }
//! # Ok::<(), audit_layer::BuildError>(())
//! ```
//!
//! ## Async code
//!
//! A [`GateGuard`] keeps its span entered on one thread and is not `Send`.
//! In a task (`tokio::spawn`, a multi-threaded runtime) open the gate with
//! [`gate_span`] instead: the same checks, and a [`GateSpan`] that may be
//! held across `.await` and instruments the privileged work, entered
//! wherever the future is polled:
//!
//! ```
//! use audit_layer::{gate_span, Actor, GateError};
//!
//! async fn transfer(agent: Actor, account: String) -> Result<String, GateError> {
//!     let gated = gate_span(&agent, "payments.transfer", &account)?;
//!     let event_id = gated.event_id().to_owned();
//!     gated.instrument(async { /* the privileged work, awaits and all */ }).await;
//!     Ok(event_id)
//! }
//!
//! fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
//! spawnable(transfer(Actor::agent("agt_7f3", "usr_alice"), "acct_42".into()));
//! ```
//!
//! ## Side doors
//!
//! The gate records intent; [`require_gate`], called where a privileged
//! effect happens, finds the code paths that perform it without passing a
//! gate whose action matches, and records each as an `ungated` violation
//! (panicking in strict mode): see [`effect`].
//!
//! ## OpenTelemetry traces
//!
//! With the feature `opentelemetry` and `tracing-opentelemetry` in the same
//! subscriber (either order), a row's `trace_id` and `span_id` are those of
//! the OpenTelemetry span made for the same tracing span, so a row leads to
//! its trace in Jaeger or Tempo, and a server that joins a caller's trace
//! (`OpenTelemetrySpanExt::set_parent` with a context extracted from
//! `traceparent`) writes rows in the caller's trace. Without either, rows
//! carry ids of the layer's own. The ids are read when the span is first
//! entered (or, never entered, at its close), so `set_parent` must come
//! before the span is entered, as `tracing-opentelemetry` requires anyway.
//!
//! ## Inside the crate
//!
//! Each module uses only modules listed before it, so dependencies run one
//! way (a test reads this list and the sources, and fails on a cycle):
//!
//! 1. `clock`: wall-clock time in nanoseconds, as OTLP carries it;
//! 2. `ids`: trace, span and event ids;
//! 3. `trace_context`: a span's OpenTelemetry trace and span id (feature
//!    `opentelemetry`);
//! 4. `stats`: the counters behind [`AuditStatus`];
//! 5. `build_error`: [`BuildError`];
//! 6. `consent`: consent tokens, and the keys that verify them ([`consent`]);
//! 7. `actor`: the typed [`Actor`];
//! 8. `fields`: a privileged span's fields as the layer holds them until
//!    its record is checked (inline, shared, ids binary);
//! 9. `policy`: what is privileged, and the dual-key rules;
//! 10. `triage`: the policy's class per callsite, and which span ids
//!     carry the layer's state, so that other spans cost it next to nothing;
//! 11. `export`: the queue, the worker thread, the transports and the spool;
//! 12. `core`: what the layer and the gate share (policy, resource, sink,
//!     status), held once behind an `Arc`;
//! 13. `layer`: [`AuditLayer`], which owns the core;
//! 14. `gate`: [`gate()`], which finds the core through the layer in the
//!     current dispatcher;
//! 15. `effect`: [`require_gate`], which walks the open spans through the
//!     layer in the current dispatcher;
//! 16. `identity`: lifecycle actions, through the gate;
//! 17. `builder`: [`AuditLayerBuilder`], which assembles the rest;
//! 18. `macros`: [`privileged_span!`];
//! 19. `propagation`: the delegation chain on request headers, and the
//!     caller [`Actor`] rebuilt from them.
#![warn(missing_docs)]

mod actor;
mod build_error;
mod builder;
mod clock;
pub mod consent;
mod core;
pub mod effect;
pub mod export;
mod fields;
pub mod gate;
pub mod identity;
mod ids;
mod layer;
mod macros;
mod policy;
pub mod propagation;
mod stats;
mod trace_context;
mod triage;

pub use actor::Actor;
pub use build_error::BuildError;
pub use builder::AuditLayerBuilder;
pub use effect::{require_gate, Ungated};
pub use export::{
    Destination, FlushError, FlushGuard, MemorySink, Protocol, WhenFull, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT, SCOPE_NAME,
};
pub use gate::{gate, gate_span, GateError, GateGuard, GateSpan, Privileged};
pub use layer::AuditLayer;
pub use policy::Policy;
pub use stats::{AuditStatus, StatsSnapshot};

/// The schema crate, re-exported so that records can be inspected without
/// a second dependency.
pub use audit_schema as schema;

#[doc(hidden)]
pub mod __private {
    // The macro names tracing through this path, so that callers need not
    // depend on tracing themselves.
    pub use tracing;

    pub use crate::ids::EventId;

    /// A fresh event id for `privileged_span!`, so that the span (and any
    /// `fmt` log of it) carries the id its audit row will have.
    pub fn event_id() -> EventId {
        crate::ids::event_id_text()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crate_docs_carry_the_schema_field_table() {
        let docs: String = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! "))
            .map(|l| format!("{l}\n"))
            .collect();
        for row in audit_schema::wire::markdown_fields().lines() {
            assert!(docs.contains(row), "crate docs lack the row {row:?}");
        }
    }

    /// Every `crate::module` path in `src/` names a module listed before
    /// the one it is written in, in the crate docs' "Inside the crate".
    #[test]
    fn modules_depend_one_way_in_the_documented_order() {
        let order: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! "))
            .filter_map(|l| l.split_once(". `"))
            .filter(|(n, _)| n.trim().parse::<u32>().is_ok())
            .filter_map(|(_, rest)| rest.split_once('`').map(|(m, _)| m))
            .collect();
        let rank = |m: &str| order.iter().position(|o| *o == m);
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if rel == "lib.rs" || !rel.ends_with(".rs") {
                continue;
            }
            let module = rel.split(['/', '.']).next().unwrap();
            let own = rank(module).unwrap_or_else(|| panic!("module {module} is not in the list"));
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().enumerate();
            for (n, line) in lines.filter(|(_, l)| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    if line[..at].ends_with('$') {
                        continue;
                    }
                    let used: String = line[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let theirs = rank(&used)
                        .unwrap_or_else(|| panic!("{rel}: `crate::{used}` is not a listed module"));
                    assert!(
                        theirs <= own,
                        "{rel}:{} uses `{used}`, listed after `{module}`",
                        n + 1
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            order.len() >= 10 && checked > 0,
            "found {order:?}, {checked} paths"
        );
    }
}
