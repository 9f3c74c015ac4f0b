//! A chain of agents across three processes, each with its own audit layer
//! and `tracing-opentelemetry` beside it: a **planner** agent acting for
//! usr_alice calls a **worker** app over HTTP, the worker calls a **tool**
//! service over gRPC, and the tool writes. The delegation chain crosses
//! both hops in the `Audit-Delegation-Chain` header and the W3C
//! `traceparent` beside it, so the tool's row names every hop with its
//! owner, each row says which service sent its chain (`delegation_from`),
//! and all rows are in one OpenTelemetry trace.
//!
//! ```text
//! audit-collector serve --data-dir ./audit-data        # prints its OTLP/HTTP port
//! export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
//! cargo run --example delegation_chain -- tool          # prints: listening 127.0.0.1:PORT
//! cargo run --example delegation_chain -- worker 127.0.0.1:TOOL_PORT
//! cargo run --example delegation_chain -- planner 127.0.0.1:WORKER_PORT
//! audit-collector activity --data-dir ./audit-data --origin usr_alice   # after Ctrl-C everywhere
//! ```
//!
//! The layers read the collector's address from the standard `OTEL_*`
//! variables. The servers stop on Ctrl-C (SIGINT), flushing their layer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use audit_layer::propagation::{self, Caller, ExtractLayer};
use audit_layer::{privileged_span, Actor, AuditLayer, FlushGuard};
use axum::Extension;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// The process's tracing setup: an OpenTelemetry layer (an application
/// would give its provider an exporter to Jaeger or Tempo) and the audit
/// layer, shipping to the collector the `OTEL_*` variables name.
fn install(service: &str) -> anyhow::Result<FlushGuard> {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()));
    let (audit, guard) = AuditLayer::builder().service_name(service).build()?;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel).with(audit))?;
    Ok(guard)
}

/// Request headers as the W3C propagator reads and writes them.
struct Headers<'a>(&'a mut HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (key.parse::<HeaderName>(), HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

/// `span` joins the trace of the caller's `traceparent`.
fn join_callers_trace(span: &tracing::Span, mut headers: HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(&mut headers));
    // Only fails once the span was entered; it was not.
    let _ = span.set_parent(parent);
}

/// `actor`'s chain and `span`'s `traceparent` on an outgoing request.
fn propagate(headers: &mut HeaderMap, actor: &Actor, from: &str, span: &tracing::Span) {
    propagation::inject(headers, actor, from).expect("a chain within the header limit");
    TraceContextPropagator::new().inject_context(&span.context(), &mut Headers(headers));
}

/// The tool service's RPC (OTLP's logs service stands in for the tool's own
/// API: any tonic service works the same): writes, for whoever called.
struct Tool;

#[tonic::async_trait]
impl LogsService for Tool {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let caller = caller.ok_or_else(|| tonic::Status::internal("ExtractLayer not installed"))?;
        let tool = caller
            .delegate(Actor::agent("agt_tool", "usr_ops"))
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let span = privileged_span!(&tool, "db.write", target = "tbl_orders");
        join_callers_trace(&span, request.metadata().clone().into_headers());
        span.in_scope(|| tracing::info!("row written"));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// The worker's endpoint: a step for its caller, which calls the tool.
async fn work(
    Extension(caller): Extension<Caller>,
    Extension(tool): Extension<SocketAddr>,
    headers: HeaderMap,
) -> Result<&'static str, (http::StatusCode, String)> {
    let bad = |e: String| (http::StatusCode::BAD_REQUEST, e);
    let worker = caller
        .delegate(Actor::agent("agt_worker", "usr_bob").credential("key_w1"))
        .map_err(|e| bad(e.to_string()))?;
    let span = privileged_span!(&worker, "work.step", target = "tbl_orders");
    join_callers_trace(&span, headers);
    let mut request = tonic::Request::new(ExportLogsServiceRequest::default());
    let mut metadata = std::mem::take(request.metadata_mut()).into_headers();
    propagate(&mut metadata, &worker, "worker", &span);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(metadata);
    let call = async {
        let mut client = LogsServiceClient::connect(format!("http://{tool}")).await?;
        client.export(request).await?;
        Ok::<_, anyhow::Error>(())
    };
    let failed = |e: anyhow::Error| (http::StatusCode::BAD_GATEWAY, format!("tool: {e:#}"));
    call.instrument(span).await.map_err(failed)?;
    Ok("done")
}

/// The planner, alice's agent: dispatches one step to the worker.
async fn plan(worker: SocketAddr) -> anyhow::Result<()> {
    let alice = Actor::human("usr_alice");
    let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&alice);
    let span = privileged_span!(&planner, "plan.dispatch", target = "tbl_orders");
    let mut headers = HeaderMap::new();
    propagate(&mut headers, &planner, "planner", &span);
    let traceparent = headers.get("traceparent").context("traceparent")?;
    println!("traceparent {}", traceparent.to_str()?);
    let call = reqwest::Client::new()
        .post(format!("http://{worker}/work"))
        .headers(headers)
        .send();
    let answer = call.instrument(span).await?;
    let status = answer.status();
    anyhow::ensure!(
        status.is_success(),
        "worker: {status}: {}",
        answer.text().await?
    );
    Ok(())
}

async fn listen() -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // The first line, for whoever starts the next hop.
    println!("listening {}", listener.local_addr()?);
    Ok(listener)
}

async fn stopped() {
    // Without a handler Ctrl-C would end the process before the flush.
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(role: &str, next_hop: Option<SocketAddr>) -> anyhow::Result<()> {
    let listener = listen().await?;
    match (role, next_hop) {
        ("tool", None) => {
            tonic::transport::Server::builder()
                .layer(ExtractLayer)
                .add_service(LogsServiceServer::new(Tool))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stopped(),
                )
                .await?
        }
        ("worker", Some(tool)) => {
            let app = axum::Router::new()
                .route("/work", axum::routing::post(work))
                .layer(Extension(tool))
                .layer(ExtractLayer);
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped())
                .await?
        }
        _ => anyhow::bail!("usage: delegation_chain tool | worker TOOL_ADDR | planner WORKER_ADDR"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map_or("", String::as_str);
    let next_hop = args.get(1).map(|a| a.parse()).transpose()?;
    let guard = install(role)?;
    let rt = tokio::runtime::Runtime::new()?;
    match (role, next_hop) {
        ("planner", Some(worker)) => rt.block_on(plan(worker))?,
        _ => rt.block_on(serve(role, next_hop))?,
    }
    // The rows are delivered (acknowledged by the collector) before exit.
    guard.shutdown(Duration::from_secs(20))?;
    Ok(())
}
