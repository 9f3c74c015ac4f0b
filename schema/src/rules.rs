//! The dual-key rules, checked by the layer when a privileged span closes and
//! again by the collector for every record it receives (defence in depth).
//!
//! | actor kind | required | forbidden |
//! |---|---|---|
//! | `agent` (stated, or implied by an agent id) | `gen_ai.agent.id`, `audit.owner.id` | — |
//! | `human` | `audit.actor.kind = "human"` stated, `audit.owner.id` | `gen_ai.agent.id` |
//! | dangerous action | `audit.consent.id` in addition | — |
//!
//! A human is never inferred from a missing agent id: absence of evidence is
//! not proof, and "no agent was involved" must rest on a stated fact.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{clip, Limits, QUOTE_BYTES};
use crate::record::{ActorKind, AuditRecord, Draft, OUTCOMES};
use crate::wire::{Field, UNKNOWN_SERVICE};

/// One broken rule. `Display` says what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Neither `audit.actor.kind` nor an agent id: nobody is attributed.
    NoActor,
    /// `audit.actor.kind` holds something other than `agent`/`human`.
    UnknownActorKind(String),
    /// An agent action without the agent's principal id.
    AgentWithoutAgentId,
    /// An agent action without the accountable human.
    AgentWithoutOwner,
    /// A human action without the human's id.
    HumanWithoutOwner,
    /// A human action that names an agent.
    HumanWithAgentId,
    /// A dangerous action without a consent token.
    DangerousWithoutConsent,
    /// No action name.
    NoAction,
    /// No start time.
    NoStartTime,
    /// An outcome outside `ok`/`error`/`denied`.
    UnknownOutcome(String),
    /// More attributes than [`Limits::max_attributes`].
    TooManyAttributes {
        /// Attributes given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An attribute key longer than [`Limits::max_key_bytes`].
    KeyTooLong {
        /// The key, cut to [`crate::limits::QUOTE_BYTES`].
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than [`Limits::max_value_bytes`].
    ValueTooLong {
        /// Whose value (cut to [`crate::limits::QUOTE_BYTES`]).
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An array/kvlist value nested deeper than [`Limits::max_depth`].
    TooDeep {
        /// Whose value (cut to [`crate::limits::QUOTE_BYTES`]).
        key: String,
        /// The limit.
        max: usize,
    },
    /// A time outside [`Limits::min_time_unix_secs`], now + [`Limits::max_future_secs`].
    TimeOutOfRange {
        /// Wire name of the time field.
        field: &'static str,
        /// The time given, ns since the epoch.
        ns: i64,
        /// Earliest accepted.
        min_ns: i64,
        /// Latest accepted.
        max_ns: i64,
    },
}

impl Problem {
    /// The wire name of the field this problem is about (for `missing`).
    pub fn field(&self) -> &'static str {
        match self {
            Problem::NoActor | Problem::UnknownActorKind(_) => Field::ActorKind.wire(),
            Problem::AgentWithoutAgentId | Problem::HumanWithAgentId => Field::AgentId.wire(),
            Problem::AgentWithoutOwner | Problem::HumanWithoutOwner => Field::OwnerId.wire(),
            Problem::DangerousWithoutConsent => Field::ConsentId.wire(),
            Problem::NoAction => Field::Action.wire(),
            Problem::NoStartTime => "time_unix_nano",
            Problem::UnknownOutcome(_) => Field::Outcome.wire(),
            Problem::TooManyAttributes { .. }
            | Problem::KeyTooLong { .. }
            | Problem::ValueTooLong { .. }
            | Problem::TooDeep { .. } => "attributes",
            Problem::TimeOutOfRange { field, .. } => field,
        }
    }
}

impl Problem {
    /// A fixed snake_case word for this rule, for metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::NoActor => "no_actor",
            Problem::UnknownActorKind(_) => "unknown_actor_kind",
            Problem::AgentWithoutAgentId => "agent_without_agent_id",
            Problem::AgentWithoutOwner => "agent_without_owner",
            Problem::HumanWithoutOwner => "human_without_owner",
            Problem::HumanWithAgentId => "human_with_agent_id",
            Problem::DangerousWithoutConsent => "dangerous_without_consent",
            Problem::NoAction => "no_action",
            Problem::NoStartTime => "no_start_time",
            Problem::UnknownOutcome(_) => "unknown_outcome",
            Problem::TooManyAttributes { .. } => "too_many_attributes",
            Problem::KeyTooLong { .. } => "key_too_long",
            Problem::ValueTooLong { .. } => "value_too_long",
            Problem::TooDeep { .. } => "too_deep",
            Problem::TimeOutOfRange { .. } => "time_out_of_range",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoActor => write!(
                f,
                "no actor: state `audit.actor.kind = \"human\"` with `audit.owner.id` for a human, \
                 or give `gen_ai.agent.id` and `audit.owner.id` for an agent"
            ),
            Problem::UnknownActorKind(k) => {
                write!(f, "`audit.actor.kind` is {k:?}; expected \"agent\" or \"human\"")
            }
            Problem::AgentWithoutAgentId => {
                write!(f, "agent action without `gen_ai.agent.id` (the agent principal)")
            }
            Problem::AgentWithoutOwner => {
                write!(f, "agent action without `audit.owner.id` (the accountable human)")
            }
            Problem::HumanWithoutOwner => {
                write!(f, "human action without `audit.owner.id` (the human who acted)")
            }
            Problem::HumanWithAgentId => write!(
                f,
                "human action names an agent (`gen_ai.agent.id`): an action is a human's or an agent's, not both"
            ),
            Problem::DangerousWithoutConsent => {
                write!(f, "dangerous action without `audit.consent.id` (the consent token)")
            }
            Problem::NoAction => write!(f, "no `audit.action`"),
            Problem::NoStartTime => write!(f, "no start time (`time_unix_nano` is 0)"),
            Problem::UnknownOutcome(o) => {
                write!(f, "`audit.outcome` is {o:?}; expected one of ok, error, denied")
            }
            Problem::TooManyAttributes { count, max } => {
                write!(f, "{count} attributes; at most {max} are accepted")
            }
            Problem::KeyTooLong { key, len, max } => {
                write!(f, "attribute key {key:?}... is {len} bytes; at most {max} are accepted")
            }
            Problem::ValueTooLong { key, len, max } => {
                write!(f, "value of {key:?} is {len} bytes; at most {max} are accepted")
            }
            Problem::TooDeep { key, max } => write!(
                f,
                "value of {key:?} nests arrays/kvlists deeper than {max} levels"
            ),
            Problem::TimeOutOfRange {
                field,
                ns,
                min_ns,
                max_ns,
            } => write!(
                f,
                "`{field}` is {ns} ns since the epoch; accepted: {min_ns} to {max_ns} \
                 (not before 2000 by default, at most a day ahead of the collector's clock)"
            ),
        }
    }
}

/// A draft that broke one or more rules, returned whole so that the caller
/// can build a violation record from what was there.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Every broken rule, in the order checked.
    pub problems: Vec<Problem>,
    /// The draft as received.
    pub draft: Box<Draft>,
}

impl Rejection {
    /// Wire names of the fields at fault, deduplicated.
    pub fn missing(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.problems {
            if !out.iter().any(|m| m == p.field()) {
                out.push(p.field().to_owned());
            }
        }
        out
    }

    /// All problems as one sentence.
    pub fn reason(&self) -> String {
        let parts: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        parts.join("; ")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl std::error::Error for Rejection {}

/// Rule settings shared by the layer and the collector.
///
/// ```
/// use audit_schema::{Draft, Rules};
/// let rules = Rules::default().dangerous_action("payments.*");
/// let mut d = Draft::default();
/// d.start_time_ns = Some(1_764_000_000_000_000_000);
/// d.action = Some("payments.transfer".into());
/// d.agent_id = Some("agt_7f3".into());
/// d.owner_id = Some("usr_alice".into());
/// let err = rules.check(d).unwrap_err();
/// assert_eq!(err.missing(), ["audit.consent.id"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Action-name patterns (`*` matches any run of characters) that are
    /// dangerous: consent is required. `audit.dangerous = true` also marks one.
    pub dangerous_actions: Vec<String>,
    /// Bounds on a record's size, shape and time.
    pub limits: Limits,
}

impl Rules {
    /// Adds a dangerous-action pattern.
    pub fn dangerous_action(mut self, pattern: impl Into<String>) -> Self {
        self.dangerous_actions.push(pattern.into());
        self
    }

    /// Whether `action` matches a dangerous pattern.
    pub fn is_dangerous_action(&self, action: &str) -> bool {
        self.dangerous_actions.iter().any(|p| glob_match(p, action))
    }

    /// Checks the dual-key rules and the [`Limits`]. Empty (or blank)
    /// strings count as absent.
    pub fn check(&self, d: Draft) -> Result<AuditRecord, Rejection> {
        self.check_with(d, Vec::new())
    }

    /// [`Rules::check`], with problems a caller already found (e.g. by
    /// [`Limits::check_log_record`]) listed first.
    pub fn check_with(&self, mut d: Draft, found: Vec<Problem>) -> Result<AuditRecord, Rejection> {
        for s in [
            &mut d.event_id,
            &mut d.actor_kind,
            &mut d.agent_id,
            &mut d.agent_name,
            &mut d.agent_credential_id,
            &mut d.owner_id,
            &mut d.initiator_id,
            &mut d.task_id,
            &mut d.action,
            &mut d.target,
            &mut d.outcome,
            &mut d.consent_id,
            &mut d.inputs_sha256,
            &mut d.service_name,
            &mut d.service_instance_id,
            &mut d.trace_id,
            &mut d.span_id,
        ] {
            if s.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *s = None;
            }
        }
        let mut problems = found;
        problems.extend(self.limits.check_draft(&d));
        let kind = match d.actor_kind.as_deref() {
            Some(k) => match ActorKind::parse(k) {
                Some(kind) => Some(kind),
                None => {
                    problems.push(Problem::UnknownActorKind(clip(k, QUOTE_BYTES).to_owned()));
                    None
                }
            },
            // An agent id is positive evidence of an agent; the converse
            // (no agent id ⇒ human) is exactly the inference we refuse.
            None if d.agent_id.is_some() => Some(ActorKind::Agent),
            None => {
                problems.push(Problem::NoActor);
                None
            }
        };
        match kind {
            Some(ActorKind::Agent) => {
                if d.agent_id.is_none() {
                    problems.push(Problem::AgentWithoutAgentId);
                }
                if d.owner_id.is_none() {
                    problems.push(Problem::AgentWithoutOwner);
                }
            }
            Some(ActorKind::Human) => {
                if d.owner_id.is_none() {
                    problems.push(Problem::HumanWithoutOwner);
                }
                if d.agent_id.is_some() {
                    problems.push(Problem::HumanWithAgentId);
                }
            }
            None => {}
        }
        match d.action.as_deref() {
            None => problems.push(Problem::NoAction),
            Some(a) => {
                if (d.dangerous || self.is_dangerous_action(a)) && d.consent_id.is_none() {
                    problems.push(Problem::DangerousWithoutConsent);
                }
            }
        }
        if d.start_time_ns.is_none_or(|t| t <= 0) {
            problems.push(Problem::NoStartTime);
        }
        if let Some(o) = d.outcome.as_deref() {
            if !OUTCOMES.contains(&o) {
                problems.push(Problem::UnknownOutcome(clip(o, QUOTE_BYTES).to_owned()));
            }
        }
        let (Some(actor_kind), Some(owner_id), Some(action), Some(start_time_ns), true) = (
            kind,
            d.owner_id.clone(),
            d.action.clone(),
            d.start_time_ns,
            problems.is_empty(),
        ) else {
            return Err(Rejection {
                problems,
                draft: Box::new(d),
            });
        };
        let mut attributes = d.attributes;
        if d.dangerous {
            attributes.insert(Field::Dangerous.wire().to_owned(), "true".to_owned());
        }
        Ok(AuditRecord {
            event_id: d.event_id.unwrap_or_default(),
            start_time_ns,
            end_time_ns: d.end_time_ns,
            actor_kind,
            agent_id: d.agent_id,
            agent_name: d.agent_name,
            agent_credential_id: d.agent_credential_id,
            owner_id,
            initiator_id: d.initiator_id,
            task_id: d.task_id,
            action,
            target: d.target,
            outcome: d.outcome.unwrap_or_else(|| "ok".to_owned()),
            scopes: d.scopes,
            consent_id: d.consent_id,
            inputs_sha256: d.inputs_sha256,
            service_name: d.service_name.unwrap_or_else(|| UNKNOWN_SERVICE.to_owned()),
            service_instance_id: d.service_instance_id,
            trace_id: d.trace_id,
            span_id: d.span_id,
            attributes,
        })
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            start_time_ns: Some(1_700_000_000_000_000_000),
            action: Some("payments.transfer".into()),
            ..Draft::default()
        }
    }

    fn problems(d: Draft) -> Vec<Problem> {
        Rules::default().check(d).unwrap_err().problems
    }

    #[test]
    fn agent_with_both_keys_is_accepted() {
        let mut d = draft();
        d.agent_id = Some("agt_7f3".into());
        d.owner_id = Some("usr_alice".into());
        let r = Rules::default().check(d).expect("attributed");
        assert_eq!(r.actor_kind, ActorKind::Agent);
        assert_eq!(r.outcome, "ok");
        assert_eq!(r.service_name, "unknown_service");
    }

    #[test]
    fn agent_action_without_owner_is_rejected() {
        let mut d = draft();
        d.agent_id = Some("agt_7f3".into());
        assert_eq!(problems(d), [Problem::AgentWithoutOwner]);
    }

    #[test]
    fn stated_agent_without_agent_id_is_rejected() {
        let mut d = draft();
        d.actor_kind = Some("agent".into());
        d.owner_id = Some("usr_alice".into());
        assert_eq!(problems(d), [Problem::AgentWithoutAgentId]);
    }

    #[test]
    fn human_action_without_stated_kind_is_rejected() {
        let mut d = draft();
        d.owner_id = Some("usr_alice".into());
        assert_eq!(problems(d), [Problem::NoActor]);
    }

    #[test]
    fn human_action_naming_an_agent_is_rejected() {
        let mut d = draft();
        d.actor_kind = Some("human".into());
        d.owner_id = Some("usr_alice".into());
        d.agent_id = Some("agt_7f3".into());
        assert_eq!(problems(d), [Problem::HumanWithAgentId]);
    }

    #[test]
    fn stated_human_with_owner_is_accepted() {
        let mut d = draft();
        d.actor_kind = Some("human".into());
        d.owner_id = Some("usr_alice".into());
        let r = Rules::default().check(d).expect("attributed");
        assert_eq!((r.actor_kind, r.agent_id), (ActorKind::Human, None));
    }

    #[test]
    fn blank_ids_count_as_missing() {
        let mut d = draft();
        d.agent_id = Some("agt".into());
        d.owner_id = Some("  ".into());
        assert_eq!(problems(d), [Problem::AgentWithoutOwner]);
    }

    #[test]
    fn dangerous_action_needs_consent_by_flag_or_pattern() {
        let mut d = draft();
        d.agent_id = Some("agt".into());
        d.owner_id = Some("usr".into());
        d.dangerous = true;
        assert_eq!(problems(d.clone()), [Problem::DangerousWithoutConsent]);
        d.dangerous = false;
        let rules = Rules::default().dangerous_action("payments.*");
        assert!(rules.check(d.clone()).is_err());
        d.consent_id = Some("cns_1".into());
        assert!(rules.check(d).is_ok());
    }

    #[test]
    fn unknown_kind_and_outcome_are_named() {
        let mut d = draft();
        d.actor_kind = Some("robot".into());
        d.outcome = Some("meh".into());
        let err = Rules::default().check(d).unwrap_err();
        assert_eq!(err.missing(), ["audit.actor.kind", "audit.outcome"]);
        assert!(err.reason().contains("\"robot\""), "{}", err.reason());
    }

    #[test]
    fn glob() {
        assert!(glob_match("payments.*", "payments.transfer"));
        assert!(glob_match("*.delete", "users.delete"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
        assert!(!glob_match("payments.*", "payment"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
