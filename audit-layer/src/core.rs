//! [`Core`]: what the layer and the gate share, held once behind an `Arc`.
//!
//! The layer owns it; the gate reaches the same value through the layer in
//! the current `tracing` dispatcher. Both check drafts with the policy's
//! rules, send to the one sink and count in the one status, so a record the
//! gate refuses and one the layer rejects are told apart only by their
//! callsite.

use audit_schema::consent;
use audit_schema::otlp::ResourceInfo;
use audit_schema::{AuditRecord, Draft, Rejection, Rules, ViolationRecord};
use tracing_core::Metadata;

use crate::consent::Verification;
use crate::export::{Item, Sink};
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

    /// The rules and, for a dangerous action, the consent token: the
    /// record to send, or why not. Uses the consent (once per event).
    pub fn check(&self, draft: Draft) -> Result<AuditRecord, Rejection> {
        self.check_consent(draft, true)
    }

    /// [`Core::check`] before the action: the consent is checked but not
    /// used, the record made when the action ends uses it.
    pub fn precheck(&self, draft: Draft) -> Result<AuditRecord, Rejection> {
        self.check_consent(draft, false)
    }

    fn check_consent(&self, draft: Draft, use_it: bool) -> Result<AuditRecord, Rejection> {
        match &self.consent {
            Some(v) => v.check(self.rules(), draft, use_it),
            None => consent::check_action(self.rules(), draft, Vec::new(), None),
        }
    }

    /// Hands a finished record to the exporter; blocks only under
    /// [`WhenFull::Block`](crate::WhenFull::Block), at most its timeout.
    pub fn send(&self, item: Item) {
        self.sink.send(item, &self.status);
    }

    /// Counts a rejected privileged action and sends its violation record,
    /// attributed to the callsite `meta`. Returns the record's reason.
    pub fn report_rejection(
        &self,
        rejection: &Rejection,
        meta: &'static Metadata<'static>,
        time_ns: i64,
    ) -> String {
        self.status.add_violations(1);
        let violation = ViolationRecord {
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
        };
        let reason = violation.reason.clone();
        self.send(Item::Violation(violation));
        reason
    }
}
