//! Reloading files a running collector serves from (the TLS files, the
//! tokens file), like the OpenTelemetry Collector's `reload_interval` and
//! Vault's SIGHUP: every interval, and whenever asked (SIGHUP), a
//! [`Source`]'s files are read again; when their bytes changed, what they
//! configure is rebuilt and swapped into its [`Live`] holders, read by the
//! next handshake or request.
//!
//! A reload whose files are unusable changes nothing: the previous
//! configuration stays in use, the error is logged and counted. The same bad
//! files are not retried (nor counted again) on every tick, only once they
//! change again or on SIGHUP. Changes are found by hashing the bytes (not
//! mtimes: Kubernetes secret volumes swap symlinks, and mtime granularity
//! can hide a quick rewrite).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;

/// A value swapped whole by a reload and read, as it is at that moment, by
/// each handshake or request.
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Live").field(&self.current()).finish()
    }
}

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: impl Into<Arc<T>>) -> Live<T> {
        Live(Arc::new(RwLock::new(value.into())))
    }

    /// The value in use now.
    pub fn current(&self) -> Arc<T> {
        // The lock only guards swapping an `Arc`: a panic while holding it
        // cannot leave a half-written value, so poisoning is ignored.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `value` in use for every later [`Live::current`].
    pub fn replace(&self, value: impl Into<Arc<T>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value.into();
    }
}

/// Files that configure something the collector serves with.
pub trait Source: Send + 'static {
    /// The files' bytes, read once per check.
    type Files;
    /// Why they cannot be read or used.
    type Error: std::fmt::Display;
    /// What they are, for the logs ("TLS files", "tokens file").
    const WHAT: &'static str;

    /// Reads the files now; `None` when there is nothing to read.
    fn read(&self) -> Result<Option<Self::Files>, Self::Error>;

    /// SHA-256 of exactly the bytes `read` returned.
    fn digest(files: &Self::Files) -> [u8; 32];

    /// Builds from `files` and swaps the result in; on error nothing changes.
    fn apply(&mut self, files: &Self::Files) -> Result<(), Self::Error>;

    /// The counters of reloads that took and of reloads refused.
    fn counters(metrics: &Metrics) -> (&AtomicU64, &AtomicU64);
}

/// Checks one [`Source`] for changes and applies them.
#[derive(Debug)]
pub struct Watcher<S> {
    source: S,
    every: Duration,
    metrics: Arc<Metrics>,
    /// Digest of the files in use.
    in_use: [u8; 32],
    /// Digest of the files last looked at (or of why they could not be
    /// read), so that unchanged bad files are not reported every tick.
    last_seen: [u8; 32],
}

impl<S: Source> Watcher<S> {
    /// Watches `source`, already serving from files of digest `in_use`,
    /// every `every` (never when zero: only when asked).
    pub fn new(source: S, in_use: [u8; 32], every: Duration, metrics: Arc<Metrics>) -> Self {
        Watcher {
            source,
            every,
            metrics,
            in_use,
            last_seen: in_use,
        }
    }

    /// What is watched.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// One check. `forced` (SIGHUP) rebuilds even unchanged files. Returns
    /// whether a new configuration is in use.
    pub fn check(&mut self, forced: bool) -> bool {
        let files = self.source.read();
        let seen = match &files {
            Ok(Some(f)) => S::digest(f),
            Ok(None) => return false,
            Err(e) => Sha256::digest(e.to_string().as_bytes()).into(),
        };
        let unchanged = seen == self.last_seen || seen == self.in_use;
        self.last_seen = seen;
        if unchanged && !forced {
            return false;
        }
        let (reloads, failures) = S::counters(&self.metrics);
        match files.and_then(|f| f.map(|f| self.source.apply(&f)).transpose()) {
            Ok(Some(())) => {
                self.in_use = seen;
                Metrics::add(reloads, 1);
                tracing::info!(what = S::WHAT, "reloaded: in use from now on");
                true
            }
            Ok(None) => false,
            Err(e) => {
                Metrics::add(failures, 1);
                tracing::error!(what = S::WHAT, error = %e, "reload failed: the previous ones stay in use");
                false
            }
        }
    }

    /// Checks every interval (if not 0) and whenever `requested` is
    /// notified, until `stopped` turns true.
    pub async fn run(self, requested: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
        let every = self.every;
        let mut ticks = (!every.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut watcher = self;
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let forced = tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = tick => false,
                _ = requested.notified() => true,
            };
            // File reads may block (a slow network mount): off the runtime.
            let checked = tokio::task::spawn_blocking(move || {
                watcher.check(forced);
                watcher
            });
            watcher = match checked.await {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(what = S::WHAT, error = %e, "reload panicked: no longer reloaded");
                    return;
                }
            };
        }
    }
}
