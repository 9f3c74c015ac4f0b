//! The worker thread: takes batches from the queue (or the spool, oldest
//! first), sends them, backs off, spills to the spool during an outage, and
//! reports drops once delivery resumes.

mod deliver;
mod reachability;
mod spooling;

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use audit_schema::otlp::ResourceInfo;
use bytes::Bytes;
use hyper::Uri;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::export::diagnose::Outage;
use crate::export::encoded::{Encoded, RequestHead};
use crate::export::{
    grpc, Check, Failure, FlushGuard, Http, Item, Protocol, Shared, Sink, Spool, TransportConfig,
    WorkerSettings,
};
use crate::stats::AuditStatus;

use self::deliver::Sent;

enum Transport {
    Grpc(Box<grpc::Grpc>),
    Http(Box<Http>),
}

impl Transport {
    /// Sends one encoded `ExportLogsServiceRequest`.
    async fn export(&mut self, body: Bytes) -> Result<ExportLogsServiceResponse, Failure> {
        match self {
            Transport::Grpc(g) => g.export(body).await,
            Transport::Http(h) => h.export(body).await,
        }
    }

    fn uri(&self) -> &Uri {
        match self {
            Transport::Grpc(g) => g.uri(),
            Transport::Http(h) => h.uri(),
        }
    }

    fn protocol(&self) -> Protocol {
        match self {
            Transport::Grpc(_) => Protocol::Grpc,
            Transport::Http(_) => Protocol::HttpProtobuf,
        }
    }
}

/// The queue and the spool, made before the layer's core (which holds
/// the queue as its sink); [`Prepared::start`] then starts the worker.
pub(crate) struct Prepared {
    shared: Arc<Shared>,
    spool: Option<Spool>,
    settings: WorkerSettings,
    status: AuditStatus,
}

impl Prepared {
    /// Opens the spool (a locked or unusable one is a build error) and
    /// makes the queue.
    pub fn new(settings: WorkerSettings, status: AuditStatus) -> std::io::Result<Prepared> {
        let spool = match &settings.spool_dir {
            Some(dir) => Some(Spool::open(dir, settings.spool_max_bytes)?),
            None => None,
        };
        let shared = Arc::new(Shared::new(&settings, status.clone()));
        if let Some(s) = &spool {
            shared.lock().accepted += s.records();
            status.set_spool(s.records(), s.bytes());
        }
        Ok(Prepared {
            shared,
            spool,
            settings,
            status,
        })
    }

    /// The layer's sink: the queue.
    pub fn sink(&self) -> Sink {
        Sink::Queue(self.shared.clone())
    }

    /// Starts the worker thread, which checks spans with `check`; the guard
    /// that owns it.
    pub fn start(
        self,
        transport: TransportConfig,
        resource: ResourceInfo,
        check: Arc<dyn Check>,
    ) -> std::io::Result<FlushGuard> {
        let Prepared {
            shared,
            spool,
            settings,
            status,
        } = self;
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
                let _quiet =
                    tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::new());
                let transport = {
                    let _ctx = runtime.enter();
                    match transport {
                        TransportConfig::Grpc(g) => Transport::Grpc(Box::new(g.connect())),
                        TransportConfig::Http(h) => Transport::Http(h),
                    }
                };
                let resource = resource.to_resource();
                let mut worker = Worker {
                    runtime,
                    transport,
                    head: RequestHead::new(&resource),
                    resource,
                    shared: worker_shared,
                    settings: worker_settings,
                    spool,
                    check,
                    in_hand: None,
                    spare: VecDeque::new(),
                    spool_head_done: None,
                    backoff: Duration::ZERO,
                    warned_spool: false,
                    outage: Outage::default(),
                };
                worker.run();
                let _ = done_tx.send(());
            })?;
        Ok(FlushGuard::running(
            shared,
            done_rx,
            thread,
            status,
            settings.shutdown_timeout,
        ))
    }
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    transport: Transport,
    resource: Resource,
    /// The encoded resource and scope of requests from memory.
    head: RequestHead,
    shared: Arc<Shared>,
    settings: WorkerSettings,
    spool: Option<Spool>,
    /// Makes a closed span its record (or violation) as it leaves the queue.
    check: Arc<dyn Check>,
    /// A batch taken from memory, not yet acknowledged nor spooled, and
    /// how many of its records are the exporter's own reports (they lead
    /// the batch: see [`Worker::take_batch`]).
    in_hand: Option<(Encoded, u64)>,
    /// An empty queue buffer: swapped with the queue's when a batch takes
    /// everything queued, so that the lock the application's threads wait
    /// for is not held while a batch of ~1 KB items is copied out. Its
    /// room (at most the queue capacity's worth of items) is memory the
    /// exporter keeps besides the queue's own.
    spare: VecDeque<Item>,
    /// How many leading records of the spool's head segment are settled
    /// (`None`: the head was not read yet, its lost records not counted).
    spool_head_done: Option<usize>,
    backoff: Duration,
    warned_spool: bool,
    outage: Outage,
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
            let head = self.head.clone();
            match self.deliver(&head, &batch, shutdown) {
                Sent::Done => self.resolved(n - reports),
                Sent::Retry { wait, done } => {
                    // The settled head of the batch is not sent again; the
                    // exporter's own reports, uncounted, lead the batch.
                    batch.drain_front(done);
                    let settled_reports = reports.min(done as u64);
                    reports -= settled_reports;
                    self.resolved(done as u64 - settled_reports);
                    if self.spill(&batch, 0..batch.len()) {
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
    /// is one and it has room; the rest is lost, counted as failed (the
    /// exporter's own loss reports among them are not records: what they
    /// counted is already counted).
    fn finish(&mut self) {
        // Which records are reports: they lead the batch in hand, and are
        // `Item::Report` in the queue.
        let (in_hand, in_hand_reports) = self.in_hand.take().unwrap_or_default();
        let mut is_report: Vec<bool> = (0..in_hand.len() as u64)
            .map(|i| i < in_hand_reports)
            .collect();
        let mut rest = in_hand;
        {
            let mut st = self.shared.lock();
            is_report.extend(st.items.iter().map(Item::is_report));
            let check = &*self.check;
            for item in st.items.drain(..) {
                rest.push_item(&item.checked(check));
            }
            st.worker_gone = true;
            st.closed = true;
        }
        let size = self.settings.batch_size.max(1);
        let mut lost = 0;
        for (start, reports) in (0..rest.len()).step_by(size).zip(is_report.chunks(size)) {
            if !self.spill(&rest, start..(start + size).min(rest.len())) {
                lost += reports.iter().filter(|r| !**r).count() as u64;
            }
        }
        if lost > 0 {
            self.status().add_export_failures(lost);
            self.resolved(lost);
            eprintln!(
                "audit-layer: {lost} audit records are lost: not delivered before shutdown \
                 ({}) and {}; counted in AuditStatus::export_failures, returned by \
                 FlushGuard::shutdown",
                self.status()
                    .last_error()
                    .unwrap_or_else(|| "the collector did not answer in time".to_owned()),
                if self.spool.is_some() {
                    "the spool is full"
                } else {
                    "no spool is configured (AuditLayerBuilder::spool_dir keeps them)"
                }
            );
        }
        let unreported = self.shared.losses.unreported();
        if unreported > 0 {
            eprintln!(
                "audit-layer: {unreported} lost audit records were counted but could not be \
                 reported to the collector before shutdown"
            );
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
    fn take_batch(&mut self) -> Option<(Encoded, u64)> {
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
            st = self.shared.wait_work(st, left);
        }
        st.wake_at = 0;
        let n = st.items.len().min(self.settings.batch_size);
        let mut items = std::mem::take(&mut self.spare);
        if n == st.items.len() {
            std::mem::swap(&mut st.items, &mut items);
        } else {
            items.extend(st.items.drain(..n));
        }
        if st.items.is_empty() {
            st.flush_requested = false;
        }
        self.status().set_queued(st.items.len() as u64);
        drop(st);
        self.shared.progress.notify_all();
        let reports = items.iter().filter(|i| i.is_report()).count() as u64;
        let check = &*self.check;
        let mut batch = Encoded::with_capacity(items.len());
        for item in items.drain(..) {
            batch.push_item(&item.checked(check));
        }
        // Kept at the queue's capacity, so that a queue filling again does
        // not grow its buffer anew (copies, fresh pages on the
        // application's thread); only what a `FailClosed` overflow grew
        // past that is given back.
        if items.capacity() > self.shared.capacity {
            items.shrink_to(self.shared.capacity);
        }
        self.spare = items;
        Some((batch, reports))
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
            st = self.shared.wait_work(st, left);
        }
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

    /// Delivery works again: report what was lost meanwhile, first.
    fn report_losses(&self) {
        let info = ResourceInfo::from_resource(Some(&self.resource));
        let reports = self
            .shared
            .losses
            .take_reports(self.shared.when_full, &info);
        if reports.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        for v in reports {
            st.items.push_front(Item::Report(v));
        }
    }
}

/// `base` with full jitter in `[base/2, base]`.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    base.mul_f64(0.5 + frac / 2.0)
}
