//! The audit record (schema v1) and the violation record, as Rust values.
//!
//! A [`Draft`] is what a client or the collector has gathered so far: every
//! field optional. [`crate::rules::Rules::check`] turns a draft into an
//! [`AuditRecord`] — or a [`crate::rules::Rejection`] naming what is missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::Rejection;
use crate::wire::Field;

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

/// One privileged action, attributed: a row of the `audit` dataset without
/// the collector's stamp (`received_time`, `collector_id`, `seq`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UUIDv7; idempotency key end to end.
    pub event_id: String,
    /// Span open, ns since the epoch (UTC).
    pub start_time_ns: i64,
    /// Span close, ns since the epoch (UTC).
    pub end_time_ns: Option<i64>,
    /// Human or AI.
    pub actor_kind: ActorKind,
    /// Agent principal id; `None` iff human.
    pub agent_id: Option<String>,
    /// Display name of the agent.
    pub agent_name: Option<String>,
    /// Credential the agent used.
    pub agent_credential_id: Option<String>,
    /// The accountable human; never empty.
    pub owner_id: String,
    /// Who started the task.
    pub initiator_id: Option<String>,
    /// Which task.
    pub task_id: Option<String>,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: Option<String>,
    /// `ok`, `error` or `denied`.
    pub outcome: String,
    /// Authorization scopes.
    pub scopes: Vec<String>,
    /// Consent token id.
    pub consent_id: Option<String>,
    /// Digest of the inputs.
    pub inputs_sha256: Option<String>,
    /// From the OTel resource.
    pub service_name: String,
    /// From the OTel resource.
    pub service_instance_id: Option<String>,
    /// Hex trace id.
    pub trace_id: Option<String>,
    /// Hex span id.
    pub span_id: Option<String>,
    /// Every other field, stringified.
    pub attributes: BTreeMap<String, String>,
}

/// A privileged span (or wire record) that broke a dual-key rule: a row of
/// the `violations` dataset without the collector's stamp.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ViolationRecord {
    /// UUIDv7 of the violation itself.
    pub event_id: String,
    /// When the span closed (or the record arrived), ns since the epoch.
    pub time_ns: i64,
    /// `layer` or `collector`.
    pub detected_by: String,
    /// Wire names of what was missing or wrong.
    pub missing: Vec<String>,
    /// Human-readable reason.
    pub reason: String,
    /// Callsite target.
    pub span_target: Option<String>,
    /// Span name.
    pub span_name: Option<String>,
    /// Callsite file.
    pub code_file: Option<String>,
    /// Callsite line.
    pub code_line: Option<i64>,
    /// The action, when known.
    pub action: Option<String>,
    /// The stated actor kind, as given (possibly invalid).
    pub actor_kind: Option<String>,
    /// The agent id, as given.
    pub agent_id: Option<String>,
    /// The owner id, as given.
    pub owner_id: Option<String>,
    /// From the OTel resource.
    pub service_name: String,
    /// From the OTel resource.
    pub service_instance_id: Option<String>,
    /// Hex trace id.
    pub trace_id: Option<String>,
    /// Hex span id.
    pub span_id: Option<String>,
    /// Every other field, stringified.
    pub attributes: BTreeMap<String, String>,
}

impl ViolationRecord {
    /// The row that records a refused draft, the one definition the layer
    /// and the collector share: the fields at fault and why (`missing`,
    /// `reason`), and who and what the draft named, as given. The service is
    /// the draft's, else `service`, else [`wire::UNKNOWN_SERVICE`](crate::wire::UNKNOWN_SERVICE).
    /// Callsite, attributes and anything else the detector knows are the
    /// caller's to add.
    pub fn refused(
        rejection: &Rejection,
        detected_by: &str,
        event_id: String,
        time_ns: i64,
        service: Option<&str>,
    ) -> ViolationRecord {
        let d = &rejection.draft;
        ViolationRecord {
            event_id,
            time_ns,
            detected_by: detected_by.to_owned(),
            missing: rejection.missing(),
            reason: rejection.reason(),
            action: d.action.clone(),
            actor_kind: d.actor_kind.clone(),
            agent_id: d.agent_id.clone(),
            owner_id: d.owner_id.clone(),
            service_name: d
                .service_name
                .as_deref()
                .or(service)
                .unwrap_or(crate::wire::UNKNOWN_SERVICE)
                .to_owned(),
            service_instance_id: d.service_instance_id.clone(),
            trace_id: d.trace_id.clone(),
            span_id: d.span_id.clone(),
            ..ViolationRecord::default()
        }
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

/// Everything gathered about one privileged action before the rules run.
/// Strings are kept as given; the rules decide what empty or unknown means.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draft {
    /// See [`AuditRecord::event_id`].
    pub event_id: Option<String>,
    /// See [`AuditRecord::start_time_ns`].
    pub start_time_ns: Option<i64>,
    /// See [`AuditRecord::end_time_ns`].
    pub end_time_ns: Option<i64>,
    /// As stated (`agent`/`human`), unchecked.
    pub actor_kind: Option<String>,
    /// See [`AuditRecord::agent_id`].
    pub agent_id: Option<String>,
    /// See [`AuditRecord::agent_name`].
    pub agent_name: Option<String>,
    /// See [`AuditRecord::agent_credential_id`].
    pub agent_credential_id: Option<String>,
    /// See [`AuditRecord::owner_id`].
    pub owner_id: Option<String>,
    /// See [`AuditRecord::initiator_id`].
    pub initiator_id: Option<String>,
    /// See [`AuditRecord::task_id`].
    pub task_id: Option<String>,
    /// See [`AuditRecord::action`].
    pub action: Option<String>,
    /// See [`AuditRecord::target`].
    pub target: Option<String>,
    /// See [`AuditRecord::outcome`]; `ok` when absent.
    pub outcome: Option<String>,
    /// See [`AuditRecord::scopes`].
    pub scopes: Vec<String>,
    /// See [`AuditRecord::consent_id`].
    pub consent_id: Option<String>,
    /// See [`AuditRecord::inputs_sha256`].
    pub inputs_sha256: Option<String>,
    /// The client marked the action dangerous.
    pub dangerous: bool,
    /// The client marked the span privileged. Not stored: a row in the
    /// `audit` dataset is privileged by being there.
    pub privileged: bool,
    /// See [`AuditRecord::service_name`].
    pub service_name: Option<String>,
    /// See [`AuditRecord::service_instance_id`].
    pub service_instance_id: Option<String>,
    /// See [`AuditRecord::trace_id`].
    pub trace_id: Option<String>,
    /// See [`AuditRecord::span_id`].
    pub span_id: Option<String>,
    /// Every field that is not a schema field.
    pub attributes: BTreeMap<String, String>,
}

impl Draft {
    /// Sets a schema field from its string form. Booleans accept `true`;
    /// scopes accept a comma-separated list (tracing fields carry no arrays).
    pub fn set(&mut self, field: Field, value: String) {
        let slot = match field {
            Field::EventId => &mut self.event_id,
            Field::ActorKind => &mut self.actor_kind,
            Field::AgentId => &mut self.agent_id,
            Field::AgentName => &mut self.agent_name,
            Field::AgentCredentialId => &mut self.agent_credential_id,
            Field::OwnerId => &mut self.owner_id,
            Field::InitiatorId => &mut self.initiator_id,
            Field::TaskId => &mut self.task_id,
            Field::Action => &mut self.action,
            Field::Target => &mut self.target,
            Field::Outcome => &mut self.outcome,
            Field::ConsentId => &mut self.consent_id,
            Field::InputsSha256 => &mut self.inputs_sha256,
            Field::EndTime => {
                match value.trim().parse::<i64>() {
                    Ok(ns) => self.end_time_ns = Some(ns),
                    Err(_) => {
                        self.attributes.insert(field.wire().to_owned(), value);
                    }
                }
                return;
            }
            Field::Scopes => {
                self.scopes = split_scopes(&value);
                return;
            }
            Field::Privileged => {
                self.privileged = is_true(&value);
                return;
            }
            Field::Dangerous => {
                // Sticky: a later `false` must not un-mark a dangerous action.
                self.dangerous |= is_true(&value);
                return;
            }
        };
        *slot = Some(value);
    }

    /// Sets a schema field from a boolean (tracing's `record_bool`).
    pub fn set_bool(&mut self, field: Field, value: bool) {
        match field {
            Field::Privileged => self.privileged = value,
            Field::Dangerous => self.dangerous |= value,
            other => self.set(other, value.to_string()),
        }
    }
}

fn is_true(s: &str) -> bool {
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
    fn unparsable_end_time_is_kept_not_lost() {
        let mut d = Draft::default();
        d.set(Field::EndTime, "soon".into());
        assert_eq!(d.end_time_ns, None);
        assert_eq!(d.attributes["audit.end_time_unix_nano"], "soon");
    }

    #[test]
    fn a_refused_draft_becomes_a_row_naming_what_was_missing_and_who_was_named() {
        let mut d = Draft {
            start_time_ns: Some(1_764_000_000_000_000_000),
            trace_id: Some("ab".into()),
            ..Draft::default()
        };
        d.set(Field::AgentId, "agt_1".into());
        d.set(Field::Action, "db.write".into());
        d.attributes.insert("amount".into(), "3".into());
        let rejection = crate::Rules::default().check(d).expect_err("no owner");
        let row = ViolationRecord::refused(&rejection, "layer", "ev".into(), 7, Some("billing"));
        assert_eq!((row.event_id.as_str(), row.time_ns), ("ev", 7));
        assert_eq!(row.detected_by, "layer");
        assert_eq!(row.missing, [Field::OwnerId.wire()]);
        assert_eq!(row.reason, rejection.reason());
        assert_eq!(row.agent_id.as_deref(), Some("agt_1"));
        assert_eq!(row.action.as_deref(), Some("db.write"));
        assert_eq!(row.trace_id.as_deref(), Some("ab"));
        assert_eq!(
            row.service_name, "billing",
            "the caller's service when the draft has none"
        );
        assert!(
            row.attributes.is_empty(),
            "attributes are the caller's to add"
        );

        let mut named = rejection.clone();
        named.draft.service_name = Some("ledger".into());
        let row = ViolationRecord::refused(&named, "collector", "ev".into(), 7, Some("billing"));
        assert_eq!(row.service_name, "ledger", "the draft's service wins");
        let row = ViolationRecord::refused(&rejection, "collector", "ev".into(), 7, None);
        assert_eq!(row.service_name, crate::wire::UNKNOWN_SERVICE);
    }
}
