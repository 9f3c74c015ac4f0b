//! OTLP/gRPC transport: the logs service's `Export` method over a tonic
//! channel, with a codec that sends the request bytes the worker encoded
//! ([`super::encoded`]) as they are.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::tls::TlsPem;
use super::{Failure, FailureKind};
use crate::build_error::BuildError;

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
            uri: self.endpoint.uri().clone(),
            client: tonic::client::Grpc::new(self.endpoint.connect_lazy()),
            metadata: self.metadata,
        }
    }
}

pub(crate) struct Grpc {
    client: tonic::client::Grpc<Channel>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    uri: Uri,
}

impl Grpc {
    /// The endpoint, for diagnostics.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Sends one encoded `ExportLogsServiceRequest`.
    pub async fn export(&mut self, body: Bytes) -> Result<ExportLogsServiceResponse, Failure> {
        let mut request = tonic::Request::new(body);
        for (k, v) in &self.metadata {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        // What the generated client answers, so diagnostics read the same.
        self.client
            .ready()
            .await
            .map_err(|e| classify(&Status::unknown(format!("Service was not ready: {e}"))))?;
        self.client
            .unary(request, PathAndQuery::from_static(EXPORT_PATH), PreEncoded)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| classify(&status))
    }
}

/// The OTLP logs export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A gRPC codec whose requests are already-encoded protobuf, sent as they
/// are, and whose answers are decoded as OTLP export responses.
///
/// The export worker sends its encoded batches with it; it is public for
/// load generators (encode every request before the clock starts) and
/// tests that send garbage, truncated or hand-edited messages exactly as
/// given.
///
/// ```no_run
/// # async fn f(channel: tonic::transport::Channel, body: bytes::Bytes) -> Result<(), tonic::Status> {
/// use audit_layer::export::{PreEncoded, EXPORT_PATH};
///
/// let mut grpc = tonic::client::Grpc::new(channel);
/// grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
/// let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
/// let answer = grpc.unary(tonic::Request::new(body), path, PreEncoded).await?;
/// println!("{:?}", answer.into_inner().partial_success);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PreEncoded;

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = ExportLogsServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportLogsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;
    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }
    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

/// What an error status means for the records sent.
///
/// The OTLP spec retries only `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
/// `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS`, and `RESOURCE_EXHAUSTED`
/// when the server sends a `RetryInfo` (a throttle); anything else drops
/// the batch. We diverge on purpose for an audit trail:
/// - `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`, `UNIMPLEMENTED`
///   and other codes of a misconfigured endpoint or token make records
///   wait (and spool), not disappear: fixing the configuration delivers them.
/// - `RESOURCE_EXHAUSTED` without `RetryInfo` is what the collector (and
///   grpc-go / tonic servers) answer for a message over their size cap.
///   Dropping the batch would lose audit records and resending it as is
///   would wedge the queue, so it is [`FailureKind::TooLarge`]: sent again
///   in halves, and only a single record still too large is refused.
/// - Only `INVALID_ARGUMENT` (a malformed request) is refused as a whole.
pub(crate) fn classify(status: &tonic::Status) -> Failure {
    let retry_info = status.get_details_retry_info();
    let kind = match status.code() {
        Code::InvalidArgument => FailureKind::Refused,
        Code::ResourceExhausted if retry_info.is_none() => FailureKind::TooLarge,
        _ => FailureKind::Transient,
    };
    Failure {
        kind,
        retry_after: retry_info.and_then(|r| r.retry_delay),
        message: format!("gRPC {:?}: {}", status.code(), status.message()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    use super::{classify, FailureKind};

    #[test]
    fn resource_exhausted_without_retry_info_is_too_large() {
        let f = classify(&Status::resource_exhausted("message over 1024 bytes"));
        assert_eq!(f.kind, FailureKind::TooLarge);
        assert_eq!(f.retry_after, None);
        assert!(
            f.message.contains("message over 1024 bytes"),
            "{}",
            f.message
        );
    }

    #[test]
    fn resource_exhausted_with_retry_info_is_a_throttle_with_its_hint() {
        let hint = Duration::from_millis(1500);
        let details = ErrorDetails::with_retry_info(Some(hint));
        let status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        let f = classify(&status);
        assert_eq!(f.kind, FailureKind::Transient);
        assert_eq!(f.retry_after, Some(hint));
    }

    #[test]
    fn invalid_argument_is_refused_and_misconfiguration_waits() {
        assert_eq!(
            classify(&Status::invalid_argument("bad")).kind,
            FailureKind::Refused
        );
        for status in [
            Status::unavailable("down"),
            Status::unauthenticated("token"),
            Status::permission_denied("no"),
            Status::unimplemented("wrong endpoint"),
        ] {
            assert_eq!(classify(&status).kind, FailureKind::Transient, "{status:?}");
        }
    }
}
