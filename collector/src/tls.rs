//! TLS and mutual TLS on both receivers.
//!
//! One [`TlsConfig`] (a certificate chain, its key and, for mutual TLS, the
//! CA that signs client certificates) gives one rustls server configuration
//! per listener; they differ only in ALPN (`h2` for gRPC, `http/1.1` for
//! OTLP/HTTP). With a client CA set, a client without a certificate issued
//! by it (unknown issuer, expired, not yet valid, not meant for client
//! authentication) fails the handshake and never reaches a receiver.
//!
//! Handshakes run in their own tasks, bounded in number and in time, so a
//! client that fails one or never finishes it costs neither the accept
//! loop nor other clients anything; each failure is counted in
//! `tls_handshake_failures_total`.
//!
//! ```toml
//! [tls]
//! cert_file = "/etc/audit-collector/tls/server.pem"   # chain, leaf first
//! key_file = "/etc/audit-collector/tls/server.key"    # PKCS#8, PKCS#1 or SEC1
//! client_ca_file = "/etc/audit-collector/tls/clients-ca.pem"  # optional: mTLS
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// A client that has not finished its handshake after this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once per listener; further connections wait
/// in the kernel's backlog, so half-open clients cannot grow memory.
const MAX_HANDSHAKES: usize = 256;

/// ALPN of the gRPC listener.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the OTLP/HTTP listener (HTTP/1.1 only, like the plain one).
pub const ALPN_HTTP: &[&[u8]] = &[b"http/1.1"];

/// TLS settings of both receivers; TLS is off when `cert_file` is unset.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the collector, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s); when set, every client must present a
    /// certificate issued by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
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

fn file_error<'a>(what: &'static str, path: &'a Path) -> impl Fn(String) -> TlsError + 'a {
    move |message| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = file_error(what, path);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM CERTIFICATE in it".into()));
    }
    Ok(certs)
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// The rustls configuration for one listener (`alpn`: [`ALPN_GRPC`] or
    /// [`ALPN_HTTP`]), or `None` when TLS is off.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) if self.client_ca_file.is_none() => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (None, _) => {
                return Err(TlsError::Incomplete(
                    "key_file and client_ca_file need cert_file",
                ))
            }
            (Some(_), None) => return Err(TlsError::Incomplete("cert_file needs key_file")),
        };
        let chain = read_certs("cert_file", cert_file)?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| file_error("key_file", key_file)(e.to_string()))?;
        // The provider is named, not taken from the process default, so
        // the collector never depends on which crypto backend another
        // crate in the binary enabled.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certs("client_ca_file", ca_file)? {
                    roots
                        .add(ca)
                        .map_err(|e| file_error("client_ca_file", ca_file)(e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(format!("cert_file/key_file: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Arc::new(config)))
    }
}

/// Connections of a TLS listener whose handshake succeeded; a `Stream` for
/// tonic and an axum `Listener`. Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsIncoming {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsIncoming {
    /// Accepts on `listener`, running each handshake in its own task.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        metrics: Arc<Metrics>,
    ) -> io::Result<TlsIncoming> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            tx,
            metrics,
        ));
        Ok(TlsIncoming {
            accepted,
            local_addr,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    metrics: Arc<Metrics>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // The listening socket closes when the server drops its end.
        let permit = tokio::select! {
            _ = tx.closed() => return,
            p = handshakes.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("not finished within {HANDSHAKE_TIMEOUT:?}"),
            };
            Metrics::add(&metrics.tls_handshake_failures_total, 1);
            tracing::info!(%peer, error = %why, "TLS handshake refused");
        });
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.accepted
            .poll_recv(cx)
            .map(|next| next.map(|(tls, _)| Ok(tls)))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this end is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// The client name of an OTLP/HTTP connection that presented a verified
/// certificate, for handlers (`ConnectInfo<TlsPeer>`).
#[derive(Clone, Debug, Default)]
pub struct TlsPeer {
    /// See [`client_name`].
    pub client: Option<String>,
}

impl TlsPeer {
    /// The client of a finished TLS connection.
    pub fn of(stream: &TlsStream<TcpStream>) -> TlsPeer {
        TlsPeer {
            client: stream.get_ref().1.peer_certificates().and_then(client_name),
        }
    }
}

/// The name recorded for a client authenticated by certificate: its leaf
/// certificate's subject common name when that is a valid client name
/// (1-64 of `A-Z a-z 0-9 _ . -`, as for tokens), else `cert-` and the
/// first 16 hex digits of the certificate's SHA-256, so every row still
/// points at the exact certificate. `None` without a certificate.
pub fn client_name(chain: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = chain.first()?;
    Some(
        common_name(leaf)
            .filter(|cn| crate::auth::valid_name(cn))
            .unwrap_or_else(|| {
                let digest = hex::encode(Sha256::digest(leaf.as_ref()));
                format!("cert-{}", &digest[..16])
            }),
    )
}

/// One DER element: (tag, contents, what follows). `None` when malformed.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's first common name (OID 2.5.4.3) of a certificate the
/// verifier already accepted; a small walk instead of an X.509 crate.
fn common_name(cert: &[u8]) -> Option<String> {
    const VERSION: u8 = 0xa0;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    if der(tbs)?.0 == VERSION {
        tbs = der(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (_, mut rdns, _) = der(tbs)?;
    while !rdns.is_empty() {
        let (_, mut set, rest) = der(rdns)?;
        rdns = rest;
        while !set.is_empty() {
            let (_, pair, rest) = der(set)?;
            set = rest;
            let (tag, oid, value) = der(pair)?;
            if tag == OID && oid == CN {
                // UTF8String, PrintableString or IA5String.
                let (kind, text, _) = der(value)?;
                return matches!(kind, 0x0c | 0x13 | 0x16)
                    .then(|| String::from_utf8(text.to_vec()).ok())
                    .flatten();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Audit Inc");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn client_name_is_the_common_name_or_a_certificate_fingerprint() {
        assert_eq!(
            client_name(&[cert(Some("billing-svc"))]).as_deref(),
            Some("billing-svc")
        );
        for odd in [None, Some("../../etc"), Some("name with spaces")] {
            let name = client_name(&[cert(odd)]).unwrap();
            assert!(
                name.starts_with("cert-") && name.len() == 21,
                "{odd:?}: {name}"
            );
        }
        assert_eq!(client_name(&[]), None);
        assert_eq!(common_name(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(common_name(b""), None);
    }

    #[test]
    fn incomplete_settings_are_refused_and_off_is_none() {
        let off = TlsConfig::default();
        assert!(off.server_config(ALPN_HTTP).unwrap().is_none());
        let key_only = TlsConfig {
            key_file: Some("k.pem".into()),
            ..TlsConfig::default()
        };
        assert!(matches!(
            key_only.server_config(ALPN_HTTP),
            Err(TlsError::Incomplete(_))
        ));
        let missing = TlsConfig {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            client_ca_file: None,
        };
        let err = missing.server_config(ALPN_HTTP).unwrap_err().to_string();
        assert!(err.contains("cert_file /nonexistent/c.pem"), "{err}");
    }
}
