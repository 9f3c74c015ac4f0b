//! The wire contract: how an audit row travels as an OTLP log record.
//!
//! Any OTLP client can write audit rows by following these names; the
//! `audit-layer` crate is only the most convenient client. `gen_ai.agent.*`
//! are OpenTelemetry's semantic-convention names for agents; there is no
//! convention yet for the owner or for audit, hence `audit.*`.
//!
//! [`FIELDS`] is the single table of schema fields: wire name, the short
//! alias accepted on `tracing` spans, and meaning. The layer, the collector
//! and the README's table all come from it.

/// `LogRecord.event_name` of an attributed privileged action.
pub const EVENT_ACTION: &str = "audit.action";
/// `LogRecord.event_name` of a rejected (unattributed) privileged span.
pub const EVENT_VIOLATION: &str = "audit.violation";
/// Attribute that older clients use instead of `LogRecord.event_name`.
pub const LEGACY_EVENT_NAME_ATTR: &str = "event.name";

/// Resource attribute naming the service.
pub const RESOURCE_SERVICE_NAME: &str = "service.name";
/// Resource attribute naming the service instance.
pub const RESOURCE_SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// Service name used when a resource has none (OpenTelemetry's convention).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Violation attributes (records with event name [`EVENT_VIOLATION`]).
pub mod violation {
    /// String array: the wire names of the fields that were missing or wrong.
    pub const MISSING: &str = "audit.violation.missing";
    /// Human-readable reason.
    pub const REASON: &str = "audit.violation.reason";
    /// `layer` or `collector`: which gate caught it.
    pub const DETECTED_BY: &str = "audit.violation.detected_by";
    /// `tracing` target of the offending span's callsite.
    pub const SPAN_TARGET: &str = "audit.violation.span.target";
    /// Name of the offending span.
    pub const SPAN_NAME: &str = "audit.violation.span.name";
    /// Source file of the callsite (OpenTelemetry `code.*` convention).
    pub const CODE_FILE: &str = "code.file.path";
    /// Source line of the callsite.
    pub const CODE_LINE: &str = "code.line.number";
}

/// A field of the audit record that a client sets (the collector sets the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// UUIDv7 idempotency key.
    EventId,
    /// Span close time, ns since the epoch.
    EndTime,
    /// `agent` or `human`.
    ActorKind,
    /// Stable agent principal id.
    AgentId,
    /// Display name of the agent.
    AgentName,
    /// Credential the agent used.
    AgentCredentialId,
    /// The accountable human.
    OwnerId,
    /// Who started the task.
    InitiatorId,
    /// Which task.
    TaskId,
    /// What was done.
    Action,
    /// To what.
    Target,
    /// `ok`, `error` or `denied`.
    Outcome,
    /// Authorization scopes.
    Scopes,
    /// Consent token id for dangerous actions.
    ConsentId,
    /// Digest of the inputs the agent acted on.
    InputsSha256,
    /// Marks a span privileged regardless of its target.
    Privileged,
    /// Marks an action dangerous: consent required.
    Dangerous,
}

/// One row of the field table.
#[derive(Debug)]
pub struct FieldSpec {
    /// The field.
    pub field: Field,
    /// Attribute name on the wire (fixed).
    pub wire: &'static str,
    /// Short name accepted on `tracing` spans (the wire name is accepted too).
    pub alias: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// The field table: wire names, span aliases and meanings, in schema order.
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        field: Field::EventId,
        wire: "audit.event.id",
        alias: "event.id",
        meaning: "UUIDv7 made by the client; idempotency key end to end",
    },
    FieldSpec {
        field: Field::EndTime,
        wire: "audit.end_time_unix_nano",
        alias: "end_time_unix_nano",
        meaning: "span close time (int, ns since the epoch)",
    },
    FieldSpec {
        field: Field::ActorKind,
        wire: "audit.actor.kind",
        alias: "actor.kind",
        meaning: "`agent` or `human`; a human must be stated, never inferred",
    },
    FieldSpec {
        field: Field::AgentId,
        wire: "gen_ai.agent.id",
        alias: "agent.id",
        meaning: "stable agent principal id; survives credential rotation",
    },
    FieldSpec {
        field: Field::AgentName,
        wire: "gen_ai.agent.name",
        alias: "agent.name",
        meaning: "display name of the agent",
    },
    FieldSpec {
        field: Field::AgentCredentialId,
        wire: "audit.agent.credential.id",
        alias: "agent.credential",
        meaning: "which credential the agent used",
    },
    FieldSpec {
        field: Field::OwnerId,
        wire: "audit.owner.id",
        alias: "owner.id",
        meaning: "the accountable human",
    },
    FieldSpec {
        field: Field::InitiatorId,
        wire: "audit.initiator.id",
        alias: "initiator.id",
        meaning: "who started the task",
    },
    FieldSpec {
        field: Field::TaskId,
        wire: "audit.task.id",
        alias: "task.id",
        meaning: "which task",
    },
    FieldSpec {
        field: Field::Action,
        wire: "audit.action",
        alias: "action",
        meaning: "what was done (the span name when absent)",
    },
    FieldSpec {
        field: Field::Target,
        wire: "audit.target",
        alias: "target",
        meaning: "to what",
    },
    FieldSpec {
        field: Field::Outcome,
        wire: "audit.outcome",
        alias: "outcome",
        meaning: "`ok`, `error` or `denied`",
    },
    FieldSpec {
        field: Field::Scopes,
        wire: "audit.scopes",
        alias: "scopes",
        meaning: "authorization scopes (string array; comma-separated on spans)",
    },
    FieldSpec {
        field: Field::ConsentId,
        wire: "audit.consent.id",
        alias: "consent",
        meaning: "consent token id, required for dangerous actions",
    },
    FieldSpec {
        field: Field::InputsSha256,
        wire: "audit.inputs.sha256",
        alias: "inputs.sha256",
        meaning: "SHA-256 of the inputs the agent acted on",
    },
    FieldSpec {
        field: Field::Privileged,
        wire: "audit.privileged",
        alias: "audit.privileged",
        meaning: "`true` makes a span privileged whatever its target",
    },
    FieldSpec {
        field: Field::Dangerous,
        wire: "audit.dangerous",
        alias: "audit.dangerous",
        meaning: "`true` makes an action dangerous: consent required",
    },
];

impl Field {
    /// The field's row in [`FIELDS`].
    pub fn spec(self) -> &'static FieldSpec {
        // FIELDS is in declaration order; the index is the discriminant.
        &FIELDS[self as usize]
    }

    /// Wire attribute name.
    pub fn wire(self) -> &'static str {
        self.spec().wire
    }

    /// The field an OTLP attribute key names (wire names only).
    pub fn from_wire(key: &str) -> Option<Field> {
        FIELDS.iter().find(|s| s.wire == key).map(|s| s.field)
    }

    /// The field a `tracing` span field names: the short alias or the wire name.
    pub fn from_span_field(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .find(|s| s.alias == name || s.wire == name)
            .map(|s| s.field)
    }
}

/// A Markdown table of [`FIELDS`] (the README's span-field table is this output).
pub fn markdown_fields() -> String {
    let mut s = String::from("| on a `tracing` span | on the wire | meaning |\n|---|---|---|\n");
    for f in FIELDS {
        s.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            f.alias, f.wire, f.meaning
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_discriminants() {
        for (i, spec) in FIELDS.iter().enumerate() {
            assert_eq!(spec.field as usize, i, "{} out of order", spec.wire);
        }
    }

    #[test]
    fn aliases_and_wire_names_resolve() {
        assert_eq!(Field::from_span_field("agent.id"), Some(Field::AgentId));
        assert_eq!(
            Field::from_span_field("gen_ai.agent.id"),
            Some(Field::AgentId)
        );
        assert_eq!(
            Field::from_wire("agent.id"),
            None,
            "aliases are not wire names"
        );
        assert_eq!(Field::from_wire("audit.owner.id"), Some(Field::OwnerId));
    }
}
