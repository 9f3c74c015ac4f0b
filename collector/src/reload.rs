//! Reloading files a running collector serves from (the TLS files, the
//! tokens file, the consent keys file), like the OpenTelemetry Collector's
//! `reload_interval` and Vault's SIGHUP: every interval, and whenever asked
//! (SIGHUP), a [`Source`]'s files are read again; when their bytes changed,
//! what they configure is rebuilt and swapped into its [`Live`] holders,
//! read by the next handshake or request.
//!
//! A reload whose files are unusable changes nothing: the previous
//! configuration stays in use, the error is logged and counted. The same bad
//! files are not retried (nor counted again) on every tick, only once they
//! change again or on SIGHUP. The detection of changes and the swapping are
//! `audit_durable::reload`'s, which the layer uses for its consent keys
//! file too; the schedule, the logs and the counters are the collector's.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use audit_durable::reload::Checked;
pub use audit_durable::reload::{Live, Source};
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;

/// A [`Source`] whose reloads the collector counts.
pub trait Counted: Source {
    /// The counters of reloads that took and of reloads refused.
    fn counters(metrics: &Metrics) -> (&AtomicU64, &AtomicU64);
}

/// Checks one [`Source`] for changes on a schedule, applies them, logs and
/// counts.
#[derive(Debug)]
pub struct Watcher<S> {
    inner: audit_durable::reload::Watcher<S>,
    every: Duration,
    metrics: Arc<Metrics>,
}

impl<S: Counted> Watcher<S> {
    /// Watches `source`, already serving from files of digest `in_use`,
    /// every `every` (never when zero: only when asked).
    pub fn new(source: S, in_use: [u8; 32], every: Duration, metrics: Arc<Metrics>) -> Self {
        Watcher {
            inner: audit_durable::reload::Watcher::new(source, in_use),
            every,
            metrics,
        }
    }

    /// What is watched.
    pub fn source(&self) -> &S {
        self.inner.source()
    }

    /// One check. `forced` (SIGHUP) rebuilds even unchanged files. Returns
    /// whether a new configuration is in use.
    pub fn check(&mut self, forced: bool) -> bool {
        let (reloads, failures) = S::counters(&self.metrics);
        match self.inner.check(forced) {
            Checked::Unchanged => false,
            Checked::Reloaded => {
                Metrics::add(reloads, 1);
                tracing::info!(what = S::WHAT, "reloaded: in use from now on");
                true
            }
            Checked::Failed(e) => {
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
