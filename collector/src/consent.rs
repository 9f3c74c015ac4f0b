//! Consent verification at the collector (`[consent]`): the public keys a
//! dangerous action's consent token must verify under, reloaded like the
//! TLS files (see [`crate::reload`]; the file itself is
//! `audit_schema::consent::KeysFile`, which the layer reloads too), and the
//! consents already used.
//!
//! The checks are `audit_schema::consent`'s, the ones the layer applies:
//! a record from any client (a raw OTLP one included) is refused, with the
//! reason, unless its token verifies and matches it. The row's
//! `consent_verified`, `consent_key_id` and `consent_approver` are this
//! collector's findings; a client cannot set them. Without `keys_file`
//! nothing is verified and every row says so.
//!
//! The replay memory is this process's: a consent used before a restart
//! is not remembered after it (the layer that used it still refuses a
//! second use).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use audit_schema::consent::{
    ConsentError, ConsentKeys, KeysFile, ReplayGuard, Verifier, DEFAULT_CAPACITY,
};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::reload::{Counted, Live, Watcher};

/// The `[consent]` settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentConfig {
    /// JWK Set of the Ed25519 keys consent tokens are signed with; unset,
    /// consent is not verified.
    pub keys_file: Option<PathBuf>,
    /// Seconds between checks of `keys_file` for changes (SIGHUP also
    /// reloads it); 0: only on SIGHUP.
    pub reload_interval_secs: u64,
    /// Consents remembered at most for replay detection; when full of
    /// live ones, new consents are refused.
    pub max_remembered: usize,
}

impl Default for ConsentConfig {
    /// [`Config::default`](crate::config::Config::default)'s.
    fn default() -> Self {
        ConsentConfig {
            keys_file: None,
            reload_interval_secs: 60,
            max_remembered: DEFAULT_CAPACITY,
        }
    }
}

/// What the receivers verify consent with.
#[derive(Debug)]
pub struct ConsentCheck {
    keys: Live<ConsentKeys>,
    replay: ReplayGuard,
}

impl ConsentCheck {
    /// Verifies with the keys `keys` holds at each check, remembering up
    /// to `capacity` consents.
    fn new(keys: Live<ConsentKeys>, capacity: usize) -> ConsentCheck {
        ConsentCheck {
            keys,
            replay: ReplayGuard::new(capacity, audit_schema::consent::DEFAULT_GRACE_SECS),
        }
    }

    /// Checks `d` with the rules and, for a dangerous action, its consent.
    pub fn check(
        &self,
        rules: &audit_schema::Rules,
        d: audit_schema::Draft,
        found: Vec<audit_schema::Problem>,
    ) -> Result<audit_schema::AuditRecord, audit_schema::Rejection> {
        let keys = self.keys.current();
        let v = Verifier {
            keys: &keys,
            replay: Some(&self.replay),
            now_ns: crate::now_ns(),
        };
        audit_schema::consent::check_action(rules, d, found, Some(v))
    }
}

/// The keys file and what reloads it.
pub type ConsentReloader = Watcher<KeysFile>;

impl ConsentConfig {
    /// Reads the keys file (if set): the check the receivers use, and its
    /// reloader. A file that does not load stops the start.
    pub fn load(
        &self,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(Arc<ConsentCheck>, ConsentReloader)>, ConsentError> {
        let Some(path) = &self.keys_file else {
            return Ok(None);
        };
        let (file, digest) = KeysFile::open(path)?;
        let keys = file.keys().clone();
        tracing::info!(path = %path.display(), kids = ?keys.current().kids().collect::<Vec<_>>(), "consent keys loaded: dangerous actions need a verified consent token");
        let check = Arc::new(ConsentCheck::new(keys, self.max_remembered));
        let every = Duration::from_secs(self.reload_interval_secs);
        let reloader = Watcher::new(file, digest, every, metrics);
        Ok(Some((check, reloader)))
    }
}

impl Counted for KeysFile {
    fn counters(metrics: &Metrics) -> (&AtomicU64, &AtomicU64) {
        (
            &metrics.consent_keys_reloads_total,
            &metrics.consent_keys_reload_failures_total,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_schema::consent::{Claims, Issuer};

    #[test]
    fn a_rotated_keys_file_is_swapped_in_and_a_bad_one_keeps_the_old_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("consent.jwks");
        let old = Issuer::from_seed("k-old", &[1; 32]);
        let new = Issuer::from_seed("k-new", &[2; 32]);
        std::fs::write(&path, old.jwks()).expect("write");
        let cfg = ConsentConfig {
            keys_file: Some(path.clone()),
            reload_interval_secs: 0,
            ..ConsentConfig::default()
        };
        let (check, mut reloader) = cfg
            .load(Arc::new(Metrics::default()))
            .expect("loads")
            .expect("configured");
        let claims = Claims::new("usr", "a", "j", 0, 1);
        let verifies = |i: &Issuer| check.keys.current().verify(&i.issue(&claims)).is_ok();
        assert!(verifies(&old) && !verifies(&new));
        std::fs::write(&path, new.jwks()).expect("write");
        assert!(reloader.check(false));
        assert!(!verifies(&old) && verifies(&new));
        std::fs::write(&path, "{\"keys\": []}").expect("write");
        assert!(!reloader.check(false), "an empty set is refused");
        assert!(verifies(&new), "the previous keys stay in use");
    }
}
