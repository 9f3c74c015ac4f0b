//! The audit record (schema v2) and the violation record, declared once:
//! each row of the two tables below is one field, with its column, its
//! wire key, its span alias and its meaning. The structs, the [`Draft`],
//! [`Field`] and [`FIELDS`], the column lists, the checks of
//! [`Limits`](crate::Limits), the OTLP codec and the README's tables are
//! all derived from these rows (by the macros in `declare.rs`).
//!
//! **Adding a field** is one row here: a `text` field promoted from a span
//! or an attribute needs nothing else in the code. The docs follow it, and
//! tests hold them to this table and print the lines to paste: the README's
//! two tables, the `audit-layer` crate docs' span-field table and
//! `docs/external-tables.md`'s DDL. The Python end-to-end test keeps its own
//! list of the columns on purpose (`tests/python/test_independent.py`).
//!
//! A [`Draft`] is what a client or the collector has gathered so far: every
//! field optional. [`crate::rules::Rules::check`] turns a draft into an
//! [`AuditRecord`], or a [`crate::Rejection`] naming what is missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Human or AI: a column, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// An AI agent acting for an owning human.
    Agent,
    /// A human acting themself; must be stated explicitly.
    Human,
}

impl ActorKind {
    /// The value stored in `actor_kind` and sent as `audit.actor.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Agent => "agent",
            ActorKind::Human => "human",
        }
    }

    /// Parses the stored form; anything else is not an actor kind.
    pub fn parse(s: &str) -> Option<ActorKind> {
        match s {
            "agent" => Some(ActorKind::Agent),
            "human" => Some(ActorKind::Human),
            _ => None,
        }
    }
}

/// Allowed values of `outcome`.
pub const OUTCOMES: &[&str] = &["ok", "error", "denied"];

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

audit_record! {
    /// One privileged action, attributed: a row of the `audit` dataset without
    /// the collector's stamp (`received_time`, `collector_id`, `seq`).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct AuditRecord {
        /// UUIDv7; idempotency key end to end.
        event_id: string = "event_id", field EventId("audit.event.id", "event.id",
            "UUIDv7 made by the client; idempotency key end to end");
        /// Span open, ns since the epoch (UTC).
        start_time_ns: time = "start_time", source "`LogRecord.time_unix_nano`";
        /// Span close, ns since the epoch (UTC).
        end_time_ns: opt_time = "end_time", field EndTime("audit.end_time_unix_nano",
            "end_time_unix_nano", "span close time (int, ns since the epoch)");
        /// Human or AI.
        actor_kind: actor = "actor_kind", field ActorKind("audit.actor.kind", "actor.kind",
            "`agent` or `human`; a human must be stated, never inferred");
        /// Agent principal id; `None` iff human.
        agent_id: text = "agent_id", field AgentId("gen_ai.agent.id", "agent.id",
            "stable agent principal id; survives credential rotation") "; null iff human";
        /// Display name of the agent.
        agent_name: text = "agent_name", field AgentName("gen_ai.agent.name", "agent.name",
            "display name of the agent");
        /// Credential the agent used.
        agent_credential_id: text = "agent_credential_id", field AgentCredentialId(
            "audit.agent.credential.id", "agent.credential", "which credential the agent used");
        /// The accountable human; never empty.
        owner_id: string = "owner_id", field OwnerId("audit.owner.id", "owner.id",
            "the accountable human");
        /// Who started the task.
        initiator_id: text = "initiator_id", field InitiatorId("audit.initiator.id",
            "initiator.id", "who started the task");
        /// Which task.
        task_id: text = "task_id", field TaskId("audit.task.id", "task.id", "which task");
        /// What was done.
        action: string = "action", field Action("audit.action", "action",
            "what was done (the span name when absent)");
        /// To what.
        target: text = "target", field Target("audit.target", "target", "to what");
        /// `ok`, `error` or `denied`.
        outcome: string = "outcome", field Outcome("audit.outcome", "outcome",
            "`ok`, `error` or `denied`") " (`ok` when absent)";
        /// Authorization scopes.
        scopes: list = "scopes", field Scopes("audit.scopes", "scopes",
            "authorization scopes (string array; comma-separated on spans)") " (string array)";
        /// Consent token id.
        consent_id: text = "consent_id", field ConsentId("audit.consent.id", "consent",
            "consent id, required for dangerous actions; a signed consent token is accepted here too");
        /// The signed consent token, as given.
        consent_token: text = "consent_token", field ConsentToken("audit.consent.token",
            "consent.token", "signed consent token (compact JWS, EdDSA) from the approval service");
        /// Whether the token was verified (signature and claims) by whoever
        /// wrote the row. Never taken from the client.
        consent_verified: bool = "consent_verified",
            source "set by the verifier: the consent token's signature and claims matched this row";
        /// `kid` of the key that verified the token.
        consent_key_id: text = "consent_key_id",
            source "set by the verifier: `kid` of the key that verified the consent token";
        /// The human who approved: the verified token's `sub`.
        consent_approver: text = "consent_approver",
            source "set by the verifier: the consent token's `sub`, the human who approved";
        /// Digest of the inputs.
        inputs_sha256: text = "inputs_sha256", field InputsSha256("audit.inputs.sha256",
            "inputs.sha256", "SHA-256 of the inputs the agent acted on");
        /// Delegation chain (schema v2): JSON array of hops, origin first.
        delegation: text = "delegation", field Delegation("audit.delegation", "delegation",
            "delegation chain (v2): JSON array of hops `{kind, id, owner_id, credential_id, scopes}`, origin first, acting actor last")
            " (JSON text; null in v1 files)";
        /// The human at the start of the chain (schema v2).
        origin_id: text = "origin_id", field OriginId("audit.origin.id", "origin.id",
            "the human at the start of the delegation chain (v2)") " (null in v1 files)";
        /// Which service supplied the chain over the wire (schema v2).
        delegation_from: text = "delegation_from", field DelegationFrom(
            "audit.delegation.from", "delegation.from",
            "the service that sent the chain in a request header: the chain is its claim (v2)")
            " (null when built in-process and in v1 files)";
        /// From the OTel resource.
        service_name: string = "service_name", resource "service.name";
        /// From the OTel resource.
        service_instance_id: text = "service_instance_id", resource "service.instance.id";
        /// Hex trace id.
        trace_id: text = "trace_id", source "`LogRecord.trace_id` (hex)";
        /// Hex span id.
        span_id: text = "span_id", source "`LogRecord.span_id` (hex)";
        /// Every other field, stringified.
        attributes: map = "attributes", source "every other attribute, stringified";
    }
    flags {
        /// The client marked the span privileged. Not stored: a row in the
        /// `audit` dataset is privileged by being there.
        privileged: Privileged("audit.privileged", "audit.privileged",
            "`true` makes a span privileged whatever its target");
        /// The client marked the action dangerous.
        dangerous: Dangerous("audit.dangerous", "audit.dangerous",
            "`true` makes an action dangerous: consent required");
    }
}

/// Audit columns added after the first files were written (see
/// [`Stored::ADDED`](crate::columns::Stored::ADDED)): consent verification
/// and the delegation chain (schema v2).
pub const AUDIT_ADDED: &[&str] = &[
    "consent_token",
    "consent_verified",
    "consent_key_id",
    "consent_approver",
    "delegation",
    "origin_id",
    "delegation_from",
];

/// Violation columns added after the first files were written.
pub const VIOLATIONS_ADDED: &[&str] = &["kind", "task_id", "target"];

stored_record! {
    /// A privileged span (or wire record) that broke a dual-key rule: a row of
    /// the `violations` dataset without the collector's stamp.
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    pub struct ViolationRecord in VIOLATIONS added VIOLATIONS_ADDED {
        /// UUIDv7 of the violation itself.
        event_id: string = "event_id", attr "audit.event.id";
        /// When the span closed (or the record arrived), ns since the epoch.
        time_ns: time = "time", source "`LogRecord.time_unix_nano` (span close)";
        /// `layer` or `collector`.
        detected_by: string = "detected_by", attr "audit.violation.detected_by"
            " (`layer`/`collector`)";
        /// What kind of failure: see [`crate::wire::violation_kind`].
        kind: text = "kind", attr "audit.violation.kind"
            " (`unattributed`, `ungated` or `dropped`; null in files sealed before the column)";
        /// Wire names of what was missing or wrong.
        missing: list = "missing", attr "audit.violation.missing" " (wire names)";
        /// Human-readable reason.
        reason: string = "reason", attr "audit.violation.reason";
        /// Callsite target.
        span_target: text = "span_target", attr "audit.violation.span.target";
        /// Span name.
        span_name: text = "span_name", attr "audit.violation.span.name";
        /// Callsite file.
        code_file: text = "code_file", attr "code.file.path";
        /// Callsite line.
        code_line: opt_int = "code_line", attr "code.line.number";
        /// The action, when known.
        action: text = "action", attr "audit.action";
        /// The stated actor kind, as given (possibly invalid).
        actor_kind: text = "actor_kind", attr "audit.actor.kind" ", as given";
        /// The agent id, as given.
        agent_id: text = "agent_id", attr "gen_ai.agent.id" ", as given";
        /// The owner id, as given.
        owner_id: text = "owner_id", attr "audit.owner.id" ", as given";
        /// The task, as given (to tell which violations could be an action's).
        task_id: text = "task_id", attr "audit.task.id" ", as given";
        /// The target, as given.
        target: text = "target", attr "audit.target" ", as given";
        /// From the OTel resource.
        service_name: string = "service_name", resource "service.name";
        /// From the OTel resource.
        service_instance_id: text = "service_instance_id", resource "service.instance.id";
        /// Hex trace id.
        trace_id: text = "trace_id", source "`LogRecord.trace_id` (hex)";
        /// Hex span id.
        span_id: text = "span_id", source "`LogRecord.span_id` (hex)";
        /// Every other field, stringified.
        attributes: map = "attributes", source "every other attribute, stringified";
    }
}

/// What the collector adds to every stored row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// When the collector accepted the row, ns since the epoch.
    pub received_time_ns: i64,
    /// Per-collector sequence number: increasing and gap-free.
    pub seq: u64,
}

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

impl Draft {
    /// Sets a schema field from a boolean (tracing's `record_bool`).
    pub fn set_bool(&mut self, field: Field, value: bool) {
        if field.is_flag() {
            field.set_flag(value, &mut self.privileged, &mut self.dangerous);
        } else {
            self.set(field, value.to_string());
        }
    }
}

impl Field {
    /// Sets this flag to `on` among a record's two flags, by the one rule
    /// a [`Draft`] and the layer's span fields both follow: a later value
    /// of `audit.privileged` replaces an earlier one, while
    /// `audit.dangerous` is sticky (a later `false` must not un-mark a
    /// dangerous action). Does nothing for a field that is not a flag.
    pub fn set_flag(self, on: bool, privileged: &mut bool, dangerous: &mut bool) {
        match self {
            Field::Dangerous => *dangerous |= on,
            Field::Privileged => *privileged = on,
            _ => {}
        }
    }
}

/// A flag's string form is true: `true`, in any case, spaces around.
pub fn is_true(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("true")
}

/// Splits `a, b c` style scope lists (commas or whitespace) into scopes.
pub fn split_scopes(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::column::markdown_table;

    #[test]
    fn scopes_split_on_commas_and_spaces() {
        assert_eq!(
            split_scopes("a:read, b:write c"),
            ["a:read", "b:write", "c"]
        );
        assert!(split_scopes(" , ").is_empty());
    }

    #[test]
    fn dangerous_once_stays_dangerous() {
        let mut d = Draft::default();
        d.set(Field::Dangerous, "true".into());
        d.set_bool(Field::Dangerous, false);
        d.set(Field::Dangerous, "false".into());
        assert!(d.dangerous);
    }

    #[test]
    fn the_flag_rule_is_sticky_for_dangerous_only() {
        let flags: Vec<Field> = FIELDS
            .iter()
            .map(|s| s.field)
            .filter(|f| f.is_flag())
            .collect();
        assert_eq!(flags, [Field::Privileged, Field::Dangerous]);
        let (mut privileged, mut dangerous) = (false, false);
        for (field, on) in [
            (Field::Privileged, true),
            (Field::Dangerous, true),
            (Field::Privileged, false),
            (Field::Dangerous, false),
        ] {
            field.set_flag(on, &mut privileged, &mut dangerous);
        }
        assert!(!privileged, "the last value of privileged counts");
        assert!(dangerous, "dangerous once stays dangerous");
        Field::Action.set_flag(true, &mut privileged, &mut dangerous);
        assert!(!privileged, "not a flag: nothing set");
    }

    #[test]
    fn unparsable_end_time_is_kept_not_lost() {
        let mut d = Draft::default();
        d.set(Field::EndTime, "soon".into());
        assert_eq!(d.end_time_ns, None);
        assert_eq!(d.attributes["audit.end_time_unix_nano"], "soon");
    }

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

    #[test]
    fn column_names_are_unique() {
        for cols in [AUDIT, VIOLATIONS] {
            let mut names: Vec<_> = cols.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cols.len());
        }
    }

    #[test]
    fn markdown_lists_every_column() {
        let t = markdown_table(AUDIT);
        assert_eq!(t.lines().count(), AUDIT.len() + 2);
        assert!(t.contains("| `seq` | uint64 | no |"));
    }
}
