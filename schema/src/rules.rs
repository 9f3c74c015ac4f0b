//! The dual-key rules, checked by the layer when a privileged span closes and
//! again by the collector for every record it receives (defence in depth).
//!
//! | actor kind | required | forbidden |
//! |---|---|---|
//! | `agent` (stated, or implied by an agent id) | `gen_ai.agent.id`, `audit.owner.id` | — |
//! | `human` | `audit.actor.kind = "human"` stated, `audit.owner.id` | `gen_ai.agent.id` |
//! | dangerous action | `audit.consent.id` or `audit.consent.token` in addition (a verified token when consent keys are configured: see `consent`) | — |
//! | delegated action | a chain that keeps the rules of [`crate::delegation`] | widening scopes, a forged origin |
//!
//! A human is never inferred from a missing agent id: absence of evidence is
//! not proof, and "no agent was involved" must rest on a stated fact.

use serde::{Deserialize, Serialize};

use crate::limits::{clip, Limits, QUOTE_BYTES};
pub use crate::problem::{Problem, Rejection};
use crate::record::{ActorKind, AuditRecord, Draft, Field, OUTCOMES};
use crate::wire::UNKNOWN_SERVICE;

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
        d.for_each_text_mut(|s| {
            if s.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *s = None;
            }
        });
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
        let origin =
            crate::delegation::check(&d, kind, self.limits.max_delegation_hops, &mut problems);
        match d.action.as_deref() {
            None => problems.push(Problem::NoAction),
            Some(a) => {
                if (d.dangerous || self.is_dangerous_action(a))
                    && d.consent_id.is_none()
                    && d.consent_token.is_none()
                {
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
        // Everything `AuditRecord::from_draft` takes as present.
        let (Some(actor_kind), true, true, true, true) = (
            kind,
            d.owner_id.is_some(),
            d.action.is_some(),
            d.start_time_ns.is_some(),
            problems.is_empty(),
        ) else {
            return Err(Rejection {
                problems,
                draft: Box::new(d),
            });
        };
        d.origin_id = origin;
        d.event_id.get_or_insert_with(String::new);
        d.outcome.get_or_insert_with(|| "ok".to_owned());
        d.service_name
            .get_or_insert_with(|| UNKNOWN_SERVICE.to_owned());
        if d.dangerous {
            d.attributes
                .insert(Field::Dangerous.wire().to_owned(), "true".to_owned());
        }
        Ok(AuditRecord::from_draft(d, actor_kind))
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    // Without allocating: `audit_layer::require_gate` matches on every
    // privileged effect.
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == s;
    };
    let (mids, last) = rest.rsplit_once('*').unwrap_or(("", rest));
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in mids.split('*').filter(|m| !m.is_empty()) {
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
    use crate::record::ViolationRecord;

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
        assert!(glob_match("*", "") && glob_match("a**b", "ab") && glob_match("*x*", "yxy"));
        assert!(!glob_match("a*b*c*d", "abdc"));
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
        let rejection = Rules::default().check(d).expect_err("no owner");
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
        assert_eq!(row.service_name, UNKNOWN_SERVICE);
    }
}
