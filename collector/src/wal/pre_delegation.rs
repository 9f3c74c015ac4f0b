//! WAL frames written before the audit record had its delegation columns
//! (schema v1: format tags 1 and 2).
//!
//! Postcard is positional: the fields schema v2 added to [`AuditRecord`]
//! change its layout, so a collector upgraded with frames not yet sealed
//! reads their actions with the layout they were written in; the chain
//! columns are null there, as in a v1 Parquet file.

use std::collections::BTreeMap;

use audit_schema::{ActorKind, AuditRecord, Stamp, ViolationRecord};
use serde::Deserialize;

use super::Frame;

/// An [`AuditRecord`] of schema v1, field for field.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct AuditV1 {
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

impl From<AuditV1> for AuditRecord {
    fn from(r: AuditV1) -> AuditRecord {
        AuditRecord {
            event_id: r.event_id,
            start_time_ns: r.start_time_ns,
            end_time_ns: r.end_time_ns,
            actor_kind: r.actor_kind,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            agent_credential_id: r.agent_credential_id,
            owner_id: r.owner_id,
            initiator_id: r.initiator_id,
            task_id: r.task_id,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            scopes: r.scopes,
            consent_id: r.consent_id,
            inputs_sha256: r.inputs_sha256,
            delegation: None,
            origin_id: None,
            delegation_from: None,
            service_name: r.service_name,
            service_instance_id: r.service_instance_id,
            trace_id: r.trace_id,
            span_id: r.span_id,
            attributes: r.attributes,
        }
    }
}

/// The actions of a frame of format 1 or 2, converted.
pub(super) fn actions(actions: Vec<(AuditV1, Stamp)>) -> Vec<(AuditRecord, Stamp)> {
    actions.into_iter().map(|(r, s)| (r.into(), s)).collect()
}

/// A [`Frame`] of format 2: violations as today, actions of schema v1.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct FrameV2 {
    pub(super) actions: Vec<(AuditV1, Stamp)>,
    pub(super) violations: Vec<(ViolationRecord, Stamp)>,
}

impl From<FrameV2> for Frame {
    fn from(f: FrameV2) -> Frame {
        Frame {
            actions: actions(f.actions),
            violations: f.violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_written_before_the_chain_columns_recovers_with_them_null() {
        let mut record =
            crate::test_records::agent_action("ev-1".into(), 1_764_000_000_000_000_000);
        let old = AuditV1 {
            event_id: record.event_id.clone(),
            start_time_ns: record.start_time_ns,
            end_time_ns: record.end_time_ns,
            actor_kind: record.actor_kind,
            agent_id: record.agent_id.clone(),
            agent_name: record.agent_name.clone(),
            agent_credential_id: record.agent_credential_id.clone(),
            owner_id: record.owner_id.clone(),
            initiator_id: record.initiator_id.clone(),
            task_id: record.task_id.clone(),
            action: record.action.clone(),
            target: record.target.clone(),
            outcome: record.outcome.clone(),
            scopes: record.scopes.clone(),
            consent_id: record.consent_id.clone(),
            inputs_sha256: record.inputs_sha256.clone(),
            service_name: record.service_name.clone(),
            service_instance_id: record.service_instance_id.clone(),
            trace_id: record.trace_id.clone(),
            span_id: record.span_id.clone(),
            attributes: record.attributes.clone(),
        };
        let stamp = Stamp {
            received_time_ns: 7,
            seq: 1,
        };
        let frame = FrameV2 {
            actions: vec![(old, stamp.clone())],
            violations: Vec::new(),
        };
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_allocvec(&frame).expect("encode"));
        let got = Frame::decode(&bytes).expect("a format-2 frame decodes");
        (record.delegation, record.origin_id, record.delegation_from) = (None, None, None);
        assert_eq!(got.actions, [(record, stamp)]);
    }
}
