//! WAL frames of format tag 1: the rows as the first schema had them,
//! before the consent and delegation columns of actions and the `kind`,
//! task and target of violations.
//!
//! Postcard is positional: a field added to a record changes the layout,
//! so a collector upgraded with frames not yet sealed reads them with the
//! layout they were written in, seals them with the new columns empty (as
//! the first files read), and gives each violation the kind such clients
//! meant ([`ViolationRecord::kind_or_inferred`]).

use std::collections::BTreeMap;

use audit_schema::{ActorKind, AuditRecord, Stamp, ViolationRecord};
use serde::Deserialize;

use super::Frame;

/// A [`Frame`] of format 1.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct FrameV1 {
    actions: Vec<(ActionV1, Stamp)>,
    violations: Vec<(ViolationV1, Stamp)>,
}

/// An [`AuditRecord`] without the consent verification columns.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ActionV1 {
    event_id: String,
    start_time_ns: i64,
    end_time_ns: Option<i64>,
    actor_kind: ActorKind,
    agent_id: Option<String>,
    agent_name: Option<String>,
    agent_credential_id: Option<String>,
    owner_id: String,
    initiator_id: Option<String>,
    task_id: Option<String>,
    action: String,
    target: Option<String>,
    outcome: String,
    scopes: Vec<String>,
    consent_id: Option<String>,
    inputs_sha256: Option<String>,
    service_name: String,
    service_instance_id: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    attributes: BTreeMap<String, String>,
}

impl From<ActionV1> for AuditRecord {
    fn from(a: ActionV1) -> AuditRecord {
        AuditRecord {
            event_id: a.event_id,
            start_time_ns: a.start_time_ns,
            end_time_ns: a.end_time_ns,
            actor_kind: a.actor_kind,
            agent_id: a.agent_id,
            agent_name: a.agent_name,
            agent_credential_id: a.agent_credential_id,
            owner_id: a.owner_id,
            initiator_id: a.initiator_id,
            task_id: a.task_id,
            action: a.action,
            target: a.target,
            outcome: a.outcome,
            scopes: a.scopes,
            consent_id: a.consent_id,
            consent_token: None,
            consent_verified: false,
            consent_key_id: None,
            consent_approver: None,
            inputs_sha256: a.inputs_sha256,
            origin_id: None,
            delegation_from: None,
            delegation: None,
            service_name: a.service_name,
            service_instance_id: a.service_instance_id,
            trace_id: a.trace_id,
            span_id: a.span_id,
            attributes: a.attributes,
        }
    }
}

/// A [`ViolationRecord`] without `kind`, field for field.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize, Default))]
struct ViolationV1 {
    event_id: String,
    time_ns: i64,
    detected_by: String,
    missing: Vec<String>,
    reason: String,
    span_target: Option<String>,
    span_name: Option<String>,
    code_file: Option<String>,
    code_line: Option<i64>,
    action: Option<String>,
    actor_kind: Option<String>,
    agent_id: Option<String>,
    owner_id: Option<String>,
    service_name: String,
    service_instance_id: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    attributes: BTreeMap<String, String>,
}

impl From<ViolationV1> for ViolationRecord {
    fn from(v: ViolationV1) -> ViolationRecord {
        let mut x = ViolationRecord {
            event_id: v.event_id,
            time_ns: v.time_ns,
            detected_by: v.detected_by,
            kind: None,
            missing: v.missing,
            reason: v.reason,
            span_target: v.span_target,
            span_name: v.span_name,
            code_file: v.code_file,
            code_line: v.code_line,
            action: v.action,
            actor_kind: v.actor_kind,
            agent_id: v.agent_id,
            owner_id: v.owner_id,
            task_id: None,
            target: None,
            service_name: v.service_name,
            service_instance_id: v.service_instance_id,
            trace_id: v.trace_id,
            span_id: v.span_id,
            attributes: v.attributes,
        };
        x.kind = Some(x.kind_or_inferred().to_owned());
        x
    }
}

impl From<FrameV1> for Frame {
    fn from(f: FrameV1) -> Frame {
        Frame {
            actions: f.actions.into_iter().map(|(a, s)| (a.into(), s)).collect(),
            violations: f
                .violations
                .into_iter()
                .map(|(v, s)| (v.into(), s))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_written_before_the_kind_column_recovers_with_the_kind_it_meant() {
        let v = |event_id: &str, missing: &str| {
            let stamp = Stamp {
                received_time_ns: 7,
                seq: 1,
            };
            let row = ViolationV1 {
                event_id: event_id.into(),
                detected_by: "layer".into(),
                missing: vec![missing.into()],
                service_name: "billing".into(),
                code_line: Some(42),
                ..ViolationV1::default()
            };
            (row, stamp)
        };
        let old = FrameV1 {
            actions: Vec::new(),
            violations: vec![
                v("ev-1", "audit.owner.id"),
                v("ev-2", "audit.dropped.count"),
            ],
        };
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&old).expect("encode"));
        let frame = Frame::decode(&bytes).expect("a format-1 frame decodes");
        let got: Vec<_> = frame
            .violations
            .iter()
            .map(|(x, _)| (x.event_id.as_str(), x.kind.as_deref(), x.code_line))
            .collect();
        assert_eq!(
            got,
            [
                ("ev-1", Some("unattributed"), Some(42)),
                ("ev-2", Some("dropped"), Some(42))
            ]
        );
        let now = Frame::decode(&frame.encode().expect("encode")).expect("decode");
        assert_eq!(
            now.violations[0].0, frame.violations[0].0,
            "the current format round-trips"
        );
    }
}
