//! The token's encoding: a JWS in compact serialization (RFC 7515) signed
//! with EdDSA over Ed25519 (RFC 8037), and the keys that check it, read
//! from a JWK Set (RFC 7517), so that the issuing service, this crate and
//! any JOSE library agree on both.
//!
//! Hand-assembled over `ed25519-dalek` (already the collector's signature
//! crate) rather than a JOSE crate: the JWT crates either bring a second
//! crypto stack (RSA, P-256, P-384 and a second SHA-2) or aws-lc (cmake),
//! for one algorithm whose compact form is three base64url parts.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{Claims, ConsentError};

/// The only `alg` accepted and issued.
pub const ALG: &str = "EdDSA";

/// The JOSE header of a consent token.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11): this one
    /// understands none, so a token that lists any is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
}

/// Whether `s` has the shape of a compact JWS (three base64url parts).
/// A consent id never has it: ids are single words.
pub fn looks_like_jws(s: &str) -> bool {
    let parts: Vec<&str> = s.trim().split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A consent service's signing key: it issues tokens.
pub struct Issuer {
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("Issuer").field("kid", &self.kid).finish()
    }
}

impl Issuer {
    /// The issuer of key id `kid` from the 32-byte Ed25519 seed.
    pub fn from_seed(kid: impl Into<String>, seed: &[u8; 32]) -> Issuer {
        Issuer {
            kid: kid.into(),
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The key id put in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed token carrying `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = Header {
            alg: ALG.to_owned(),
            kid: Some(self.kid.clone()),
            typ: Some("JWT".to_owned()),
            crit: None,
        };
        // Serializing plain structs of strings and integers cannot fail.
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{h}.{p}");
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// The public key as a JWK Set of one key: what verifiers are given
    /// (the layer's and the collector's consent keys file).
    pub fn jwks(&self) -> String {
        let x = URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes());
        serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": ALG, "kid": self.kid, "x": x}]
        })
        .to_string()
    }
}

/// One key of a JWK Set; fields this verifier does not use are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    kid: Option<String>,
    x: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// The public keys consent tokens are checked against, by key id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

impl ConsentKeys {
    /// Keys from a JWK Set (`{"keys": [{"kty": "OKP", "crv": "Ed25519",
    /// "kid": …, "x": …}]}`). Every key must be an Ed25519 key with a
    /// `kid`; a set with none is refused (it would refuse every token).
    pub fn from_jwks(json: &[u8]) -> Result<ConsentKeys, ConsentError> {
        let set: Jwks =
            serde_json::from_slice(json).map_err(|e| ConsentError::Keys(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (i, k) in set.keys.iter().enumerate() {
            let bad = |why: &str| ConsentError::Keys(format!("key {}: {why}", i + 1));
            if k.kty != "OKP" || k.crv.as_deref() != Some("Ed25519") {
                return Err(bad("not an Ed25519 key (kty OKP, crv Ed25519)"));
            }
            let kid = k.kid.clone().ok_or_else(|| bad("no kid"))?;
            let x = k.x.as_deref().ok_or_else(|| bad("no x"))?;
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(x)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("x is not 32 bytes of base64url"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("x is not a valid key"))?;
            if keys.insert(kid, key).is_some() {
                return Err(bad("kid used twice"));
            }
        }
        if keys.is_empty() {
            return Err(ConsentError::Keys("no keys".into()));
        }
        Ok(ConsentKeys { keys })
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The claims of `token` and the id of the key that signed it, when its
    /// signature verifies under one of these keys.
    pub fn verify(&self, token: &str) -> Result<(Claims, String), ConsentError> {
        let (header, claims, input, sig) = split(token)?;
        if header.alg != ALG {
            return Err(ConsentError::Malformed(format!(
                "alg {:?}; only {ALG} is accepted",
                header.alg
            )));
        }
        if header.crit.is_some() {
            return Err(ConsentError::Malformed(
                "header lists critical extensions".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| ConsentError::Malformed("no kid in the header".into()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| ConsentError::UnknownKey(kid.clone()))?;
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| ConsentError::Malformed("signature is not 64 bytes".into()))?;
        key.verify_strict(input.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| ConsentError::BadSignature(kid.clone()))?;
        Ok((claims, kid))
    }
}

/// The claims of a token without checking its signature: for showing a
/// consent id when no keys are configured, never for deciding.
pub fn unverified_claims(token: &str) -> Result<Claims, ConsentError> {
    split(token).map(|(_, claims, _, _)| claims)
}

fn split(token: &str) -> Result<(Header, Claims, &str, Vec<u8>), ConsentError> {
    let token = token.trim();
    if !looks_like_jws(token) {
        return Err(ConsentError::Malformed(
            "not a compact JWS (header.payload.signature)".into(),
        ));
    }
    let (input, sig) = token
        .rsplit_once('.')
        .ok_or_else(|| ConsentError::Malformed("no signature".into()))?;
    let (h, p) = input
        .split_once('.')
        .ok_or_else(|| ConsentError::Malformed("no payload".into()))?;
    let part = |what: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| ConsentError::Malformed(format!("{what} is not base64url")))
    };
    let header: Header = serde_json::from_slice(&part("header", h)?)
        .map_err(|e| ConsentError::Malformed(format!("header: {e}")))?;
    let claims: Claims = serde_json::from_slice(&part("payload", p)?)
        .map_err(|e| ConsentError::Malformed(format!("claims: {e}")))?;
    Ok((header, claims, input, part("signature", sig)?))
}
