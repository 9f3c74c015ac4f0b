//! OTLP/HTTP logs receiver: `POST /v1/logs` with protobuf or JSON bodies
//! (optionally gzip or zstd). The server adds [`crate::admin`]'s routes
//! (`/healthz`, `/readyz`, `/metrics`) unless they have their own listener.
//!
//! Status codes follow the OTLP/HTTP spec: 200 with `partial_success` when
//! some records are refused, 400 for an undecodable body (including invalid
//! UTF-8 in a protobuf string: prost refuses the whole message), 408 for a
//! body not received in time, 413 for a body over the limit as sent or once
//! decompressed, 415 for an unknown content type or encoding, 429 (write
//! queue full) and 503 (too many requests in flight, shutting down, storage
//! error) with `Retry-After` when the client should retry.

use std::sync::Arc;
use std::time::Duration;

use audit_schema::Limits;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::body::{self, BodyError, Encoding};
use super::{read, read_protobuf, Received, Receiver};
use crate::ingest::IngestError;
use crate::tls::TlsPeer;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the error body OTLP/HTTP asks for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Message for people.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Shared state of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The receiver.
    pub receiver: Arc<Receiver>,
    /// Largest accepted body, as sent and after decompression.
    pub max_request_bytes: usize,
    /// Deadline for receiving a request's body.
    pub body_timeout: Duration,
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/logs", post(export))
        .with_state(state)
}

/// How an OTLP/HTTP body is encoded (from `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP's JSON mapping).
    Json,
}

fn error(format: Format, status: StatusCode, code: tonic::Code, message: String) -> Response {
    let body = match format {
        Format::Protobuf => RpcStatus {
            code: code as i32,
            message,
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    let ct = if format == Format::Json {
        JSON
    } else {
        PROTOBUF
    };
    let mut resp = (status, [(header::CONTENT_TYPE, ct)], body).into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        let secs = super::grpc::RETRY_AFTER.as_secs().to_string();
        if let Ok(v) = secs.parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

async fn export(
    State(s): State<HttpState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if ct.starts_with(PROTOBUF) {
        Format::Protobuf
    } else if ct.starts_with(JSON) {
        Format::Json
    } else {
        return error(
            Format::Protobuf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            format!("Content-Type {ct:?} not supported: use {PROTOBUF} or {JSON}"),
        );
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Present only on a TLS listener; the verifier already checked it.
    let certificate = extensions
        .get::<ConnectInfo<TlsPeer>>()
        .and_then(|peer| peer.0.client.clone());
    let client = match s.receiver.authenticate(authorization, certificate) {
        Ok(client) => client,
        Err(e) => {
            let mut resp = error(
                format,
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                e.to_string(),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    };
    let bad = |m: String| {
        error(
            format,
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            m,
        )
    };
    // Held until the answer: the body is read only once admitted, so the
    // memory of requests in flight is bounded by the cap times the body size.
    let Some(_permit) = s.receiver.admit() else {
        return error(
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            super::SHED_MESSAGE.into(),
        );
    };
    let max = s.max_request_bytes;
    let raw = match Encoding::of(&headers) {
        Ok(encoding) => match body::receive(body, max, s.body_timeout).await {
            Ok(raw) => body::decode(encoding, raw, max),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            let (status, code) = match e {
                BodyError::UnknownEncoding(_) => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    tonic::Code::InvalidArgument,
                ),
                BodyError::TooLarge { .. } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    tonic::Code::ResourceExhausted,
                ),
                BodyError::Timeout(_) => {
                    (StatusCode::REQUEST_TIMEOUT, tonic::Code::DeadlineExceeded)
                }
                BodyError::Unreadable(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
            };
            return error(format, status, code, e.to_string());
        }
    };
    let records = match parse(format, &raw, &s.receiver.rules.limits) {
        Ok(r) => r,
        Err(m) => return bad(m),
    };
    match s.receiver.export(records, client.as_deref()).await {
        Ok(resp) => {
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                Format::Json => serde_json::to_vec(&resp).unwrap_or_default(),
            };
            let ct = if format == Format::Json {
                JSON
            } else {
                PROTOBUF
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
        }
        Err(e @ IngestError::Overloaded) => error(
            format,
            StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::Unavailable,
            e.to_string(),
        ),
        Err(e) => error(
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            e.to_string(),
        ),
    }
}

/// The log records of a decompressed body, or why it is not an OTLP logs
/// request. Protobuf is read straight from the bytes, as over gRPC; JSON
/// through the generated types.
pub fn parse(format: Format, raw: &[u8], limits: &Limits) -> Result<Vec<Received>, String> {
    match format {
        Format::Protobuf => {
            read_protobuf(raw, limits).map_err(|e| format!("undecodable OTLP protobuf: {e}"))
        }
        Format::Json => serde_json::from_slice::<ExportLogsServiceRequest>(raw)
            .map(|req| read(req, limits))
            .map_err(|e| format!("undecodable OTLP JSON: {e}")),
    }
}
