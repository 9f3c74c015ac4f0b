//! WAL frames of format 1: the rows as the first schema had them, before
//! the consent columns (actions) and the task and target of violations.
//! A collector upgraded with such frames unsealed reads them with these
//! layouts (postcard is positional) and seals them with the new columns
//! empty, as the first files read.

use std::collections::BTreeMap;

use audit_schema::{ActorKind, AuditRecord, Stamp, ViolationRecord};
use serde::Deserialize;

use crate::wal::Frame;

#[derive(Deserialize)]
struct Action {
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

#[derive(Deserialize)]
struct Violation {
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

#[derive(Deserialize)]
struct Format1 {
    actions: Vec<(Action, Stamp)>,
    violations: Vec<(Violation, Stamp)>,
}

/// A format-1 body as a [`Frame`].
pub(crate) fn decode(body: &[u8]) -> Result<Frame, String> {
    let f: Format1 = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    Ok(Frame {
        actions: f.actions.into_iter().map(|(a, s)| (action(a), s)).collect(),
        violations: f
            .violations
            .into_iter()
            .map(|(v, s)| (violation(v), s))
            .collect(),
    })
}

fn action(a: Action) -> AuditRecord {
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
        service_name: a.service_name,
        service_instance_id: a.service_instance_id,
        trace_id: a.trace_id,
        span_id: a.span_id,
        attributes: a.attributes,
    }
}

fn violation(v: Violation) -> ViolationRecord {
    ViolationRecord {
        event_id: v.event_id,
        time_ns: v.time_ns,
        detected_by: v.detected_by,
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
    }
}
