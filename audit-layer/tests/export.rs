//! The OTLP exporter against tiny in-test collectors (gRPC and HTTP).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_layer::{
    privileged_span, Actor, AuditLayer, AuditLayerBuilder, FlushError, FlushGuard, GateError,
    WhenFull,
};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

/// What the fake collector does with request number `n` (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    /// Partial success: refuse this many records.
    Refuse(i64),
    /// HTTP 503 / gRPC UNAVAILABLE for the first `n` requests, then accept.
    UnavailableFirst(usize),
    /// "Too large" (HTTP 413 / gRPC RESOURCE_EXHAUSTED without RetryInfo)
    /// for a request of more than this many records; after an odd number
    /// of requests taken, the next one that fits fails retryably once (the
    /// collector went away mid-batch).
    TooLargeOver(usize),
}

/// Why the fake collector did not take a request.
#[derive(Debug)]
enum Fail {
    Unavailable,
    TooLarge,
}

#[derive(Clone)]
struct State {
    requests: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    calls: Arc<AtomicUsize>,
    answer: Answer,
    /// While set, every request fails retryably (an outage).
    down: Arc<AtomicBool>,
    /// When each request arrived.
    times: Arc<Mutex<Vec<Instant>>>,
    /// After how many requests taken [`Answer::TooLargeOver`] failed one.
    failed_at: Arc<Mutex<std::collections::BTreeSet<usize>>>,
}

impl State {
    /// `Ok(rejected)` to accept (partially), else why not.
    fn handle(&self, req: ExportLogsServiceRequest) -> Result<i64, Fail> {
        self.times.lock().unwrap().push(Instant::now());
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Fail::Unavailable);
        }
        match self.answer {
            Answer::UnavailableFirst(k) if n < k => return Err(Fail::Unavailable),
            Answer::TooLargeOver(k) => {
                let records = req.resource_logs[0].scope_logs[0].log_records.len();
                if records > k {
                    return Err(Fail::TooLarge);
                }
                let taken = self.requests.lock().unwrap().len();
                if taken % 2 == 1 && self.failed_at.lock().unwrap().insert(taken) {
                    return Err(Fail::Unavailable);
                }
            }
            _ => {}
        }
        self.requests.lock().unwrap().push(req);
        Ok(match self.answer {
            Answer::Refuse(k) => k,
            _ => 0,
        })
    }

    fn records(&self) -> Vec<LogRecord> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| sl.log_records.clone())
            .collect()
    }
}

fn response(rejected: i64) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: "record refused: agent action without `audit.owner.id`".into(),
        }),
    }
}

#[tonic::async_trait]
impl LogsService for State {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        match self.handle(request.into_inner()) {
            Ok(rejected) => Ok(tonic::Response::new(response(rejected))),
            Err(Fail::TooLarge) => Err(tonic::Status::resource_exhausted("message too large")),
            // As the real collector does: UNAVAILABLE with a RetryInfo.
            Err(Fail::Unavailable) => Err(
                <tonic::Status as tonic_types::StatusExt>::with_error_details(
                    tonic::Code::Unavailable,
                    "busy",
                    tonic_types::ErrorDetails::with_retry_info(Some(RETRY_HINT)),
                ),
            ),
        }
    }
}

/// A fake collector on 127.0.0.1:0, served by its own runtime thread.
struct Collector {
    state: State,
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Dropping a runtime inside another (the async test) must not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Collector {
    fn grpc(answer: Answer) -> Collector {
        Collector::start(answer, |state, listener| {
            Box::pin(async move {
                tonic::transport::Server::builder()
                    .add_service(LogsServiceServer::new(state))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await
                    .unwrap();
            })
        })
    }

    fn http(answer: Answer) -> Collector {
        Collector::start(answer, |state, listener| {
            Box::pin(async move {
                let app = axum::Router::new()
                    .route("/v1/logs", axum::routing::post(http_export))
                    .with_state(state);
                axum::serve(listener, app).await.unwrap();
            })
        })
    }

    fn start(
        answer: Answer,
        serve: impl FnOnce(
            State,
            tokio::net::TcpListener,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = State {
            requests: Arc::default(),
            calls: Arc::default(),
            answer,
            down: Arc::default(),
            times: Arc::default(),
            failed_at: Arc::default(),
        };
        // Bound with std: the async test calls this from inside a runtime,
        // where block_on is not allowed.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let listener = {
            let _ctx = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(serve(state.clone(), listener));
        Collector {
            state,
            url,
            runtime: Some(runtime),
        }
    }
}

trait RetryAfter {
    fn into_response_with_retry_after(self) -> axum::response::Response;
}

impl RetryAfter for (axum::http::StatusCode, Vec<u8>) {
    fn into_response_with_retry_after(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut r = self.into_response();
        if !r.status().is_success() {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

/// The gRPC fake's RetryInfo delay.
const RETRY_HINT: Duration = Duration::from_millis(700);

async fn http_export(
    axum::extract::State(state): axum::extract::State<State>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let req = ExportLogsServiceRequest::decode(body.as_ref()).unwrap();
    match state.handle(req) {
        Ok(rejected) => (
            axum::http::StatusCode::OK,
            response(rejected).encode_to_vec(),
        ),
        Err(Fail::TooLarge) => (axum::http::StatusCode::PAYLOAD_TOO_LARGE, Vec::new()),
        Err(Fail::Unavailable) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
    }
    .into_response_with_retry_after()
}

fn builder() -> AuditLayerBuilder {
    AuditLayer::builder()
        .service_name("billing")
        .service_instance_id("billing-1")
        .linger(Duration::from_millis(20))
}

/// Emits `ok` attributed spans and `bad` unattributed ones.
fn emit(layer: AuditLayer, ok: usize, bad: usize) {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        for i in 0..ok {
            privileged_span!(&actor, "payments.transfer", n = i).in_scope(|| {});
        }
        for _ in 0..bad {
            tracing::info_span!(target: "audit", "payments.transfer", agent.id = "agt_7f3")
                .in_scope(|| {});
        }
    });
}

fn event_names(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.event_name.as_str()).collect()
}

fn shutdown(guard: FlushGuard) {
    guard
        .shutdown(Duration::from_secs(10))
        .expect("shutdown within the timeout");
}

#[test]
fn grpc_records_arrive_as_otlp_log_records_with_resource_and_scope() {
    let collector = Collector::grpc(Answer::Accept);
    let (layer, guard) = builder().otlp_grpc(&collector.url).build().unwrap();
    let status = guard.status();
    emit(layer, 1, 1);
    shutdown(guard);

    let records = collector.state.records();
    assert_eq!(event_names(&records), ["audit.action", "audit.violation"]);
    let requests = collector.state.requests.lock().unwrap();
    let rl = &requests[0].resource_logs[0];
    let resource = audit_schema::otlp::ResourceInfo::from_resource(rl.resource.as_ref());
    assert_eq!(resource.service_name.as_deref(), Some("billing"));
    assert_eq!(resource.service_instance_id.as_deref(), Some("billing-1"));
    assert_eq!(
        rl.scope_logs[0].scope.as_ref().map(|s| s.name.as_str()),
        Some("audit-layer")
    );
    // The collector can decode what the layer sent back into the same record.
    let audit_schema::otlp::Decoded::Action(draft) =
        audit_schema::otlp::decode(&records[0], &resource)
    else {
        panic!("not an action")
    };
    let record = audit_schema::Rules::default().check(*draft).unwrap();
    assert_eq!(record.owner_id, "usr_alice");
    assert_eq!(record.attributes["n"], "0");
    let s = status.snapshot();
    assert_eq!((s.exported, s.violations, s.export_failures), (2, 1, 0));
}

#[test]
fn http_records_arrive_at_v1_logs() {
    let collector = Collector::http(Answer::Accept);
    let (layer, guard) = builder().otlp_http(&collector.url).build().unwrap();
    let status = guard.status();
    emit(layer, 3, 0);
    shutdown(guard);
    assert_eq!(collector.state.records().len(), 3);
    assert_eq!(status.exported(), 3);
}

#[test]
fn grpc_partial_success_rejections_are_counted_not_hidden() {
    let collector = Collector::grpc(Answer::Refuse(1));
    let (layer, guard) = builder()
        .batch_size(100)
        .linger(Duration::from_secs(60))
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, 3, 0);
    shutdown(guard);
    let s = status.snapshot();
    assert_eq!((s.exported, s.refused), (2, 1), "{s:?}");
}

#[test]
fn http_partial_success_rejections_are_counted_not_hidden() {
    let collector = Collector::http(Answer::Refuse(2));
    let (layer, guard) = builder()
        .batch_size(100)
        .linger(Duration::from_secs(60))
        .otlp_http(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, 4, 0);
    shutdown(guard);
    let s = status.snapshot();
    assert_eq!((s.exported, s.refused), (2, 2), "{s:?}");
}

#[test]
fn guard_drop_flushes_everything_queued() {
    let collector = Collector::http(Answer::Accept);
    // A linger far longer than the test: only the guard's flush can deliver.
    let (layer, guard) = builder()
        .batch_size(10_000)
        .linger(Duration::from_secs(600))
        .otlp_http(&collector.url)
        .build()
        .unwrap();
    emit(layer, 50, 0);
    let started = Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(collector.state.records().len(), 50);
}

#[test]
fn explicit_flush_delivers_without_stopping() {
    let collector = Collector::grpc(Answer::Accept);
    let (layer, guard) = builder()
        .linger(Duration::from_secs(600))
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    emit(layer, 2, 0);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(collector.state.records().len(), 2);
    assert_eq!(guard.status().exported(), 2);
}

#[test]
fn retryable_failures_are_retried_until_accepted() {
    for (collector, grpc) in [
        (Collector::grpc(Answer::UnavailableFirst(2)), true),
        (Collector::http(Answer::UnavailableFirst(2)), false),
    ] {
        let b = if grpc {
            builder().otlp_grpc(&collector.url)
        } else {
            builder().otlp_http(&collector.url)
        };
        let (layer, guard) = b.build().unwrap();
        let status = guard.status();
        emit(layer, 1, 0);
        shutdown(guard);
        assert_eq!(collector.state.records().len(), 1, "grpc: {grpc}");
        assert_eq!(collector.state.calls.load(Ordering::SeqCst), 3);
        assert_eq!((status.exported(), status.export_failures()), (1, 0));
        // The hint is honoured: gRPC RetryInfo (700 ms), HTTP Retry-After (1 s).
        let hint = if grpc {
            RETRY_HINT
        } else {
            Duration::from_secs(1)
        };
        let times = collector.state.times.lock().unwrap().clone();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= hint.mul_f64(0.9),
                "grpc {grpc}: retried after {gap:?}"
            );
        }
    }
}

/// The `n` attribute of every record received, in arrival order.
fn ns(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "n")
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        })
        .collect()
}

/// A fake collector of each protocol giving `answer`, a builder sending to
/// it, and whether it is the gRPC one.
fn both_protocols(answer: Answer) -> Vec<(Collector, AuditLayerBuilder, bool)> {
    [true, false]
        .into_iter()
        .map(|grpc| {
            if grpc {
                let c = Collector::grpc(answer);
                let b = builder().otlp_grpc(&c.url);
                (c, b, grpc)
            } else {
                let c = Collector::http(answer);
                let b = builder().otlp_http(&c.url);
                (c, b, grpc)
            }
        })
        .collect()
}

#[test]
fn too_large_batches_are_halved_and_a_failure_midway_resends_only_the_rest() {
    for (collector, b, grpc) in both_protocols(Answer::TooLargeOver(2)) {
        let (layer, guard) = b.linger(Duration::from_secs(1)).build().unwrap();
        let status = guard.status();
        emit(layer, 8, 0);
        shutdown(guard);
        // 8 → 4 → 2 taken (0, 1); (2, 3) fails once; the rest (2..8) is
        // halved again: 3 → 1 taken (2), 2 taken (3, 4); 3 → (5) fails
        // once; the rest (5..8): 1, 2 taken. Nothing sent or counted twice.
        let want: Vec<String> = (0..8).map(|n| n.to_string()).collect();
        assert_eq!(ns(&collector.state.records()), want, "grpc: {grpc}");
        assert_eq!(
            (status.exported(), status.refused(), status.retries()),
            (8, 0, 2),
            "grpc: {grpc}"
        );
    }
}

#[test]
fn a_spooled_segment_delivered_in_parts_resends_only_the_rest() {
    for (collector, b, grpc) in both_protocols(Answer::TooLargeOver(2)) {
        let spool = tempdir("split");
        let (layer, guard) = b
            .linger(Duration::from_secs(1))
            .spool_dir(&spool)
            .build()
            .unwrap();
        let status = guard.status();
        emit(layer, 8, 0);
        // A flush, not a shutdown: a shutdown leaves a segment that meets a
        // failure in the spool for the next start.
        guard.flush(Duration::from_secs(20)).unwrap();
        shutdown(guard);
        // As above, but the first failure spools the rest (2..8), and the
        // second failure happens while sending that segment: (2, 3, 4) are
        // settled, (5, 6, 7) are sent again, once.
        let want: Vec<String> = (0..8).map(|n| n.to_string()).collect();
        assert_eq!(ns(&collector.state.records()), want, "grpc: {grpc}");
        assert_eq!(
            (status.exported(), status.retries(), status.spooled()),
            (8, 2, 0),
            "grpc: {grpc}"
        );
        std::fs::remove_dir_all(&spool).unwrap();
    }
}

#[test]
fn a_single_record_too_large_is_refused_with_the_reason() {
    for (collector, b, grpc) in both_protocols(Answer::TooLargeOver(0)) {
        let (layer, guard) = b.linger(Duration::from_secs(1)).build().unwrap();
        let status = guard.status();
        emit(layer, 2, 0);
        shutdown(guard);
        assert!(collector.state.records().is_empty());
        // 2, then 1 and 1: three answers, no retry.
        assert_eq!(collector.state.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            (status.exported(), status.refused(), status.retries()),
            (0, 2, 0),
            "grpc: {grpc}"
        );
        let reason = status.last_refusal().unwrap_or_default();
        assert!(reason.contains("too large"), "grpc {grpc}: {reason}");
    }
}

#[test]
fn unreachable_collector_without_spool_counts_undelivered_records_at_shutdown() {
    // Bind and close a port so that nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (layer, guard) = builder()
        .otlp_grpc(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, 20, 0);
    let result = guard.shutdown(Duration::from_secs(2));
    let s = status.snapshot();
    assert_eq!((s.exported, s.export_failures), (0, 20), "{s:?}");
    // The caller's `?` sees the loss, with the count and the cause.
    let Err(FlushError::Lost(loss)) = result else {
        panic!("shutdown must fail when records are lost: {result:?}")
    };
    assert_eq!((loss.dropped, loss.failed), (0, 20));
    let message = FlushError::Lost(loss).to_string();
    assert!(
        message.starts_with("20 audit records were lost"),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
}

#[test]
fn full_queue_is_counted_as_dropped_and_every_record_is_accounted_for() {
    // A listener that never accepts: the first export hangs until its
    // timeout, so the worker is busy while the application keeps going.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", stuck.local_addr().unwrap());
    let (layer, guard) = builder()
        .queue_capacity(2)
        .batch_size(1)
        .timeout(Duration::from_millis(200))
        .when_full(WhenFull::Drop)
        .otlp_http(url)
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, 20, 0);
    let _ = guard.shutdown(Duration::from_secs(3));
    let s = status.snapshot();
    // At most the queue's two slots plus the record in hand got through.
    assert!(s.dropped >= 17, "a full queue is counted: {s:?}");
    assert_eq!(
        s.exported + s.refused + s.export_failures + s.dropped,
        20,
        "every record is accounted for: {s:?}"
    );
    drop(stuck);
}

#[tokio::test(flavor = "current_thread")]
async fn guard_drop_inside_an_async_runtime_flushes_without_deadlock() {
    let collector = Collector::grpc(Answer::Accept);
    let (layer, guard) = builder()
        .linger(Duration::from_secs(600))
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    emit(layer, 5, 0);
    drop(guard);
    assert_eq!(collector.state.records().len(), 5);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("audit-layer-{tag}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `app` with the layer installed, on this thread.
fn with_layer<T>(layer: AuditLayer, app: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), app)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn unique_event_ids(records: &[LogRecord]) -> std::collections::BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "audit.event.id")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                        Some(s.clone())
                    }
                    _ => None,
                })
        })
        .collect()
}

#[test]
fn an_outage_fills_the_spool_and_every_record_arrives_when_the_collector_returns() {
    let collector = Collector::grpc(Answer::Accept);
    collector.state.down.store(true, Ordering::SeqCst);
    let spool = tempdir("outage");
    let (layer, guard) = builder()
        .batch_size(50)
        .max_backoff(Duration::from_millis(200))
        .spool_dir(&spool)
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    with_layer(layer, || {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        for i in 0..300 {
            let g = audit_layer::gate(&actor, "payments.transfer", &format!("acct_{i}"))
                .expect("the spool has room");
            drop(g);
        }
    });
    wait_until("all 300 in the spool", Duration::from_secs(20), || {
        status.spooled() == 300
    });
    assert!(status.snapshot().retries > 0);
    assert!(status.last_error().is_some());
    collector.state.down.store(false, Ordering::SeqCst);
    guard
        .flush(Duration::from_secs(20))
        .expect("delivered after the outage");
    let s = status.snapshot();
    assert_eq!(
        (s.exported, s.spooled, s.dropped, s.export_failures),
        (300, 0, 0, 0),
        "{s:?}"
    );
    let records = collector.state.records();
    assert_eq!(records.len(), 300);
    assert_eq!(unique_event_ids(&records).len(), 300);
    shutdown(guard);
    std::fs::remove_dir_all(spool).unwrap();
}

/// An application that emits `n` records while `collector` is down and
/// shuts down: what is left goes to a new spool, returned.
fn spooled_during_an_outage(collector: &Collector, tag: &str, n: usize) -> std::path::PathBuf {
    collector.state.down.store(true, Ordering::SeqCst);
    let spool = tempdir(tag);
    let (layer, guard) = builder()
        .spool_dir(&spool)
        .otlp_http(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, n, 0);
    guard.shutdown(Duration::from_millis(500)).unwrap();
    assert_eq!(status.snapshot().spooled, n as u64);
    assert_eq!(status.export_failures(), 0);
    assert!(collector.state.records().is_empty());
    spool
}

#[test]
fn a_restarted_application_resends_its_spool() {
    let collector = Collector::http(Answer::Accept);
    let spool = spooled_during_an_outage(&collector, "restart", 40);

    collector.state.down.store(false, Ordering::SeqCst);
    let (layer, guard) = builder()
        .spool_dir(&spool)
        .otlp_http(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    assert_eq!(status.spooled(), 40, "found at start");
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!((status.exported(), status.spooled()), (40, 0));
    let records = collector.state.records();
    assert_eq!(unique_event_ids(&records).len(), 40);
    // The resent records keep the first process's resource.
    drop(layer);
    shutdown(guard);
    std::fs::remove_dir_all(spool).unwrap();
}

/// A layer whose audit path is full almost at once: the collector is down,
/// the spool cannot take a segment, the queue holds 4 records.
fn full_path(
    collector: &Collector,
    policy: WhenFull,
) -> (AuditLayer, FlushGuard, std::path::PathBuf) {
    collector.state.down.store(true, Ordering::SeqCst);
    let spool = tempdir("full");
    let (layer, guard) = builder()
        .queue_capacity(4)
        .batch_size(1)
        .max_backoff(Duration::from_millis(100))
        .spool_dir(&spool)
        .spool_max_bytes(1)
        .when_full(policy)
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    (layer, guard, spool)
}

#[test]
fn spool_full_fail_closed_refuses_the_action_before_it_runs() {
    let collector = Collector::grpc(Answer::Accept);
    let (layer, guard, spool) = full_path(&collector, WhenFull::FailClosed);
    let status = guard.status();
    let (ran, refusal) = with_layer(layer, || {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        let mut ran = 0;
        for i in 0..100 {
            match audit_layer::gate(&actor, "payments.transfer", &format!("acct_{i}")) {
                Ok(_guard) => ran += 1, // the privileged work
                Err(e) => return (ran, Some(e)),
            }
        }
        (ran, None)
    });
    assert!(
        matches!(refusal, Some(audit_layer::GateError::AuditUnavailable)),
        "{refusal:?}"
    );
    assert!(ran <= 6, "refused once memory was full: {ran} ran");
    let s = status.snapshot();
    assert_eq!((s.gate_refusals, s.dropped), (1, 0), "{s:?}");
    // Delivery resumes: every admitted action is delivered.
    collector.state.down.store(false, Ordering::SeqCst);
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(collector.state.records().len(), ran);
    shutdown(guard);
    std::fs::remove_dir_all(spool).unwrap();
}

#[test]
fn spool_full_block_times_out_as_configured() {
    let collector = Collector::grpc(Answer::Accept);
    let wait = Duration::from_millis(300);
    let (layer, guard, spool) = full_path(&collector, WhenFull::Block(wait));
    let (elapsed, refusal) = with_layer(layer, || {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        for i in 0..100 {
            let started = Instant::now();
            match audit_layer::gate(&actor, "payments.transfer", &format!("acct_{i}")) {
                Ok(_guard) => {}
                Err(e) => return (started.elapsed(), Some(e)),
            }
        }
        (Duration::ZERO, None)
    });
    assert!(
        matches!(refusal, Some(audit_layer::GateError::TimedOut(t)) if t == wait),
        "{refusal:?}"
    );
    assert!(elapsed >= wait && elapsed < wait * 5, "{elapsed:?}");
    assert_eq!(guard.status().dropped(), 0);
    collector.state.down.store(false, Ordering::SeqCst);
    guard.flush(Duration::from_secs(10)).unwrap();
    shutdown(guard);
    std::fs::remove_dir_all(spool).unwrap();
}

#[test]
fn spool_full_drop_counts_every_drop_and_reports_it_when_delivery_resumes() {
    let collector = Collector::grpc(Answer::Accept);
    let (layer, guard, spool) = full_path(&collector, WhenFull::Drop);
    let status = guard.status();
    with_layer(layer, || {
        let actor = Actor::agent("agt_7f3", "usr_alice");
        for i in 0..50 {
            // Drop admits every action...
            drop(audit_layer::gate(&actor, "payments.transfer", &format!("acct_{i}")).unwrap());
        }
    });
    let dropped = status.dropped();
    assert!(dropped >= 40, "{:?}", status.snapshot());
    collector.state.down.store(false, Ordering::SeqCst);
    // The flush delivers, and says what was lost (once).
    match guard.flush(Duration::from_secs(10)) {
        Err(FlushError::Lost(loss)) => assert_eq!((loss.dropped, loss.failed), (dropped, 0)),
        other => panic!("the drops are returned: {other:?}"),
    }
    guard.flush(Duration::from_secs(10)).unwrap();
    let records = collector.state.records();
    // ...and every record is accounted for: delivered, or counted and reported.
    let actions = records
        .iter()
        .filter(|r| r.event_name == "audit.action")
        .count() as u64;
    assert_eq!(actions + dropped, 50);
    let report: Vec<_> = records
        .iter()
        .filter(|r| r.event_name == "audit.violation")
        .collect();
    assert_eq!(report.len(), 1, "one violation reports the drops");
    let count = report[0]
        .attributes
        .iter()
        .find(|kv| kv.key == audit_layer::export::DROPPED_COUNT)
        .and_then(|kv| kv.value.as_ref())
        .map(|v| format!("{:?}", v.value));
    assert!(count.unwrap().contains(&dropped.to_string()));
    let kind = report[0]
        .attributes
        .iter()
        .find(|kv| kv.key == "audit.violation.kind")
        .and_then(|kv| kv.value.as_ref())
        .map(|v| format!("{:?}", v.value));
    assert!(
        kind.unwrap().contains("dropped"),
        "the report is of kind dropped"
    );
    // Shutdown's verdict covers the exporter's whole life.
    match guard.shutdown(Duration::from_secs(10)) {
        Err(FlushError::Lost(loss)) => assert_eq!(loss.total(), dropped),
        other => panic!("shutdown says records were lost: {other:?}"),
    }
    std::fs::remove_dir_all(spool).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_on_a_multi_thread_runtime_with_the_collector_down() {
    let collector = Collector::grpc(Answer::Accept);
    collector.state.down.store(true, Ordering::SeqCst);
    let spool = tempdir("mt");
    let (layer, guard) = builder()
        .spool_dir(&spool)
        .otlp_grpc(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    emit(layer, 10, 0);
    let started = Instant::now();
    guard.shutdown(Duration::from_millis(300)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status.spooled(), 10, "kept for the next start");
    std::fs::remove_dir_all(spool).unwrap();
}

/// A loopback port where nothing listens (bound, then closed).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn fail_closed_without_a_spool_refuses_at_the_gate_once_delivery_failed() {
    let (layer, guard) = builder()
        .max_backoff(Duration::from_millis(100))
        .otlp_grpc(format!("http://127.0.0.1:{}", dead_port()))
        .build()
        .unwrap();
    let status = guard.status();
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let second = with_layer(layer, || {
        // Before any attempt the collector is presumed to answer.
        drop(audit_layer::gate(&actor, "payments.transfer", "acct_1").expect("admitted"));
        wait_until("the failed attempt", Duration::from_secs(20), || {
            status.last_error().is_some()
        });
        audit_layer::gate(&actor, "payments.transfer", "acct_2")
    });
    assert!(
        matches!(second, Err(GateError::AuditUnavailable)),
        "no durable place: refused before the action runs: {second:?}"
    );
    assert_eq!(status.gate_refusals(), 1);
    let Err(FlushError::Lost(loss)) = guard.shutdown(Duration::from_millis(300)) else {
        panic!("the admitted record is lost and shutdown says so")
    };
    assert_eq!(loss.failed, 1);
}

#[test]
fn block_without_a_spool_waits_for_a_durable_place_then_refuses() {
    let wait = Duration::from_millis(200);
    let (layer, guard) = builder()
        .when_full(WhenFull::Block(wait))
        .otlp_http(format!("http://127.0.0.1:{}", dead_port()))
        .build()
        .unwrap();
    let status = guard.status();
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (second, waited) = with_layer(layer, || {
        drop(audit_layer::gate(&actor, "payments.transfer", "acct_1").expect("admitted"));
        wait_until("the failed attempt", Duration::from_secs(20), || {
            status.last_error().is_some()
        });
        let started = Instant::now();
        (
            audit_layer::gate(&actor, "payments.transfer", "acct_2"),
            started.elapsed(),
        )
    });
    assert!(
        matches!(second, Err(GateError::TimedOut(t)) if t == wait),
        "{second:?}"
    );
    assert!(waited >= wait, "it waited for the collector: {waited:?}");
    assert!(matches!(
        guard.shutdown(Duration::from_millis(300)),
        Err(FlushError::Lost(_))
    ));
}

#[test]
fn fail_closed_with_a_spool_admits_while_the_spool_has_room() {
    let spool = tempdir("room");
    let (layer, guard) = builder()
        .max_backoff(Duration::from_millis(100))
        .spool_dir(&spool)
        .otlp_grpc(format!("http://127.0.0.1:{}", dead_port()))
        .build()
        .unwrap();
    let status = guard.status();
    let actor = Actor::agent("agt_7f3", "usr_alice");
    with_layer(layer, || {
        drop(audit_layer::gate(&actor, "payments.transfer", "acct_0").unwrap());
        wait_until("the failed attempt", Duration::from_secs(20), || {
            status.last_error().is_some()
        });
        for i in 1..20 {
            let g = audit_layer::gate(&actor, "payments.transfer", &format!("acct_{i}"));
            drop(g.expect("the spool is a durable place"));
        }
    });
    guard
        .shutdown(Duration::from_millis(300))
        .expect("kept in the spool: nothing lost");
    assert_eq!((status.spooled(), status.gate_refusals()), (20, 0));
    std::fs::remove_dir_all(spool).unwrap();
}

#[test]
fn a_spooled_record_that_fails_its_checksum_is_counted_and_reported_to_the_collector() {
    let collector = Collector::http(Answer::Accept);
    let spool = spooled_during_an_outage(&collector, "corrupt", 5);
    // Flip the last byte of the one segment: its last record is unreadable.
    let segment = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "spool"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();

    collector.state.down.store(false, Ordering::SeqCst);
    let (_layer, guard) = builder()
        .spool_dir(&spool)
        .otlp_http(&collector.url)
        .build()
        .unwrap();
    let status = guard.status();
    match guard.flush(Duration::from_secs(10)) {
        Err(FlushError::Lost(loss)) => assert_eq!((loss.dropped, loss.failed), (0, 1)),
        other => panic!("the unreadable record is returned as lost: {other:?}"),
    }
    // The report follows the segment; it is not a record a flush waits for.
    wait_until("the loss report", Duration::from_secs(10), || {
        collector
            .state
            .records()
            .iter()
            .any(|r| r.event_name == "audit.violation")
    });
    let records = collector.state.records();
    let actions = records
        .iter()
        .filter(|r| r.event_name == "audit.action")
        .count();
    let report = records
        .iter()
        .find(|r| r.event_name == "audit.violation")
        .unwrap();
    let attr = |k: &str| {
        report
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    assert_eq!(actions, 4);
    assert_eq!(
        attr(audit_layer::export::DROPPED_COUNT),
        Some(any_value::Value::StringValue("1".into()))
    );
    assert_eq!(
        attr(audit_layer::export::DROPPED_CAUSE),
        Some(any_value::Value::StringValue("spool_checksum".into()))
    );
    assert_eq!(status.export_failures(), 1);
    drop(guard);
    std::fs::remove_dir_all(spool).unwrap();
}
