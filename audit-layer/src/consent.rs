//! Consent you can verify: the approval service signs a token, the layer
//! and the collector check it against the action.
//!
//! The service where the human approves holds an [`Issuer`] and hands the
//! agent a token for one action; the agent passes it as `consent` on the
//! privileged span (or to [`gate`](crate::gate)); a layer built with
//! [`consent_keys`](crate::AuditLayerBuilder::consent_keys) accepts the
//! action only if the token verifies and matches it (owner, agent, action,
//! target, scopes, time, used once). The rules are
//! [`audit_schema::consent`]'s, the same the collector applies.
//!
//! ```
//! use audit_layer::consent::{Claims, ConsentKeys, Issuer};
//! let issuer = Issuer::from_seed("consent-2026", &[7; 32]); // the approval service's key
//! let claims = Claims::new("usr_alice", "payments.transfer", "cns_1", 1_764_000_000, 300);
//! let token = issuer.issue(&claims.agent("agt_7f3").target("acct_42"));
//! let keys = ConsentKeys::from_jwks(issuer.jwks().as_bytes())?; // what verifiers are given
//! # assert_eq!(keys.verify(&token)?.1, "consent-2026");
//! # Ok::<(), audit_layer::consent::ConsentError>(())
//! ```
//!
//! Without keys nothing is verified and the row says so
//! (`consent_verified` is false); the token is still stored, so that an
//! auditor holding the public key can check it later with any JOSE library.

pub use audit_schema::consent::{
    Act, Claims, ConsentError, ConsentKeys, Issuer, ReplayGuard, MAX_LIFETIME_SECS,
};

/// A new issuer with a random key, e.g. for a test or a first setup; keep
/// its seed (the service's private key) where the service can read it.
pub fn generate(kid: impl Into<String>) -> Result<(Issuer, [u8; 32]), getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok((Issuer::from_seed(kid, &seed), seed))
}
