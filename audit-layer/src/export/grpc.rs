//! OTLP/gRPC transport: the generated `LogsServiceClient` over a tonic channel.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_types::StatusExt;

use super::tls::TlsPem;
use super::Failure;
use crate::builder::BuildError;

/// Validated settings; the channel itself is made on the worker thread,
/// inside its runtime.
#[derive(Clone, Debug)]
pub(crate) struct GrpcConfig {
    endpoint: Endpoint,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
}

impl GrpcConfig {
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        tls: Option<&TlsPem>,
    ) -> Result<GrpcConfig, BuildError> {
        let mut endpoint = Channel::from_shared(url.to_owned())
            .map_err(|e| BuildError::Endpoint {
                endpoint: url.to_owned(),
                message: e.to_string(),
            })?
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls.tonic())
                .map_err(|e| BuildError::Tls(e.to_string()))?;
        }
        let metadata = headers
            .iter()
            .map(|(k, v)| {
                let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
                let value = AsciiMetadataValue::try_from(v.as_str());
                match (key, value) {
                    (Ok(key), Ok(value)) => Ok((key, value)),
                    _ => Err(BuildError::Header { name: k.clone() }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(GrpcConfig { endpoint, metadata })
    }

    /// Must run inside a tokio runtime context (the channel spawns its driver).
    pub fn connect(self) -> Grpc {
        Grpc {
            client: LogsServiceClient::new(self.endpoint.connect_lazy()),
            metadata: self.metadata,
        }
    }
}

pub(crate) struct Grpc {
    client: LogsServiceClient<Channel>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
}

impl Grpc {
    pub async fn export(
        &mut self,
        body: ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        let mut request = tonic::Request::new(body);
        for (k, v) in &self.metadata {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        match self.client.export(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(Failure {
                // Only a malformed request is refused for good; anything
                // else (including a misconfigured endpoint) makes records
                // wait, not disappear.
                retryable: status.code() != Code::InvalidArgument,
                retry_after: status.get_details_retry_info().and_then(|r| r.retry_delay),
                message: format!("gRPC {:?}: {}", status.code(), status.message()),
            }),
        }
    }
}
