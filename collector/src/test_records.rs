//! Records for the crate's own tests.

use audit_schema::{ActorKind, AuditRecord};

/// An agent's action on behalf of `owner`, every optional field absent.
pub(crate) fn agent_action(event_id: String, owner: &str, start_time_ns: i64) -> AuditRecord {
    AuditRecord {
        event_id,
        start_time_ns,
        end_time_ns: None,
        actor_kind: ActorKind::Agent,
        agent_id: Some("agt_1".into()),
        agent_name: None,
        agent_credential_id: None,
        owner_id: owner.into(),
        initiator_id: None,
        task_id: None,
        action: "db.drop".into(),
        target: None,
        outcome: "ok".into(),
        scopes: vec![],
        consent_id: None,
        inputs_sha256: None,
        service_name: "svc".into(),
        service_instance_id: None,
        trace_id: None,
        span_id: None,
        attributes: Default::default(),
    }
}
