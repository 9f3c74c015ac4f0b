//! Who a TLS client is: the name recorded for a client that presented a
//! verified certificate.

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::der::der;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

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
}
