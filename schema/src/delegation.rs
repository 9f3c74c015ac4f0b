//! Delegation chains (schema v2): who acted for whom, hop by hop, from the
//! originating principal to the actor that did the action, and the rules a
//! chain must keep. The layer and the collector both run [`check`] (through
//! [`Rules::check`](crate::Rules::check)), so they refuse the same chains
//! for the same reasons, each naming the hop at fault.
//!
//! A chain is stored in the `delegation` column as JSON text, origin first:
//!
//! ```json
//! [{"kind":"human","id":"usr_alice"},
//!  {"kind":"agent","id":"agt_planner","owner_id":"usr_alice","scopes":["db:write","db:read"]},
//!  {"kind":"agent","id":"agt_worker","owner_id":"usr_bob","credential_id":"key_9","scopes":["db:write"]}]
//! ```
//!
//! | rule | refused when |
//! |---|---|
//! | every agent hop has an owner | an agent hop has no `owner_id` |
//! | the last hop is the acting actor | its kind, id (agent id, or owner id for a human) or owner differs from the row's |
//! | the origin is the first hop, a human | `origin_id` is stated and the first hop is not a human with that id |
//! | no origin without a chain | `origin_id` is stated, no chain is, and it is not the row's `owner_id` |
//! | depth | more hops than [`Limits::max_delegation_hops`](crate::Limits::max_delegation_hops) |
//! | no widening | a hop states scopes outside the nearest earlier hop's stated scopes (the row's own `scopes` count as the last hop's) |

use serde::{Deserialize, Serialize};

use crate::limits::{clip, QUOTE_BYTES};
use crate::problem::Problem;
use crate::record::{ActorKind, Draft, Field};

/// One hop of a delegation chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hop {
    /// `agent` or `human`.
    pub kind: ActorKind,
    /// The agent's principal id, or the human's id.
    pub id: String,
    /// The accountable human of an agent hop (required for agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The credential this hop used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The scopes this hop held; `None` when it did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl Hop {
    /// A human hop.
    pub fn human(id: impl Into<String>) -> Hop {
        Hop {
            kind: ActorKind::Human,
            id: id.into(),
            owner_id: None,
            credential_id: None,
            scopes: None,
        }
    }

    /// An agent hop with its owner.
    pub fn agent(id: impl Into<String>, owner_id: impl Into<String>) -> Hop {
        Hop {
            kind: ActorKind::Agent,
            id: id.into(),
            owner_id: Some(owner_id.into()),
            credential_id: None,
            scopes: None,
        }
    }
}

/// A chain's stored and wire form (JSON text).
pub fn to_json(hops: &[Hop]) -> String {
    // A Vec of plain structs with string fields cannot fail to serialize.
    serde_json::to_string(hops).unwrap_or_else(|_| "[]".to_owned())
}

/// A chain from its stored or wire form.
pub fn parse(json: &str) -> Result<Vec<Hop>, String> {
    serde_json::from_str(json).map_err(|e| format!("not a JSON array of hops: {e}"))
}

fn chain_problem(field: Field, reason: String) -> Problem {
    Problem::Delegation {
        field: field.wire(),
        hop: None,
        reason,
    }
}

fn hop_problem(i: usize, hop: &Hop, reason: String) -> Problem {
    Problem::Delegation {
        field: Field::Delegation.wire(),
        hop: Some((i, clip(&hop.id, QUOTE_BYTES).to_owned())),
        reason,
    }
}

/// Checks the draft's chain and origin against the rules in the module
/// docs; `kind` is the row's actor kind as the rules resolved it. Returns
/// the origin to store: the stated one, else the first hop's when it is a
/// human.
pub(crate) fn check(
    d: &Draft,
    kind: Option<ActorKind>,
    max_hops: usize,
    out: &mut Vec<Problem>,
) -> Option<String> {
    let origin = d.origin_id.as_deref();
    let Some(json) = d.delegation.as_deref() else {
        if let Some(o) = origin {
            if d.owner_id.as_deref() != Some(o) {
                out.push(chain_problem(
                    Field::OriginId,
                    format!(
                        "{:?} differs from `audit.owner.id` and no delegation chain says how \
                         it got here",
                        clip(o, QUOTE_BYTES)
                    ),
                ));
            }
        }
        return d.origin_id.clone();
    };
    let hops = match parse(json) {
        Ok(h) if h.is_empty() => {
            out.push(chain_problem(
                Field::Delegation,
                "the chain has no hops".into(),
            ));
            return d.origin_id.clone();
        }
        Ok(h) => h,
        Err(e) => {
            out.push(chain_problem(Field::Delegation, e));
            return d.origin_id.clone();
        }
    };
    if hops.len() > max_hops {
        out.push(chain_problem(
            Field::Delegation,
            format!("{} hops; at most {max_hops} are accepted", hops.len()),
        ));
    }
    let mut held: Option<&[String]> = None;
    for (i, hop) in hops.iter().enumerate() {
        if hop.id.trim().is_empty() {
            out.push(hop_problem(i, hop, "no id".into()));
        }
        if hop.kind == ActorKind::Agent
            && hop.owner_id.as_deref().is_none_or(|o| o.trim().is_empty())
        {
            out.push(hop_problem(i, hop, "agent hop without `owner_id`".into()));
        }
        if let Some(scopes) = hop.scopes.as_deref() {
            widening(i, hop, scopes, held, out);
            held = Some(scopes);
        }
    }
    let last = hops.len() - 1;
    let acting = &hops[last];
    if !d.scopes.is_empty() {
        widening(last, acting, &d.scopes, held, out);
    }
    let (want_id, want_owner) = match kind {
        Some(ActorKind::Agent) => (d.agent_id.as_deref(), d.owner_id.as_deref()),
        _ => (d.owner_id.as_deref(), None),
    };
    let same = kind == Some(acting.kind)
        && want_id == Some(acting.id.as_str())
        && (kind != Some(ActorKind::Agent) || acting.owner_id.as_deref() == want_owner);
    if kind.is_some() && !same {
        out.push(hop_problem(
            last,
            acting,
            "the last hop is not the acting actor (kind, id and owner must match the row's)".into(),
        ));
    }
    let first = &hops[0];
    match origin {
        Some(o) if first.kind != ActorKind::Human || first.id != o => out.push(hop_problem(
            0,
            first,
            format!(
                "`audit.origin.id` {:?} must be the first hop, a human",
                clip(o, QUOTE_BYTES)
            ),
        )),
        Some(_) => {}
        None if first.kind == ActorKind::Human => return Some(first.id.clone()),
        None => {}
    }
    d.origin_id.clone()
}

fn widening(
    i: usize,
    hop: &Hop,
    scopes: &[String],
    held: Option<&[String]>,
    out: &mut Vec<Problem>,
) {
    let Some(held) = held else { return };
    let extra: Vec<&str> = scopes
        .iter()
        .filter(|s| !held.contains(s))
        .map(|s| clip(s, QUOTE_BYTES))
        .collect();
    if !extra.is_empty() {
        out.push(hop_problem(
            i,
            hop,
            format!(
                "scopes {extra:?} were not held by the hop before: an agent cannot hand on more than it holds"
            ),
        ));
    }
}

#[cfg(test)]
#[path = "delegation_tests.rs"]
mod tests;
