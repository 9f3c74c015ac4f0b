//! The `tracing_subscriber::Layer`: gathers a privileged span's fields into
//! a [`Draft`], checks the dual key when the span closes, and hands an
//! audit record (or a violation record) to the exporter.
//!
//! Non-privileged spans are decided from static metadata in `on_new_span`
//! and then left alone: no allocation, no extension, nothing on close.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use audit_schema::{Draft, Field, Rejection};
use tracing_core::dispatcher::WeakDispatch;
use tracing_core::field::Visit;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::now_ns;
use crate::core::Core;
use crate::export::Item;
use crate::ids;
use crate::policy::Static;
use crate::trace_context;

/// Checks privileged spans for the dual key and ships the result.
///
/// Built with [`AuditLayer::builder`](crate::AuditLayer::builder), which
/// also returns the [`FlushGuard`](crate::FlushGuard) that owns delivery.
pub struct AuditLayer {
    /// Shared with [`crate::gate`], which finds it through the current dispatcher.
    pub(crate) core: Arc<Core>,
    pub(crate) strict: bool,
    /// Walks the open spans around the current code; set when the layer
    /// joins a subscriber, whose type it needs (see [`OpenSpan`]).
    pub(crate) scope: Option<WalkScope>,
    /// The subscriber the layer joined, to read a span's OpenTelemetry
    /// ids from `tracing-opentelemetry` ([`trace_context`]).
    pub(crate) dispatch: OnceLock<WeakDispatch>,
}

/// A span open around the current code, as [`WalkScope`] shows it.
pub(crate) struct OpenSpan<'a> {
    /// The callsite's span name.
    pub name: &'static str,
    /// The action, for a privileged span (its `action` field, else its name).
    pub action: Option<&'a str>,
}

/// Calls `f` on the span `id` and each of its ancestors, innermost first,
/// until `f` breaks. Reads the registry's span data and the layer's
/// per-span state in place: no allocation.
///
/// The layer's subscriber type is known only in `Layer<S>` methods, so the
/// function is made there (`on_layer`) and kept as a pointer, the way
/// `tracing-error` reaches span data from outside a layer.
pub(crate) type WalkScope = fn(&Dispatch, &Id, &mut dyn FnMut(&OpenSpan<'_>) -> ControlFlow<()>);

fn walk_scope<S>(d: &Dispatch, id: &Id, f: &mut dyn FnMut(&OpenSpan<'_>) -> ControlFlow<()>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = d.downcast_ref::<S>().and_then(|s| s.span(id)) else {
        return;
    };
    for s in span.scope() {
        let ext = s.extensions();
        let action = ext
            .get::<SpanState>()
            .filter(|st| st.privileged())
            .map(|st| st.draft.action.as_deref().unwrap_or(s.name()));
        let open = OpenSpan {
            name: s.name(),
            action,
        };
        if f(&open).is_break() {
            return;
        }
    }
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("policy", &self.core.policy)
            .field("strict", &self.strict)
            .field("resource", &self.core.resource)
            .finish_non_exhaustive()
    }
}

/// Per-span state, stored in the span's extensions (privileged spans only).
struct SpanState {
    start_ns: i64,
    draft: Draft,
    /// Callsite, kept for the violation record.
    meta: &'static Metadata<'static>,
    /// The policy said so from metadata; otherwise only `audit.privileged = true` counts.
    statically_privileged: bool,
    /// An `outcome` field was recorded: an ERROR event must not overwrite it.
    explicit_outcome: bool,
    /// An ERROR-level event happened inside the span.
    error_seen: bool,
    /// The OpenTelemetry span's ids were looked for (`trace_context`).
    otel_checked: bool,
}

impl SpanState {
    fn privileged(&self) -> bool {
        self.statically_privileged || self.draft.privileged
    }
}

/// Fills a draft from span fields. Every `record_*` goes through [`Self::put`].
struct DraftVisitor<'a> {
    draft: &'a mut Draft,
    explicit_outcome: &'a mut bool,
}

enum Value {
    Bool(bool),
    Text(String),
}

impl DraftVisitor<'_> {
    fn put(&mut self, field: &tracing_core::Field, value: Value) {
        self.put_as(Field::from_span_field(field.name()), field, value);
    }

    fn put_as(&mut self, known: Option<Field>, field: &tracing_core::Field, value: Value) {
        match (known, value) {
            (Some(f), value) => {
                if f == Field::Outcome {
                    *self.explicit_outcome = true;
                }
                match value {
                    Value::Bool(b) => self.draft.set_bool(f, b),
                    Value::Text(s) => self.draft.set(f, s),
                }
            }
            (None, value) => {
                let s = match value {
                    Value::Bool(b) => b.to_string(),
                    Value::Text(s) => s,
                };
                self.draft.attributes.insert(field.name().to_owned(), s);
            }
        }
    }
}

impl Visit for DraftVisitor<'_> {
    fn record_str(&mut self, field: &tracing_core::Field, value: &str) {
        match Field::from_span_field(field.name()) {
            // Split in place rather than copy the list to split it later.
            Some(Field::Scopes) => self.draft.scopes = audit_schema::record::split_scopes(value),
            known => self.put_as(known, field, Value::Text(value.to_owned())),
        }
    }

    fn record_bool(&mut self, field: &tracing_core::Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &tracing_core::Field, value: i64) {
        self.put(field, Value::Text(value.to_string()));
    }

    fn record_u64(&mut self, field: &tracing_core::Field, value: u64) {
        self.put(field, Value::Text(value.to_string()));
    }

    fn record_f64(&mut self, field: &tracing_core::Field, value: f64) {
        self.put(field, Value::Text(value.to_string()));
    }

    fn record_error(
        &mut self,
        field: &tracing_core::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.put(field, Value::Text(value.to_string()));
    }

    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn std::fmt::Debug) {
        // `%x` arrives here as a DisplayValue whose Debug is x's Display.
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

impl<S> Layer<S> for AuditLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _: &mut S) {
        self.scope = Some(walk_scope::<S>);
    }

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // The first subscriber wins: a layer joins only one.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let statically_privileged = match self.core.policy.classify(meta) {
            Static::No => return,
            Static::Privileged => true,
            Static::IfFlagged => false,
        };
        let Some(span) = ctx.span(id) else { return };
        let mut state = SpanState {
            start_ns: now_ns(),
            draft: Draft::default(),
            meta,
            statically_privileged,
            explicit_outcome: false,
            error_seen: false,
            otel_checked: false,
        };
        attrs.record(&mut DraftVisitor {
            draft: &mut state.draft,
            explicit_outcome: &mut state.explicit_outcome,
        });
        // One trace per privileged operation tree: a privileged child joins
        // its nearest privileged ancestor's trace, and a child that names
        // no actor at all inherits the ancestor's dual key (agent, owner,
        // credential, name, initiator, task, delegation chain): work done inside a gated
        // action is done by the same actor.
        let names_actor = {
            let d = &state.draft;
            d.actor_kind.is_some() || d.agent_id.is_some() || d.owner_id.is_some()
        };
        let inherited = span.scope().skip(1).find_map(|ancestor| {
            let ext = ancestor.extensions();
            let parent = ext.get::<SpanState>()?;
            if !names_actor {
                let (p, d) = (&parent.draft, &mut state.draft);
                d.actor_kind.clone_from(&p.actor_kind);
                d.agent_id.clone_from(&p.agent_id);
                d.owner_id.clone_from(&p.owner_id);
                d.agent_credential_id.clone_from(&p.agent_credential_id);
                d.agent_name.clone_from(&p.agent_name);
                if d.initiator_id.is_none() {
                    d.initiator_id.clone_from(&p.initiator_id);
                }
                if d.task_id.is_none() {
                    d.task_id.clone_from(&p.task_id);
                }
                d.delegation.clone_from(&p.delegation);
                d.origin_id.clone_from(&p.origin_id);
                d.delegation_from.clone_from(&p.delegation_from);
            }
            parent.draft.trace_id.clone()
        });
        state.draft.trace_id = Some(inherited.unwrap_or_else(ids::trace_id));
        state.draft.span_id = Some(ids::span_id());
        state.draft.service_name = self.core.resource.service_name.clone();
        state.draft.service_instance_id = self.core.resource.service_instance_id.clone();
        span.extensions_mut().insert(state);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        // Only the OpenTelemetry ids are read here; without the feature,
        // entering a span costs the layer nothing.
        if !cfg!(feature = "opentelemetry") {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if self.core.policy.surely_not_privileged(span.metadata()) {
            return;
        }
        let unchecked = span
            .extensions()
            .get::<SpanState>()
            .is_some_and(|st| !st.otel_checked);
        if !unchecked {
            return;
        }
        // Read without holding the extensions: `tracing-opentelemetry`
        // locks them.
        let found = trace_context::otel_ids(self.dispatch.get(), id);
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            state.otel_checked = true;
            if let Some((trace_id, span_id)) = found {
                state.draft.trace_id = Some(trace_id);
                state.draft.span_id = Some(span_id);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            values.record(&mut DraftVisitor {
                draft: &mut state.draft,
                explicit_outcome: &mut state.explicit_outcome,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Cheap test first: only errors matter to the audit trail.
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut ext = span.extensions_mut();
            if let Some(state) = ext.get_mut::<SpanState>() {
                if state.privileged() {
                    state.error_seen = true;
                    return;
                }
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // Take the state out and release the span before doing anything
        // that may panic (strict mode) or block.
        let state = {
            let Some(span) = ctx.span(&id) else { return };
            // Most spans are not privileged: skip the extensions' write lock.
            if self.core.policy.surely_not_privileged(span.metadata()) {
                return;
            }
            let mut ext = span.extensions_mut();
            ext.remove::<SpanState>()
        };
        if let Some(mut state) = state.filter(SpanState::privileged) {
            // A span closed without being entered: the OpenTelemetry
            // layer's data is still there if it was added after this one.
            if !state.otel_checked {
                if let Some((trace_id, span_id)) = trace_context::otel_ids(self.dispatch.get(), &id)
                {
                    state.draft.trace_id = Some(trace_id);
                    state.draft.span_id = Some(span_id);
                }
            }
            self.finish(state);
        }
    }
}

impl AuditLayer {
    fn finish(&self, state: SpanState) {
        self.core.status.add_privileged_spans(1);
        let SpanState {
            start_ns,
            mut draft,
            meta,
            explicit_outcome,
            error_seen,
            ..
        } = state;
        let end_ns = now_ns();
        draft.start_time_ns = Some(start_ns);
        draft.end_time_ns.get_or_insert(end_ns);
        if draft.action.as_deref().is_none_or(|a| a.trim().is_empty()) {
            draft.action = Some(meta.name().to_owned());
        }
        if error_seen && !explicit_outcome {
            draft.outcome = Some("error".to_owned());
        }
        // Record that the policy found it dangerous, not only the span: the
        // row then says why consent was required.
        if let Some(action) = draft.action.as_deref() {
            if self.core.rules().is_dangerous_action(action) {
                draft.dangerous = true;
            }
        }
        // A caller-supplied event id is kept: it is the idempotency key of
        // an action the application may retry.
        if draft
            .event_id
            .as_deref()
            .is_none_or(|e| e.trim().is_empty())
        {
            draft.event_id = Some(ids::event_id());
        }
        match self.core.check(draft) {
            Ok(record) => self.core.send(Item::Action(record)),
            Err(rejection) => self.reject(rejection, meta, end_ns),
        }
    }

    fn reject(&self, rejection: Rejection, meta: &'static Metadata<'static>, end_ns: i64) {
        let reason = self.core.report_rejection(&rejection, meta, end_ns);
        // Panicking while already unwinding would abort the process.
        if self.strict && !std::thread::panicking() {
            panic!(
                "audit-layer (strict): privileged span `{}` at {}:{} rejected: {}",
                meta.name(),
                meta.file().unwrap_or("<unknown>"),
                meta.line().unwrap_or(0),
                reason
            );
        }
    }
}
