//! OTLP/HTTP transport: `POST {endpoint}` with a protobuf body.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::Failure;
use crate::builder::BuildError;

pub(crate) struct Http {
    client: reqwest::Client,
    url: String,
}

impl Http {
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Http, BuildError> {
        let bad_endpoint = |message: String| BuildError::Endpoint {
            endpoint: url.to_owned(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad_endpoint(e.to_string()))?;
        if parsed.scheme() != "http" {
            // Built without TLS to keep the dependency tree small: the
            // collector is a sidecar on loopback.
            return Err(bad_endpoint(format!(
                "scheme {:?} is not supported; use http:// to the local collector",
                parsed.scheme()
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
        let client = reqwest::Client::builder()
            .default_headers(map)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| bad_endpoint(e.to_string()))?;
        Ok(Http {
            client,
            url: url.to_owned(),
        })
    }

    pub async fn export(
        &mut self,
        body: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        let response = self
            .client
            .post(&self.url)
            .body(body.encode_to_vec())
            .send()
            .await
            .map_err(|e| Failure {
                // Connection refused or reset, timeouts: worth another try.
                retryable: true,
                retry_after: None,
                message: format!("POST {}: {e}", self.url),
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            // An empty or undecodable body is a full success: the status says so.
            return Ok(ExportLogsServiceResponse::decode(bytes.as_ref()).unwrap_or_default());
        }
        Err(Failure {
            // Only a malformed request is refused for good (400, 413);
            // anything else (429, 5xx, and a misconfigured 404 or 401)
            // makes records wait, not disappear.
            retryable: !matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
            ),
            retry_after,
            message: format!(
                "POST {}: HTTP {status}: {}",
                self.url,
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ),
        })
    }
}
