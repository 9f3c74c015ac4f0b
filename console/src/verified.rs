//! `verify` for the trail-health view, run off the request: it reads and
//! hashes every file (tens of seconds on ten million rows), so a page shows
//! the latest finished run, with when it ran, and starts a new run when the
//! dataset it sees now differs from the one that run saw, or the result is
//! older than [`REVERIFY_AFTER`]. What a page sees is a [`fingerprint`]:
//! each chain's length and head, and every data file's name, size, time
//! and entity tag as the store lists them (one listing, no file read), so a
//! seal, a cut chain or a file rewritten in place starts a run at the next
//! page. One run at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use audit_collector::manifest::Entry;
use audit_collector::store::object_store::{self, ObjectMeta};
use audit_collector::store::Location;
use audit_collector::verify::Report;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

/// A result is verified again after this long even with unchanged heads.
pub const REVERIFY_AFTER: Duration = Duration::from_secs(600);

/// What a run verified: a digest of [`fingerprint`]'s inputs.
pub type Heads = String;

/// The dataset as a page sees it: each chain's length and head, and each
/// data file's name, size, last modification and entity tag.
pub async fn fingerprint(
    loc: &Location,
    chains: &BTreeMap<String, Vec<Entry>>,
) -> Result<Heads, String> {
    let mut h = Sha256::new();
    for (id, entries) in chains {
        let head = entries.last().map_or("", |e| e.hash.as_str());
        h.update(format!("chain {id} {} {head}\n", entries.len()));
    }
    for dir in ["audit", "violations"] {
        let listed: Result<Vec<ObjectMeta>, _> =
            loc.store.list(Some(&loc.path(dir))).try_collect().await;
        let mut metas = match listed {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(format!("{}/{dir}: {e}", loc.url)),
        };
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        for m in metas {
            h.update(format!(
                "file {} {} {} {}\n",
                m.location,
                m.size,
                m.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                m.e_tag.unwrap_or_default()
            ));
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// One finished run.
#[derive(Debug)]
pub struct Verified {
    /// The dataset's fingerprint when it started.
    pub heads: Heads,
    /// When it started.
    pub at: DateTime<Utc>,
    /// How long it took.
    pub took: Duration,
    /// `verify`'s report, or why it could not run.
    pub report: Result<Report, String>,
    started: Instant,
}

/// What the page has to show.
pub struct Latest {
    /// The latest finished run, if any.
    pub run: Option<Arc<Verified>>,
    /// Since when a run has been under way, if one is.
    pub running: Option<DateTime<Utc>>,
}

/// Runs `verify` in the background and keeps the latest result.
pub struct Verifier {
    verify: Box<dyn Fn() -> Result<Report, String> + Send + Sync>,
    latest: RwLock<Option<Arc<Verified>>>,
    running: RwLock<Option<DateTime<Utc>>>,
    busy: AtomicBool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that runs `verify` (blocking) on a thread of its own.
    pub fn new(verify: impl Fn() -> Result<Report, String> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Verifier {
            verify: Box::new(verify),
            latest: RwLock::new(None),
            running: RwLock::new(None),
            busy: AtomicBool::new(false),
        })
    }

    /// The latest result for a page that sees `heads` now; starts a run
    /// when that result is missing, stale or for another dataset.
    pub fn latest(self: &Arc<Self>, heads: &Heads) -> Latest {
        let run = self
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let current = run
            .as_ref()
            .is_some_and(|r| &r.heads == heads && r.started.elapsed() < REVERIFY_AFTER);
        if !current {
            self.start(heads.clone());
        }
        Latest {
            run,
            running: *self.running.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn start(self: &Arc<Self>, heads: Heads) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let at = Utc::now();
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = Some(at);
        let me = self.clone();
        // A thread of its own: the store's verify runs its own runtime.
        let spawned = std::thread::Builder::new()
            .name("console-verify".into())
            .spawn(move || {
                let started = Instant::now();
                let report = (me.verify)();
                let run = Verified {
                    heads,
                    at,
                    took: started.elapsed(),
                    report,
                    started,
                };
                *me.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(run));
                *me.running.write().unwrap_or_else(|e| e.into_inner()) = None;
                me.busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start verify");
            *self.running.write().unwrap_or_else(|e| e.into_inner()) = None;
            self.busy.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn wait_idle(v: &Arc<Verifier>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while v.busy.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "verify never finished");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_once_per_change_of_the_dataset() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        // Each run waits for the test to let it finish, so "under way" is
        // seen whatever the machine's speed.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate);
        let v = Verifier::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = gate.lock().map(|g| g.recv());
            Ok(Report::default())
        });
        let a: Heads = "a".into();
        let first = v.latest(&a);
        assert!(first.run.is_none() && first.running.is_some());
        release.send(()).expect("run waiting");
        wait_idle(&v);
        let again = v.latest(&a);
        assert!(again.run.is_some_and(|r| r.heads == a) && again.running.is_none());
        assert_eq!(runs.load(Ordering::SeqCst), 1, "same dataset: no new run");
        let b: Heads = "b".into();
        let changed = v.latest(&b);
        assert!(
            changed.run.is_some_and(|r| r.heads == a),
            "the old result meanwhile"
        );
        assert!(changed.running.is_some(), "a new run is under way");
        release.send(()).expect("run waiting");
        wait_idle(&v);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(v.latest(&b).run.is_some_and(|r| r.heads == b));
    }
}
