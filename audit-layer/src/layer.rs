//! The `tracing_subscriber::Layer`: gathers a privileged span's fields
//! (`fields`), hands them to the exporter when the span closes, where the
//! dual key is checked and the audit record (or a violation record) made;
//! in strict mode the check runs here, at the close.
//!
//! Non-privileged spans are decided from static metadata in `on_new_span`
//! (the class cached per callsite) and then left alone: no allocation, no
//! extension, and when entered, recorded or closed no lookup of the span
//! (its id is not marked, `triage`).

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use audit_schema::{Field, Rejection};
use tracing_core::dispatcher::WeakDispatch;
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Interest, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::now_ns;
use crate::core::Core;
use crate::export::Item;
use crate::fields::{Closed, FieldVisitor, SpanFields};
use crate::ids;
use crate::policy::Static;
use crate::trace_context;
use crate::triage::{Callsites, Marks};

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
    /// The policy's class of each callsite seen.
    pub(crate) callsites: Callsites,
    /// The ids of the spans that carry a [`SpanState`].
    pub(crate) marks: Marks,
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
            .map(|st| st.span.fields.get(Field::Action).unwrap_or(s.name()));
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
    /// The fields and the callsite, in the form they are handed over at
    /// close. Boxed: the ~1.5 KB of inline values would otherwise be copied
    /// into the registry's box, out of it, and into the export queue, which
    /// was a quarter of the application thread's time per span.
    span: Box<Closed>,
    /// The policy said so from metadata; otherwise only `audit.privileged = true` counts.
    statically_privileged: bool,
    /// The OpenTelemetry span's ids were looked for (`trace_context`).
    otel_checked: bool,
}

impl SpanState {
    fn privileged(&self) -> bool {
        self.statically_privileged || self.span.fields.privileged
    }
}

impl<S> Layer<S> for AuditLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _: &mut S) {
        self.scope = Some(walk_scope::<S>);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.callsites.register(&self.core.policy, meta);
        // The layer never filters: other layers see every span.
        Interest::always()
    }

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // The first subscriber wins: a layer joins only one.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        let statically_privileged = match self.callsites.classify(&self.core.policy, meta) {
            Static::No => return,
            Static::Privileged => true,
            Static::IfFlagged => false,
        };
        let Some(span) = ctx.span(id) else { return };
        let mut state = SpanState {
            span: Box::new(Closed {
                fields: SpanFields::new(now_ns()),
                meta,
                end_ns: 0,
                error_seen: false,
            }),
            statically_privileged,
            otel_checked: false,
        };
        let fields = &mut state.span.fields;
        attrs.record(&mut FieldVisitor(fields));
        // One trace per privileged operation tree: a privileged child joins
        // its nearest privileged ancestor's trace, and a child that names
        // no actor at all inherits the ancestor's dual key (agent, owner,
        // credential, name, initiator, task, delegation chain): work done inside a gated
        // action is done by the same actor.
        let names_actor = fields.names_actor();
        let inherited = span.scope().skip(1).find_map(|ancestor| {
            let ext = ancestor.extensions();
            let parent = &ext.get::<SpanState>()?.span.fields;
            if !names_actor {
                fields.inherit(parent);
            }
            Some(parent.trace_id)
        });
        fields.trace_id = inherited.unwrap_or_else(ids::trace_id_bytes);
        fields.span_id = ids::span_id_bytes();
        span.extensions_mut().insert(state);
        self.marks.mark(id);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        // Only the OpenTelemetry ids are read here; without the feature,
        // entering a span costs the layer nothing.
        if !cfg!(feature = "opentelemetry") {
            return;
        }
        if !self.marks.may_carry(id) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
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
                state.span.fields.trace_id = trace_id;
                state.span.fields.span_id = span_id;
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !self.marks.may_carry(id) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            values.record(&mut FieldVisitor(&mut state.span.fields));
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
                    state.span.error_seen = true;
                    return;
                }
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        // Most spans are not privileged: skip the registry lookup.
        if !self.marks.may_carry(&id) {
            return;
        }
        // Take the state out and release the span before doing anything
        // that may panic (strict mode) or block.
        let state = {
            let Some(span) = ctx.span(&id) else { return };
            let mut ext = span.extensions_mut();
            ext.remove::<SpanState>()
        };
        let Some(mut state) = state else { return };
        self.marks.unmark(&id);
        if state.privileged() {
            // A span closed without being entered: the OpenTelemetry
            // layer's data is still there if it was added after this one.
            if !state.otel_checked {
                if let Some((trace_id, span_id)) = trace_context::otel_ids(self.dispatch.get(), &id)
                {
                    state.span.fields.trace_id = trace_id;
                    state.span.fields.span_id = span_id;
                }
            }
            self.finish(state);
        }
    }
}

impl AuditLayer {
    /// Hands the span over; its record is made and checked after the
    /// hand-off (by the export worker), except in strict mode, which must
    /// panic here, at the offending span, and for the in-memory sink, whose
    /// records are visible when the span has closed: those check the span
    /// where it lies.
    fn finish(&self, mut state: SpanState) {
        self.core.status.add_privileged_spans(1);
        let span = &mut state.span;
        span.end_ns = now_ns();
        if !self.strict && !self.core.checks_at_once() {
            return self.core.send(Item::Span(state.span));
        }
        match self.core.record_of(span) {
            Ok(record) => self.core.send(Item::Action(record)),
            Err(rejection) => self.reject(rejection, span.meta, span.end_ns),
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
