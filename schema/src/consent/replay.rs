//! Each consent is used once: the ids of consents already used, with
//! memory bounded by a capacity instead of growing with traffic.
//!
//! A consent id is remembered until its token has been expired for the
//! grace period; a token expired longer than that is refused outright, so
//! that forgetting an id can never let it be used again. A record sent
//! twice (a retry, same `event_id`) is the same use, not a replay. When the
//! capacity is reached and nothing has expired, new consents are refused
//! (named in the reason) rather than accepted unchecked.

use std::collections::HashMap;
use std::sync::Mutex;

use super::ConsentError;

/// Consents held at most by default (about 100 bytes each).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Seconds a consent is remembered after its `exp` by default: records may
/// arrive that late (a client's spool holds them while the collector is
/// down), and the collector's deduplication window is as long.
pub const DEFAULT_GRACE_SECS: i64 = 24 * 3600;

/// The consent ids in use, each with its token's `exp` and the event it
/// was used by.
#[derive(Debug)]
pub struct ReplayGuard {
    used: Mutex<HashMap<String, (i64, String)>>,
    capacity: usize,
    grace_secs: i64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_CAPACITY, DEFAULT_GRACE_SECS)
    }
}

impl ReplayGuard {
    /// Holds at most `capacity` ids, each until `grace_secs` after its `exp`.
    pub fn new(capacity: usize, grace_secs: i64) -> ReplayGuard {
        ReplayGuard {
            used: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            grace_secs: grace_secs.max(0),
        }
    }

    /// Records that consent `jti` (valid until `exp_secs`) is used by
    /// `event_id`, or says why it may not be.
    pub fn claim(
        &self,
        jti: &str,
        event_id: &str,
        exp_secs: i64,
        now_secs: i64,
    ) -> Result<(), ConsentError> {
        if exp_secs.saturating_add(self.grace_secs) < now_secs {
            return Err(ConsentError::TooOld(jti.to_owned()));
        }
        // A panic while holding the lock leaves at worst one id unrecorded
        // or recorded: the map stays usable.
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, by)) = used.get(jti) {
            return if by == event_id {
                Ok(())
            } else {
                Err(ConsentError::Replayed {
                    jti: jti.to_owned(),
                    by: by.clone(),
                })
            };
        }
        if used.len() >= self.capacity {
            let grace = self.grace_secs;
            used.retain(|_, (exp, _)| exp.saturating_add(grace) >= now_secs);
            if used.len() >= self.capacity {
                return Err(ConsentError::ReplayFull(self.capacity));
            }
        }
        used.insert(jti.to_owned(), (exp_secs, event_id.to_owned()));
        Ok(())
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consent_is_used_once_a_retry_is_not_a_second_use() {
        let g = ReplayGuard::new(10, 60);
        assert_eq!(g.claim("c1", "e1", 1_000, 900), Ok(()));
        assert_eq!(g.claim("c1", "e1", 1_000, 901), Ok(()), "same event");
        assert!(matches!(
            g.claim("c1", "e2", 1_000, 902),
            Err(ConsentError::Replayed { by, .. }) if by == "e1"
        ));
    }

    #[test]
    fn memory_is_bounded_and_full_means_refused_not_unchecked() {
        let g = ReplayGuard::new(2, 10);
        g.claim("a", "e", 100, 50).expect("a");
        g.claim("b", "e", 200, 50).expect("b");
        assert_eq!(g.claim("c", "e", 300, 50), Err(ConsentError::ReplayFull(2)));
        // At 111 `a` is past exp + grace: forgotten, and its token too old.
        g.claim("c", "e", 300, 111).expect("room after a expired");
        assert_eq!(g.len(), 2);
        assert_eq!(
            g.claim("a", "other", 100, 111),
            Err(ConsentError::TooOld("a".into())),
            "a forgotten id cannot come back"
        );
    }
}
