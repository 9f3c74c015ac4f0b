//! The spans the layer bench times and the allocation test counts (the
//! same code, so that the count is the bench's span's), and the in-process
//! OTLP/gRPC receiver they export to.

use std::hint::black_box;

use audit_layer::{privileged_span, Actor};

/// A privileged span: actor kind, agent, owner and task from the actor,
/// the action as the span name, target and scopes as fields; created,
/// entered and closed.
pub fn privileged(actor: &Actor) {
    privileged_span!(
        actor,
        "payments.transfer",
        target = "acct_42",
        scopes = "payments:write,accounts:read"
    )
    .in_scope(|| black_box(1));
}

/// An ordinary span with two fields.
pub fn plain() {
    tracing::info_span!("http.request", method = "GET", path = "/accounts/42")
        .in_scope(|| black_box(1));
}

/// Serves `router` on 127.0.0.1:0 from a runtime on a thread of its own;
/// its URL. Nagle is off on accepted connections, as the collector and
/// the OpenTelemetry Collector have it: with it on, the pieces of each
/// answer wait for the client's delayed ACK, and a pipeline with one
/// request in flight measures those waits instead of its own work.
pub fn serve(router: tonic::transport::server::Router) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    std::thread::spawn(move || {
        rt.block_on(router.serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        ))
    });
    url
}
