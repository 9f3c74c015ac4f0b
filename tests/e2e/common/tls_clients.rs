//! OTLP clients over TLS for the tests: one export per call on a fresh
//! connection, with or without a client certificate.

use std::net::SocketAddr;
use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use audit_collector::auth::CLIENT_ATTR;
use audit_collector::partition::read_audit;

use super::audit_request;
use super::pki::{client_config, https, Pair};

pub const PROTOBUF: &str = "application/x-protobuf";

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One export over OTLP/gRPC with TLS; `Err` with the reason when the
/// connection or the call fails.
pub async fn grpc_tls(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Pair>,
    token: Option<&str>,
    event: &str,
) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).expect("pem file");
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)));
    if let Some(p) = identity {
        tls = tls.identity(Identity::from_pem(read(&p.cert), read(&p.key)));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)
        .map_err(|e| format!("tls config: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut req = tonic::Request::new(audit_request(event, Some("forged")));
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("metadata value");
        req.metadata_mut().insert("authorization", value);
    }
    LogsServiceClient::new(channel)
        .export(req)
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// One export over OTLP/HTTP with TLS: the HTTP status, or why none came.
pub async fn http_tls(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Pair>,
    event: &str,
) -> Result<u16, String> {
    let body = audit_request(event, Some("forged")).encode_to_vec();
    let config = client_config(ca, identity, b"http/1.1");
    let (status, _) = https(addr, config, "/v1/logs", Some((PROTOBUF, &body))).await?;
    Ok(status)
}

/// (event id, client name) of every stored row, sorted.
pub fn stored_clients(data: &Path) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = read_audit(data)
        .expect("read audit")
        .into_iter()
        .map(|(r, _, _)| {
            let client = r.attributes.get(CLIENT_ATTR).cloned().unwrap_or_default();
            (r.event_id, client)
        })
        .collect();
    rows.sort();
    rows
}
