//! Consent a human gave, for this action, that anyone can check.
//!
//! A service where the human approves issues a **consent token**: a JWS
//! (compact, `alg` `EdDSA`, Ed25519) whose claims name the owner (`sub`),
//! the agent (`act`, RFC 8693's actor claim: `{"sub": agent id}`), the
//! action, the target, the scopes, when it was issued and until when it
//! holds (`iat`, `exp`, seconds) and the consent id (`jti`). The client
//! passes it as `consent` (or `audit.consent.token`) on the privileged span.
//!
//! With verification keys configured (the layer's builder, the
//! collector's `[consent] keys_file`), a dangerous action is accepted only
//! when [`check_action`] finds the token signed by one of them and matching
//! the row: same owner, agent, action and target, the row's scopes among
//! the token's, the action's start time within `iat..=exp`, the token no
//! longer-lived than [`MAX_LIFETIME_SECS`], and its `jti` used by no other
//! event ([`ReplayGuard`]). The row then stores the consent id, that it
//! was verified, by which key, and the approving human (`sub`).
//! Without keys nothing is verified and the row says so
//! (`consent_verified` false); a dangerous action needs a consent id or a
//! token, as before.
//!
//! This is the one definition: the layer checks with it when a span
//! closes, the collector again for every record it receives.

mod jws;
mod keys_file;
mod replay;

pub use jws::{looks_like_jws, unverified_claims, ConsentKeys, Issuer, ALG};
pub use keys_file::KeysFile;
pub use replay::{ReplayGuard, DEFAULT_CAPACITY, DEFAULT_GRACE_SECS};

use serde::{Deserialize, Serialize};

use crate::problem::{Problem, Rejection};
use crate::record::{AuditRecord, Draft};
use crate::rules::Rules;

/// Longest a consent token may hold (`exp - iat`), seconds: consent is for
/// one action about to happen, and the replay memory is sized by it.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// The claims of a consent token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The owner: the accountable human who approved.
    pub sub: String,
    /// The agent the consent is for; absent for a human's own action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// The action consented to.
    pub action: String,
    /// Its target, if the action has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Scopes the action may use.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Valid until, seconds since the epoch.
    pub exp: i64,
    /// The consent id.
    pub jti: String,
}

impl Claims {
    /// Consent `jti` of `owner` to `action`, issued at `iat` (seconds since
    /// the epoch) and holding for `lifetime_secs`; no agent, target or
    /// scopes until added.
    pub fn new(
        owner: impl Into<String>,
        action: impl Into<String>,
        jti: impl Into<String>,
        iat: i64,
        lifetime_secs: i64,
    ) -> Claims {
        Claims {
            sub: owner.into(),
            act: None,
            action: action.into(),
            target: None,
            scopes: Vec::new(),
            iat,
            exp: iat.saturating_add(lifetime_secs),
            jti: jti.into(),
        }
    }

    /// For this agent's action.
    pub fn agent(mut self, agent_id: impl Into<String>) -> Claims {
        self.act = Some(Act {
            sub: agent_id.into(),
        });
        self
    }

    /// On this target.
    pub fn target(mut self, target: impl Into<String>) -> Claims {
        self.target = Some(target.into());
        self
    }

    /// With these scopes.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Claims {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// RFC 8693's `act` claim: who acts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    /// The agent id.
    pub sub: String,
}

/// Why a consent token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The verification keys could not be read.
    #[error("consent keys: {0}")]
    Keys(String),
    /// No token where one is required.
    #[error(
        "no signed consent token (a consent id alone cannot be verified): pass the token \
         the approval service issued as `consent` or `audit.consent.token`"
    )]
    NoToken,
    /// Not a well-formed EdDSA compact JWS.
    #[error("token malformed: {0}")]
    Malformed(String),
    /// Signed with a key id that is not configured.
    #[error("token signed with key {0:?}, which is not a configured consent key")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("token signature does not verify under key {0:?}")]
    BadSignature(String),
    /// A claim names another owner, agent, action, target or consent id.
    #[error("token is for {claim} {token:?}, the action's is {row:?}")]
    Mismatch {
        /// Which claim.
        claim: &'static str,
        /// The token's value.
        token: String,
        /// The row's value.
        row: String,
    },
    /// The row uses a scope the token does not grant.
    #[error("scope {0:?} is not among the token's scopes")]
    Scope(String),
    /// The action happened outside `iat..=exp`.
    #[error("action at {at} s is outside the token's iat..exp ({iat}..{exp})")]
    OutsideWindow {
        /// The action's start, seconds (rounded down).
        at: i64,
        /// Issued at.
        iat: i64,
        /// Valid until.
        exp: i64,
    },
    /// `exp - iat` is negative or longer than [`MAX_LIFETIME_SECS`].
    #[error("token holds for {0} s; at most {MAX_LIFETIME_SECS} are accepted")]
    Lifetime(i64),
    /// The consent id was already used by another event.
    #[error("consent {jti:?} was already used by event {by}")]
    Replayed {
        /// The consent id.
        jti: String,
        /// The event that used it.
        by: String,
    },
    /// Expired longer ago than the replay memory holds.
    #[error("consent {0:?} expired too long ago to be checked for reuse")]
    TooOld(String),
    /// The replay memory is full of live consents.
    #[error("{0} live consents already held: refused rather than unchecked for reuse")]
    ReplayFull(usize),
}

/// What [`check_action`] verifies with.
#[derive(Clone, Copy, Debug)]
pub struct Verifier<'a> {
    /// The configured public keys.
    pub keys: &'a ConsentKeys,
    /// Used consent ids; `None` checks without using the consent (a
    /// pre-check before the action, whose record is checked again).
    pub replay: Option<&'a ReplayGuard>,
    /// Now, ns since the epoch (replay memory expiry).
    pub now_ns: i64,
}

/// What a verified token established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The consent id (`jti`).
    pub jti: String,
    /// The key that verified it.
    pub kid: String,
    /// The human who approved (`sub`).
    pub approver: String,
}

/// [`Rules::check_with`], with consent: a token given as the consent id
/// is moved to `consent_token`; with a [`Verifier`], a dangerous action's
/// token must verify and match the record (module docs), and the record
/// then says who approved and which key verified it. Without one, a
/// token's `jti` fills a missing consent id, unverified.
pub fn check_action(
    rules: &Rules,
    mut d: Draft,
    found: Vec<Problem>,
    verifier: Option<Verifier<'_>>,
) -> Result<AuditRecord, Rejection> {
    if d.consent_token.is_none() && d.consent_id.as_deref().is_some_and(looks_like_jws) {
        d.consent_token = d.consent_id.take();
    }
    let dangerous = d.dangerous
        || d.action
            .as_deref()
            .is_some_and(|a| rules.is_dangerous_action(a));
    let Some(v) = verifier.filter(|_| dangerous) else {
        if d.consent_id.is_none() {
            let token = d.consent_token.as_deref().filter(|t| looks_like_jws(t));
            d.consent_id = token.and_then(|t| unverified_claims(t).ok()).map(|c| c.jti);
        }
        return rules.check_with(d, found);
    };
    let draft = d.clone();
    let mut record = rules.check_with(d, found)?;
    match verify_record(&record, v) {
        Ok(ok) => {
            record.consent_id = Some(ok.jti);
            record.consent_verified = true;
            record.consent_key_id = Some(ok.kid);
            record.consent_approver = Some(ok.approver);
            Ok(record)
        }
        Err(e) => Err(Rejection {
            problems: vec![Problem::ConsentNotVerified(e.to_string())],
            draft: Box::new(draft),
        }),
    }
}

/// Checks `r`'s token against the keys, the record and the replay memory.
pub fn verify_record(r: &AuditRecord, v: Verifier<'_>) -> Result<Verified, ConsentError> {
    let token = r.consent_token.as_deref().ok_or(ConsentError::NoToken)?;
    let (c, kid) = v.keys.verify(token)?;
    let same = |claim: &'static str, token: Option<&str>, row: Option<&str>| {
        if token == row {
            Ok(())
        } else {
            Err(ConsentError::Mismatch {
                claim,
                token: token.unwrap_or("(none)").to_owned(),
                row: row.unwrap_or("(none)").to_owned(),
            })
        }
    };
    same("owner", Some(&c.sub), Some(&r.owner_id))?;
    same(
        "agent",
        c.act.as_ref().map(|a| a.sub.as_str()),
        r.agent_id.as_deref(),
    )?;
    same("action", Some(&c.action), Some(&r.action))?;
    same("target", c.target.as_deref(), r.target.as_deref())?;
    if let Some(id) = r.consent_id.as_deref() {
        same("consent id", Some(&c.jti), Some(id))?;
    }
    if let Some(s) = r.scopes.iter().find(|s| !c.scopes.contains(s)) {
        return Err(ConsentError::Scope(s.clone()));
    }
    let lifetime = c.exp.saturating_sub(c.iat);
    if !(0..=MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(ConsentError::Lifetime(lifetime));
    }
    const NS: i64 = 1_000_000_000;
    let at = r.start_time_ns;
    if at < c.iat.saturating_mul(NS) || at > c.exp.saturating_mul(NS) {
        return Err(ConsentError::OutsideWindow {
            at: at.div_euclid(NS),
            iat: c.iat,
            exp: c.exp,
        });
    }
    if let Some(replay) = v.replay {
        replay.claim(&c.jti, &r.event_id, c.exp, v.now_ns.div_euclid(NS))?;
    }
    Ok(Verified {
        jti: c.jti,
        kid,
        approver: c.sub,
    })
}

#[cfg(test)]
mod tests;
