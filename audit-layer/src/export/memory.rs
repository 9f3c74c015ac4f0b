//! A destination that keeps records in memory: for tests and examples that
//! run without a collector.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use audit_schema::{AuditRecord, ViolationRecord};

/// Collects audit and violation records in memory, synchronously: a record
/// is visible as soon as its span has closed. Clones share the same store.
///
/// ```
/// use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let sink = MemorySink::default();
/// let (layer, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     privileged_span!(Actor::human("usr_alice"), "users.invite").in_scope(|| {});
/// });
/// assert_eq!(sink.records()[0].owner_id, "usr_alice");
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Store>>,
}

#[derive(Debug, Default)]
struct Store {
    records: Vec<AuditRecord>,
    violations: Vec<ViolationRecord>,
}

impl MemorySink {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic elsewhere (strict mode) must not hide what was collected.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit records so far, in the order their spans closed.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.lock().records.clone()
    }

    /// The violation records so far.
    pub fn violations(&self) -> Vec<ViolationRecord> {
        self.lock().violations.clone()
    }

    /// Takes the audit records out, leaving the store empty.
    pub fn take_records(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.lock().records)
    }

    /// Takes the violation records out, leaving the store empty.
    pub fn take_violations(&self) -> Vec<ViolationRecord> {
        std::mem::take(&mut self.lock().violations)
    }

    pub(crate) fn push_record(&self, r: AuditRecord) {
        self.lock().records.push(r);
    }

    pub(crate) fn push_violation(&self, v: ViolationRecord) {
        self.lock().violations.push(v);
    }
}
