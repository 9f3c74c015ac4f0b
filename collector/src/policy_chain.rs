//! Retention as signed, chained policy.
//!
//! Whoever can write the data dir can append a well-formed, correctly
//! chained `delete` entry and unlink the file: the hash chain alone cannot
//! tell that from retention. So the policy that allows deletions, and every
//! legal hold, is itself a manifest entry signed by an **operator key**
//! (Ed25519 in the note key format, as checkpoints; not the collector's key,
//! and not needed on the collector host), and `verify` replays the chain
//! ([`Replay`]): a `delete` is valid only if a policy in force at that
//! entry, signed by a key `verify` was given, allowed it (the file's newest
//! row older than `max_days` or before the policy's `before` day, older
//! than `min_days`, under no hold). No operator key given, no valid
//! deletion: the default trail is append-only.
//!
//! Each statement is a signed note whose text names the collector and the
//! hash of the entry before it, so it is valid at exactly one place in one
//! chain: it cannot be replayed later (to bring back a laxer policy) nor
//! moved to another collector.
//!
//! ```text
//! audit-collector/c1 retention policy     audit-collector/c1 legal hold add
//! prev 5e0c…                              prev 9a7d…
//! min_days 30                             id case-1142
//! max_days 400                            from 2026-01-01
//!                                         to 2026-03-31
//!                                         reason litigation
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{NoteSigner, NoteVerifier};
use crate::manifest::{Body, Entry, FileEntry};
use crate::retention::LegalHold;

/// A retention policy as a manifest entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Nothing whose newest row is younger than this many days may go.
    pub min_days: u64,
    /// Files whose newest row is older than this many days may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days: Option<u64>,
    /// Files whose newest row is before this day may go (a one-off cut,
    /// still bounded by `min_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<NaiveDate>,
    /// The operator's signature line(s) over [`Policy::text`].
    pub signature: String,
}

/// Placing or releasing a legal hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldAction {
    /// From now on nothing overlapping the range may be deleted.
    Add,
    /// The hold of this id no longer applies.
    Release,
}

/// A legal hold placed or released, as a manifest entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Add or release.
    pub action: HoldAction,
    /// Names the hold, so that a release says which.
    pub id: String,
    /// First day held (for `add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NaiveDate>,
    /// Last day held (for `add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
    /// Why (case, ticket).
    #[serde(default)]
    pub reason: String,
    /// The operator's signature line(s) over [`Hold::text`].
    pub signature: String,
}

fn opt<T: std::fmt::Display>(key: &str, v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| format!("{key} {v}\n"))
        .unwrap_or_default()
}

impl Policy {
    /// The signed text: it names the collector and the entry before.
    pub fn text(&self, collector_id: &str, prev: &str) -> String {
        format!(
            "{}\nprev {prev}\nmin_days {}\n{}{}",
            crate::checkpoint::origin(collector_id) + " retention policy",
            self.min_days,
            opt("max_days", &self.max_days),
            opt("before", &self.before),
        )
    }

    /// A policy signed by `signer` for the entry after `prev`.
    pub fn signed(
        signer: &NoteSigner,
        collector_id: &str,
        prev: &str,
        min_days: u64,
        max_days: Option<u64>,
        before: Option<NaiveDate>,
    ) -> Policy {
        let mut p = Policy {
            min_days,
            max_days,
            before,
            signature: String::new(),
        };
        p.signature = signer.signature_line(&p.text(collector_id, prev));
        p
    }

    /// Whether the terms (not the signature) are the same.
    pub fn same_terms(&self, other: &Policy) -> bool {
        (self.min_days, self.max_days, self.before)
            == (other.min_days, other.max_days, other.before)
    }
}

impl Hold {
    /// The signed text: it names the collector and the entry before.
    pub fn text(&self, collector_id: &str, prev: &str) -> String {
        let action = match self.action {
            HoldAction::Add => "add",
            HoldAction::Release => "release",
        };
        format!(
            "{} {action}\nprev {prev}\nid {}\n{}{}{}",
            crate::checkpoint::origin(collector_id) + " legal hold",
            self.id,
            opt("from", &self.from),
            opt("to", &self.to),
            opt("reason", &Some(&self.reason).filter(|r| !r.is_empty())),
        )
    }

    /// A hold statement signed by `signer` for the entry after `prev`.
    pub fn signed(mut self, signer: &NoteSigner, collector_id: &str, prev: &str) -> Hold {
        self.signature = signer.signature_line(&self.text(collector_id, prev));
        self
    }
}

fn day(ns: i64) -> NaiveDate {
    DateTime::from_timestamp_nanos(ns).date_naive()
}

/// Holds placed in a chain and not released, signatures unchecked: what
/// retention keeps (keeping too much is never a violation).
pub fn active_holds(entries: &[Entry]) -> Vec<LegalHold> {
    let mut holds: BTreeMap<&str, LegalHold> = BTreeMap::new();
    for e in entries {
        let Body::Hold(h) = &e.body else { continue };
        match (h.action, h.from, h.to) {
            (HoldAction::Add, Some(from), Some(to)) => {
                let reason = format!("{} {}", h.id, h.reason).trim().to_owned();
                holds.insert(&h.id, LegalHold { from, to, reason });
            }
            (HoldAction::Release, ..) => {
                holds.remove(h.id.as_str());
            }
            (HoldAction::Add, ..) => {}
        }
    }
    holds.into_values().collect()
}

/// The newest policy a chain records, signature unchecked.
pub fn last_policy(entries: &[Entry]) -> Option<&Policy> {
    entries.iter().rev().find_map(|e| match &e.body {
        Body::Policy(p) => Some(p),
        _ => None,
    })
}

/// A finding of the replay: kind and detail.
pub type Finding = (&'static str, String);

/// The state of one chain's policy while `verify` walks it.
#[derive(Debug)]
pub struct Replay<'a> {
    collector_id: String,
    keys: &'a [NoteVerifier],
    now_ns: i64,
    policy: Option<Policy>,
    holds: BTreeMap<String, (NaiveDate, NaiveDate)>,
    sealed: bool,
}

impl<'a> Replay<'a> {
    /// Starts a chain's replay; `keys` are the operator keys, `now_ns` caps
    /// entry times (an entry dated in the future expires nothing early).
    pub fn new(collector_id: &str, keys: &'a [NoteVerifier], now_ns: i64) -> Replay<'a> {
        Replay {
            collector_id: collector_id.to_owned(),
            keys,
            now_ns,
            policy: None,
            holds: BTreeMap::new(),
            sealed: false,
        }
    }

    fn signed_by_operator(&self, text: &str, signature: &str) -> bool {
        self.keys.iter().any(|k| k.signed(text, signature))
    }

    fn unsigned(&self) -> String {
        if self.keys.is_empty() {
            "no operator key given (--operator-key or [retention] operator_keys) to check its signature".into()
        } else {
            "its signature does not verify with any operator key".into()
        }
    }

    /// Takes in one entry (after its hash and link were checked), returning
    /// what is wrong with it as policy.
    pub fn step(&mut self, e: &Entry) -> Vec<Finding> {
        let mut out = Vec::new();
        match &e.body {
            Body::Seal { .. } => self.sealed = true,
            Body::Policy(p) => {
                if !self.signed_by_operator(&p.text(&self.collector_id, &e.prev), &p.signature) {
                    // Nothing depends on an unchecked policy unless a
                    // deletion relies on it, which is then reported.
                    if !self.keys.is_empty() {
                        out.push((
                            "policy_unsigned",
                            format!("retention policy: {}", self.unsigned()),
                        ));
                    }
                    return out;
                }
                if p.max_days.is_some_and(|m| m < p.min_days) {
                    out.push(("policy_invalid", "max_days is less than min_days".into()));
                    return out;
                }
                if let Some(old) = self.policy.as_ref().filter(|o| p.min_days < o.min_days) {
                    if self.sealed {
                        out.push((
                            "policy_min_lowered",
                            format!(
                                "min_days lowered from {} to {} for data already sealed under it",
                                old.min_days, p.min_days
                            ),
                        ));
                        return out;
                    }
                }
                self.policy = Some(p.clone());
            }
            Body::Hold(h) => {
                if !self.signed_by_operator(&h.text(&self.collector_id, &e.prev), &h.signature) {
                    // Unchecked, a hold protects nothing nobody may delete.
                    if !self.keys.is_empty() {
                        out.push((
                            "hold_unsigned",
                            format!("legal hold {}: {}", h.id, self.unsigned()),
                        ));
                    }
                    return out;
                }
                match (h.action, h.from, h.to) {
                    (HoldAction::Add, Some(from), Some(to)) => {
                        self.holds.insert(h.id.clone(), (from, to));
                    }
                    (HoldAction::Add, ..) => {
                        out.push(("hold_invalid", format!("legal hold {} has no range", h.id)))
                    }
                    (HoldAction::Release, ..) => {
                        if self.holds.remove(&h.id).is_none() {
                            out.push((
                                "hold_unknown",
                                format!("releases {}, which is not held", h.id),
                            ));
                        }
                    }
                }
            }
            Body::Delete { file, .. } => {
                if let Err(why) = self.allowed(e.time_ns, file) {
                    out.push((
                        "delete_unauthorized",
                        format!("deletes {}: {why}", file.path),
                    ));
                }
            }
            Body::Digest { .. } | Body::Gap { .. } => {}
        }
        out
    }

    /// Whether the policy in force lets `file` go at `time_ns`.
    fn allowed(&self, time_ns: i64, file: &FileEntry) -> Result<(), String> {
        let Some(p) = &self.policy else {
            return Err(if self.keys.is_empty() {
                "no operator key given, so no deletion is authorized (the trail is append-only)"
                    .into()
            } else {
                "no retention policy signed by an operator key is in force".into()
            });
        };
        let today = day(time_ns.min(self.now_ns));
        let newest = day(file.time_max_ns);
        let floor = today
            .checked_sub_days(Days::new(p.min_days))
            .unwrap_or(NaiveDate::MIN);
        if newest >= floor {
            return Err(format!(
                "its newest row ({newest}) is inside min_days {}",
                p.min_days
            ));
        }
        let by_max = p
            .max_days
            .and_then(|m| today.checked_sub_days(Days::new(m)))
            .is_some_and(|cut| newest < cut);
        let by_before = p.before.is_some_and(|b| newest < b);
        if !by_max && !by_before {
            return Err(format!(
                "its newest row ({newest}) has not expired under the policy in force"
            ));
        }
        let first = day(file.time_min_ns);
        if let Some((id, _)) = self
            .holds
            .iter()
            .find(|(_, (from, to))| first <= *to && *from <= newest)
        {
            return Err(format!("it is under legal hold {id}"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_chain_tests.rs"]
mod tests;
