//! Counters the application can read (health checks, metrics, tests).
//!
//! ```
//! # let (layer, guard) = audit_layer::AuditLayer::builder()
//! #     .memory(audit_layer::MemorySink::default()).build().unwrap();
//! let status = guard.status();
//! let now = status.snapshot();
//! assert_eq!(now.violations, 0);
//! # drop(layer);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Counters {
    privileged_spans: AtomicU64,
    exported: AtomicU64,
    violations: AtomicU64,
    refused: AtomicU64,
    export_failures: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    gate_refusals: AtomicU64,
    ungated: AtomicU64,
    consent_keys_reloads: AtomicU64,
    consent_keys_reload_failures: AtomicU64,
    queued: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
    last_refusal: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
}

/// A cloneable handle on the layer's counters. Every clone sees the same
/// numbers; reading is a few atomic loads.
#[derive(Clone, Debug, Default)]
pub struct AuditStatus {
    inner: Arc<Counters>,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Privileged spans closed (attributed or not).
    pub privileged_spans: u64,
    /// Records (actions and violations) the destination acknowledged.
    pub exported: u64,
    /// Privileged spans rejected by the dual-key rules. Counted when the
    /// span is checked: by the export worker as it takes the record (a
    /// flush waits for it), at the span's close in strict mode and with
    /// the in-memory sink.
    pub violations: u64,
    /// Records the collector refused (OTLP `partial_success`).
    pub refused: u64,
    /// Records lost after they were accepted: the exporter shut down with
    /// neither the collector nor a spool taking them (with no spool, every
    /// record undelivered at shutdown), or a spool frame failed its
    /// checksum (also reported to the collector). Zero in a healthy
    /// deployment with a spool.
    pub export_failures: u64,
    /// Records not accepted because the queue and spool were full: under
    /// `drop` at once, under `block` after its timeout, under `fail_closed`
    /// past twice the queue after the span waited; each drop is also
    /// reported to the collector as a violation record once delivery
    /// resumes.
    pub dropped: u64,
    /// Failed export attempts that were (or will be) retried.
    pub retries: u64,
    /// Gate calls refused because the audit path could not take the record
    /// (`fail_closed`, or `block` timing out).
    pub gate_refusals: u64,
    /// Privileged effects that ran outside any open gate or privileged span
    /// whose action matches them ([`require_gate`](crate::require_gate)):
    /// side doors. Each also leaves an `ungated` violation record.
    pub ungated: u64,
    /// Times the consent keys file was reloaded because it changed.
    pub consent_keys_reloads: u64,
    /// Reloads of the consent keys file refused (unreadable, not a JWK
    /// Set): the previous keys stayed in use.
    pub consent_keys_reload_failures: u64,
    /// Gauge: records waiting in memory.
    pub queued: u64,
    /// Gauge: records waiting in the disk spool.
    pub spooled: u64,
    /// Gauge: bytes of the disk spool.
    pub spool_bytes: u64,
}

impl StatsSnapshot {
    /// Every record lost: [`dropped`](Self::dropped) plus
    /// [`export_failures`](Self::export_failures).
    pub fn lost(&self) -> u64 {
        self.dropped + self.export_failures
    }
}

macro_rules! counter {
    ($get:ident, $add:ident) => {
        #[doc = concat!("See [`StatsSnapshot::", stringify!($get), "`].")]
        pub fn $get(&self) -> u64 {
            self.inner.$get.load(Ordering::Relaxed)
        }

        pub(crate) fn $add(&self, n: u64) {
            self.inner.$get.fetch_add(n, Ordering::Relaxed);
        }
    };
}

impl AuditStatus {
    counter!(privileged_spans, add_privileged_spans);
    counter!(exported, add_exported);
    counter!(violations, add_violations);
    counter!(refused, add_refused);
    counter!(export_failures, add_export_failures);
    counter!(dropped, add_dropped);
    counter!(retries, add_retries);
    counter!(gate_refusals, add_gate_refusals);
    counter!(ungated, add_ungated);
    counter!(consent_keys_reloads, add_consent_keys_reloads);
    counter!(
        consent_keys_reload_failures,
        add_consent_keys_reload_failures
    );

    /// See [`StatsSnapshot::queued`].
    pub fn queued(&self) -> u64 {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// See [`StatsSnapshot::spooled`].
    pub fn spooled(&self) -> u64 {
        self.inner.spooled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_queued(&self, n: u64) {
        self.inner.queued.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_spool(&self, records: u64, bytes: u64) {
        self.inner.spooled.store(records, Ordering::Relaxed);
        self.inner.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The collector's reason for the last `partial_success` (or whole-batch)
    /// refusal, if any: `refused` says how many, this says why.
    pub fn last_refusal(&self) -> Option<String> {
        lock(&self.inner.last_refusal).clone()
    }

    /// The last export error, kept while records wait; cleared when the
    /// collector answers again. It names the protocol, the endpoint and the
    /// cause ("connection refused: nothing listens there", "this endpoint
    /// answers gRPC (HTTP/2 only), not OTLP/HTTP", ...) followed by the
    /// transport's own message; the first one of an outage is also logged
    /// on stderr at once.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.inner.last_error).clone()
    }

    /// Returns true the first time a refusal is recorded (log it once).
    pub(crate) fn set_last_refusal(&self, reason: String) -> bool {
        lock(&self.inner.last_refusal).replace(reason).is_none()
    }

    pub(crate) fn set_last_error(&self, e: Option<String>) {
        *lock(&self.inner.last_error) = e;
    }

    /// All counters at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            privileged_spans: self.privileged_spans(),
            exported: self.exported(),
            violations: self.violations(),
            refused: self.refused(),
            export_failures: self.export_failures(),
            dropped: self.dropped(),
            retries: self.retries(),
            gate_refusals: self.gate_refusals(),
            ungated: self.ungated(),
            consent_keys_reloads: self.consent_keys_reloads(),
            consent_keys_reload_failures: self.consent_keys_reload_failures(),
            queued: self.queued(),
            spooled: self.spooled(),
            spool_bytes: self.inner.spool_bytes.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
