//! OTLP/HTTP transport: `POST {endpoint}` with a protobuf body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;

use super::tls::TlsPem;
use super::{Failure, FailureKind};
use crate::build_error::BuildError;

/// How long an idle connection is kept for reuse: below the collector's
/// default `header_read_timeout_secs` (10).
const IDLE: Duration = Duration::from_secs(5);

/// Largest response body read (a `partial_success` message, an error).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
}

impl Http {
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        tls: Option<&TlsPem>,
    ) -> Result<Http, BuildError> {
        let bad_endpoint = |message: String| BuildError::Endpoint {
            endpoint: url.to_owned(),
            message,
        };
        let uri: Uri = url.parse().map_err(|e| bad_endpoint(format!("{e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad_endpoint(format!(
                "scheme {:?} is not supported; use http:// or https://",
                uri.scheme_str()
            )));
        }
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(v);
            match (name, value) {
                (Ok(name), Ok(value)) => {
                    map.insert(name, value);
                }
                _ => return Err(BuildError::Header { name: k.clone() }),
            }
        }
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_nodelay(true);
        // A plaintext endpoint never handshakes (`TlsFiles::load` gives
        // every https:// one a config); an empty trust store keeps it from
        // reading the system's roots for nothing.
        let tls_config = match tls {
            Some(tls) => tls.rustls()?,
            None => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::Tls(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Http {
            // The collector closes a keep-alive connection that has been idle
            // for its header read timeout (10 s by default); dropping ours
            // sooner keeps a request from racing that close on a reused
            // connection (it would be retried, but only after a backoff).
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(IDLE)
                .build(connector),
            uri,
            headers: map,
            timeout,
        })
    }

    /// The endpoint, for diagnostics.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    async fn post(&self, body: Bytes) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        request.headers_mut().extend(self.headers.clone());
        let response = self.client.request(request).await.map_err(|e| {
            // The connector's error (refused, TLS alert) is the useful part.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            message
        })?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Posts one encoded `ExportLogsServiceRequest`.
    pub async fn export(&mut self, body: Bytes) -> Result<ExportLogsServiceResponse, Failure> {
        let url = &self.uri;
        let answer = tokio::time::timeout(self.timeout, self.post(body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        // Connection refused or reset, TLS failures, timeouts: worth
        // another try (a certificate may be fixed without a restart).
        let (status, headers, bytes) =
            answer.map_err(|e| Failure::transient(format!("POST {url}: {e}")))?;
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_success() {
            // An empty or undecodable body is a full success: the status says so.
            return Ok(ExportLogsServiceResponse::decode(bytes.as_ref()).unwrap_or_default());
        }
        Err(Failure {
            kind: classify(status),
            retry_after,
            message: format!(
                "POST {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ),
        })
    }
}

/// What an HTTP error status means for the records sent.
///
/// The OTLP spec retries only 429, 502, 503 and 504 and drops the batch on
/// any other status. We diverge on purpose for an audit trail: only a
/// malformed request (400) is refused as a whole; a request over the
/// collector's size cap (413) is sent again in halves, down to single
/// records ([`FailureKind::TooLarge`]); anything else (429, 5xx, and a
/// misconfigured 401, 403 or 404) makes records wait, not disappear.
fn classify(status: StatusCode) -> FailureKind {
    match status {
        StatusCode::BAD_REQUEST => FailureKind::Refused,
        StatusCode::PAYLOAD_TOO_LARGE => FailureKind::TooLarge,
        _ => FailureKind::Transient,
    }
}
