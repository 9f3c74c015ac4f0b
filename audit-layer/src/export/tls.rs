//! TLS of the exporter: which CA to trust for the collector's certificate
//! and, for mutual TLS, this client's own certificate and key (PEM files).
//!
//! The files are read when the layer is built, so a missing or malformed
//! one is a [`BuildError`], not a stream of failed exports. TLS is used
//! for `https://` endpoints; with no CA file they trust the system's
//! roots. Certificate settings with an `http://` endpoint are an error
//! rather than a silent downgrade to plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::build_error::BuildError;

/// Where the exporter's TLS material lives; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// CA certificate(s) the collector's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// This client's certificate chain (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// The PEM contents of [`TlsFiles`], read and checked.
#[derive(Clone)]
pub(crate) struct TlsPem {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn tls_error(message: String) -> BuildError {
    BuildError::Tls(message)
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| tls_error(format!("{what} {}: {e}", path.display())))
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!("{what}: no PEM CERTIFICATE in it")));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Each setting of `self`, else of `fallback` (explicit settings win
    /// over the environment, field by field).
    pub fn or(self, fallback: TlsFiles) -> TlsFiles {
        TlsFiles {
            ca: self.ca.or(fallback.ca),
            client_cert: self.client_cert.or(fallback.client_cert),
            client_key: self.client_key.or(fallback.client_key),
        }
    }

    /// Reads the files for an endpoint: `None` for `http://` without any
    /// setting, an error for `http://` with one.
    pub fn load(&self, endpoint: &str) -> Result<Option<TlsPem>, BuildError> {
        let https = endpoint
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        let any = self.ca.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if !https {
            return match any {
                false => Ok(None),
                true => Err(BuildError::Endpoint {
                    endpoint: endpoint.to_owned(),
                    message: "TLS certificates are configured but the endpoint is not https://; \
                              use https:// (or remove the certificate settings)"
                        .into(),
                }),
            };
        }
        let ca = match &self.ca {
            Some(path) => {
                let pem = read("CA file", path)?;
                certs(&format!("CA file {}", path.display()), &pem)?;
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert_pem = read("client certificate", cert)?;
                certs(&format!("client certificate {}", cert.display()), &cert_pem)?;
                let key_pem = read("client key", key)?;
                PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| tls_error(format!("client key {}: {e}", key.display())))?;
                Some((cert_pem, key_pem))
            }
            _ => {
                return Err(tls_error(
                    "a client certificate needs its key and a key its certificate".into(),
                ))
            }
        };
        Ok(Some(TlsPem { ca, identity }))
    }
}

impl TlsPem {
    /// For the gRPC channel.
    pub fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }

    /// For the HTTP client (its connector sets the ALPN).
    pub fn rustls(&self) -> Result<rustls::ClientConfig, BuildError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in certs("CA file", ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(format!("CA file: {e}")))?;
                }
            }
            None => {
                // Unreadable entries of the system store are skipped, as
                // every TLS client does; none at all is an error.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(tls_error(
                        "no CA file given and no system root certificates found; \
                         set OTEL_EXPORTER_OTLP_CERTIFICATE"
                            .into(),
                    ));
                }
            }
        }
        // The provider is named so that the exporter never depends on
        // which crypto backend another crate of the application enabled.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs("client certificate", cert)?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| tls_error(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(format!("client certificate and key: {e}")))?
            }
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::TlsFiles;

    #[test]
    fn certificates_with_a_plaintext_endpoint_or_half_an_identity_are_refused() {
        let none = TlsFiles::default();
        assert!(none
            .load("http://127.0.0.1:4318/v1/logs")
            .unwrap()
            .is_none());
        let ca = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = ca.load("http://127.0.0.1:4318").err().unwrap().to_string();
        assert!(err.contains("not https://"), "{err}");
        let err = ca.load("https://c:4318").err().unwrap().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let half = TlsFiles {
            client_cert: Some("/nonexistent/c.pem".into()),
            ..TlsFiles::default()
        };
        let err = half.load("https://c:4318").err().unwrap().to_string();
        assert!(err.contains("needs its key"), "{err}");
        let explicit = TlsFiles {
            ca: Some("a".into()),
            ..TlsFiles::default()
        };
        let env = TlsFiles {
            ca: Some("b".into()),
            client_key: Some("k".into()),
            ..TlsFiles::default()
        };
        let merged = explicit.or(env);
        assert_eq!(merged.ca, Some("a".into()));
        assert_eq!(merged.client_key, Some("k".into()));
    }
}
