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
//! Everything else is retried, without a deadline while the application
//! runs: exponential backoff from 100 ms to
//! [`max_backoff`](crate::AuditLayerBuilder::max_backoff) with jitter, or
//! exactly the collector's hint when it gives one (HTTP `Retry-After`,
//! gRPC `google.rpc.RetryInfo` on `RESOURCE_EXHAUSTED` / `UNAVAILABLE`).
//! The first failed attempt is logged on stderr at once, with the
//! endpoint, the protocol and the cause (nothing listens there; the port
//! speaks the other protocol; ...), then at most once a minute; the same
//! text is in [`AuditStatus::last_error`]. While a batch cannot be
//! delivered and a [spool](crate::AuditLayerBuilder::spool_dir) is
//! configured, the batch and then everything queued behind it are written
//! to the spool (fsynced) and sent from there, oldest first, when the
//! collector answers again; an application restarted during the outage
//! finds its spool and resends it. A resend after a lost acknowledgement
//! is harmless: records keep their `event_id`, on which the collector
//! deduplicates.
//!
//! ## Where every record ends
//!
//! A record the layer accepted ends in exactly one of these states:
//!
//! | end | counted in | also |
//! |---|---|---|
//! | acknowledged (the collector made it durable) | [`AuditStatus::exported`] | |
//! | refused by the collector | [`AuditStatus::refused`] | reason in [`AuditStatus::last_refusal`], logged once |
//! | spooled (on disk, resent by this process or the next one) | [`AuditStatus::spooled`] | |
//! | dropped: memory and spool full, under the [`WhenFull`] policy | [`AuditStatus::dropped`] | a violation record `audit-layer.dropped` once delivery resumes; flush and shutdown return [`FlushError::Lost`] |
//! | unreadable in the spool (checksum) | [`AuditStatus::export_failures`] | the same violation record, cause `spool_checksum` |
//! | still in memory at shutdown, the collector not answering, no spool room | [`AuditStatus::export_failures`] | shutdown returns [`FlushError::Lost`] naming the count |
//!
//! The last row is the default case: **without a spool, records queued
//! when the application stops during an outage are lost**, and nothing is
//! left to report them to the collector later; shutdown's error is the
//! report. Configure a spool in production.
//!
//! The [`FlushGuard`] returned by the builder owns the worker: dropping it
//! (or [`FlushGuard::shutdown`]) delivers what is queued within a bounded
//! time; what the collector cannot take by then goes to the spool.
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
mod diagnose;
mod encoded;
mod grpc;
mod guard;
mod http;
mod loss;
mod memory;
mod spool;
mod tls;
mod worker;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use audit_schema::{AuditRecord, ViolationRecord};

pub(crate) use config::{http_logs_url, EnvSettings};
pub use config::{Protocol, DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT, DEFAULT_TIMEOUT};
pub(crate) use grpc::GrpcConfig;
pub use grpc::{PreEncoded, EXPORT_PATH};
pub use guard::{FlushError, FlushGuard, Loss};
pub(crate) use http::Http;
pub use loss::DROPPED_CAUSE;
pub use memory::MemorySink;
pub(crate) use spool::Spool;
pub(crate) use tls::TlsFiles;
pub(crate) use worker::Prepared;

use crate::fields::Closed;
use crate::stats::AuditStatus;
use loss::Losses;

/// Instrumentation scope name on every exported batch.
pub const SCOPE_NAME: &str = "audit-layer";

/// What happens when the audit path cannot take a record durably.
///
/// **The gate's rule.** Under `FailClosed` (and under `Block`, after
/// waiting), [`gate`](mod@crate::gate) admits a privileged action only
/// when the memory queue has room for its record *and* a durable place
/// will take it:
/// - the collector is answering: no attempt has failed since the last
///   answered one; at start, before any attempt, it is presumed to
///   answer. A throttle that comes with a retry hint (HTTP `Retry-After`,
///   gRPC `RetryInfo`) is an answer: refusing every action while the
///   collector sheds load would turn an overload into an outage; or
/// - a spool is configured and its last write found room (a spool that
///   found no room counts again once a segment has been delivered).
///
/// So with no spool, `gate()` refuses from the first failed delivery
/// attempt until the collector answers again; with a spool, from when the
/// spool is full and the collector is not answering.
///
/// | policy | the gate | a privileged span closing while memory is full |
/// |---|---|---|
/// | `FailClosed` (default) | refuses: [`GateError::AuditUnavailable`](crate::GateError::AuditUnavailable), the action never runs | kept in memory up to twice the queue capacity (the action already ran); past that, the closing thread waits up to [`span_wait`](crate::AuditLayerBuilder::span_wait) (default [`DEFAULT_SPAN_WAIT`]) for room, then the record is dropped and reported |
/// | `Block(t)` | waits up to `t` for the rule above, then refuses with [`GateError::TimedOut`](crate::GateError::TimedOut) | waits up to `t` for room, then dropped and reported |
/// | `Drop` (opt-in) | always admits | dropped and reported |
///
/// "Dropped and reported": counted in [`AuditStatus::dropped`], warned
/// about once on stderr, returned by the next flush and by shutdown as
/// [`FlushError::Lost`], and sent to the collector as one violation record
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

/// One record on its way out. A span's fields are boxed: moved inline,
/// their ~1.5 KB made every queued item that large.
#[derive(Debug)]
pub(crate) enum Item {
    Action(AuditRecord),
    Violation(ViolationRecord),
    /// A privileged span not checked yet: [`Check`] makes it an action or a
    /// violation after the hand-off, on the worker's thread (on the
    /// application's for the in-memory sink).
    Span(Box<Closed>),
    /// The exporter's own report of dropped records: not counted in
    /// `accepted` (a flush must not wait for it) until it is spooled.
    Report(ViolationRecord),
}

/// The dual-key check of a closed privileged span: its record, or the
/// violation it is (counted as one). The layer's core implements it; the
/// worker runs it, so that the application's thread only hands the span's
/// fields over.
pub(crate) trait Check: Send + Sync {
    fn check(&self, span: Box<Closed>) -> Result<AuditRecord, Box<ViolationRecord>>;
}

impl Item {
    /// The item with a span checked. Exactly once per span: the check
    /// uses the span's consent token, and counts a violation.
    fn checked(self, check: &dyn Check) -> Item {
        match self {
            Item::Span(span) => match check.check(span) {
                Ok(r) => Item::Action(r),
                Err(v) => Item::Violation(*v),
            },
            ready => ready,
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
/// the worker acts on it).
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
    /// Producers waiting for room, gates waiting for a durable place and
    /// flushers waiting for progress.
    progress: Condvar,
    capacity: usize,
    when_full: WhenFull,
    span_wait: Duration,
    has_spool: bool,
    /// The last attempt failed without a retry hint (set and cleared by
    /// the worker, under the state lock so that a waiting gate is woken).
    collector_down: AtomicBool,
    /// The spool's last write found no room (or failed).
    spool_full: AtomicBool,
    losses: Losses,
    status: AuditStatus,
}

impl Shared {
    fn new(settings: &WorkerSettings, status: AuditStatus) -> Shared {
        Shared {
            state: Mutex::new(QState::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            capacity: settings.queue_capacity.max(1),
            when_full: settings.when_full,
            span_wait: settings.span_wait,
            has_spool: settings.spool_dir.is_some(),
            collector_down: AtomicBool::new(false),
            spool_full: AtomicBool::new(false),
            losses: Losses::default(),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `d` for the worker to be woken.
    fn wait_work<'a>(&self, st: MutexGuard<'a, QState>, d: Duration) -> MutexGuard<'a, QState> {
        self.work
            .wait_timeout(st, d)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Waits at most `d` for progress (room, a durable place, deliveries).
    fn wait_progress<'a>(&self, st: MutexGuard<'a, QState>, d: Duration) -> MutexGuard<'a, QState> {
        self.progress
            .wait_timeout(st, d)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Sets one of the worker's flags; a change wakes waiting gates.
    fn set_flag(&self, flag: &AtomicBool, value: bool) {
        if flag.load(Ordering::Relaxed) != value {
            let _st = self.lock();
            flag.store(value, Ordering::Relaxed);
            self.progress.notify_all();
        }
    }

    pub(crate) fn set_collector_down(&self, down: bool) {
        self.set_flag(&self.collector_down, down);
    }

    pub(crate) fn set_spool_full(&self, full: bool) {
        self.set_flag(&self.spool_full, full);
    }

    /// A durable place will take a record: the collector answers, or the
    /// spool has room (the rule in [`WhenFull`]'s docs).
    fn durable_place(&self) -> bool {
        !self.collector_down.load(Ordering::Relaxed)
            || (self.has_spool && !self.spool_full.load(Ordering::Relaxed))
    }

    /// Puts a finished record on the queue under the policy: memory holds
    /// up to the queue capacity (twice it under `FailClosed`, for the spans
    /// of actions the gate admitted); past that, `Block` and `FailClosed`
    /// wait for room, then the record is dropped and reported.
    fn push(&self, item: Item) {
        let (limit, wait) = match self.when_full {
            WhenFull::FailClosed => (self.capacity.saturating_mul(2), self.span_wait),
            WhenFull::Block(t) => (self.capacity, t),
            WhenFull::Drop => (self.capacity, Duration::ZERO),
        };
        let mut st = self.lock();
        // Read the clock only when memory is full: this is every span's path.
        let mut deadline = None;
        while !st.closed && st.items.len() >= limit {
            let until = *deadline.get_or_insert_with(|| Instant::now() + wait);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.wait_progress(st, left);
        }
        if st.closed || st.items.len() >= limit {
            let why = if st.closed {
                "the exporter has shut down"
            } else {
                "the audit queue and spool are full"
            };
            drop(st);
            self.losses.dropped(&self.status, why);
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

    /// The gate's health check: is there room for `n` more records, and a
    /// durable place for them?
    pub(crate) fn admit(&self, n: usize) -> Result<(), Refusal> {
        let mut st = self.lock();
        let ready = |st: &QState| st.items.len() + n <= self.capacity && self.durable_place();
        let result = match self.when_full {
            _ if st.closed => Err(Refusal::ShutDown),
            WhenFull::Drop => Ok(()),
            WhenFull::FailClosed if ready(&st) => Ok(()),
            WhenFull::FailClosed => Err(Refusal::Full),
            WhenFull::Block(t) => {
                let deadline = Instant::now() + t;
                loop {
                    if st.closed {
                        break Err(Refusal::ShutDown);
                    }
                    if ready(&st) {
                        break Ok(());
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(Refusal::TimedOut(t));
                    }
                    st = self.wait_progress(st, left);
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
    /// Blocks only under [`WhenFull::Block`], at most its timeout. The
    /// in-memory sink checks a span at once: its records are visible as
    /// soon as the span has closed.
    pub fn send(&self, item: Item, status: &AuditStatus, check: &dyn Check) {
        match self {
            Sink::Memory(m) => {
                match item {
                    Item::Action(r) => m.push_record(r),
                    Item::Violation(v) | Item::Report(v) => m.push_violation(v),
                    Item::Span(span) => match check.check(span) {
                        Ok(r) => m.push_record(r),
                        Err(v) => m.push_violation(*v),
                    },
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
    pub span_wait: Duration,
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
            span_wait: DEFAULT_SPAN_WAIT,
        }
    }
}

/// A transport whose configuration has been validated, not yet connected.
pub(crate) enum TransportConfig {
    Grpc(Box<GrpcConfig>),
    Http(Box<Http>),
}

/// Under [`WhenFull::FailClosed`], how long a closing privileged span
/// waits for room in a full queue before its record is dropped and
/// reported (see [`span_wait`](crate::AuditLayerBuilder::span_wait)).
pub const DEFAULT_SPAN_WAIT: Duration = Duration::from_secs(1);

/// Span name of the violation record that reports drops.
pub const DROPPED_SPAN: &str = "audit-layer.dropped";
/// Attribute of that record holding how many records were dropped.
pub const DROPPED_COUNT: &str = audit_schema::wire::violation_kind::DROPPED_COUNT_ATTR;
