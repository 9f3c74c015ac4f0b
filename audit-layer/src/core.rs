//! [`Core`]: what the layer and the gate share, held once behind an `Arc`.
//!
//! The layer owns it; the gate reaches the same value through the layer in
//! the current `tracing` dispatcher. Both check drafts with the policy's
//! rules, send to the one sink and count in the one status, so a record the
//! gate refuses and one the layer rejects are told apart only by their
//! callsite.

use audit_schema::consent;
use audit_schema::otlp::ResourceInfo;
use audit_schema::{AuditRecord, Draft, Field, Rejection, Rules, ViolationRecord};
use tracing_core::Metadata;

use crate::clock::now_ns;
use crate::consent::Verification;
use crate::export::{Check, Item, Sink};
use crate::fields::Closed;
use crate::ids;
use crate::policy::Policy;
use crate::stats::AuditStatus;

/// The layer's policy, resource, sink and status.
pub(crate) struct Core {
    pub policy: Policy,
    pub resource: ResourceInfo,
    pub sink: Sink,
    pub status: AuditStatus,
    /// Consent verification keys and the consents already used; `None`:
    /// consent is not verified (and rows say so).
    pub consent: Option<Verification>,
}

impl Core {
    /// The dual-key rules of the policy.
    pub fn rules(&self) -> &Rules {
        self.policy.rules_ref()
    }

    /// The rules and, for a dangerous action, the consent token, before
    /// the action: the consent is checked but not used, the record made
    /// when the action ends ([`Core::record_of`]) uses it.
    pub fn precheck(&self, draft: Draft) -> Result<AuditRecord, Rejection> {
        self.check_consent(draft, false, now_ns())
    }

    /// A consent token is judged at `at_ns`: a span's close, not when the
    /// exporter got to its record.
    fn check_consent(
        &self,
        draft: Draft,
        use_it: bool,
        at_ns: i64,
    ) -> Result<AuditRecord, Rejection> {
        match &self.consent {
            Some(v) => v.check(self.rules(), draft, use_it, at_ns),
            None => consent::check_action(self.rules(), draft, Vec::new(), None),
        }
    }

    /// The record of a closed privileged span: its fields completed (the
    /// resource, the close time, the action's and the outcome's defaults,
    /// the policy's dangerous actions, an event id), then checked.
    /// Takes the values out of `span` where it lies (its ~1 KB of inline
    /// values is not copied).
    pub fn record_of(&self, span: &mut Closed) -> Result<AuditRecord, Rejection> {
        let Closed {
            fields,
            meta,
            end_ns,
            error_seen,
        } = span;
        let end_ns = *end_ns;
        fields.default_action(meta);
        if *error_seen {
            fields.error_outcome();
        }
        // Record that the policy found it dangerous, not only the span: the
        // row then says why consent was required.
        if fields
            .get(Field::Action)
            .is_some_and(|a| self.rules().is_dangerous_action(a))
        {
            fields.set_dangerous();
        }
        fields.ensure_event_id();
        let mut draft = fields.take_draft();
        draft.end_time_ns.get_or_insert(end_ns);
        draft.service_name.clone_from(&self.resource.service_name);
        draft
            .service_instance_id
            .clone_from(&self.resource.service_instance_id);
        self.check_consent(draft, true, end_ns)
    }

    /// The sink checks a span as soon as it is handed over (the in-memory
    /// sink), on the application's thread: the layer then checks it in
    /// place rather than moving its fields into the hand-off.
    pub fn checks_at_once(&self) -> bool {
        matches!(self.sink, Sink::Memory(_))
    }

    /// Hands a finished record to the exporter; blocks only under
    /// [`WhenFull::Block`](crate::WhenFull::Block), at most its timeout.
    pub fn send(&self, item: Item) {
        self.sink.send(item, &self.status, self);
    }

    /// Counts a rejected privileged action and sends its violation record,
    /// attributed to the callsite `meta`. Returns the record's reason.
    pub fn report_rejection(
        &self,
        rejection: &Rejection,
        meta: &'static Metadata<'static>,
        time_ns: i64,
    ) -> String {
        let violation = self.violation(rejection, meta, time_ns);
        let reason = violation.reason.clone();
        self.send(Item::Violation(violation));
        reason
    }

    /// Counts a rejected privileged action; its violation record.
    fn violation(
        &self,
        rejection: &Rejection,
        meta: &'static Metadata<'static>,
        time_ns: i64,
    ) -> ViolationRecord {
        self.status.add_violations(1);
        ViolationRecord {
            span_target: Some(meta.target().to_owned()),
            span_name: Some(meta.name().to_owned()),
            code_file: meta.file().map(str::to_owned),
            code_line: meta.line().map(i64::from),
            attributes: rejection.draft.attributes.clone(),
            ..ViolationRecord::refused(
                rejection,
                "layer",
                ids::event_id(),
                time_ns,
                self.resource.service_name.as_deref(),
            )
        }
    }
}

impl Check for Core {
    fn check(&self, mut span: Box<Closed>) -> Result<AuditRecord, Box<ViolationRecord>> {
        let (meta, end_ns) = (span.meta, span.end_ns);
        self.record_of(&mut span)
            .map_err(|rejection| Box::new(self.violation(&rejection, meta, end_ns)))
    }
}
