//! Certificates made in the test: a CA, a server certificate for
//! 127.0.0.1, client certificates (valid, expired, from another CA) and
//! CRLs, written as PEM files, plus raw TLS clients that use them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A certificate authority that issues certificates into `dir`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// PEM files of one certificate and its key.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's serial number (what a CRL names).
    pub serial: u64,
}

/// Serial numbers, unique in the test process.
static SERIALS: AtomicU64 = AtomicU64::new(1);

/// How long a certificate is valid, relative to now.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From a day ago to a day from now.
    Current,
    /// Ended a day ago.
    Expired,
}

impl Ca {
    /// A new CA whose certificate is `DIR/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        std::fs::write(dir.join(format!("{name}-ca.pem")), issuer.pem()).expect("write ca");
        Ca {
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The CA certificate file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Pair {
        self.issue(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Current,
        )
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, cn: &str, validity: Validity) -> Pair {
        self.issue(
            cn,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    fn issue(
        &self,
        cn: &str,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Pair {
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - day, now + day),
            Validity::Expired => (now - day * 30, now - day),
        };
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let stem = format!("{}-{cn}-{validity:?}", self.name);
        let pair = Pair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            serial,
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }
}

impl Ca {
    /// A CRL of this CA revoking `revoked`, written to `DIR/NAME-crl.pem`;
    /// `Validity::Expired` makes one whose next update was a day ago.
    pub fn crl(&self, revoked: &[&Pair], validity: Validity) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let (this_update, next_update) = match validity {
            Validity::Current => (now - day, now + day),
            Validity::Expired => (now - day * 2, now - day),
        };
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(SERIALS.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|p| RevokedCertParams {
                    serial_number: SerialNumber::from(p.serial),
                    revocation_time: now - day,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign crl");
        let path = self.dir.join(format!("{}-crl.pem", self.name));
        std::fs::write(&path, crl.pem().expect("crl pem")).expect("write crl");
        path
    }
}

/// A rustls client trusting `ca`, presenting `identity` if given.
pub fn client_config(ca: &Path, identity: Option<&Pair>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca pem")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(p) => {
            let chain = CertificateDer::pem_file_iter(&p.cert)
                .expect("cert file")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert pem");
            let key = PrivateKeyDer::from_pem_file(&p.key).expect("key pem");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` (as `127.0.0.1`), handshake done.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// One HTTP/1.1 request over TLS on a fresh connection (`body`: content
/// type and bytes, for a POST; else a GET): the status code and body, or
/// why there was none (handshake refused, connection closed).
pub async fn https(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String), String> {
    let tls = tls_connect(addr, config).await?;
    request(tls, addr, path, body).await
}

/// One HTTP/1.1 request (see [`https`]) on a connection already open; the
/// connection is closed after the answer.
pub async fn request(
    mut tls: TlsStream<tokio::net::TcpStream>,
    addr: std::net::SocketAddr,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String), String> {
    let (method, content_type, body) = match body {
        Some((ct, b)) => ("POST", ct, b),
        None => ("GET", "text/plain", &[][..]),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // With TLS 1.3 a refused client certificate surfaces here or on the
    // read: the server decides after the client's part of the handshake.
    tls.write_all(&request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {:?}", &text[..text.len().min(80)]))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}
