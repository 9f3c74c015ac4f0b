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

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

use super::reachability::SHUTDOWN_DEADLINE;
use super::Worker;
use crate::export::encoded::{Encoded, RequestHead};
use crate::export::{Failure, FailureKind};

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
        head: &RequestHead,
        records: &Encoded,
        shutdown: Option<Instant>,
    ) -> Sent {
        let max = self.settings.max_request_bytes;
        for piece in pieces(head, records, max) {
            let start = piece.start;
            if let Sent::Retry { wait, done } = self.halving(head, records, piece, shutdown) {
                return Sent::Retry {
                    wait,
                    done: start + done,
                };
            }
        }
        Sent::Done
    }

    /// One request of the `range` of `records`; when it is too large,
    /// each half (recursively).
    fn halving(
        &mut self,
        head: &RequestHead,
        records: &Encoded,
        range: Range<usize>,
        shutdown: Option<Instant>,
    ) -> Sent {
        let n = range.len() as u64;
        let body = Bytes::from(head.request(records.entries(range.clone())));
        match self.attempt(body, shutdown) {
            Ok(response) => {
                self.acknowledged(response, n);
                Sent::Done
            }
            Err(f) if f.kind == FailureKind::TooLarge && range.len() > 1 => {
                let mid = range.start + range.len() / 2;
                if let retry @ Sent::Retry { .. } =
                    self.halving(head, records, range.start..mid, shutdown)
                {
                    return retry;
                }
                match self.halving(head, records, mid..range.end, shutdown) {
                    Sent::Done => Sent::Done,
                    Sent::Retry { wait, done } => Sent::Retry {
                        wait,
                        done: mid - range.start + done,
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
        body: Bytes,
        shutdown: Option<Instant>,
    ) -> Result<ExportLogsServiceResponse, Failure> {
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
fn pieces(head: &RequestHead, records: &Encoded, max: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    // Bytes of the current run's entries.
    let (mut start, mut size) = (0, 0);
    for i in 0..records.len() {
        let len = records.entry_len(i);
        if i > start && head.request_len(size + len) > max {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    use super::pieces;
    use crate::export::encoded::{Encoded, RequestHead};

    fn records(body_bytes: impl IntoIterator<Item = usize>) -> Encoded {
        let mut out = Encoded::default();
        for n in body_bytes {
            let r = LogRecord {
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("x".repeat(n))),
                }),
                ..LogRecord::default()
            };
            out.push_message(&r.encode_to_vec());
        }
        out
    }

    #[test]
    fn every_piece_encodes_within_the_cap_and_covers_the_batch_in_order() {
        let head = RequestHead::new(&Resource::default());
        let records = records((0..300).map(|i| 100 + i * 7));
        let max = 20_000;
        let ranges = pieces(&head, &records, max);
        assert!(ranges.len() > 1, "{ranges:?}");
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.start, next);
            next = r.end;
            let len = head.request(records.entries(r.clone())).len();
            assert!(len <= max, "{r:?} encodes to {len} > {max}");
        }
        assert_eq!(next, records.len());
    }

    #[test]
    fn a_record_over_the_cap_goes_alone_and_an_empty_batch_has_no_piece() {
        let head = RequestHead::new(&Resource::default());
        let records = records([10, 5000, 10]);
        assert_eq!(pieces(&head, &records, 1000), vec![0..1, 1..2, 2..3]);
        assert!(pieces(&head, &Encoded::default(), 1000).is_empty());
        assert_eq!(pieces(&head, &records, 1 << 20), vec![0..3]);
    }
}
