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
use std::sync::Arc;

#[derive(Debug, Default)]
struct Counters {
    privileged_spans: AtomicU64,
    exported: AtomicU64,
    violations: AtomicU64,
    refused: AtomicU64,
    export_failures: AtomicU64,
    dropped: AtomicU64,
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
    /// Privileged spans rejected by the dual-key rules.
    pub violations: u64,
    /// Records the collector refused (OTLP `partial_success`).
    pub refused: u64,
    /// Records given up on after retries (collector unreachable, permanent error).
    pub export_failures: u64,
    /// Records never handed to the exporter: queue full, or exporter shut down.
    pub dropped: u64,
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

    /// All counters at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            privileged_spans: self.privileged_spans(),
            exported: self.exported(),
            violations: self.violations(),
            refused: self.refused(),
            export_failures: self.export_failures(),
            dropped: self.dropped(),
        }
    }
}
