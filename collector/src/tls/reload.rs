//! Certificate reload (see [`crate::reload`]): every
//! `reload_interval_secs`, and on SIGHUP, the TLS files are read again; when
//! their bytes changed, both listeners' configurations are rebuilt and the
//! next handshakes use them. Connections already open keep their session.
//!
//! Files that do not load (unreadable, half-written, a key that is not the
//! certificate's, a bad CRL) keep the previous configuration, counted in
//! `tls_reload_failures_total`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use super::load::{self, FileSet};
use super::{Loaded, TlsConfig, TlsError};
use crate::metrics::Metrics;
use crate::reload::{Counted, Live, Source, Watcher};

/// The rustls configuration a listener uses for its next handshake.
pub type LiveConfig = Live<ServerConfig>;

/// Reloads the TLS files into both listeners' configurations.
pub type Reloader = Watcher<TlsFiles>;

/// `tls_crl_next_update_timestamp_seconds`: when the earliest CRL in use
/// expires (0 without CRLs), for an alert before clients are refused.
fn set_crl_gauge(metrics: &Metrics, loaded: &Loaded) {
    let at = loaded
        .crl_next_update
        .map_or(0, |t| u64::try_from(t).unwrap_or(0));
    Metrics::set(&metrics.tls_crl_next_update_timestamp_seconds, at);
}

/// The TLS files and the listeners' configurations built from them.
#[derive(Debug)]
pub struct TlsFiles {
    settings: TlsConfig,
    /// The gRPC listener's configuration.
    pub grpc: LiveConfig,
    /// The OTLP/HTTP listener's configuration.
    pub http: LiveConfig,
    metrics: Arc<Metrics>,
}

/// Serves `loaded` (read from `settings`) until a reload replaces it.
pub fn reloader(settings: TlsConfig, loaded: Loaded, metrics: Arc<Metrics>) -> Reloader {
    set_crl_gauge(&metrics, &loaded);
    let every = Duration::from_secs(settings.reload_interval_secs);
    let files = TlsFiles {
        settings,
        grpc: LiveConfig::new(loaded.grpc),
        http: LiveConfig::new(loaded.http),
        metrics: metrics.clone(),
    };
    Watcher::new(files, loaded.digest, every, metrics)
}

impl Source for TlsFiles {
    type Files = FileSet;
    type Error = TlsError;
    const WHAT: &'static str = "TLS files";

    fn read(&self) -> Result<Option<FileSet>, TlsError> {
        load::read(&self.settings)
    }

    fn digest(files: &FileSet) -> [u8; 32] {
        files.digest()
    }

    fn apply(&mut self, files: &FileSet) -> Result<(), TlsError> {
        let loaded = files.build()?;
        set_crl_gauge(&self.metrics, &loaded);
        self.grpc.replace(loaded.grpc);
        self.http.replace(loaded.http);
        Ok(())
    }
}

impl Counted for TlsFiles {
    fn counters(metrics: &Metrics) -> (&AtomicU64, &AtomicU64) {
        (
            &metrics.tls_reloads_total,
            &metrics.tls_reload_failures_total,
        )
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
        let mut r = reloader(cfg, loaded, metrics.clone());
        let counts = || {
            (
                metrics.tls_reloads_total.load(Ordering::Relaxed),
                metrics.tls_reload_failures_total.load(Ordering::Relaxed),
            )
        };
        let first = r.source().http.current();
        assert!(!r.check(false), "unchanged files are not reloaded");
        assert!(Arc::ptr_eq(&first, &r.source().http.current()));

        // Half-written certificate: refused, old config kept, counted once.
        let pem = std::fs::read_to_string(&cert).expect("read");
        std::fs::write(&cert, &pem[..pem.len() / 2]).expect("truncate");
        assert!(!r.check(false));
        assert!(!r.check(false), "the same bad files are not retried");
        assert_eq!(counts(), (0, 1));
        assert!(Arc::ptr_eq(&first, &r.source().http.current()));

        // A complete new pair: in use for the next handshakes.
        write_pair(dir.path(), "live");
        assert!(r.check(false));
        assert_eq!(counts(), (1, 1));
        assert!(!Arc::ptr_eq(&first, &r.source().http.current()));
        assert!(!Arc::ptr_eq(&first, &r.source().grpc.current()));

        // SIGHUP rebuilds even unchanged files.
        assert!(r.check(true));
        assert_eq!(counts(), (2, 1));
    }
}
