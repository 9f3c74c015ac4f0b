//! OTLP receivers (gRPC and HTTP) and what they share: reading a request
//! against the wire table, re-checking the dual key, and answering with
//! OTLP's `partial_success` for the records refused.

pub mod body;
mod check;
pub mod grpc;
pub mod http;
pub mod protobuf;

pub use check::{check, check_received, Checked};

use std::sync::Arc;

use audit_schema::otlp::{decode_view, view, Attr, AttrValue, Decoded, RecordView, ResourceInfo};
use audit_schema::{Limits, Problem, Rules};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{AuthFailure, LiveTokens};
use crate::ingest::{Ingest, IngestError};
use crate::metrics::Metrics;

/// What both receivers need.
#[derive(Debug)]
pub struct Receiver {
    /// The store.
    pub ingest: Arc<Ingest>,
    /// The dual-key rules (same type the layer uses).
    pub rules: Rules,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Accepted bearer tokens, as the last reload left them; `None` lets
    /// any client write.
    pub tokens: Option<LiveTokens>,
    /// Consent verification; `None`: consent is not verified.
    pub consent: Option<Arc<crate::consent::ConsentCheck>>,
    /// One permit per request being served, both protocols together.
    pub in_flight: Arc<Semaphore>,
}

/// Answer to a request refused because the in-flight cap is reached.
pub const SHED_MESSAGE: &str = "collector busy: max_in_flight_requests reached, retry later";

/// One log record as read from a request: what the wire form breaks of
/// the [`Limits`] (attribute count, nesting), and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// Problems only the wire form shows.
    pub problems: Vec<Problem>,
    /// The record, read by the wire table (attributes past the limit cut).
    pub decoded: Decoded,
}

/// Every log record of a decoded request (JSON, or protobuf through the
/// generated types), in order.
pub fn read(req: ExportLogsServiceRequest, limits: &Limits) -> Vec<Received> {
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let res = ResourceInfo::from_resource(rl.resource.as_ref());
        for sl in rl.scope_logs {
            for lr in sl.log_records {
                let mut attributes = Attr::all(&lr.attributes);
                out.push(receive(limits, view(&lr, &[]), &mut attributes, &res));
            }
        }
    }
    out
}

/// Stands in for a value nested past `max_depth`, whose record is refused
/// for it: the string form of a nested array doubles its escapes at every
/// level, so a small request nested 40 levels deep would make gigabytes.
pub const TOO_DEEP: &str = "(value nested past max_depth: not read)";

/// One log record as both readers read it: its attributes checked against
/// the wire limits, cut to `max_attributes`, values nested too deep
/// replaced by [`TOO_DEEP`], then read by the wire table.
pub fn receive<'a>(
    limits: &Limits,
    record: RecordView<'_, 'a>,
    attributes: &mut Vec<Attr<'a>>,
    res: &ResourceInfo,
) -> Received {
    let problems = limits.check_attributes(attributes);
    // The record is refused already; decoding only what the limit allows
    // keeps the draft (and the violation row) small.
    attributes.truncate(limits.max_attributes);
    for attr in attributes.iter_mut() {
        if limits.too_deep(attr) {
            attr.value = Some(AttrValue::Str(TOO_DEEP));
        }
    }
    let record = RecordView {
        attributes,
        ..record
    };
    let decoded = decode_view(&record, res);
    Received { problems, decoded }
}

/// Every log record of an OTLP/protobuf request, read straight from its
/// bytes ([`protobuf::read`]); a request that reader leaves to prost goes
/// through the generated types, so the answer (records or error) is the
/// same either way.
pub fn read_protobuf(raw: &[u8], limits: &Limits) -> Result<Vec<Received>, prost::DecodeError> {
    match protobuf::read(raw, limits) {
        Ok(received) => Ok(received),
        Err(protobuf::Unusual) => Ok(read(ExportLogsServiceRequest::decode(raw)?, limits)),
    }
}

impl Receiver {
    /// A slot to serve one request, or `None` (counted) when
    /// `max_in_flight_requests` are being served: the caller answers with
    /// a retryable error at once instead of queueing without bound.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                Metrics::add(&self.metrics.shed_total, 1);
                None
            }
        }
    }

    /// The name recorded on a request's rows: with tokens configured, the
    /// name of its `authorization` token (refused when that fails, even
    /// over mutual TLS: both are then required); without tokens, the name
    /// of its verified client certificate (`certificate`, see
    /// [`crate::tls::client_name`]); else `None`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        certificate: Option<String>,
    ) -> Result<Option<String>, AuthFailure> {
        let Some(tokens) = &self.tokens else {
            return Ok(certificate);
        };
        match tokens.current().check(authorization) {
            Ok(name) => Ok(Some(name.to_owned())),
            Err(e) => {
                Metrics::add(&self.metrics.unauthenticated_total, 1);
                Err(e)
            }
        }
    }

    /// Checks and stores one request; answers once the kept records are
    /// durable. `client` (the authenticated name) is stamped on every row.
    pub async fn export(
        &self,
        records: Vec<Received>,
        client: Option<&str>,
    ) -> Result<ExportLogsServiceResponse, IngestError> {
        let received = records.len();
        Metrics::add(&self.metrics.requests_total, 1);
        Metrics::add(&self.metrics.records_received_total, received as u64);
        let mut checked = check_received(records, &self.rules, self.consent.as_deref());
        checked.stamp_client(client);
        if let Err(e) = self.ingest.submit(std::mem::take(&mut checked.batch)).await {
            self.metrics.requests_throttled.add(e.reason(), 1);
            crate::self_log::throttled(e.reason(), &e.to_string());
            return Err(e);
        }
        for (reason, n) in &checked.refused_by {
            self.metrics.records_refused.add(reason, *n);
        }
        if let Some(first) = checked.messages.first() {
            tracing::info!(
                refused = checked.refused,
                received,
                client = client.unwrap_or(""),
                first = %first,
                "refused records"
            );
        }
        Ok(checked.response())
    }
}

#[cfg(test)]
mod tests {
    use super::check::new_event_id;
    use super::*;
    use audit_schema::otlp::encode_action;
    use audit_schema::AuditRecord;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

    /// An agent action naming `owner` (the empty owner makes a record the
    /// collector must refuse).
    fn record(owner: &str) -> AuditRecord {
        AuditRecord {
            owner_id: owner.into(),
            ..crate::test_records::agent_action(new_event_id(), 1_764_000_000_000_000_000)
        }
    }

    #[test]
    fn mixed_batch_keeps_good_records_and_names_the_bad_one() {
        let good = encode_action(&record("usr_alice"));
        let bad = encode_action(&record(""));
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![good.clone(), bad, good],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let checked = check(req, &Rules::default(), None);
        assert_eq!(checked.batch.actions.len(), 2);
        assert_eq!(checked.refused, 1);
        assert_eq!(checked.batch.violations.len(), 1);
        assert_eq!(checked.batch.violations[0].detected_by, "collector");
        let resp = checked.response();
        let ps = resp.partial_success.expect("partial success");
        assert_eq!(ps.rejected_log_records, 1);
        assert!(
            ps.error_message
                .starts_with("record 1 refused: agent action without `audit.owner.id`"),
            "{}",
            ps.error_message
        );
    }

    /// A value nested 45 levels deep (prost takes up to 47 here) in a
    /// field the row keeps: refused for its depth, and its string form
    /// (which doubles its escapes per level) never made.
    #[test]
    fn values_nested_past_the_limit_are_refused_unread() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
        let mut v = Value::StringValue("x".into());
        for _ in 0..45 {
            v = Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(v) }],
            });
        }
        let mut lr = encode_action(&record("usr_alice"));
        for kv in &mut lr.attributes {
            if kv.key == audit_schema::Field::OwnerId.wire() {
                kv.value = Some(AnyValue {
                    value: Some(v.clone()),
                });
            }
        }
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![lr],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let received = read_protobuf(&req.encode_to_vec(), &Limits::default()).expect("decodes");
        assert!(matches!(
            received[0].problems[..],
            [Problem::TooDeep { .. }]
        ));
        let checked = check(req, &Rules::default(), None);
        assert_eq!((checked.batch.actions.len(), checked.refused), (0, 1));
        assert_eq!(
            checked.batch.violations[0].owner_id.as_deref(),
            Some(TOO_DEEP)
        );
    }
}
