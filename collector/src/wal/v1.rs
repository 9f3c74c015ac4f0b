//! WAL frames written before violations had a `kind` (format tag 1).
//!
//! Postcard is positional: a field added to [`ViolationRecord`] changes the
//! layout, so a collector upgraded with frames not yet sealed reads them
//! with the layout they were written in, and gives each violation the
//! kind such clients meant ([`ViolationRecord::kind_or_inferred`]).

use std::collections::BTreeMap;

use audit_schema::{Stamp, ViolationRecord};
use serde::Deserialize;

use super::pre_delegation::{self, AuditV1};
use super::Frame;

/// A [`Frame`] of format 1.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(super) struct FrameV1 {
    actions: Vec<(AuditV1, Stamp)>,
    violations: Vec<(ViolationV1, Stamp)>,
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
            actions: pre_delegation::actions(f.actions),
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
