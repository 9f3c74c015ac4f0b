//! Sending one batch: requests of at most `max_request_bytes`, halved again
//! when the collector still finds one too large, and the accounting of what
//! the collector acknowledged or refused.
//!
//! A batch may be delivered in several requests, so delivery can stop part
//! way (the collector goes away after the first half): [`Sent::Retry`] says
//! how many leading records are already settled, and the caller sends only
//! the rest next time. Settled records are never counted twice.

use std::ops::Range;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::reachability::SHUTDOWN_DEADLINE;
use super::Worker;
use crate::export::{Failure, FailureKind, SCOPE_NAME};

/// Bytes the length prefixes of `ResourceLogs` and `ScopeLogs` can grow by
/// as records are added (two varints, 1 to 5 bytes each), with margin.
const NESTING_SLACK: usize = 16;

/// The outcome of sending a batch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Every record was acknowledged or refused.
    Done,
    /// The first `done` records were acknowledged or refused; send the
    /// rest again after `wait`.
    Retry { wait: Duration, done: usize },
}

impl Worker {
    /// Sends `records` in requests the collector's size cap allows.
    pub(super) fn deliver(
        &mut self,
        resource: &Resource,
        records: &[LogRecord],
        shutdown: Option<Instant>,
    ) -> Sent {
        let max = self.settings.max_request_bytes;
        for piece in pieces(resource, records, max) {
            let start = piece.start;
            if let Sent::Retry { wait, done } = self.halving(resource, &records[piece], shutdown) {
                return Sent::Retry {
                    wait,
                    done: start + done,
                };
            }
        }
        Sent::Done
    }

    /// One request; when it is too large, each half (recursively).
    fn halving(
        &mut self,
        resource: &Resource,
        records: &[LogRecord],
        shutdown: Option<Instant>,
    ) -> Sent {
        let n = records.len() as u64;
        match self.attempt(resource, records, shutdown) {
            Ok(response) => {
                self.acknowledged(response, n);
                Sent::Done
            }
            Err(f) if f.kind == FailureKind::TooLarge && records.len() > 1 => {
                let mid = records.len() / 2;
                if let retry @ Sent::Retry { .. } =
                    self.halving(resource, &records[..mid], shutdown)
                {
                    return retry;
                }
                match self.halving(resource, &records[mid..], shutdown) {
                    Sent::Done => Sent::Done,
                    Sent::Retry { wait, done } => Sent::Retry {
                        wait,
                        done: mid + done,
                    },
                }
            }
            Err(f) if f.kind == FailureKind::TooLarge => {
                self.delivery_answered();
                self.refused(
                    1,
                    1,
                    format!("one record is too large for a request: {}", f.message),
                );
                Sent::Done
            }
            Err(f) if f.kind == FailureKind::Refused => {
                self.delivery_answered();
                self.refused(n, n, f.message);
                Sent::Done
            }
            Err(f) => {
                self.delivery_failed(&f, shutdown);
                Sent::Retry {
                    wait: self.next_backoff(f.retry_after),
                    done: 0,
                }
            }
        }
    }

    /// One request, bounded by the shutdown deadline when there is one.
    fn attempt(
        &mut self,
        resource: &Resource,
        records: &[LogRecord],
        shutdown: Option<Instant>,
    ) -> Result<ExportLogsServiceResponse, Failure> {
        let body = request(resource.clone(), records.to_vec());
        let transport = &mut self.transport;
        self.runtime.block_on(async {
            match shutdown {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::timeout(left, transport.export(body))
                        .await
                        .unwrap_or_else(|_| Err(Failure::transient(SHUTDOWN_DEADLINE.to_owned())))
                }
                None => transport.export(body).await,
            }
        })
    }

    /// Accounts for a request of `n` records the collector answered.
    fn acknowledged(&mut self, response: ExportLogsServiceResponse, n: u64) {
        self.delivery_answered();
        let partial = response.partial_success.unwrap_or_default();
        let refused = u64::try_from(partial.rejected_log_records)
            .unwrap_or(0)
            .min(n);
        self.status().add_exported(n - refused);
        if refused > 0 {
            self.refused(refused, n, partial.error_message);
        }
        self.report_losses();
    }

    fn refused(&self, refused: u64, n: u64, reason: String) {
        self.status().add_refused(refused);
        let reason = if reason.trim().is_empty() {
            "(no reason given)".to_owned()
        } else {
            reason
        };
        if self.status().set_last_refusal(reason.clone()) {
            eprintln!(
                "audit-layer: the collector refused {refused} of {n} audit records: {reason} \
                 (logged once; see AuditStatus::refused and AuditStatus::last_refusal)"
            );
        }
    }
}

/// `records` cut, in order, into runs whose request encodes to at most
/// `max` bytes. A record too large on its own is a run by itself: the
/// collector, whose cap may be larger, decides.
fn pieces(resource: &Resource, records: &[LogRecord], max: usize) -> Vec<Range<usize>> {
    let overhead = request(resource.clone(), Vec::new()).encoded_len() + NESTING_SLACK;
    let mut out = Vec::new();
    let (mut start, mut size) = (0, overhead);
    for (i, r) in records.iter().enumerate() {
        // Field tag, length prefix, message.
        let len = r.encoded_len();
        let len = 1 + prost::length_delimiter_len(len) + len;
        if i > start && size + len > max {
            out.push(start..i);
            (start, size) = (i, overhead);
        }
        size += len;
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

/// One OTLP request carrying `log_records` under `resource`.
fn request(resource: Resource, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    use super::{pieces, request};

    fn record(body_bytes: usize) -> LogRecord {
        LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("x".repeat(body_bytes))),
            }),
            ..LogRecord::default()
        }
    }

    #[test]
    fn every_piece_encodes_within_the_cap_and_covers_the_batch_in_order() {
        let resource = Resource::default();
        let records: Vec<LogRecord> = (0..300).map(|i| record(100 + i * 7)).collect();
        let max = 20_000;
        let ranges = pieces(&resource, &records, max);
        assert!(ranges.len() > 1, "{ranges:?}");
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.start, next);
            next = r.end;
            let len = request(resource.clone(), records[r.clone()].to_vec()).encoded_len();
            assert!(len <= max, "{r:?} encodes to {len} > {max}");
        }
        assert_eq!(next, records.len());
    }

    #[test]
    fn a_record_over_the_cap_goes_alone_and_an_empty_batch_has_no_piece() {
        let resource = Resource::default();
        let records = vec![record(10), record(5000), record(10)];
        assert_eq!(pieces(&resource, &records, 1000), vec![0..1, 1..2, 2..3]);
        assert!(pieces(&resource, &[], 1000).is_empty());
        assert_eq!(pieces(&resource, &records, 1 << 20), vec![0..3]);
    }
}
