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

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{read_protobuf, Receiver};
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
    pub fn into_service(self, max_request_bytes: usize) -> Admitted<LogsServer> {
        let receiver = self.0.clone();
        let inner = LogsServer {
            receiver: self.0,
            max_request_bytes,
        };
        Admitted { inner, receiver }
    }
}

/// `opentelemetry.proto.collector.logs.v1.LogsService`, served as the
/// generated server would serve it, but with [`RowsCodec`]: the request
/// bytes are read straight into records, not into the generated types.
#[derive(Debug, Clone)]
pub struct LogsServer {
    receiver: Arc<Receiver>,
    max_request_bytes: usize,
}

const SERVICE_NAME: &str = "opentelemetry.proto.collector.logs.v1.LogsService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl NamedService for LogsServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for LogsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let h = response.headers_mut();
                h.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                h.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let mut grpc = Grpc::new(RowsCodec)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(self.max_request_bytes);
        let export = Export(self.receiver.clone());
        Box::pin(async move { Ok(grpc.unary(export, req).await) })
    }
}

/// Hands the request message over as bytes: they are read straight into
/// records by [`read_protobuf`] (the HTTP receiver's function) once the
/// client is authenticated, as over HTTP; the answer is encoded by prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowsCodec;

impl Codec for RowsCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RowsCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RowsCodec
    }
}

impl Decoder for RowsCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Zero-copy when the message is one chunk, as it is in practice.
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// Encodes the answer.
#[derive(Debug, Clone, Copy)]
pub struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportLogsServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the answer: {e}")))
    }
}

/// The `Export` method.
struct Export(Arc<Receiver>);

impl UnaryService<Bytes> for Export {
    type Response = ExportLogsServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move { export(&receiver, request).await })
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

async fn export(
    receiver: &Receiver,
    request: Request<Bytes>,
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
    let client = receiver
        .authenticate(authorization, certificate)
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    // tonic's answer to an undecodable message, remapped by `Admitted`.
    let records = read_protobuf(request.get_ref(), &receiver.rules.limits)
        .map_err(|e| Status::internal(e.to_string()))?;
    receiver
        .export(records, client.as_deref())
        .await
        .map(Response::new)
        .map_err(status)
}
