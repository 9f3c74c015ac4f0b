//! Delivery of audit and violation records: our own small OTLP exporter.
//!
//! Why not the OpenTelemetry SDK's log exporter: its batch processor drops
//! records silently when its queue is full and ignores the collector's
//! `partial_success` answer. For telemetry that is a fair trade; for an
//! audit trail a lost or refused row is exactly what must be visible. Here
//! every record is counted somewhere in [`AuditStatus`]: exported (acked),
//! refused by the collector, failed after retries, or dropped before export.
//!
//! Shape (the same idea as `tracing-appender`'s non-blocking writer): the
//! layer puts records on a bounded queue without blocking; a dedicated
//! worker thread owning a current-thread tokio runtime batches them (up to
//! `batch_size` records or `linger`), sends one `ExportLogsServiceRequest`
//! per batch, and retries retryable failures with backoff within a
//! deadline. The [`FlushGuard`] returned by the builder owns the worker:
//! dropping it flushes what is queued, within a bounded time.
//!
//! ## Environment
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (`_LOGS_` variant wins) | `grpc` or `http/protobuf` (the default, as the OTel spec says) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1/logs` is appended for HTTP (defaults: [`DEFAULT_GRPC_ENDPOINT`], [`DEFAULT_HTTP_ENDPOINT`]) |
//! | `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` | full URL, used as-is |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (`_LOGS_` variant wins) | `k=v,k2=v2`, values percent-decoded |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (`_LOGS_` variant wins) | per-request timeout in ms (default 10000) |
//! | `OTEL_SERVICE_NAME` | resource `service.name` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `service.instance.id`, and `service.name` when the above is unset |
//!
//! Explicit builder settings win over the environment. Only `http://`
//! endpoints are supported (no TLS stack is compiled in: the collector is a
//! sidecar on loopback).
//!
//! ## Not built yet (designed for)
//!
//! An on-disk spool for at-least-once
//! delivery across restarts. The queue's `dropped` and `export_failures`
//! counters are where a spool would plug in.

mod config;
mod grpc;
mod http;
mod memory;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audit_schema::otlp::{encode_action, encode_violation, ResourceInfo};
use audit_schema::{AuditRecord, ViolationRecord};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

pub(crate) use config::{http_logs_url, EnvSettings};
pub use config::{Protocol, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT};
pub(crate) use grpc::GrpcConfig;
pub(crate) use http::Http;
pub use memory::MemorySink;

use crate::stats::AuditStatus;

/// Instrumentation scope name on every exported batch.
pub const SCOPE_NAME: &str = "audit-layer";

/// One record on its way out.
#[derive(Debug)]
pub(crate) enum Item {
    Action(AuditRecord),
    Violation(ViolationRecord),
}

/// A failed export attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    pub message: String,
}

pub(crate) enum Msg {
    /// Boxed: the bounded queue preallocates its slots, so slots stay small.
    Item(Box<Item>),
    /// Send everything queued before this, then answer.
    Flush(mpsc::Sender<()>),
    /// Send everything queued, give up at the instant, exit.
    Shutdown(Instant),
}

/// Where the layer puts finished records.
pub(crate) enum Sink {
    Memory(MemorySink),
    Queue {
        tx: SyncSender<Msg>,
        warned_drop: AtomicBool,
    },
}

impl Sink {
    /// Never blocks the application thread.
    pub fn send(&self, item: Item, status: &AuditStatus) {
        match self {
            Sink::Memory(m) => {
                match item {
                    Item::Action(r) => m.push_record(r),
                    Item::Violation(v) => m.push_violation(v),
                }
                status.add_exported(1);
            }
            Sink::Queue { tx, warned_drop } => {
                if let Err(e) = tx.try_send(Msg::Item(Box::new(item))) {
                    status.add_dropped(1);
                    // Not a tracing event: we are inside the layer's callback.
                    if !warned_drop.swap(true, Ordering::Relaxed) {
                        let why = match e {
                            TrySendError::Full(_) => "the export queue is full",
                            TrySendError::Disconnected(_) => "the exporter has shut down",
                        };
                        eprintln!(
                            "audit-layer: dropping audit records because {why}; \
                             see AuditStatus::dropped (reported once)"
                        );
                    }
                }
            }
        }
    }
}

/// Where records go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// OTLP/gRPC to this endpoint (e.g. `http://127.0.0.1:4317`).
    OtlpGrpc(String),
    /// OTLP/HTTP protobuf, `POST` to this full URL (e.g. `http://127.0.0.1:4318/v1/logs`).
    OtlpHttp(String),
    /// Kept in memory (tests, examples).
    Memory(MemorySink),
}

/// Worker tuning; defaults suit a sidecar collector on loopback.
#[derive(Clone, Debug)]
pub(crate) struct WorkerSettings {
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub linger: Duration,
    /// How long one batch may be retried before it counts as failed.
    pub retry_deadline: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            queue_capacity: 8192,
            batch_size: 512,
            linger: Duration::from_millis(200),
            retry_deadline: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// A transport whose configuration has been validated, not yet connected.
pub(crate) enum TransportConfig {
    Grpc(Box<GrpcConfig>),
    Http(Http),
}

enum Transport {
    Grpc(grpc::Grpc),
    Http(Http),
}

impl Transport {
    async fn export(
        &mut self,
        body: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        match self {
            Transport::Grpc(g) => g.export(body).await,
            Transport::Http(h) => h.export(body).await,
        }
    }
}

/// Starts the worker thread; returns the layer's sink and the guard.
pub(crate) fn spawn(
    transport: TransportConfig,
    resource: ResourceInfo,
    settings: WorkerSettings,
    status: AuditStatus,
) -> std::io::Result<(Sink, FlushGuard)> {
    let (tx, rx) = mpsc::sync_channel(settings.queue_capacity.max(1));
    let (done_tx, done_rx) = mpsc::channel();
    let worker_status = status.clone();
    let worker_settings = settings.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("audit-layer-export".to_owned())
        .spawn(move || {
            // The exporter's own dependencies (tonic, hyper, h2) emit tracing
            // events; they must not flow back into the application's
            // subscriber, which contains this very layer.
            let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::new());
            let transport = {
                let _ctx = runtime.enter();
                match transport {
                    TransportConfig::Grpc(g) => Transport::Grpc(g.connect()),
                    TransportConfig::Http(h) => Transport::Http(h),
                }
            };
            let mut worker = Worker {
                runtime,
                transport,
                resource: resource.to_resource(),
                status: worker_status,
                settings: worker_settings,
            };
            worker.run(rx);
            let _ = done_tx.send(());
        })?;
    let sink = Sink::Queue {
        tx: tx.clone(),
        warned_drop: AtomicBool::new(false),
    };
    let guard = FlushGuard {
        worker: Some(WorkerHandle {
            tx,
            done: done_rx,
            thread,
        }),
        status,
        shutdown_timeout: settings.shutdown_timeout,
    };
    Ok((sink, guard))
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    transport: Transport,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    status: AuditStatus,
    settings: WorkerSettings,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Item> = Vec::new();
        let mut linger_until = Instant::now();
        loop {
            let msg = if batch.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(linger_until.saturating_duration_since(Instant::now()))
            };
            match msg {
                Ok(Msg::Item(item)) => {
                    if batch.is_empty() {
                        linger_until = Instant::now() + self.settings.linger;
                    }
                    batch.push(*item);
                    if batch.len() >= self.settings.batch_size {
                        self.send(&mut batch, None);
                    }
                }
                Ok(Msg::Flush(ack)) => {
                    self.send(&mut batch, None);
                    let _ = ack.send(());
                }
                Ok(Msg::Shutdown(deadline)) => {
                    self.send(&mut batch, Some(deadline));
                    // Records that raced with shutdown still get their chance.
                    while let Ok(msg) = rx.try_recv() {
                        if let Msg::Item(item) = msg {
                            batch.push(*item);
                            if batch.len() >= self.settings.batch_size {
                                self.send(&mut batch, Some(deadline));
                            }
                        }
                    }
                    self.send(&mut batch, Some(deadline));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.send(&mut batch, None),
                Err(RecvTimeoutError::Disconnected) => {
                    self.send(&mut batch, None);
                    return;
                }
            }
        }
    }

    /// Sends and empties `batch`, retrying until the retry deadline (or the
    /// shutdown deadline, whichever is first). Every record ends up counted.
    fn send(&mut self, batch: &mut Vec<Item>, shutdown: Option<Instant>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let mut deadline = Instant::now() + self.settings.retry_deadline;
        if let Some(s) = shutdown {
            deadline = deadline.min(s);
        }
        let body = self.request(batch);
        batch.clear();
        let transport = &mut self.transport;
        let result = self.runtime.block_on(async {
            let mut backoff = Duration::from_millis(100);
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let attempt = tokio::time::timeout(remaining, transport.export(body.clone())).await;
                let failure = match attempt {
                    Ok(Ok(response)) => return Ok(response),
                    Ok(Err(failure)) => failure,
                    Err(_) => Failure {
                        retryable: false,
                        retry_after: None,
                        message: "export deadline passed".to_owned(),
                    },
                };
                let wait = failure.retry_after.unwrap_or(backoff).max(backoff);
                if !failure.retryable || Instant::now() + wait >= deadline {
                    return Err(failure);
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        match result {
            Ok(response) => {
                let partial = response.partial_success.unwrap_or_default();
                let refused = u64::try_from(partial.rejected_log_records)
                    .unwrap_or(0)
                    .min(n);
                self.status.add_exported(n - refused);
                if refused > 0 {
                    self.status.add_refused(refused);
                    eprintln!(
                        "audit-layer: the collector refused {refused} of {n} audit records: {}",
                        partial.error_message
                    );
                }
            }
            Err(failure) => {
                self.status.add_export_failures(n);
                eprintln!(
                    "audit-layer: gave up exporting {n} audit records: {}",
                    failure.message
                );
            }
        }
    }

    fn request(&self, batch: &[Item]) -> ExportLogsServiceRequest {
        let log_records = batch
            .iter()
            .map(|item| match item {
                Item::Action(r) => encode_action(r),
                Item::Violation(v) => encode_violation(v),
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    log_records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }
}

/// Why a flush or shutdown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The worker did not finish in time; records may still be in flight.
    #[error("audit export did not finish within {0:?}; see AuditStatus for what was delivered")]
    TimedOut(Duration),
    /// The worker thread is gone (it panicked or was shut down).
    #[error("the audit export worker is not running")]
    WorkerGone,
}

struct WorkerHandle {
    tx: SyncSender<Msg>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Owns delivery: dropping it (or [`FlushGuard::shutdown`]) sends everything
/// queued to the collector within a bounded time and stops the worker.
/// Keep it alive for as long as the application may create audit records,
/// typically as a `let _guard` in `main`.
///
/// Dropping it inside an async runtime is fine: the worker has its own
/// runtime on its own thread, so the guard only signals it and waits (with
/// a timeout) for the thread to finish.
///
/// ```
/// use std::time::Duration;
/// # let (_layer, guard) = audit_layer::AuditLayer::builder()
/// #     .memory(audit_layer::MemorySink::default()).build().unwrap();
/// guard.flush(Duration::from_secs(1)).unwrap();
/// println!("{:?}", guard.status().snapshot());
/// guard.shutdown(Duration::from_secs(5)).unwrap();
/// ```
#[must_use = "dropping the guard stops audit export; keep it alive (`let _guard = ...`)"]
pub struct FlushGuard {
    worker: Option<WorkerHandle>,
    status: AuditStatus,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard")
            .field("worker", &self.worker.is_some())
            .field("status", &self.status.snapshot())
            .finish()
    }
}

impl FlushGuard {
    /// A guard without a worker (the in-memory destination delivers inline).
    pub(crate) fn inline(status: AuditStatus) -> FlushGuard {
        FlushGuard {
            worker: None,
            status,
            shutdown_timeout: Duration::ZERO,
        }
    }

    /// The layer's counters.
    pub fn status(&self) -> AuditStatus {
        self.status.clone()
    }

    /// Waits until every record queued before this call has been
    /// acknowledged, refused or given up on.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = &self.worker else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::channel();
        enqueue(&w.tx, Msg::Flush(ack_tx), deadline, timeout)?;
        match ack_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(FlushError::TimedOut(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(FlushError::WorkerGone),
        }
    }

    /// Flushes everything queued and stops the worker, waiting at most
    /// `timeout`. Records created after this are counted as dropped.
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), FlushError> {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = self.worker.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        enqueue(&w.tx, Msg::Shutdown(deadline), deadline, timeout)?;
        // A little grace past the deadline for the worker to count and exit.
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(100);
        match w.done.recv_timeout(grace) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = w.thread.join();
                Ok(())
            }
            // Leave the thread detached rather than block the caller longer.
            Err(RecvTimeoutError::Timeout) => Err(FlushError::TimedOut(timeout)),
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop(self.shutdown_timeout) {
            eprintln!("audit-layer: {e}");
        }
    }
}

/// Puts a control message on the (possibly full) queue, waiting for room
/// until `deadline`: the worker is draining it, so room appears.
fn enqueue(
    tx: &SyncSender<Msg>,
    mut msg: Msg,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), FlushError> {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(FlushError::WorkerGone),
            Err(TrySendError::Full(m)) => {
                if Instant::now() >= deadline {
                    return Err(FlushError::TimedOut(timeout));
                }
                msg = m;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
