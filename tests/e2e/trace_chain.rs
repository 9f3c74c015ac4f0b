//! The delegation chain and the W3C trace context on one request: a planner
//! (an agent for usr_alice, `tracing-opentelemetry` beside its audit layer)
//! calls a worker app (axum) over HTTP with both `Audit-Delegation-Chain`
//! and `traceparent`; the worker extracts both. The two services' rows are
//! in one trace, and the worker's row carries the chain the planner sent.

use std::collections::HashMap;
use std::sync::mpsc;

use crate::delegation_services::{listener, post_work, serve_until};
use audit_layer::propagation::{self, Caller};
use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
use axum::Extension;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `app` with `service`'s audit layer (to memory) and an
/// OpenTelemetry layer, on a runtime of its own; returns the audit rows.
fn traced<T>(service: &str, app: impl FnOnce(&tokio::runtime::Runtime) -> T) -> (T, MemorySink) {
    let sink = MemorySink::default();
    let (audit, _guard) = AuditLayer::builder()
        .service_name(service)
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let subscriber = tracing_subscriber::registry().with(otel).with(audit);
    let out = tracing::subscriber::with_default(subscriber, || app(&rt));
    (out, sink)
}

/// The worker's endpoint: acts for the caller the chain names, as a child
/// of the caller's span the `traceparent` names.
async fn work(Extension(caller): Extension<Caller>, headers: http::HeaderMap) -> String {
    let worker = caller
        .delegate(Actor::agent("agt_worker", "usr_bob"))
        .expect("a readable chain");
    let carrier: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let parent = TraceContextPropagator::new().extract(&carrier);
    let span = privileged_span!(&worker, "work.step", target = "tbl_orders");
    span.set_parent(parent)
        .expect("parent set before the span starts");
    span.in_scope(|| {});
    "done".to_owned()
}

#[test]
fn one_request_carries_the_chain_and_the_trace() {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = std::thread::spawn(move || {
        traced("worker", |rt| {
            let l = listener(rt);
            addr_tx.send(l.local_addr().expect("addr")).expect("send");
            let app = axum::Router::new().route("/work", axum::routing::post(work));
            serve_until(rt, l, app, stopped);
        })
        .1
    });
    let addr: std::net::SocketAddr = addr_rx.recv().expect("worker address");

    let (traceparent, planner) = traced("planner", |rt| {
        let alice = Actor::human("usr_alice");
        let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&alice);
        privileged_span!(&planner, "plan.dispatch", target = "tbl_orders").in_scope(|| {
            let mut headers = http::HeaderMap::new();
            propagation::inject(&mut headers, &planner, "planner").expect("inject chain");
            let mut carrier = HashMap::new();
            TraceContextPropagator::new()
                .inject_context(&tracing::Span::current().context(), &mut carrier);
            let traceparent = carrier.remove("traceparent").expect("traceparent injected");
            headers.insert("traceparent", traceparent.parse().expect("a header value"));
            post_work(rt, addr, headers);
            traceparent
        })
    });
    stop.send(()).expect("stop worker");
    let worker = worker.join().expect("worker thread");

    let (caller, callee) = (&planner.records()[0], &worker.records()[0]);
    assert_eq!(caller.service_name, "planner");
    assert_eq!(callee.service_name, "worker");
    // traceparent is `00-<trace id>-<span id>-<flags>`: the row the planner
    // wrote is the span it sent, and the worker's row is in its trace.
    let sent: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(caller.trace_id.as_deref(), Some(sent[1]), "{traceparent}");
    assert_eq!(caller.span_id.as_deref(), Some(sent[2]), "{traceparent}");
    assert_eq!(
        callee.trace_id, caller.trace_id,
        "one trace across the call"
    );
    assert_ne!(callee.span_id, caller.span_id);

    let hops =
        audit_schema::delegation::parse(callee.delegation.as_deref().unwrap_or("")).expect("chain");
    let ids: Vec<_> = hops.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["usr_alice", "agt_planner", "agt_worker"]);
    assert_eq!(callee.origin_id.as_deref(), Some("usr_alice"));
    assert_eq!(callee.delegation_from.as_deref(), Some("planner"));
}
