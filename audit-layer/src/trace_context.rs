//! The OpenTelemetry span a privileged span is, when `tracing-opentelemetry`
//! runs beside the layer (feature `opentelemetry`).
//!
//! Without it the layer makes its own trace and span ids, which point
//! nowhere an auditor can follow. With it, a row carries the trace and span
//! id that Jaeger or Tempo show for the same span, and a `traceparent`
//! extracted from a caller's request joins the caller's trace, so rows of
//! several services share one trace id.
//!
//! The ids are read from the span's `tracing-opentelemetry` data, not from
//! `opentelemetry::Context::current()`: during our `on_enter` the current
//! context is the span's own or its parent's depending on the order the two
//! layers were added in. The layer reads them when the span is first
//! entered, by then the OpenTelemetry layer has made its data whatever the
//! order. Not earlier: reading starts the OpenTelemetry span, after which
//! `OpenTelemetrySpanExt::set_parent` (how a server joins the trace of an
//! extracted `traceparent`) no longer works. A span closed without ever
//! being entered is read at its close, which finds the data only when the
//! OpenTelemetry layer was added after the audit layer; otherwise its row
//! keeps the layer's own ids.

use tracing_core::dispatcher::WeakDispatch;
use tracing_core::span::Id;

/// A trace id and a span id, as OTLP carries them.
pub(crate) type OtelIds = ([u8; 16], [u8; 8]);

/// Trace id and span id of span `id`'s OpenTelemetry span, binary;
/// `None` without `tracing-opentelemetry` in the subscriber, or when its
/// data is gone or invalid.
#[cfg(feature = "opentelemetry")]
pub(crate) fn otel_ids(dispatch: Option<&WeakDispatch>, id: &Id) -> Option<OtelIds> {
    use opentelemetry::trace::TraceContextExt;

    let dispatch = dispatch?.upgrade()?;
    let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_bytes(), sc.span_id().to_bytes()))
}

/// Without the feature there is no OpenTelemetry span to read.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn otel_ids(_: Option<&WeakDispatch>, _: &Id) -> Option<OtelIds> {
    None
}
