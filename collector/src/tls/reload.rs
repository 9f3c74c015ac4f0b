//! Certificate reload, like the OpenTelemetry Collector's `reload_interval`
//! and Vault's SIGHUP: every `reload_interval_secs`, and whenever asked
//! (SIGHUP), the TLS files are read again; when their bytes changed, both
//! listeners' configurations are rebuilt and the next handshakes use them.
//! Connections already open keep their session.
//!
//! A reload whose files are unusable (unreadable, half-written, a key that
//! is not the certificate's, a bad CRL) changes nothing: the previous
//! configuration stays in use, the error is logged and counted in
//! `tls_reload_failures_total`. The same bad files are not retried (nor
//! counted again) on every tick, only once they change again or on SIGHUP.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use super::{load, Loaded, TlsConfig};
use crate::metrics::Metrics;

/// The rustls configuration a listener uses for its next handshake.
#[derive(Clone, Debug)]
pub struct LiveConfig(Arc<RwLock<Arc<ServerConfig>>>);

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Arc<ServerConfig>) -> LiveConfig {
        LiveConfig(Arc::new(RwLock::new(config)))
    }

    /// The configuration in use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        // The lock only guards swapping an `Arc`: a panic while holding it
        // cannot leave a half-written value, so poisoning is ignored.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

/// `tls_crl_next_update_timestamp_seconds`: when the earliest CRL in use
/// expires (0 without CRLs), for an alert before clients are refused.
fn set_crl_gauge(metrics: &Metrics, loaded: &Loaded) {
    let at = loaded
        .crl_next_update
        .map_or(0, |t| u64::try_from(t).unwrap_or(0));
    Metrics::set(&metrics.tls_crl_next_update_timestamp_seconds, at);
}

/// Re-reads the TLS files and swaps both listeners' configurations.
#[derive(Debug)]
pub struct Reloader {
    settings: TlsConfig,
    /// The gRPC listener's configuration.
    pub grpc: LiveConfig,
    /// The OTLP/HTTP listener's configuration.
    pub http: LiveConfig,
    metrics: Arc<Metrics>,
    /// Digest of the files in use.
    in_use: [u8; 32],
    /// Digest of the files last looked at (or of why they could not be
    /// read), so that unchanged bad files are not reported every tick.
    last_seen: [u8; 32],
}

impl Reloader {
    /// Serves `loaded` (read from `settings`) until a reload replaces it.
    pub fn new(settings: TlsConfig, loaded: Loaded, metrics: Arc<Metrics>) -> Reloader {
        set_crl_gauge(&metrics, &loaded);
        Reloader {
            settings,
            grpc: LiveConfig::new(loaded.grpc),
            http: LiveConfig::new(loaded.http),
            metrics,
            in_use: loaded.digest,
            last_seen: loaded.digest,
        }
    }

    /// One check. `forced` (SIGHUP) rebuilds even unchanged files. Returns
    /// whether a new configuration is in use.
    pub fn check(&mut self, forced: bool) -> bool {
        let files = load::read(&self.settings);
        let seen = match &files {
            Ok(Some(f)) => f.digest(),
            Ok(None) => return false,
            Err(e) => Sha256::digest(e.to_string().as_bytes()).into(),
        };
        let unchanged = seen == self.last_seen || seen == self.in_use;
        self.last_seen = seen;
        if unchanged && !forced {
            return false;
        }
        match files.and_then(|f| f.map(|f| f.build()).transpose()) {
            Ok(Some(loaded)) => {
                set_crl_gauge(&self.metrics, &loaded);
                self.grpc.replace(loaded.grpc);
                self.http.replace(loaded.http);
                self.in_use = loaded.digest;
                Metrics::add(&self.metrics.tls_reloads_total, 1);
                tracing::info!(
                    cert_file = ?self.settings.cert_file,
                    "TLS files reloaded: new handshakes use them"
                );
                true
            }
            Ok(None) => false,
            Err(e) => {
                Metrics::add(&self.metrics.tls_reload_failures_total, 1);
                tracing::error!(error = %e, "TLS reload failed: still serving the previous certificates");
                false
            }
        }
    }

    /// Checks every `reload_interval_secs` (if not 0) and whenever
    /// `requested` is notified, until `stopped` turns true.
    pub async fn run(self, requested: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.settings.reload_interval_secs);
        let mut ticks = (!every.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut reloader = self;
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
                reloader.check(forced);
                reloader
            });
            reloader = match checked.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload panicked: certificates are no longer reloaded");
                    return;
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::tests::{settings, write_pair};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn changed_files_are_swapped_in_and_bad_ones_keep_the_old_config_counted_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(dir.path(), "live");
        let cfg = settings(&cert, &key);
        let metrics = Arc::new(Metrics::default());
        let loaded = cfg.load().expect("load").expect("on");
        let mut r = Reloader::new(cfg, loaded, metrics.clone());
        let counts = || {
            (
                metrics.tls_reloads_total.load(Ordering::Relaxed),
                metrics.tls_reload_failures_total.load(Ordering::Relaxed),
            )
        };
        let first = r.http.current();
        assert!(!r.check(false), "unchanged files are not reloaded");
        assert!(Arc::ptr_eq(&first, &r.http.current()));

        // Half-written certificate: refused, old config kept, counted once.
        let pem = std::fs::read_to_string(&cert).expect("read");
        std::fs::write(&cert, &pem[..pem.len() / 2]).expect("truncate");
        assert!(!r.check(false));
        assert!(!r.check(false), "the same bad files are not retried");
        assert_eq!(counts(), (0, 1));
        assert!(Arc::ptr_eq(&first, &r.http.current()));

        // A complete new pair: in use for the next handshakes.
        write_pair(dir.path(), "live");
        assert!(r.check(false));
        assert_eq!(counts(), (1, 1));
        assert!(!Arc::ptr_eq(&first, &r.http.current()));
        assert!(!Arc::ptr_eq(&first, &r.grpc.current()));

        // SIGHUP rebuilds even unchanged files.
        assert!(r.check(true));
        assert_eq!(counts(), (2, 1));
    }
}
