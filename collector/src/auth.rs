//! Bearer-token authentication of OTLP clients.
//!
//! Each token belongs to a named client; the name is written into every row
//! that client's requests store (attribute [`CLIENT_ATTR`]), so an analyst can
//! tell which workload's credentials delivered a record. Tokens are kept only
//! as SHA-256 digests and looked up by digest, so neither the lookup's timing
//! nor a memory dump reveals a token.
//!
//! Token list format (file or `AUDIT_COLLECTOR_TOKENS`): one `name:token` per
//! line or comma-separated; `#` starts a comment line.
//!
//! ```
//! use audit_collector::auth::Tokens;
//! let tokens = Tokens::parse("billing:s3cr3t-billing-token, ops:another-long-token").unwrap();
//! assert_eq!(tokens.check(Some("Bearer s3cr3t-billing-token")).unwrap(), "billing");
//! assert!(tokens.check(Some("Bearer wrong")).is_err());
//! assert!(tokens.check(None).is_err());
//! ```

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Attribute set on every stored row to the name of the authenticated client
/// (overwriting any value the client sent, so it cannot be forged).
pub const CLIENT_ATTR: &str = "audit.collector.client";

/// Shortest token accepted: a guessable token is no authentication.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token list is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An entry is malformed.
    #[error("token entry {entry}: {reason}")]
    Entry {
        /// 1-based position of the entry.
        entry: usize,
        /// What is wrong (never the token itself).
        reason: String,
    },
    /// No entries.
    #[error("token list is empty")]
    Empty,
}

/// Why a request was not authenticated. The message never echoes the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `authorization` header / metadata.
    #[error("missing `authorization: Bearer <token>`")]
    Missing,
    /// A header that is not a bearer token.
    #[error("`authorization` is not a bearer token")]
    NotBearer,
    /// A bearer token that is not on the list.
    #[error("unknown bearer token")]
    Unknown,
}

/// The accepted tokens and the client name each stands for.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.by_digest.values().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Tokens").field("clients", &names).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `name` may name a client: 1-64 of `A-Z a-z 0-9 _ . -`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Tokens {
    /// Parses `name:token` entries separated by newlines or commas.
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut by_digest = HashMap::new();
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let bad = |reason: String| TokensError::Entry {
                entry: i + 1,
                reason,
            };
            let (name, token) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected `name:token`".into()))?;
            let (name, token) = (name.trim(), token.trim());
            if !valid_name(name) {
                return Err(bad(format!(
                    "client name {name:?}: use 1-64 of A-Z a-z 0-9 _ . -"
                )));
            }
            if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(bad(format!(
                    "token of {name:?} must be at least {MIN_TOKEN_LEN} visible ASCII characters"
                )));
            }
            if by_digest.insert(digest(token), name.to_owned()).is_some() {
                return Err(bad(format!("token of {name:?} is listed twice")));
            }
        }
        if by_digest.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(Tokens { by_digest })
    }

    /// Reads a token list from a file.
    pub fn from_file(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Tokens::parse(&text)
    }

    /// The client name for an `authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<&str, AuthFailure> {
        let value = authorization.ok_or(AuthFailure::Missing)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthFailure::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::NotBearer);
        }
        self.by_digest
            .get(&digest(token.trim()))
            .map(String::as_str)
            .ok_or(AuthFailure::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_commas_and_refuses_weak_or_malformed_entries() {
        let t = Tokens::parse(
            "# clients\nbilling:aaaaaaaaaaaaaaaa\nops:bbbbbbbbbbbbbbbb, ci:cccccccccccccccc\n",
        )
        .unwrap();
        assert_eq!(t.check(Some("bearer cccccccccccccccc")), Ok("ci"));
        assert_eq!(t.check(Some("Bearer aaaaaaaaaaaaaaaa")), Ok("billing"));
        assert_eq!(
            t.check(Some("Basic aaaaaaaaaaaaaaaa")),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(
            t.check(Some("aaaaaaaaaaaaaaaa")),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(
            t.check(Some("Bearer aaaaaaaaaaaaaaab")),
            Err(AuthFailure::Unknown)
        );
        assert_eq!(t.check(None), Err(AuthFailure::Missing));
        assert!(matches!(
            Tokens::parse("x:short"),
            Err(TokensError::Entry { entry: 1, .. })
        ));
        assert!(matches!(
            Tokens::parse("no-colon-here-at-all"),
            Err(TokensError::Entry { .. })
        ));
        assert!(matches!(
            Tokens::parse("../x:aaaaaaaaaaaaaaaa"),
            Err(TokensError::Entry { .. })
        ));
        assert!(matches!(
            Tokens::parse("a:aaaaaaaaaaaaaaaa,b:aaaaaaaaaaaaaaaa"),
            Err(TokensError::Entry { entry: 2, .. })
        ));
        assert!(matches!(
            Tokens::parse("# nothing\n"),
            Err(TokensError::Empty)
        ));
        let shown = format!("{t:?}");
        assert!(!shown.contains("aaaa"), "{shown}");
    }
}
