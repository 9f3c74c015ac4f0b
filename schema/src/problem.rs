//! What is wrong with a record: each broken rule as a [`Problem`] that says
//! what to do, and the [`Rejection`] of a whole draft, from which the layer
//! and the collector make the same violation row.

use std::fmt;

use crate::record::{Draft, Field, ViolationRecord};
use crate::wire::UNKNOWN_SERVICE;

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
    /// A dangerous action whose consent token did not verify or match
    /// (consent keys configured); the reason says which check failed.
    ConsentNotVerified(String),
    /// No action name.
    NoAction,
    /// No start time.
    NoStartTime,
    /// An outcome outside `ok`/`error`/`denied`.
    UnknownOutcome(String),
    /// A delegation chain or origin that breaks a rule of
    /// [`crate::delegation`]; names the hop at fault when there is one.
    Delegation {
        /// Wire name of the field at fault (`audit.delegation` or `audit.origin.id`).
        field: &'static str,
        /// The hop at fault: its index from the origin (0) and its id.
        hop: Option<(usize, String)>,
        /// What is wrong.
        reason: String,
    },
    /// More attributes than [`Limits::max_attributes`](crate::Limits::max_attributes).
    TooManyAttributes {
        /// Attributes given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An attribute key longer than [`Limits::max_key_bytes`](crate::Limits::max_key_bytes).
    KeyTooLong {
        /// The key, cut to [`QUOTE_BYTES`](crate::limits::QUOTE_BYTES).
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    ValueTooLong {
        /// Whose value (cut to [`QUOTE_BYTES`](crate::limits::QUOTE_BYTES)).
        key: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An array/kvlist value nested deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    TooDeep {
        /// Whose value (cut to [`QUOTE_BYTES`](crate::limits::QUOTE_BYTES)).
        key: String,
        /// The limit.
        max: usize,
    },
    /// A time outside [`Limits::min_time_unix_secs`](crate::Limits::min_time_unix_secs), now + [`Limits::max_future_secs`](crate::Limits::max_future_secs).
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
            Problem::ConsentNotVerified(_) => Field::ConsentToken.wire(),
            Problem::NoAction => Field::Action.wire(),
            Problem::NoStartTime => "time_unix_nano",
            Problem::UnknownOutcome(_) => Field::Outcome.wire(),
            Problem::TooManyAttributes { .. }
            | Problem::KeyTooLong { .. }
            | Problem::ValueTooLong { .. }
            | Problem::TooDeep { .. } => "attributes",
            Problem::TimeOutOfRange { field, .. } | Problem::Delegation { field, .. } => field,
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
            Problem::ConsentNotVerified(_) => "consent_not_verified",
            Problem::NoAction => "no_action",
            Problem::NoStartTime => "no_start_time",
            Problem::UnknownOutcome(_) => "unknown_outcome",
            Problem::Delegation { .. } => "delegation",
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
                write!(f, "dangerous action without `audit.consent.id` or `audit.consent.token` (the consent)")
            }
            Problem::ConsentNotVerified(why) => write!(f, "consent not verified: {why}"),
            Problem::NoAction => write!(f, "no `audit.action`"),
            Problem::NoStartTime => write!(f, "no start time (`time_unix_nano` is 0)"),
            Problem::UnknownOutcome(o) => {
                write!(f, "`audit.outcome` is {o:?}; expected one of ok, error, denied")
            }
            Problem::Delegation {
                hop: Some((i, id)),
                reason,
                ..
            } => write!(f, "delegation hop {i} ({id:?}): {reason}"),
            Problem::Delegation {
                field,
                hop: None,
                reason,
            } => write!(f, "`{field}`: {reason}"),
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

impl ViolationRecord {
    /// The row's `kind`, or for a row that states none (a client older
    /// than the column): `dropped` for a drop report (it carries
    /// `audit.dropped.count`), else `unattributed`, the only other kind
    /// such clients sent.
    pub fn kind_or_inferred(&self) -> &str {
        use crate::wire::violation_kind::{DROPPED, DROPPED_COUNT_ATTR, UNATTRIBUTED};
        if let Some(kind) = self.kind.as_deref().filter(|k| !k.trim().is_empty()) {
            kind
        } else if self.missing.iter().any(|m| m == DROPPED_COUNT_ATTR)
            || self.attributes.contains_key(DROPPED_COUNT_ATTR)
        {
            DROPPED
        } else {
            UNATTRIBUTED
        }
    }

    /// The row that records a refused draft, the one definition the layer
    /// and the collector share: the fields at fault and why (`missing`,
    /// `reason`), and who and what the draft named, as given. The service is
    /// the draft's, else `service`, else [`wire::UNKNOWN_SERVICE`](UNKNOWN_SERVICE).
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
            kind: Some(crate::wire::violation_kind::UNATTRIBUTED.to_owned()),
            missing: rejection.missing(),
            reason: rejection.reason(),
            action: d.action.clone(),
            actor_kind: d.actor_kind.clone(),
            agent_id: d.agent_id.clone(),
            owner_id: d.owner_id.clone(),
            task_id: d.task_id.clone(),
            target: d.target.clone(),
            service_name: d
                .service_name
                .as_deref()
                .or(service)
                .unwrap_or(UNKNOWN_SERVICE)
                .to_owned(),
            service_instance_id: d.service_instance_id.clone(),
            trace_id: d.trace_id.clone(),
            span_id: d.span_id.clone(),
            ..ViolationRecord::default()
        }
    }
}
