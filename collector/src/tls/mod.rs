//! TLS and mutual TLS on both receivers.
//!
//! One [`TlsConfig`] (a certificate chain, its key and, for mutual TLS, the
//! CA that signs client certificates and optionally its CRLs) gives one
//! rustls server configuration per listener; they differ only in ALPN
//! (`h2` for gRPC, `http/1.1` for OTLP/HTTP). With a client CA set, a
//! client without a certificate issued by it (unknown issuer, expired, not
//! yet valid, not meant for client authentication, revoked by a CRL) fails
//! the handshake and never reaches a receiver.
//!
//! Handshakes run in their own tasks (`accept`), bounded in number and in
//! time, so a client that fails one or never finishes it costs neither the
//! accept loop nor other clients anything; each failure is counted in
//! `tls_handshake_failures_total`. The files are read again when they
//! change and on SIGHUP ([`crate::reload`]).
//!
//! ```toml
//! [tls]
//! cert_file = "/etc/audit-collector/tls/server.pem"   # chain, leaf first
//! key_file = "/etc/audit-collector/tls/server.key"    # PKCS#8, PKCS#1 or SEC1
//! client_ca_file = "/etc/audit-collector/tls/clients-ca.pem"  # optional: mTLS
//! client_crl_files = ["/etc/audit-collector/tls/clients-ca.crl"]  # optional
//! reload_interval_secs = 60                           # 0: only on SIGHUP
//! ```

mod accept;
mod der;
mod load;
mod peer;
mod reload;

use std::path::PathBuf;

use serde::Deserialize;

pub use accept::{TlsIncoming, HANDSHAKE_TIMEOUT};
pub use load::{FileSet, Loaded};
pub use peer::{client_name, TlsPeer};
pub use reload::{reloader, LiveConfig, Reloader, TlsFiles};

/// ALPN of the gRPC listener.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the OTLP/HTTP listener (HTTP/1.1 only, like the plain one).
pub const ALPN_HTTP: &[&[u8]] = &[b"http/1.1"];

/// TLS settings of both receivers; TLS is off when `cert_file` is unset.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the collector, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s); when set, every client must present a
    /// certificate issued by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// PEM CRLs (`X509 CRL`) of the client CA(s); when set, a revoked client
    /// certificate fails the handshake, and so does every client
    /// certificate whose revocation status they cannot tell (its issuer has
    /// no CRL here, or the CRL is past its next update): fail closed.
    pub client_crl_files: Vec<PathBuf>,
    /// Seconds between checks of all these files for changes (a change is
    /// loaded for the next handshakes); 0: only on SIGHUP.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    /// [`crate::config::Config::default`]'s: TLS off.
    fn default() -> Self {
        crate::config::Config::default().tls
    }
}

/// Why the TLS settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("tls: {what} {path}: {message}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Settings that only make sense together.
    #[error("tls: {0}")]
    Incomplete(&'static str),
    /// rustls refused the certificate, key or CA.
    #[error("tls: {0}")]
    Rustls(String),
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Reads the files and builds both listeners' configurations, or `None`
    /// when TLS is off.
    pub fn load(&self) -> Result<Option<Loaded>, TlsError> {
        load::load(self)
    }
}
