//! The wire contract: how an audit row travels as an OTLP log record.
//!
//! Any OTLP client can write audit rows by following these names; the
//! `audit-layer` crate is only the most convenient client. `gen_ai.agent.*`
//! are OpenTelemetry's semantic-convention names for agents; there is no
//! convention yet for the owner or for audit, hence `audit.*`.
//!
//! [`FIELDS`] is the table of schema fields a client sets: wire name, the
//! short alias accepted on `tracing` spans, and meaning. It is declared
//! with the record, in [`crate::record`]; the layer, the collector and the
//! README's table all come from it.

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
    /// What kind of failure the row records: one of [`super::violation_kind`].
    pub const KIND: &str = "audit.violation.kind";
}

/// The values of the violations' `kind` column.
pub mod violation_kind {
    /// A privileged action that broke a dual-key rule (no actor, an agent
    /// without its accountable human, a dangerous action without consent…).
    pub const UNATTRIBUTED: &str = "unattributed";
    /// A privileged effect that ran outside any open gate or privileged
    /// span whose action matches it: a side door.
    pub const UNGATED: &str = "ungated";
    /// The layer dropped records (queue and spool full); the row carries
    /// the count in `audit.dropped.count`.
    pub const DROPPED: &str = "dropped";
    /// The attribute of a layer's drop report that holds the count.
    pub const DROPPED_COUNT_ATTR: &str = "audit.dropped.count";
}

pub use crate::record::{markdown_fields, Field, FieldSpec, FIELDS};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::{AUDIT, VIOLATIONS};

    #[test]
    fn the_keys_named_here_are_those_of_the_field_tables() {
        let docs: Vec<&str> = AUDIT.iter().chain(VIOLATIONS).map(|c| c.wire).collect();
        for key in [
            RESOURCE_SERVICE_NAME,
            RESOURCE_SERVICE_INSTANCE_ID,
            violation::MISSING,
            violation::REASON,
            violation::DETECTED_BY,
            violation::SPAN_TARGET,
            violation::SPAN_NAME,
            violation::CODE_FILE,
            violation::CODE_LINE,
            violation::KIND,
        ] {
            assert!(
                docs.iter().any(|d| d.contains(&format!("`{key}`"))),
                "{key} is in no column's table row"
            );
        }
    }
}
