//! OTLP requests as bytes, sent over either protocol exactly as given (so
//! that tests can send garbage, truncated or hand-edited messages), and
//! the answers as status codes.

use std::time::Duration;

use audit_layer::export::{PreEncoded, EXPORT_PATH};
use audit_schema::otlp::ResourceInfo;
use audit_schema::{AuditRecord, Draft, Rules};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Status;

/// A valid agent action.
pub fn action(event_id: &str) -> AuditRecord {
    let draft = Draft {
        event_id: Some(event_id.into()),
        start_time_ns: Some(1_764_300_000_000_000_000),
        end_time_ns: Some(1_764_300_000_500_000_000),
        agent_id: Some("agt_7f3".into()),
        owner_id: Some("usr_alice".into()),
        action: Some("db.drop".into()),
        target: Some("tbl_1".into()),
        service_name: Some("billing".into()),
        ..Draft::default()
    };
    Rules::default().check(draft).expect("a valid agent action")
}

/// One request of `records` from service `billing`, instance `billing-1`.
pub fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    let res = ResourceInfo {
        service_name: Some("billing".into()),
        service_instance_id: Some("billing-1".into()),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(res.to_resource()),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A connected gRPC channel.
pub async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

/// One gRPC export of `body` (compressed by tonic when asked), with extra
/// metadata.
pub async fn grpc_raw(
    ch: Channel,
    body: Vec<u8>,
    compression: Option<CompressionEncoding>,
    metadata: &[(&'static str, &str)],
) -> Result<ExportLogsServiceResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    if let Some(c) = compression {
        grpc = grpc.send_compressed(c);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(bytes::Bytes::from(body));
    for (k, v) in metadata {
        req.metadata_mut()
            .insert(*k, v.parse().expect("metadata value"));
    }
    grpc.unary(req, EXPORT_PATH.parse().expect("path"), PreEncoded)
        .await
        .map(tonic::Response::into_inner)
}

/// An HTTP answer.
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The OTLP response of a 200.
    pub fn export(&self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse::decode(&self.body[..]).expect("OTLP response")
    }
}

/// One `POST /v1/logs`.
pub async fn http_post(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    content_type: &str,
    encoding: Option<&str>,
) -> HttpAnswer {
    try_http_post(client, addr, body, content_type, encoding)
        .await
        .expect("post")
}

/// One `POST /v1/logs`; `Err` when the connection failed. A collector that
/// refuses a request before reading its body may close the connection
/// while the client is still sending it.
pub async fn try_http_post(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    content_type: &str,
    encoding: Option<&str>,
) -> Result<HttpAnswer, reqwest::Error> {
    let mut req = client
        .post(format!("http://{addr}/v1/logs"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    Ok(HttpAnswer {
        status,
        retry_after,
        body,
    })
}
