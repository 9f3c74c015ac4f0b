//! Records for the crate's own tests.

use audit_schema::{AuditRecord, Draft, Rules};

/// An agent's action (`db.drop` by `agt_1` for `usr`), built from a draft
/// by the rules so that a new field does not touch it.
pub(crate) fn agent_action(event_id: String, start_time_ns: i64) -> AuditRecord {
    let draft = Draft {
        start_time_ns: Some(start_time_ns),
        agent_id: Some("agt_1".into()),
        owner_id: Some("usr".into()),
        action: Some("db.drop".into()),
        service_name: Some("svc".into()),
        ..Draft::default()
    };
    AuditRecord {
        event_id,
        ..Rules::default()
            .check(draft)
            .expect("a complete agent action")
    }
}
