//! Reading the TLS files and building both listeners' rustls
//! configurations from them. The files are read once per load and the
//! configuration is built from exactly those bytes, so the digest that
//! tells a reload whether anything changed is the digest of what is in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{danger::ClientCertVerifier, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use super::{der, TlsConfig, TlsError, ALPN_GRPC, ALPN_HTTP};

/// Both listeners' configurations, built from one reading of the files.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The gRPC listener's (ALPN `h2`).
    pub grpc: Arc<ServerConfig>,
    /// The OTLP/HTTP listener's (ALPN `http/1.1`).
    pub http: Arc<ServerConfig>,
    /// The earliest `nextUpdate` of the client CRLs, seconds since the
    /// epoch; `None` without CRLs.
    pub crl_next_update: Option<i64>,
    /// SHA-256 over every file's bytes.
    pub(super) digest: [u8; 32],
}

/// One file's setting name, path and bytes.
struct File {
    what: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl File {
    fn read(what: &'static str, path: &Path) -> Result<File, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| file_error(what, path)(e.to_string()))?;
        Ok(File {
            what,
            path: path.to_owned(),
            bytes,
        })
    }

    fn error(&self) -> impl Fn(String) -> TlsError + '_ {
        file_error(self.what, &self.path)
    }

    /// Every PEM item of type `T` (`label`, for the error) in the file.
    fn pems<T: PemObject>(&self, label: &str) -> Result<Vec<T>, TlsError> {
        let items = T::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error()(e.to_string()))?;
        if items.is_empty() {
            return Err(self.error()(format!("no PEM {label} in it")));
        }
        Ok(items)
    }
}

fn file_error<'a>(what: &'static str, path: &'a Path) -> impl Fn(String) -> TlsError + 'a {
    move |message| TlsError::File {
        what,
        path: path.to_owned(),
        message,
    }
}

/// The files the settings name, read now; `None` when TLS is off.
pub(super) fn read(cfg: &TlsConfig) -> Result<Option<FileSet>, TlsError> {
    let (cert_file, key_file) = match (&cfg.cert_file, &cfg.key_file) {
        (None, None) if cfg.client_ca_file.is_none() && cfg.client_crl_files.is_empty() => {
            return Ok(None)
        }
        (Some(c), Some(k)) => (c, k),
        (None, _) => {
            return Err(TlsError::Incomplete(
                "key_file, client_ca_file and client_crl_files need cert_file",
            ))
        }
        (Some(_), None) => return Err(TlsError::Incomplete("cert_file needs key_file")),
    };
    if cfg.client_ca_file.is_none() && !cfg.client_crl_files.is_empty() {
        return Err(TlsError::Incomplete("client_crl_files need client_ca_file"));
    }
    let mut files = vec![
        File::read("cert_file", cert_file)?,
        File::read("key_file", key_file)?,
    ];
    if let Some(ca) = &cfg.client_ca_file {
        files.push(File::read("client_ca_file", ca)?);
    }
    for crl in &cfg.client_crl_files {
        files.push(File::read("client_crl_files", crl)?);
    }
    Ok(Some(FileSet(files)))
}

/// Every TLS file's bytes: cert, key, then client CA and CRLs if set.
pub struct FileSet(Vec<File>);

impl FileSet {
    /// SHA-256 over every file, each with its length, so that moving bytes
    /// from one file to the next is a change too.
    pub(super) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for f in &self.0 {
            h.update((f.bytes.len() as u64).to_le_bytes());
            h.update(&f.bytes);
        }
        h.finalize().into()
    }

    /// Both listeners' configurations from these bytes.
    pub(super) fn build(&self) -> Result<Loaded, TlsError> {
        let [cert, key, client_auth @ ..] = &self.0[..] else {
            return Err(TlsError::Incomplete("cert_file needs key_file"));
        };
        let chain = cert.pems::<CertificateDer<'static>>("CERTIFICATE")?;
        let key =
            PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|e| key.error()(e.to_string()))?;
        // The provider is named, not taken from the process default, so
        // the collector never depends on which crypto backend another
        // crate in the binary enabled.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (verifier, crl_next_update) = match client_auth {
            [] => (None, None),
            [ca, crls @ ..] => {
                let (verifier, next_update) = client_verifier(ca, crls, &provider)?;
                (Some(verifier), next_update)
            }
        };
        let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            let builder = match &verifier {
                None => builder.with_no_client_auth(),
                Some(v) => builder.with_client_cert_verifier(v.clone()),
            };
            // Also refuses a key that is not the certificate's.
            let mut config = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsError::Rustls(format!("cert_file/key_file: {e}")))?;
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Loaded {
            grpc: config(ALPN_GRPC)?,
            http: config(ALPN_HTTP)?,
            crl_next_update,
            digest: self.digest(),
        })
    }
}

/// Client certificates must chain to a CA of `ca`; with CRLs, they must
/// also be known not to be revoked (see [`TlsConfig::client_crl_files`]).
/// Also the CRLs' earliest next update.
fn client_verifier(
    ca: &File,
    crl_files: &[File],
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<dyn ClientCertVerifier>, Option<i64>), TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in ca.pems::<CertificateDer<'static>>("CERTIFICATE")? {
        roots.add(cert).map_err(|e| ca.error()(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let builder = || WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    let mut crls = Vec::new();
    let mut next_update: Option<i64> = None;
    for file in crl_files {
        let these = file.pems::<CertificateRevocationListDer<'static>>("X509 CRL")?;
        // Parsed alone first, so that a bad CRL is reported with its file.
        builder()
            .with_crls(these.iter().cloned())
            .build()
            .map_err(|e| file.error()(e.to_string()))?;
        for crl in &these {
            let next = der::crl_next_update(crl);
            if next.is_some_and(|t| t <= crate::now_ns() / 1_000_000_000) {
                // Loaded anyway (a reload must not be stuck on the old
                // files), but every handshake it covers will fail: say so once.
                tracing::warn!(
                    file = %file.path.display(),
                    "client CRL is past its next update: the client certificates it covers are refused until a fresh CRL is loaded"
                );
            }
            if let Some(t) = next {
                next_update = Some(next_update.map_or(t, |n| n.min(t)));
            }
        }
        crls.extend(these);
    }
    let mut verifier = builder();
    if !crls.is_empty() {
        // Unknown status (no CRL for the issuer) is refused by rustls'
        // default; an expired CRL is refused here too: a CRL past its next
        // update may miss revocations made since (see docs/decisions.md).
        verifier = verifier.with_crls(crls).enforce_revocation_expiration();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Rustls(format!("client_ca_file: {e}")))?;
    Ok((verifier, next_update))
}

/// Reads the files and builds both configurations; `None` when TLS is off.
pub(super) fn load(cfg: &TlsConfig) -> Result<Option<Loaded>, TlsError> {
    read(cfg)?.map(|files| files.build()).transpose()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A self-signed server certificate and key written into `dir` as
    /// `NAME.pem` and `NAME.key`.
    pub(in crate::tls) fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    pub(in crate::tls) fn settings(cert: &Path, key: &Path) -> TlsConfig {
        TlsConfig {
            cert_file: Some(cert.to_owned()),
            key_file: Some(key.to_owned()),
            ..TlsConfig::default()
        }
    }

    #[test]
    fn incomplete_settings_are_refused_and_off_is_none() {
        assert!(TlsConfig::default().load().expect("off").is_none());
        for incomplete in [
            TlsConfig {
                key_file: Some("k.pem".into()),
                ..TlsConfig::default()
            },
            TlsConfig {
                client_crl_files: vec!["c.crl".into()],
                ..settings(Path::new("c.pem"), Path::new("k.pem"))
            },
        ] {
            let r = incomplete.load();
            assert!(matches!(r, Err(TlsError::Incomplete(_))), "{r:?}");
        }
        let missing = settings(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        );
        let err = missing.load().unwrap_err().to_string();
        assert!(err.contains("cert_file /nonexistent/c.pem"), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_or_a_bad_crl_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_a, key_a) = write_pair(dir.path(), "a");
        let (_, key_b) = write_pair(dir.path(), "b");
        assert!(settings(&cert_a, &key_a).load().expect("a").is_some());
        let err = settings(&cert_a, &key_b).load().unwrap_err().to_string();
        assert!(err.contains("cert_file/key_file"), "{err}");
        let crl = dir.path().join("bad.crl");
        std::fs::write(
            &crl,
            "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        )
        .expect("write crl");
        let with_crl = TlsConfig {
            client_ca_file: Some(cert_a.clone()),
            client_crl_files: vec![crl],
            ..settings(&cert_a, &key_a)
        };
        let err = with_crl.load().unwrap_err().to_string();
        assert!(
            err.contains("client_crl_files") && err.contains("bad.crl"),
            "{err}"
        );
    }
}
