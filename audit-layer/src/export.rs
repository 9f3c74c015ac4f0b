//! Delivery of audit and violation records: our own small OTLP exporter,
//! at least once.
//!
//! Why not the OpenTelemetry SDK's log exporter: its batch processor drops
//! records silently when its queue is full and treats the collector's
//! `partial_success` as success. For telemetry that is a fair trade; for an
//! audit trail a lost or refused row is exactly what must be visible.
//!
//! Shape: the layer puts finished records on a bounded in-memory queue; a
//! dedicated worker thread owning a current-thread tokio runtime batches
//! them (up to `batch_size` records or `linger`) into one
//! `ExportLogsServiceRequest`. A record leaves the exporter's hands only
//! when the collector **acknowledged** it (the collector acks only what it
//! made durable), or when the collector **refused** it (`partial_success`,
//! or a whole-batch `INVALID_ARGUMENT` / HTTP 400): refusals are counted in
//! [`AuditStatus::refused`], the first one is logged with its reason, and
//! [`AuditStatus::last_refusal`] keeps the latest reason.
//!
//! A request never encodes to more than
//! [`max_request_bytes`](crate::AuditLayerBuilder::max_request_bytes)
//! (the collector's default cap) when it can be cut: a larger batch goes in
//! several. When the collector still answers "too large" (gRPC
//! `RESOURCE_EXHAUSTED` without `RetryInfo`, HTTP 413), the request is sent
//! again in halves, recursively; only a single record too large by itself
//! is refused. Records are neither lost with their batch nor resent forever.
//!
//! Everything else is retried, without a deadline: exponential backoff from
//! 100 ms to [`max_backoff`](crate::AuditLayerBuilder::max_backoff) with
//! jitter, or exactly the collector's hint when it gives one (HTTP
//! `Retry-After`, gRPC `google.rpc.RetryInfo` on `RESOURCE_EXHAUSTED` /
//! `UNAVAILABLE`). While a batch cannot be delivered and a
//! [spool](crate::AuditLayerBuilder::spool_dir) is configured, the batch
//! and then everything queued behind it are written to the spool (fsynced)
//! and sent from there, oldest first, when the collector answers again; an
//! application restarted during the outage finds its spool and resends it.
//! A resend after a lost acknowledgement is harmless: records keep their
//! `event_id`, on which the collector deduplicates.
//!
//! When the memory queue is full (the spool is full, or there is none),
//! the [`WhenFull`] policy decides; nothing is dropped silently.
//!
//! The [`FlushGuard`] returned by the builder owns the worker: dropping it
//! (or [`FlushGuard::shutdown`]) delivers what is queued within a bounded
//! time; what the collector cannot take by then goes to the spool, or, with
//! no spool, is counted in [`AuditStatus::export_failures`].
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
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE` (`_LOGS_` variant wins) | PEM CA file for `https://` endpoints (default: the system's roots) |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_KEY` (`_LOGS_` variants win) | PEM client certificate and key, for mutual TLS |
//!
//! Explicit builder settings win over the environment. `https://`
//! endpoints use TLS (rustls): [`tls_ca_file`](crate::AuditLayerBuilder::tls_ca_file)
//! and [`tls_client_identity`](crate::AuditLayerBuilder::tls_client_identity)
//! are the builder's names for the certificate variables.

mod config;
mod deliver;
mod grpc;
mod http;
mod memory;
mod spool;
mod tls;

use deliver::Sent;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audit_schema::otlp::{encode_action, encode_violation, ResourceInfo};
use audit_schema::{AuditRecord, ViolationRecord};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub(crate) use config::{http_logs_url, EnvSettings};
pub use config::{Protocol, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT};
pub(crate) use grpc::GrpcConfig;
pub(crate) use http::Http;
pub use memory::MemorySink;
pub(crate) use spool::Spool;
pub(crate) use tls::TlsFiles;

use crate::stats::AuditStatus;

/// Instrumentation scope name on every exported batch.
pub const SCOPE_NAME: &str = "audit-layer";

/// What happens when the audit path cannot take another record: the
/// memory queue is full because the collector is unreachable and the spool
/// is full (or there is no spool).
///
/// | policy | the gate ([`crate::gate`]) | a privileged span closing |
/// |---|---|---|
/// | `FailClosed` (default) | refuses: [`GateError::AuditUnavailable`](crate::GateError::AuditUnavailable), the action never runs | kept in memory up to twice the queue capacity (the action already ran), then dropped and reported |
/// | `Block(t)` | waits up to `t` for room, then refuses with [`GateError::TimedOut`](crate::GateError::TimedOut) | waits up to `t`, then dropped and reported |
/// | `Drop` (opt-in) | always admits | dropped and reported |
///
/// "Dropped and reported": counted in [`AuditStatus::dropped`], warned
/// about once on stderr, and sent to the collector as one violation record
/// (`audit-layer.dropped`, attribute `audit.dropped.count`) as soon as
/// delivery resumes. Nothing is dropped silently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse privileged actions at the gate while the audit path is full.
    #[default]
    FailClosed,
    /// Wait for room, at most this long.
    Block(Duration),
    /// Admit and drop, counting every drop and reporting the count.
    Drop,
}

/// One record on its way out.
#[derive(Debug)]
pub(crate) enum Item {
    Action(AuditRecord),
    Violation(ViolationRecord),
    /// The exporter's own report of dropped records: not counted in
    /// `accepted` (a flush must not wait for it) until it is spooled.
    Report(ViolationRecord),
}

impl Item {
    fn encode(&self) -> LogRecord {
        match self {
            Item::Action(r) => encode_action(r),
            Item::Violation(v) | Item::Report(v) => encode_violation(v),
        }
    }

    fn is_report(&self) -> bool {
        matches!(self, Item::Report(_))
    }
}

/// A failed export attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the failure means for the records sent.
    pub kind: FailureKind,
    /// The collector's hint (`Retry-After`, `RetryInfo`).
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// How a failed request is handled (the transports decide which applies;
/// [`deliver`] acts on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Worth another try, after the hint or a backoff.
    Transient,
    /// The collector refused the batch for good (malformed).
    Refused,
    /// The request is over the collector's size cap: sent again in halves,
    /// down to single records; a single record still too large is refused.
    TooLarge,
}

impl Failure {
    /// A failure worth another try.
    pub fn transient(message: String) -> Failure {
        Failure {
            kind: FailureKind::Transient,
            retry_after: None,
            message,
        }
    }
}

/// Why the audit path cannot take a record now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    TimedOut(Duration),
    ShutDown,
}

#[derive(Default)]
struct QState {
    items: VecDeque<Item>,
    /// Shutdown started: no new records.
    closed: bool,
    shutdown: Option<Instant>,
    flush_requested: bool,
    /// Records accepted (queued, or found in the spool at start).
    accepted: u64,
    /// Records acknowledged, refused or lost.
    resolved: u64,
    worker_gone: bool,
    /// Queue length at which a push wakes the worker; 0 while it is busy
    /// sending or backing off. A futex wake and a context switch per record
    /// were most of the cost of a span through the queue (BENCHMARKS.md).
    wake_at: usize,
}

/// The queue shared by the layer (producers), the gate and the worker.
pub(crate) struct Shared {
    state: Mutex<QState>,
    /// The worker waits on it for records and control.
    work: Condvar,
    /// Producers waiting for room and flushers waiting for progress.
    progress: Condvar,
    capacity: usize,
    when_full: WhenFull,
    unreported_drops: AtomicU64,
    warned_drop: AtomicBool,
    status: AuditStatus,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hard_cap(&self) -> usize {
        match self.when_full {
            WhenFull::FailClosed => self.capacity.saturating_mul(2),
            _ => self.capacity,
        }
    }

    /// Puts a finished record on the queue under the policy.
    fn push(&self, item: Item) {
        let mut st = self.lock();
        if let WhenFull::Block(t) = self.when_full {
            let deadline = Instant::now() + t;
            while !st.closed && st.items.len() >= self.capacity {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .progress
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        if st.closed || st.items.len() >= self.hard_cap() {
            let why = if st.closed {
                "the exporter has shut down"
            } else {
                "the audit queue and spool are full"
            };
            drop(st);
            self.dropped(why);
            return;
        }
        st.items.push_back(item);
        st.accepted += 1;
        self.status.set_queued(st.items.len() as u64);
        let wake = st.wake_at != 0 && st.items.len() >= st.wake_at;
        drop(st);
        if wake {
            self.work.notify_one();
        }
    }

    fn dropped(&self, why: &str) {
        self.status.add_dropped(1);
        self.unreported_drops.fetch_add(1, Ordering::Relaxed);
        // Not a tracing event: we may be inside the layer's callback.
        if !self.warned_drop.swap(true, Ordering::Relaxed) {
            eprintln!(
                "audit-layer: dropping audit records because {why}; counted in \
                 AuditStatus::dropped and reported to the collector once delivery resumes \
                 (warned once)"
            );
        }
    }

    /// The gate's health check: is there room for `n` more records?
    pub(crate) fn admit(&self, n: usize) -> Result<(), Refusal> {
        let mut st = self.lock();
        let room = |st: &QState| st.items.len() + n <= self.capacity;
        let result = match self.when_full {
            _ if st.closed => Err(Refusal::ShutDown),
            WhenFull::Drop => Ok(()),
            WhenFull::FailClosed if room(&st) => Ok(()),
            WhenFull::FailClosed => Err(Refusal::Full),
            WhenFull::Block(t) => {
                let deadline = Instant::now() + t;
                loop {
                    if st.closed {
                        break Err(Refusal::ShutDown);
                    }
                    if room(&st) {
                        break Ok(());
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(Refusal::TimedOut(t));
                    }
                    st = self
                        .progress
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        };
        if result.is_err() {
            self.status.add_gate_refusals(1);
        }
        result
    }
}

/// Where the layer puts finished records.
#[derive(Clone)]
pub(crate) enum Sink {
    Memory(MemorySink),
    Queue(Arc<Shared>),
}

impl Sink {
    /// Blocks only under [`WhenFull::Block`], at most its timeout.
    pub fn send(&self, item: Item, status: &AuditStatus) {
        match self {
            Sink::Memory(m) => {
                match item {
                    Item::Action(r) => m.push_record(r),
                    Item::Violation(v) | Item::Report(v) => m.push_violation(v),
                }
                status.add_exported(1);
            }
            Sink::Queue(shared) => shared.push(item),
        }
    }

    /// The gate's health check.
    pub fn admit(&self, n: usize) -> Result<(), Refusal> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::Queue(shared) => shared.admit(n),
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
    pub max_backoff: Duration,
    pub max_request_bytes: usize,
    pub shutdown_timeout: Duration,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub when_full: WhenFull,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            queue_capacity: 8192,
            batch_size: 512,
            linger: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_request_bytes: audit_schema::limits::DEFAULT_MAX_REQUEST_BYTES,
            shutdown_timeout: Duration::from_secs(5),
            spool_dir: None,
            spool_max_bytes: 256 << 20,
            when_full: WhenFull::FailClosed,
        }
    }
}

/// A transport whose configuration has been validated, not yet connected.
pub(crate) enum TransportConfig {
    Grpc(Box<GrpcConfig>),
    Http(Box<Http>),
}

enum Transport {
    Grpc(grpc::Grpc),
    Http(Box<Http>),
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
    // Opened here so that a locked or unusable spool is a build error.
    let spool = match &settings.spool_dir {
        Some(dir) => Some(Spool::open(dir, settings.spool_max_bytes)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(QState::default()),
        work: Condvar::new(),
        progress: Condvar::new(),
        capacity: settings.queue_capacity.max(1),
        when_full: settings.when_full,
        unreported_drops: AtomicU64::new(0),
        warned_drop: AtomicBool::new(false),
        status: status.clone(),
    });
    if let Some(s) = &spool {
        shared.lock().accepted += s.records();
        status.set_spool(s.records(), s.bytes());
    }
    let (done_tx, done_rx) = mpsc::channel();
    let worker_shared = shared.clone();
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
                shared: worker_shared,
                settings: worker_settings,
                spool,
                in_hand: None,
                spool_head_done: None,
                backoff: Duration::ZERO,
                warned_spool: false,
            };
            worker.run();
            let _ = done_tx.send(());
        })?;
    let guard = FlushGuard {
        worker: Some(WorkerHandle {
            shared: shared.clone(),
            done: done_rx,
            thread,
        }),
        status,
        shutdown_timeout: settings.shutdown_timeout,
    };
    Ok((Sink::Queue(shared), guard))
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    transport: Transport,
    resource: Resource,
    shared: Arc<Shared>,
    settings: WorkerSettings,
    spool: Option<Spool>,
    /// A batch taken from memory, not yet acknowledged nor spooled, and
    /// how many of its records are the exporter's own reports (they lead
    /// the batch: see [`Worker::take_batch`]).
    in_hand: Option<(Vec<LogRecord>, u64)>,
    /// How many leading records of the spool's head segment are settled
    /// (`None`: the head was not read yet, its lost records not counted).
    spool_head_done: Option<usize>,
    backoff: Duration,
    warned_spool: bool,
}

impl Worker {
    fn status(&self) -> &AuditStatus {
        &self.shared.status
    }

    fn shutdown(&self) -> Option<Instant> {
        self.shared.lock().shutdown
    }

    fn run(&mut self) {
        loop {
            let shutdown = self.shutdown();
            if let Some(deadline) = shutdown {
                let idle = self.in_hand.is_none()
                    && self.shared.lock().items.is_empty()
                    && self.spool.as_ref().is_none_or(Spool::is_empty);
                if idle || Instant::now() >= deadline {
                    return self.finish();
                }
            }
            // Oldest first: what waits on disk goes before what is in memory.
            if self.spool.as_ref().is_some_and(|s| !s.is_empty()) {
                self.spill_queue();
                match self.send_spool_head(shutdown) {
                    Sent::Done => {}
                    Sent::Retry { wait, .. } => {
                        if shutdown.is_some() {
                            // Durable on disk; the next start resends it.
                            return self.finish();
                        }
                        self.wait_spooling(wait);
                    }
                }
                continue;
            }
            if self.in_hand.is_none() {
                self.in_hand = self.take_batch();
                if self.in_hand.is_none() {
                    continue;
                }
            }
            let (mut batch, mut reports) = self.in_hand.take().unwrap_or_default();
            let n = batch.len() as u64;
            let resource = self.resource.clone();
            match self.deliver(&resource, &batch, shutdown) {
                Sent::Done => self.resolved(n - reports),
                Sent::Retry { wait, done } => {
                    // The settled head of the batch is not sent again; the
                    // exporter's own reports, uncounted, lead the batch.
                    batch.drain(..done);
                    let settled_reports = reports.min(done as u64);
                    reports -= settled_reports;
                    self.resolved(done as u64 - settled_reports);
                    if self.spill(&batch) {
                        // Spool mode: the loop now sends from the spool,
                        // where every record counts.
                        self.shared.lock().accepted += reports;
                        continue;
                    }
                    self.in_hand = Some((batch, reports));
                    if shutdown.is_some() && self.spool.is_some() {
                        // The spool is full: nothing more can be kept.
                        return self.finish();
                    }
                    self.wait(wait);
                }
            }
        }
    }

    /// Stops: what is still in hand or queued goes to the spool when there
    /// is one and it has room; the rest is counted as failed.
    fn finish(&mut self) {
        let mut rest: Vec<LogRecord> = self.in_hand.take().unwrap_or_default().0;
        {
            let mut st = self.shared.lock();
            rest.extend(st.items.drain(..).map(|i| i.encode()));
            st.worker_gone = true;
            st.closed = true;
        }
        for chunk in rest.chunks(self.settings.batch_size.max(1)) {
            if !self.spill(chunk) {
                let n = chunk.len() as u64;
                self.status().add_export_failures(n);
                self.resolved(n);
                eprintln!(
                    "audit-layer: {n} audit records could not be delivered before shutdown \
                     and no spool could take them; counted in AuditStatus::export_failures"
                );
            }
        }
        if let Some(s) = &self.spool {
            if !s.is_empty() {
                eprintln!(
                    "audit-layer: {} audit records wait in the spool {}; they are sent when \
                     the application starts again with the same spool directory",
                    s.records(),
                    self.settings
                        .spool_dir
                        .as_deref()
                        .unwrap_or(std::path::Path::new("?"))
                        .display()
                );
            }
        }
        self.status().set_queued(0);
        self.shared.progress.notify_all();
    }

    /// Waits for the first record, then up to `linger` for companions
    /// (unless a flush or shutdown asks for speed); takes up to `batch_size`.
    /// The exporter's own reports lead the batch: they are the only records
    /// pushed to the front of the queue (`report_drops`), and what is put
    /// back keeps its order.
    fn take_batch(&mut self) -> Option<(Vec<LogRecord>, u64)> {
        let mut st = self.shared.lock();
        st.wake_at = 1;
        while st.items.is_empty() {
            if st.shutdown.is_some() {
                st.wake_at = 0;
                return None;
            }
            st = self
                .shared
                .work
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let linger_until = Instant::now() + self.settings.linger;
        st.wake_at = self.settings.batch_size;
        while st.items.len() < self.settings.batch_size
            && !st.flush_requested
            && st.shutdown.is_none()
        {
            let left = linger_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .work
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.wake_at = 0;
        let n = st.items.len().min(self.settings.batch_size);
        let items: Vec<Item> = st.items.drain(..n).collect();
        if st.items.is_empty() {
            st.flush_requested = false;
        }
        self.status().set_queued(st.items.len() as u64);
        drop(st);
        self.shared.progress.notify_all();
        let reports = items.iter().filter(|i| i.is_report()).count() as u64;
        Some((items.iter().map(Item::encode).collect(), reports))
    }

    /// Sleeps `d`, waking early when a shutdown starts; during a shutdown,
    /// never past its deadline.
    fn wait(&self, d: Duration) {
        let mut st = self.shared.lock();
        let in_shutdown = st.shutdown;
        let mut deadline = Instant::now() + d;
        if let Some(s) = in_shutdown {
            deadline = deadline.min(s);
        }
        loop {
            if in_shutdown.is_none() && st.shutdown.is_some() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .work
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// In spool mode: waits `d` before the next attempt, moving what the
    /// application queues meanwhile to the spool every `linger`, so that
    /// memory stays free while the spool has room.
    fn wait_spooling(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            self.wait(left.min(self.settings.linger.max(Duration::from_millis(5))));
            self.spill_queue();
            if Instant::now() >= until || self.shutdown().is_some() {
                return;
            }
        }
    }

    /// Writes `batch` to the spool; false when there is none or it is full.
    fn spill(&mut self, batch: &[LogRecord]) -> bool {
        let Some(spool) = self.spool.as_mut() else {
            return false;
        };
        match spool.append(&self.resource, batch) {
            Ok(true) => {
                let (r, b) = (spool.records(), spool.bytes());
                self.status().set_spool(r, b);
                true
            }
            Ok(false) => false,
            Err(e) => {
                if !self.warned_spool {
                    self.warned_spool = true;
                    eprintln!("audit-layer: cannot write to the spool: {e}");
                }
                false
            }
        }
    }

    /// In spool mode, moves what is queued in memory to the spool (while it
    /// has room), so that memory stays free and order is kept.
    fn spill_queue(&mut self) {
        loop {
            let items: Vec<Item> = {
                let mut st = self.shared.lock();
                let n = st.items.len().min(self.settings.batch_size);
                if n == 0 {
                    return;
                }
                st.items.drain(..n).collect()
            };
            let batch: Vec<LogRecord> = items.iter().map(Item::encode).collect();
            if !self.spill(&batch) {
                // No room: put them back at the front, in order.
                let mut st = self.shared.lock();
                for item in items.into_iter().rev() {
                    st.items.push_front(item);
                }
                return;
            }
            let mut st = self.shared.lock();
            st.accepted += items.iter().filter(|i| i.is_report()).count() as u64;
            self.status().set_queued(st.items.len() as u64);
            st.flush_requested &= !st.items.is_empty();
            drop(st);
            self.shared.progress.notify_all();
        }
    }

    fn send_spool_head(&mut self, shutdown: Option<Instant>) -> Sent {
        let Some(spool) = self.spool.as_ref() else {
            return Sent::Done;
        };
        let batch = match spool.head() {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                eprintln!("audit-layer: cannot read the spool: {e}");
                let wait = self.next_backoff(None);
                return Sent::Retry { wait, done: 0 };
            }
            None => return Sent::Done,
        };
        // Counted once per segment, not at every read of a head that
        // waits for the collector.
        let done = match self.spool_head_done {
            Some(done) => done.min(batch.records.len()),
            None => {
                if batch.lost > 0 {
                    self.status().add_export_failures(batch.lost);
                    eprintln!(
                        "audit-layer: {} spooled audit records failed their checksum and are \
                         lost; counted in AuditStatus::export_failures",
                        batch.lost
                    );
                }
                0
            }
        };
        let n = batch.records.len() as u64;
        let resource = if batch.resource == Resource::default() {
            self.resource.clone()
        } else {
            batch.resource
        };
        let sent = self.deliver(&resource, &batch.records[done..], shutdown);
        match sent {
            Sent::Done => {
                self.spool_head_done = None;
                let spool = self.spool.as_mut().expect("spool");
                if let Err(e) = spool.pop_head() {
                    eprintln!("audit-layer: cannot remove a delivered spool segment: {e}");
                }
                let (r, b) = (spool.records(), spool.bytes());
                self.status().set_spool(r, b);
                self.resolved(n + batch.lost);
            }
            // The segment leaves the spool only whole; its settled records
            // are not sent again by this process (a restart resends them,
            // which the collector's deduplication absorbs).
            Sent::Retry { done: more, .. } => self.spool_head_done = Some(done + more),
        }
        sent
    }

    fn resolved(&self, n: u64) {
        self.shared.lock().resolved += n;
        self.shared.progress.notify_all();
    }

    fn next_backoff(&mut self, hint: Option<Duration>) -> Duration {
        self.backoff = if self.backoff.is_zero() {
            Duration::from_millis(100)
        } else {
            (self.backoff * 2).min(self.settings.max_backoff)
        };
        match hint {
            // The collector knows best; a hint far in the future is capped.
            Some(h) => h.min(Duration::from_secs(60)),
            None => jitter(self.backoff),
        }
    }

    /// Delivery works again: report what was dropped meanwhile, first.
    fn report_drops(&self) {
        let n = self.shared.unreported_drops.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let policy = match self.shared.when_full {
            WhenFull::FailClosed => "fail_closed (over the hard cap)",
            WhenFull::Block(_) => "block (timed out)",
            WhenFull::Drop => "drop",
        };
        let info = ResourceInfo::from_resource(Some(&self.resource));
        let v = ViolationRecord {
            event_id: crate::ids::event_id(),
            time_ns: crate::layer::now_ns(),
            detected_by: "layer".to_owned(),
            missing: vec![DROPPED_COUNT.to_owned()],
            reason: format!(
                "audit-layer dropped {n} audit records: the queue and spool were full \
                 (policy {policy})"
            ),
            span_name: Some(DROPPED_SPAN.to_owned()),
            service_name: info
                .service_name
                .unwrap_or_else(|| audit_schema::wire::UNKNOWN_SERVICE.to_owned()),
            service_instance_id: info.service_instance_id,
            attributes: BTreeMap::from([
                (DROPPED_COUNT.to_owned(), n.to_string()),
                ("audit.dropped.policy".to_owned(), policy.to_owned()),
            ]),
            ..ViolationRecord::default()
        };
        self.shared.lock().items.push_front(Item::Report(v));
    }
}

/// Span name of the violation record that reports drops.
pub const DROPPED_SPAN: &str = "audit-layer.dropped";
/// Attribute of that record holding how many records were dropped.
pub const DROPPED_COUNT: &str = "audit.dropped.count";

/// `base` with full jitter in `[base/2, base]`.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    base.mul_f64(0.5 + frac / 2.0)
}

fn request(resource: Resource, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
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

/// Why a flush or shutdown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The worker did not finish in time; records may still be in flight
    /// (they are not lost: they wait in memory or in the spool).
    #[error("audit export did not finish within {0:?}; see AuditStatus for what was delivered")]
    TimedOut(Duration),
    /// The worker thread is gone (it panicked or was shut down).
    #[error("the audit export worker is not running")]
    WorkerGone,
}

struct WorkerHandle {
    shared: Arc<Shared>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Owns delivery: dropping it (or [`FlushGuard::shutdown`]) sends everything
/// queued to the collector within a bounded time and stops the worker; what
/// the collector cannot take by then waits in the spool.
/// Keep it alive for as long as the application may create audit records,
/// typically as a `let _guard` in `main`.
///
/// Dropping it inside an async runtime (current-thread or multi-thread) or
/// outside any runtime is fine: the worker has its own runtime on its own
/// thread, so the guard only signals it and waits (with a timeout) for the
/// thread to finish.
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

    /// Waits until every record accepted before this call (and every record
    /// found in the spool at start) has been acknowledged or refused by the
    /// collector. While the collector is unreachable this times out: the
    /// records are not lost, they wait.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = &self.worker else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        let mut st = w.shared.lock();
        let target = st.accepted;
        st.flush_requested = true;
        w.shared.work.notify_one();
        while st.resolved < target {
            if st.worker_gone {
                return Err(FlushError::WorkerGone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FlushError::TimedOut(timeout));
            }
            st = w
                .shared
                .progress
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            // Records queued while we wait may need another nudge past linger.
            if !st.items.is_empty() {
                st.flush_requested = true;
                w.shared.work.notify_one();
            }
        }
        Ok(())
    }

    /// Delivers everything queued and stops the worker, waiting at most
    /// `timeout` (plus the time to write the remainder to the spool).
    /// Records created after this are counted as dropped.
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), FlushError> {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Result<(), FlushError> {
        let Some(w) = self.worker.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        {
            let mut st = w.shared.lock();
            st.closed = true;
            st.shutdown = Some(deadline);
        }
        w.shared.work.notify_all();
        w.shared.progress.notify_all();
        // Grace past the deadline for the worker to spill, count and exit.
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
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
