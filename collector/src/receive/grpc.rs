//! OTLP/gRPC logs receiver (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).
//!
//! Status codes: `INVALID_ARGUMENT` for an undecodable message (including
//! invalid UTF-8 in a string field: prost refuses the whole message),
//! `RESOURCE_EXHAUSTED` for a message over `max_request_bytes` as sent or
//! once decompressed (gzip or zstd), `UNAVAILABLE` with a
//! `google.rpc.RetryInfo` when the client should retry (write queue full,
//! too many requests in flight, shutting down, storage error).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
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
    /// A tonic service, accepting gzip and zstd, with a request size cap
    /// (tonic applies it to the decompressed message too) and the
    /// receiver's in-flight cap in front.
    pub fn into_service(self, max_request_bytes: usize) -> Admitted<LogsServiceServer<GrpcLogs>> {
        let receiver = self.0.clone();
        let inner = LogsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max_request_bytes);
        Admitted { inner, receiver }
    }
}

/// A retryable error the client is told to retry after [`RETRY_AFTER`].
fn retry_later(message: String) -> Status {
    let details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
    Status::with_error_details(tonic::Code::Unavailable, message, details)
}

/// Every ingest error is retryable: `UNAVAILABLE` with a `RetryInfo`, the
/// OTLP throttling signal.
pub fn status(e: IngestError) -> Status {
    retry_later(e.to_string())
}

/// The gRPC service behind the in-flight cap. Admission happens before the
/// request body is read, so refused requests cost no decoding; a permit is
/// held until the answer is ready.
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    receiver: Arc<Receiver>,
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

/// tonic's codes for a bad request, as they appear in the `grpc-status`
/// header of a trailers-only answer, and what OTLP clients must see instead.
/// A message over the size cap is OUT_OF_RANGE in tonic, which OTLP
/// clients retry: it is RESOURCE_EXHAUSTED without RetryInfo (too large, do
/// not retry; the HTTP receiver's 413). An undecodable message or corrupt
/// compression is INTERNAL in tonic (gRPC's convention for parse errors);
/// OTLP's word for a request the client got wrong is INVALID_ARGUMENT (the
/// HTTP receiver's 400). This service has no internal error of its own.
const REMAPPED: &[(&str, &str)] = &[("11", "8"), ("13", "3")];

impl<S, B> Service<http::Request<B>> for Admitted<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(permit) = self.receiver.admit() else {
            let resp = retry_later(super::SHED_MESSAGE.into()).into_http();
            return Box::pin(async move { Ok(resp) });
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            drop(permit);
            let h = resp.headers_mut();
            let to = REMAPPED
                .iter()
                .find(|(from, _)| h.get("grpc-status").is_some_and(|v| v == from));
            if let Some((_, to)) = to {
                h.insert("grpc-status", http::HeaderValue::from_static(to));
            }
            Ok(resp)
        })
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
