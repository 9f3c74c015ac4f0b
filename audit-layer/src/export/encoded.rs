//! Records encoded once, as protobuf bytes, and the OTLP requests made of
//! them.
//!
//! The worker encodes each record as it leaves the queue, straight from
//! its fields ([`log_record`]), and from then on only moves bytes: a
//! request is a short header around a run of them, a retry or a half of a
//! too-large request is another run of the same bytes, and the spool
//! writes them as they are. Building the generated OTLP structs instead (a
//! `String` per attribute key and value), cloning them into every attempt
//! and encoding them each time was most of the export worker's time.

mod log_record;
#[cfg(test)]
mod tests;

use std::ops::Range;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use crate::export::{Item, SCOPE_NAME};

/// `ExportLogsServiceRequest.resource_logs`, `ResourceLogs.scope_logs`,
/// `ScopeLogs.log_records`.
const RESOURCE_LOGS: u32 = 1;
const RESOURCE: u32 = 1;
const SCOPE_LOGS: u32 = 2;
const SCOPE: u32 = 1;
const LOG_RECORDS: u32 = 2;

/// Log records as the `log_records` entries of an OTLP `ScopeLogs` (key,
/// length, `LogRecord` message), back to back: a run of records is one
/// slice of bytes.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    buf: Vec<u8>,
    /// Per record: where its entry starts and where its message starts.
    records: Vec<(usize, usize)>,
    /// The message being encoded, before its length is known.
    scratch: Vec<u8>,
}

impl Encoded {
    /// Room for `n` typical records.
    pub fn with_capacity(n: usize) -> Encoded {
        Encoded {
            buf: Vec::with_capacity(n * 384),
            records: Vec::with_capacity(n),
            scratch: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Appends a [`checked`](Item::checked) item's log record.
    pub fn push_item(&mut self, item: &Item) {
        let mut msg = std::mem::take(&mut self.scratch);
        msg.clear();
        match item {
            Item::Action(r) => log_record::action(r, &mut msg),
            Item::Violation(v) | Item::Report(v) => log_record::violation(v, &mut msg),
            Item::Span(_) => unreachable!("the worker checks every span it takes from the queue"),
        }
        self.push_message(&msg);
        self.scratch = msg;
    }

    /// Appends an encoded `LogRecord` message (read back from the spool).
    pub fn push_message(&mut self, msg: &[u8]) {
        let start = self.buf.len();
        encode_key(LOG_RECORDS, WireType::LengthDelimited, &mut self.buf);
        encode_varint(msg.len() as u64, &mut self.buf);
        self.records.push((start, self.buf.len()));
        self.buf.extend_from_slice(msg);
    }

    fn end(&self, i: usize) -> usize {
        self.records.get(i + 1).map_or(self.buf.len(), |r| r.0)
    }

    /// Record `i`'s `LogRecord` message.
    pub fn message(&self, i: usize) -> &[u8] {
        &self.buf[self.records[i].1..self.end(i)]
    }

    /// Bytes record `i` adds to a request.
    pub fn entry_len(&self, i: usize) -> usize {
        self.end(i) - self.records[i].0
    }

    /// The entries of a run of records, as one slice.
    pub fn entries(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        &self.buf[self.records[range.start].0..self.end(range.end - 1)]
    }

    /// Records from their structs (tests of what carries them).
    #[cfg(test)]
    pub fn from_records(records: &[opentelemetry_proto::tonic::logs::v1::LogRecord]) -> Encoded {
        let mut out = Encoded::default();
        for r in records {
            out.push_message(&r.encode_to_vec());
        }
        out
    }

    /// The records decoded (tests).
    #[cfg(test)]
    pub fn decoded(&self) -> Vec<opentelemetry_proto::tonic::logs::v1::LogRecord> {
        (0..self.len())
            .map(|i| {
                opentelemetry_proto::tonic::logs::v1::LogRecord::decode(self.message(i))
                    .expect("a record")
            })
            .collect()
    }

    /// Drops the first `n` records (settled; the rest is sent again).
    pub fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len());
        if n == 0 {
            return;
        }
        let cut = self.records.get(n).map_or(self.buf.len(), |r| r.0);
        self.buf.drain(..cut);
        self.records.drain(..n);
        for r in &mut self.records {
            r.0 -= cut;
            r.1 -= cut;
        }
    }
}

/// The encoded resource and scope that head every request of a process,
/// so that a request is their bytes and a run of record entries.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl RequestHead {
    pub fn new(resource: &Resource) -> RequestHead {
        let scope = InstrumentationScope {
            name: SCOPE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..InstrumentationScope::default()
        };
        RequestHead {
            resource: resource.encode_to_vec(),
            scope: scope.encode_to_vec(),
        }
    }

    /// The `ScopeLogs` and `ResourceLogs` message lengths around `records`
    /// bytes of entries.
    fn lengths(&self, records: usize) -> (usize, usize) {
        let scope_logs = delimited_len(SCOPE, self.scope.len()) + records;
        let resource_logs =
            delimited_len(RESOURCE, self.resource.len()) + delimited_len(SCOPE_LOGS, scope_logs);
        (scope_logs, resource_logs)
    }

    /// Bytes of a request carrying `records` bytes of entries.
    pub fn request_len(&self, records: usize) -> usize {
        delimited_len(RESOURCE_LOGS, self.lengths(records).1)
    }

    /// One `ExportLogsServiceRequest` carrying `entries` (from
    /// [`Encoded::entries`]): the bytes prost encodes for the same request
    /// built as structs.
    pub fn request(&self, entries: &[u8]) -> Vec<u8> {
        let (scope_logs, resource_logs) = self.lengths(entries.len());
        let mut buf = Vec::with_capacity(self.request_len(entries.len()));
        header(RESOURCE_LOGS, resource_logs, &mut buf);
        header(RESOURCE, self.resource.len(), &mut buf);
        buf.extend_from_slice(&self.resource);
        header(SCOPE_LOGS, scope_logs, &mut buf);
        header(SCOPE, self.scope.len(), &mut buf);
        buf.extend_from_slice(&self.scope);
        buf.extend_from_slice(entries);
        buf
    }
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field.
fn header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}
