//! OTLP/gRPC logs receiver (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::Receiver;
use crate::ingest::IngestError;

/// Retry hint sent with retryable errors.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The gRPC service over a shared [`Receiver`].
#[derive(Debug, Clone)]
pub struct GrpcLogs(pub Arc<Receiver>);

impl GrpcLogs {
    /// A tonic service, accepting gzip, with a request size cap.
    pub fn into_service(self, max_request_bytes: usize) -> LogsServiceServer<GrpcLogs> {
        LogsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_request_bytes)
    }
}

/// OTLP's retryable codes: UNAVAILABLE always, RESOURCE_EXHAUSTED only with
/// a `RetryInfo`, which is why overload carries one.
pub fn status(e: IngestError) -> Status {
    let details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
    match e {
        IngestError::Overloaded => {
            Status::with_error_details(tonic::Code::ResourceExhausted, e.to_string(), details)
        }
        IngestError::ShuttingDown | IngestError::Storage(_) => {
            Status::with_error_details(tonic::Code::Unavailable, e.to_string(), details)
        }
    }
}

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // Present only on a TLS listener; the verifier already checked it.
        let certificate = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| crate::tls::client_name(&chain));
        let client = self
            .0
            .authenticate(authorization, certificate)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        self.0
            .export(request.into_inner(), client.as_deref())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
