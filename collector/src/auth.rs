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
//! A tokens file is read again every `auth.reload_interval_secs` when its
//! bytes changed, and on SIGHUP ([`TokensFile`], see [`crate::reload`]):
//! requests after that are checked against the new list, so a token is
//! revoked or rotated without a restart. A file that does not load keeps
//! the previous list. Tokens given inline (`AUDIT_COLLECTOR_TOKENS`) are
//! not reloaded: the environment of a running process cannot change.
//!
//! ```
//! use audit_collector::auth::Tokens;
//! let tokens = Tokens::parse("billing:s3cr3t-billing-token, ops:another-long-token").unwrap();
//! assert_eq!(tokens.check(Some("Bearer s3cr3t-billing-token")).unwrap(), "billing");
//! assert!(tokens.check(Some("Bearer wrong")).is_err());
//! assert!(tokens.check(None).is_err());
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::reload::{Counted, Live, Source, Watcher};

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
        Tokens::from_bytes(path, &read_file(path)?)
    }

    fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Tokens, TokensError> {
        let text = std::str::from_utf8(bytes).map_err(|e| TokensError::Read {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Tokens::parse(text)
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

fn read_file(path: &Path) -> Result<Vec<u8>, TokensError> {
    std::fs::read(path).map_err(|source| TokensError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The tokens requests are checked against, as they are at that moment.
pub type LiveTokens = Live<Tokens>;

/// Reloads a tokens file into its [`LiveTokens`].
pub type TokensReloader = Watcher<TokensFile>;

/// The accepted tokens, and what reloads them when they come from a file.
#[derive(Debug)]
pub struct ClientTokens {
    /// What the receivers check each request against.
    pub live: LiveTokens,
    /// `None` for inline tokens, which are never reloaded.
    pub reloader: Option<TokensReloader>,
}

impl ClientTokens {
    /// Tokens given inline: fixed for the life of the process.
    pub fn fixed(tokens: Tokens) -> ClientTokens {
        ClientTokens {
            live: Live::new(tokens),
            reloader: None,
        }
    }

    /// Tokens read from `path` now, and again every `every` (if not zero)
    /// when its bytes changed, or when the reloader is asked to.
    pub fn watch(
        path: &Path,
        every: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<ClientTokens, TokensError> {
        let bytes = read_file(path)?;
        let live = Live::new(Tokens::from_bytes(path, &bytes)?);
        let file = TokensFile {
            path: path.to_owned(),
            live: live.clone(),
        };
        let reloader = Watcher::new(file, TokensFile::digest(&bytes), every, metrics);
        Ok(ClientTokens {
            live,
            reloader: Some(reloader),
        })
    }
}

/// A tokens file and the list in use from it.
#[derive(Debug)]
pub struct TokensFile {
    path: PathBuf,
    live: LiveTokens,
}

impl Source for TokensFile {
    type Files = Vec<u8>;
    type Error = TokensError;
    const WHAT: &'static str = "tokens file";

    fn read(&self) -> Result<Option<Vec<u8>>, TokensError> {
        read_file(&self.path).map(Some)
    }

    fn digest(bytes: &Vec<u8>) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn apply(&mut self, bytes: &Vec<u8>) -> Result<(), TokensError> {
        let tokens = Tokens::from_bytes(&self.path, bytes)?;
        tracing::info!(path = %self.path.display(), clients = tokens.by_digest.len(), "tokens file loaded");
        self.live.replace(tokens);
        Ok(())
    }
}

impl Counted for TokensFile {
    fn counters(metrics: &Metrics) -> (&AtomicU64, &AtomicU64) {
        (
            &metrics.tokens_reloads_total,
            &metrics.tokens_reload_failures_total,
        )
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

    #[test]
    fn a_changed_tokens_file_is_swapped_in_and_a_bad_one_keeps_the_old_list() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "a:aaaaaaaaaaaaaaaa\n").expect("write");
        let metrics = Arc::new(Metrics::default());
        let tokens = ClientTokens::watch(&path, Duration::ZERO, metrics.clone()).expect("load");
        let mut r = tokens.reloader.expect("a file is reloadable");
        let check = |t: &str| {
            let auth = format!("Bearer {t}");
            tokens.live.current().check(Some(&auth)).map(str::to_owned)
        };
        let counts = || {
            (
                metrics.tokens_reloads_total.load(Ordering::Relaxed),
                metrics.tokens_reload_failures_total.load(Ordering::Relaxed),
            )
        };
        assert!(!r.check(false), "unchanged file is not reloaded");
        std::fs::write(&path, "b:bbbbbbbbbbbbbbbb\n").expect("write");
        assert!(r.check(false));
        assert_eq!(check("aaaaaaaaaaaaaaaa"), Err(AuthFailure::Unknown));
        assert_eq!(check("bbbbbbbbbbbbbbbb").as_deref(), Ok("b"));
        for bad in ["b:short\n", "", "# none\n"] {
            std::fs::write(&path, bad).expect("write");
            assert!(!r.check(false), "{bad:?} is refused");
            assert!(!r.check(false), "the same bad file is not retried");
        }
        std::fs::remove_file(&path).expect("rm");
        assert!(!r.check(true), "unreadable: refused even on SIGHUP");
        assert_eq!(counts(), (1, 4));
        assert_eq!(check("bbbbbbbbbbbbbbbb").as_deref(), Ok("b"));
    }
}
