//! Records the layer could not keep. Each is counted in [`AuditStatus`],
//! said on stderr (once per cause), and reported to the collector as a
//! violation record as soon as delivery works again, so that a gap in the
//! trail is itself in the trail.
//!
//! Two causes can still be reported: records *dropped* because the memory
//! queue and the spool were full (the [`WhenFull`] policy said so), and
//! spooled records whose frame failed its checksum when read back. Records
//! still undelivered when the application shuts down with no spool room
//! cannot be reported to anyone but the caller: they are counted in
//! [`AuditStatus::export_failures`] and returned by
//! [`FlushGuard::shutdown`](crate::FlushGuard::shutdown) as
//! [`FlushError::Lost`](crate::FlushError::Lost).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use audit_schema::otlp::ResourceInfo;
use audit_schema::ViolationRecord;

use super::{WhenFull, DROPPED_COUNT, DROPPED_SPAN};
use crate::clock::now_ns;
use crate::ids;
use crate::stats::AuditStatus;

/// Attribute of the report saying why the records were lost:
/// `queue_full` or `spool_checksum`.
pub const DROPPED_CAUSE: &str = "audit.dropped.cause";

/// Losses counted but not yet reported to the collector.
#[derive(Debug, Default)]
pub(crate) struct Losses {
    dropped: AtomicU64,
    corrupt: AtomicU64,
    warned_dropped: AtomicBool,
}

impl Losses {
    /// A record the queue could not take (`why` says what was full).
    pub fn dropped(&self, status: &AuditStatus, why: &str) {
        status.add_dropped(1);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        // Not a tracing event: we may be inside the layer's callback.
        if !self.warned_dropped.swap(true, Ordering::Relaxed) {
            eprintln!(
                "audit-layer: dropping audit records because {why}; counted in \
                 AuditStatus::dropped and reported to the collector once delivery resumes \
                 (warned once)"
            );
        }
    }

    /// `n` spooled records whose frames failed their checksum.
    pub fn corrupt(&self, status: &AuditStatus, n: u64) {
        status.add_export_failures(n);
        self.corrupt.fetch_add(n, Ordering::Relaxed);
        eprintln!(
            "audit-layer: {n} spooled audit records failed their checksum and are lost; \
             counted in AuditStatus::export_failures and reported to the collector"
        );
    }

    /// Counted and never reported (the exporter stops).
    pub fn unreported(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.corrupt.load(Ordering::Relaxed)
    }

    /// The violation records that report what was lost since the last
    /// call, one per cause; the counts restart from zero.
    pub fn take_reports(&self, policy: WhenFull, resource: &ResourceInfo) -> Vec<ViolationRecord> {
        let policy = match policy {
            WhenFull::FailClosed => "fail_closed (over twice the queue, after waiting)",
            WhenFull::Block(_) => "block (timed out)",
            WhenFull::Drop => "drop",
        };
        let mut out = Vec::new();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let reason = format!(
                "audit-layer dropped {dropped} audit records: the queue and spool were full \
                 (policy {policy})"
            );
            out.push(report(
                resource,
                dropped,
                "queue_full",
                reason,
                Some(policy),
            ));
        }
        let corrupt = self.corrupt.swap(0, Ordering::Relaxed);
        if corrupt > 0 {
            let reason = format!(
                "audit-layer lost {corrupt} spooled audit records: their frames failed the \
                 checksum when read back"
            );
            out.push(report(resource, corrupt, "spool_checksum", reason, None));
        }
        out
    }
}

fn report(
    resource: &ResourceInfo,
    n: u64,
    cause: &str,
    reason: String,
    policy: Option<&str>,
) -> ViolationRecord {
    let mut attributes = BTreeMap::from([
        (DROPPED_COUNT.to_owned(), n.to_string()),
        (DROPPED_CAUSE.to_owned(), cause.to_owned()),
    ]);
    if let Some(p) = policy {
        attributes.insert("audit.dropped.policy".to_owned(), p.to_owned());
    }
    ViolationRecord {
        event_id: ids::event_id(),
        time_ns: now_ns(),
        detected_by: "layer".to_owned(),
        missing: vec![DROPPED_COUNT.to_owned()],
        reason,
        span_name: Some(DROPPED_SPAN.to_owned()),
        kind: Some(audit_schema::wire::violation_kind::DROPPED.to_owned()),
        service_name: resource
            .service_name
            .clone()
            .unwrap_or_else(|| audit_schema::wire::UNKNOWN_SERVICE.to_owned()),
        service_instance_id: resource.service_instance_id.clone(),
        attributes,
        ..ViolationRecord::default()
    }
}
