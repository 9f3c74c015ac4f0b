//! Feature `opentelemetry`: with `tracing-opentelemetry` beside the audit
//! layer, a row's trace and span id are the ids of the OpenTelemetry span
//! exported for the same tracing span, nested spans keep their parent/child
//! relation, and a W3C `traceparent` carried by a real HTTP request puts the
//! rows of two services in one trace.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Keeps every ended OpenTelemetry span, synchronously (what Jaeger would get).
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Exported {
    fn on_start(&self, _: &mut Span, _: &Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().expect("not poisoned").push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Exported {
    fn named(&self, name: &str) -> SpanData {
        let spans = self.0.lock().expect("not poisoned");
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one exported span {name:?}: {spans:?}");
        found[0].clone()
    }
}

/// An audit layer for `service` writing to memory, and a tracer provider
/// exporting to memory.
fn parts(
    service: &str,
) -> (
    AuditLayer,
    audit_layer::FlushGuard,
    MemorySink,
    SdkTracerProvider,
    Exported,
) {
    let sink = MemorySink::default();
    let (audit, guard) = AuditLayer::builder()
        .service_name(service)
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(exported.clone())
        .build();
    (audit, guard, sink, provider, exported)
}

fn hex(id: SpanId) -> String {
    id.to_string()
}

/// A planner's transfer with a nested privileged ledger write.
fn nested_actions() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    privileged_span!(&actor, "payments.transfer", target = "acct_42").in_scope(|| {
        privileged_span!(&actor, "ledger.write", target = "acct_42").in_scope(|| {});
    });
    // Never entered: its row is read at close.
    drop(privileged_span!(
        &actor,
        "payments.quote",
        target = "acct_42"
    ));
}

fn check_rows_are_the_exported_spans(sink: &MemorySink, exported: &Exported, never_entered: bool) {
    let rows = sink.records();
    let row = |action: &str| {
        rows.iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("a row for {action}: {rows:?}"))
            .clone()
    };
    let (outer, inner) = (row("payments.transfer"), row("ledger.write"));
    let (o, i) = (
        exported.named("payments.transfer"),
        exported.named("ledger.write"),
    );
    assert_eq!(
        outer.trace_id.as_deref(),
        Some(o.span_context.trace_id().to_string().as_str())
    );
    assert_eq!(
        outer.span_id.as_deref(),
        Some(hex(o.span_context.span_id()).as_str())
    );
    assert_eq!(
        inner.trace_id.as_deref(),
        Some(i.span_context.trace_id().to_string().as_str())
    );
    assert_eq!(
        inner.span_id.as_deref(),
        Some(hex(i.span_context.span_id()).as_str())
    );
    // One trace, and the child's exported parent is the outer row's span.
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_eq!(Some(hex(i.parent_span_id)), outer.span_id);
    assert_ne!(inner.span_id, outer.span_id);
    let quote = row("payments.quote");
    let q = exported.named("payments.quote");
    let same = quote.span_id.as_deref() == Some(hex(q.span_context.span_id()).as_str());
    assert_eq!(
        same, never_entered,
        "never-entered span: {quote:?} vs {q:?}"
    );
}

fn run<S>(subscriber: S, f: impl FnOnce())
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber, f);
}

#[test]
fn rows_carry_the_opentelemetry_ids_with_opentelemetry_added_first() {
    let (audit, _guard, sink, provider, exported) = parts("billing");
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    run(
        tracing_subscriber::registry().with(otel).with(audit),
        nested_actions,
    );
    // A never-entered span is read at close, after this order's
    // OpenTelemetry layer dropped its data: the row keeps its own ids.
    check_rows_are_the_exported_spans(&sink, &exported, false);
}

#[test]
fn rows_carry_the_opentelemetry_ids_with_the_audit_layer_added_first() {
    let (audit, _guard, sink, provider, exported) = parts("billing");
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    run(
        tracing_subscriber::registry().with(audit).with(otel),
        nested_actions,
    );
    check_rows_are_the_exported_spans(&sink, &exported, true);
}

#[test]
fn without_an_opentelemetry_layer_rows_keep_the_layers_own_ids() {
    let (audit, _guard, sink, _provider, _exported) = parts("billing");
    run(tracing_subscriber::registry().with(audit), nested_actions);
    let rows = sink.records();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.trace_id.as_ref().map(String::len) == Some(32)));
    assert!(rows
        .iter()
        .all(|r| r.span_id.as_ref().map(String::len) == Some(16)));
}

/// The tool service: one HTTP request on 127.0.0.1, whose `traceparent`
/// becomes the parent of the privileged span it runs.
fn serve_one_request(listener: std::net::TcpListener) -> (MemorySink, Exported) {
    let (audit, guard, sink, provider, exported) = parts("ledger");
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("ledger"));
    run(
        tracing_subscriber::registry().with(otel).with(audit),
        || {
            let (mut stream, _) = listener.accept().expect("a request");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).expect("read the request");
                assert!(n > 0, "request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            let headers: HashMap<String, String> = String::from_utf8_lossy(&request)
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let parent = TraceContextPropagator::new().extract(&headers);
            let tool = Actor::agent("agt_worker", "usr_alice");
            let span = privileged_span!(&tool, "ledger.write", target = "acct_42");
            span.set_parent(parent)
                .expect("parent set before the span starts");
            span.in_scope(|| {});
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .expect("answer");
        },
    );
    drop(guard);
    (sink, exported)
}

#[test]
fn traceparent_puts_both_services_rows_in_one_trace() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || serve_one_request(listener));

    let (audit, _guard, sink, provider, _exported) = parts("planner");
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("planner"));
    run(
        tracing_subscriber::registry().with(otel).with(audit),
        || {
            let planner = Actor::agent("agt_planner", "usr_alice");
            privileged_span!(&planner, "payments.transfer", target = "acct_42").in_scope(|| {
            let mut carrier = HashMap::new();
            TraceContextPropagator::new()
                .inject_context(&tracing::Span::current().context(), &mut carrier);
            let traceparent = carrier.get("traceparent").expect("traceparent injected");
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            write!(
                stream,
                "POST /ledger HTTP/1.1\r\nhost: {addr}\r\ntraceparent: {traceparent}\r\ncontent-length: 0\r\n\r\n"
            )
            .expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("answer");
            assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        });
        },
    );
    let (tool_sink, tool_exported) = server.join().expect("server thread");

    let caller = &sink.records()[0];
    let tool = &tool_sink.records()[0];
    assert_eq!(tool.service_name, "ledger");
    assert_eq!(caller.service_name, "planner");
    assert!(caller.trace_id.is_some());
    assert_eq!(tool.trace_id, caller.trace_id, "one trace across the call");
    // The tool's exported span is a remote child of the caller's row.
    let t = tool_exported.named("ledger.write");
    assert!(t.parent_span_is_remote);
    assert_eq!(Some(hex(t.parent_span_id)), caller.span_id);
    assert_eq!(
        tool.span_id.as_deref(),
        Some(hex(t.span_context.span_id()).as_str())
    );
}
