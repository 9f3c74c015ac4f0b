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
//!
//! Keys from a file ([`consent_keys_file`](crate::AuditLayerBuilder::consent_keys_file),
//! `AUDIT_CONSENT_KEYS_FILE`) are reloaded while the application runs, as
//! the collector reloads its keys file: a thread of the layer's reads the
//! file every [`consent_keys_reload_interval`](crate::AuditLayerBuilder::consent_keys_reload_interval)
//! (default [`DEFAULT_RELOAD_INTERVAL`]) and, when its bytes changed, the
//! keys it holds verify from the next check on. A file that does not load
//! (unreadable, not a JWK Set of Ed25519 keys, empty) keeps the keys in
//! use; it is counted in
//! [`consent_keys_reload_failures`](crate::AuditStatus::consent_keys_reload_failures)
//! and said once on stderr. Privileged spans never read the file.
//!
//! The memory of used consents (a `jti` used twice is refused) is this
//! process's, bounded like the collector's and lost at a restart; the
//! collector's, which sees every service's records, is the one that counts.

use std::sync::mpsc;
use std::time::Duration;

use audit_durable::reload::{Checked, Live, Watcher};
use audit_schema::consent::{check_action, KeysFile, Verifier};
use audit_schema::{AuditRecord, Draft, Rejection, Rules};

pub use audit_schema::consent::{
    Act, Claims, ConsentError, ConsentKeys, Issuer, ReplayGuard, MAX_LIFETIME_SECS,
};

use crate::stats::AuditStatus;

/// How often a consent keys file is read for changes by default, as the
/// collector's `[consent] reload_interval_secs`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// A new issuer with a random key, e.g. for a test or a first setup; keep
/// its seed (the service's private key) where the service can read it.
pub fn generate(kid: impl Into<String>) -> Result<(Issuer, [u8; 32]), getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok((Issuer::from_seed(kid, &seed), seed))
}

/// The keys a layer verifies consent with, and the consents it used.
pub(crate) struct Verification {
    keys: Live<ConsentKeys>,
    replay: ReplayGuard,
    /// Dropped with the layer, which ends the reloading thread.
    _reloading: Option<mpsc::Sender<()>>,
}

impl Verification {
    /// Verifies with `keys`, never changed.
    pub fn fixed(keys: ConsentKeys) -> Verification {
        Verification {
            keys: Live::new(keys),
            replay: ReplayGuard::default(),
            _reloading: None,
        }
    }

    /// Verifies with the keys of the file at `path`, read now and then
    /// every `every` (never when zero) on a thread of its own, counted in
    /// `status`.
    pub fn from_file(
        path: &std::path::Path,
        every: Duration,
        status: &AuditStatus,
    ) -> Result<Verification, ConsentError> {
        let (file, digest) = KeysFile::open(path)?;
        let keys = file.keys().clone();
        let reloading = if every.is_zero() {
            None
        } else {
            let watcher = Watcher::new(file, digest);
            Some(spawn_reloader(watcher, every, status.clone()).map_err(|e| {
                ConsentError::Keys(format!(
                    "{}: cannot start the thread that reloads it: {e}",
                    path.display()
                ))
            })?)
        };
        Ok(Verification {
            keys,
            replay: ReplayGuard::default(),
            _reloading: reloading,
        })
    }

    /// The rules and the consent of `draft` under the keys in use now;
    /// `use_it`: remember the consent as used (else a pre-check).
    pub fn check(
        &self,
        rules: &Rules,
        draft: Draft,
        use_it: bool,
        at_ns: i64,
    ) -> Result<AuditRecord, Rejection> {
        let keys = self.keys.current();
        let verifier = Verifier {
            keys: &keys,
            replay: use_it.then_some(&self.replay),
            now_ns: at_ns,
        };
        check_action(rules, draft, Vec::new(), Some(verifier))
    }
}

/// Checks the file every `every` until the returned sender is dropped.
fn spawn_reloader(
    mut watcher: Watcher<KeysFile>,
    every: Duration,
    status: AuditStatus,
) -> std::io::Result<mpsc::Sender<()>> {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("audit-consent-keys".into())
        .spawn(move || {
            // Nothing is ever sent: the sender's drop (the layer's) ends the wait.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                match watcher.check(false) {
                    Checked::Unchanged => {}
                    Checked::Reloaded => status.add_consent_keys_reloads(1),
                    Checked::Failed(e) => {
                        status.add_consent_keys_reload_failures(1);
                        eprintln!("audit-layer: {e}; reload refused, the consent keys in use stay");
                    }
                }
            }
        })?;
    Ok(stop)
}
