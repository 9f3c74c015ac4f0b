//! OTLP/gRPC export of request bodies encoded beforehand: the load
//! generator encodes every request before its clock starts, and the
//! end-to-end tests send garbage, truncated or hand-edited messages exactly
//! as given.
//!
//! ```no_run
//! # async fn f(channel: tonic::transport::Channel, body: bytes::Bytes) -> Result<(), tonic::Status> {
//! use audit_trail::raw_grpc::{PreEncoded, EXPORT_PATH};
//!
//! let mut grpc = tonic::client::Grpc::new(channel);
//! grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
//! let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
//! let answer = grpc.unary(tonic::Request::new(body), path, PreEncoded).await?;
//! println!("{:?}", answer.into_inner().partial_success);
//! # Ok(()) }
//! ```

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The OTLP logs export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A gRPC codec whose requests are already-encoded protobuf, sent as they
/// are, and whose answers are decoded as OTLP export responses.
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
