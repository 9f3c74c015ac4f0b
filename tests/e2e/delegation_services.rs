//! A planner app, a worker app and a tool service, each with its own audit
//! layer shipping to the real collector: the planner (an agent for
//! usr_alice) calls the worker over HTTP, the worker calls the tool over
//! gRPC, and the chain crosses both hops in `Audit-Delegation-Chain`
//! headers. The three run as threads of this test, each with its layer
//! installed for its own thread only and its own runtime and listener, so
//! that the hops are real network calls without building three binaries.
//! Then: the tool's row carries the whole chain, `activity --origin` finds
//! every hop's row, `who` prints the chain, a hop forging an origin is
//! refused at the collector, and a v1 file answers beside the v2 ones.

use crate::common;

use std::fs::File;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use audit_collector::partition::PartitionWriter;
use audit_layer::propagation::{self, Caller, ExtractLayer};
use audit_layer::{identity, privileged_span, Actor, AuditLayer};
use audit_schema::{Draft, Rules, Stamp};
use axum::Extension;
use common::wire::{http_post, request};
use common::{cli, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `app` on a thread of its own with an audit layer for `service`
/// shipping to `collector` (OTLP/HTTP), flushed before the thread ends.
fn service<T: Send + 'static>(
    service: &'static str,
    collector: String,
    app: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let (layer, guard) = AuditLayer::builder()
            .service_name(service)
            .otlp_http(collector)
            .build()
            .expect("layer");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out =
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                app(&rt)
            });
        guard.shutdown(Duration::from_secs(20)).expect("flushed");
        out
    })
}

/// The tool service's one RPC (the OTLP logs service stands in for any
/// gRPC API): writes `db.write` as its own agent, for whoever called.
struct Tool;

#[tonic::async_trait]
impl LogsService for Tool {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .expect("ExtractLayer ran");
        let tool = caller
            .delegate(Actor::agent("agt_tool", "usr_ops"))
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        privileged_span!(&tool, "db.write", target = "tbl_orders").in_scope(|| {});
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// The worker's HTTP endpoint: acts for its caller, then calls the tool.
async fn work(
    Extension(caller): Extension<Caller>,
    Extension(tool): Extension<SocketAddr>,
) -> String {
    let worker = caller
        .delegate(Actor::agent("agt_worker", "usr_bob").credential("key_w1"))
        .expect("a readable chain");
    privileged_span!(&worker, "work.step", target = "tbl_orders").in_scope(|| {});
    let mut client = LogsServiceClient::connect(format!("http://{tool}"))
        .await
        .expect("tool reachable");
    let mut req = tonic::Request::new(ExportLogsServiceRequest::default());
    propagation::inject_grpc(req.metadata_mut(), &worker, "worker").expect("inject");
    client.export(req).await.expect("tool call");
    "done".to_owned()
}

/// Serves `app` (the chain extracted by the tower layer) on `l` until
/// `stop` fires.
pub(crate) fn serve_until(
    rt: &tokio::runtime::Runtime,
    l: tokio::net::TcpListener,
    app: axum::Router,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    rt.block_on(
        axum::serve(l, app.layer(ExtractLayer))
            .with_graceful_shutdown(async {
                stop.await.ok();
            })
            .into_future(),
    )
    .expect("worker served");
}

/// POSTs to the worker's `/work` with `headers`; the call must succeed.
pub(crate) fn post_work(
    rt: &tokio::runtime::Runtime,
    worker: SocketAddr,
    headers: http::HeaderMap,
) {
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{worker}/work"))
            .headers(headers)
            .send()
            .await
            .expect("worker call")
            .status()
    });
    assert!(status.is_success(), "{status}");
}

pub(crate) fn listener(rt: &tokio::runtime::Runtime) -> tokio::net::TcpListener {
    rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind")
}

/// Rows of `activity --format json ARGS`, as JSON objects.
fn activity(data: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![
        "activity",
        "--data-dir",
        data,
        "--last",
        "2h",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let o = cli(&all, &[]);
    assert!(o.ok, "{}", o.stderr);
    serde_json::from_str(&o.stdout).expect("JSON rows")
}

fn field<'a>(row: &'a serde_json::Value, name: &str) -> &'a str {
    row[name].as_str().unwrap_or("")
}

/// Writes `usr_alice`'s single-hop agent action as a v1 file: the v2
/// columns projected away, as a collector before them wrote it.
fn write_v1_file(data: &std::path::Path) {
    let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    let draft = Draft {
        event_id: Some("v1-legacy-row".into()),
        start_time_ns: Some(now - 60_000_000_000),
        agent_id: Some("agt_legacy".into()),
        owner_id: Some("usr_alice".into()),
        action: Some("db.read".into()),
        service_name: Some("legacy".into()),
        ..Draft::default()
    };
    let record = Rules::default().check(draft).expect("valid");
    let stamp = Stamp {
        received_time_ns: now,
        seq: 1,
    };
    let sealed = PartitionWriter::new(data, "old-collector")
        .seal_audit(vec![(record, stamp)])
        .expect("sealed");
    let path = data.join(&sealed[0].path);
    let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
        .expect("parquet")
        .build()
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("read");
    let v1: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            !["delegation", "origin_id", "delegation_from"]
                .contains(&batch.schema().field(i).name().as_str())
        })
        .collect();
    let old = batch.project(&v1).expect("project");
    let mut w = ArrowWriter::try_new(File::create(&path).expect("create"), old.schema(), None)
        .expect("writer");
    w.write(&old).expect("write");
    w.close().expect("close");
}

#[test]
fn a_chain_crosses_http_and_grpc_and_answers_by_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let c = Collector::start(&data, &[]);

    // The tool service: gRPC, the chain extracted by the tower layer.
    let (tool_addr, tool_rx) = mpsc::channel();
    let (stop_tool, tool_stop) = tokio::sync::oneshot::channel::<()>();
    let tool = service("tool", c.http_url(), move |rt| {
        let l = listener(rt);
        tool_addr.send(l.local_addr().expect("addr")).expect("send");
        rt.block_on(
            tonic::transport::Server::builder()
                .layer(ExtractLayer)
                .add_service(LogsServiceServer::new(Tool))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l),
                    async {
                        tool_stop.await.ok();
                    },
                ),
        )
        .expect("tool served");
    });
    let tool_addr: SocketAddr = tool_rx.recv().expect("tool address");

    // The worker app: HTTP (axum), same layer.
    let (worker_addr, worker_rx) = mpsc::channel();
    let (stop_worker, worker_stop) = tokio::sync::oneshot::channel::<()>();
    let worker = service("worker", c.http_url(), move |rt| {
        let l = listener(rt);
        worker_addr
            .send(l.local_addr().expect("addr"))
            .expect("send");
        let app = axum::Router::new()
            .route("/work", axum::routing::post(work))
            .layer(Extension(tool_addr));
        serve_until(rt, l, app, worker_stop);
    });
    let worker_addr: SocketAddr = worker_rx.recv().expect("worker address");

    // The planner app: alice's agent, calling the worker over HTTP; then
    // alice's access change, which cascades to her planner agent.
    service("planner", c.http_url(), move |rt| {
        let alice = Actor::human("usr_alice");
        let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&alice);
        privileged_span!(&planner, "plan.dispatch", target = "tbl_orders").in_scope(|| {});
        let mut headers = http::HeaderMap::new();
        propagation::inject(&mut headers, &planner, "planner").expect("inject");
        post_work(rt, worker_addr, headers);
        identity::owner_access_change(&alice, "usr_alice", "revoked db:write", &[planner])
            .expect("access change recorded");
    })
    .join()
    .expect("planner");
    stop_worker.send(()).expect("stop worker");
    worker.join().expect("worker");
    stop_tool.send(()).expect("stop tool");
    tool.join().expect("tool");

    // A hop (an agent of usr_alice's) claiming another human as origin,
    // without a chain, straight to the collector.
    let forged = crate::delegation::record("forged", &[("audit.origin.id", "usr_carol".into())]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let answer = rt.block_on(async {
        let body = request(vec![forged]).encode_to_vec();
        http_post(
            &reqwest::Client::new(),
            c.http,
            body,
            "application/x-protobuf",
            None,
        )
        .await
    });
    let ps = answer.export().partial_success.expect("refused");
    assert_eq!(ps.rejected_log_records, 1, "{}", ps.error_message);
    assert!(
        ps.error_message
            .contains("`audit.origin.id`: \"usr_carol\" differs"),
        "{}",
        ps.error_message
    );
    assert!(c.terminate(), "clean exit");

    write_v1_file(&data);
    let d = data.to_str().expect("utf-8 path");
    let rows = activity(d, &["--origin", "usr_alice"]);
    let by_agent = |a: &str| rows.iter().find(|r| field(r, "agent_id") == a);
    let tool_row = by_agent("agt_tool").unwrap_or_else(|| panic!("tool row in {rows:#?}"));
    let hops = audit_schema::delegation::parse(field(tool_row, "delegation")).expect("chain");
    let ids: Vec<_> = hops.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["usr_alice", "agt_planner", "agt_worker", "agt_tool"]);
    assert_eq!(hops[2].credential_id.as_deref(), Some("key_w1"));
    assert_eq!(
        field(tool_row, "delegation_from"),
        "worker",
        "the worker supplied the chain"
    );
    assert_eq!(field(tool_row, "service_name"), "tool");
    let worker_row = by_agent("agt_worker").expect("worker row");
    assert_eq!(field(worker_row, "delegation_from"), "planner");
    assert_eq!(
        field(
            by_agent("agt_planner").expect("planner row"),
            "delegation_from"
        ),
        ""
    );
    assert!(
        by_agent("agt_legacy").is_some(),
        "the v1 row, its owner its origin: {rows:#?}"
    );
    assert!(rows.iter().all(|r| field(r, "event_id") != "forged"));
    assert!(
        rows.iter()
            .all(|r| field(r, "origin_id") == "usr_alice" || field(r, "owner_id") == "usr_alice"),
        "{rows:#?}"
    );

    assert!(
        activity(d, &["--origin", "usr_carol"]).is_empty(),
        "the forged row was not stored"
    );

    // v1 and v2 files together: the owner question reads both.
    let owner = activity(d, &["--owner", "usr_alice"]);
    for a in ["agt_planner", "agt_legacy"] {
        assert!(
            owner.iter().any(|r| field(r, "agent_id") == a),
            "{a} in {owner:#?}"
        );
    }

    // The cascade row about the planner is in the planner's activity.
    let planner = activity(d, &["--agent", "agt_planner"]);
    let actions: Vec<_> = planner.iter().map(|r| field(r, "action")).collect();
    assert!(actions.contains(&"plan.dispatch"), "{actions:?}");
    assert!(
        actions.contains(&"identity.owner.access_change"),
        "{actions:?}"
    );

    let who = cli(&["who", "--data-dir", d, field(tool_row, "event_id")], &[]);
    assert!(who.ok, "{}", who.stderr);
    assert!(who.stdout.contains(CHAIN), "{}", who.stdout);

    // The console's find view shows the same chain, from the same code.
    let console = crate::console::Console::start_over(&data, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let page = rt.block_on(crate::console::view(
        &console,
        &format!("/find?event_id={}", field(tool_row, "event_id")),
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    let escaped = CHAIN.replace('>', "&gt;");
    assert!(
        page.body.contains(&escaped) || page.body.contains(CHAIN),
        "{}",
        page.body
    );
}

/// The tool service's chain as `who` prints it.
const CHAIN: &str = "CHAIN (origin usr_alice, as claimed by service worker): usr_alice (human) -> agt_planner (agent, owner usr_alice) -> agt_worker (agent, owner usr_bob, credential key_w1) -> agt_tool (agent, owner usr_ops)";
