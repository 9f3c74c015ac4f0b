//! One record as the protobuf bytes of an OTLP `LogRecord`, written
//! straight from its fields: the same message `audit_schema::otlp`'s
//! `encode_action` and `encode_violation` build as structs (the wire
//! table), without a `String` per attribute key and value. Fields are
//! written in tag order and defaults are left out, as prost does, so the
//! bytes are the ones prost would encode from those structs (the tests
//! compare them).

use audit_schema::columns::Cell;
use audit_schema::wire::{self, violation as v};
use audit_schema::{AuditRecord, Field, ViolationRecord};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use prost::encoding::{encoded_len_varint, key_len};

use super::{delimited_len, header};

/// `LogRecord` field tags.
const TIME: u32 = 1;
const SEVERITY_NUMBER: u32 = 2;
const SEVERITY_TEXT: u32 = 3;
const ATTRIBUTES: u32 = 6;
const TRACE_ID: u32 = 9;
const SPAN_ID: u32 = 10;
const OBSERVED_TIME: u32 = 11;
const EVENT_NAME: u32 = 12;
/// `KeyValue` field tags.
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
/// `AnyValue` oneof tags.
const ANY_STRING: u32 = 1;
const ANY_BOOL: u32 = 2;
const ANY_INT: u32 = 3;
const ANY_ARRAY: u32 = 5;
/// `ArrayValue.values`.
const ARRAY_VALUES: u32 = 1;

/// An attribute value, borrowed from the record.
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    List(&'a [String]),
}

fn delimited(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    header(tag, bytes.len(), buf);
    buf.extend_from_slice(bytes);
}

/// A proto3 string field: left out when empty.
fn string_field(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        delimited(tag, s.as_bytes(), buf);
    }
}

fn fixed64_field(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        prost::encoding::fixed64::encode(tag, &value, buf);
    }
}

/// Length of an `AnyValue` holding a string (a oneof: set even when empty).
fn any_string_len(s: &str) -> usize {
    delimited_len(ANY_STRING, s.len())
}

impl Value<'_> {
    /// Length of the `AnyValue` message.
    fn any_len(&self) -> usize {
        match self {
            Value::Str(s) => any_string_len(s),
            Value::Int(i) => key_len(ANY_INT) + encoded_len_varint(*i as u64),
            Value::Bool(_) => key_len(ANY_BOOL) + 1,
            Value::List(items) => delimited_len(ANY_ARRAY, array_len(items)),
        }
    }

    /// The `AnyValue` message's fields.
    fn encode_any(&self, buf: &mut Vec<u8>) {
        match self {
            Value::Str(s) => delimited(ANY_STRING, s.as_bytes(), buf),
            Value::Int(i) => prost::encoding::int64::encode(ANY_INT, i, buf),
            Value::Bool(b) => prost::encoding::bool::encode(ANY_BOOL, b, buf),
            Value::List(items) => {
                header(ANY_ARRAY, array_len(items), buf);
                for s in *items {
                    header(ARRAY_VALUES, any_string_len(s), buf);
                    delimited(ANY_STRING, s.as_bytes(), buf);
                }
            }
        }
    }
}

/// Length of an `ArrayValue` of strings.
fn array_len(items: &[String]) -> usize {
    items
        .iter()
        .map(|s| delimited_len(ARRAY_VALUES, any_string_len(s)))
        .sum()
}

/// One `attributes` entry: a `KeyValue` with its value set.
fn attribute(key: &str, value: Value<'_>, buf: &mut Vec<u8>) {
    let any = value.any_len();
    let key_field = if key.is_empty() {
        0
    } else {
        delimited_len(KV_KEY, key.len())
    };
    header(ATTRIBUTES, key_field + delimited_len(KV_VALUE, any), buf);
    string_field(KV_KEY, key, buf);
    header(KV_VALUE, any, buf);
    value.encode_any(buf);
}

fn opt_str(key: &str, value: Option<&str>, buf: &mut Vec<u8>) {
    if let Some(s) = value {
        attribute(key, Value::Str(s), buf);
    }
}

/// Nibble of each hex digit; 0xff for any other byte.
const HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => 0xff,
        };
        i += 1;
    }
    t
};

/// The bytes of a hex id; nothing when absent or not hex (the schema's
/// rule for ids it cannot carry). One pass: written as read, taken back
/// at the first byte that is not a hex digit.
fn id_field(tag: u32, hex: Option<&str>, buf: &mut Vec<u8>) {
    let Some(h) = hex else { return };
    let h = h.as_bytes();
    if h.is_empty() || h.len() % 2 != 0 {
        return;
    }
    let start = buf.len();
    header(tag, h.len() / 2, buf);
    for pair in h.chunks_exact(2) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        if (hi | lo) > 0x0f {
            buf.truncate(start);
            return;
        }
        buf.push(hi << 4 | lo);
    }
}

/// The fields before the attributes (1 to 3).
fn head(time_ns: i64, buf: &mut Vec<u8>) {
    fixed64_field(TIME, time_ns.max(0) as u64, buf);
    prost::encoding::int32::encode(SEVERITY_NUMBER, &(SeverityNumber::Info as i32), buf);
    string_field(SEVERITY_TEXT, "INFO", buf);
}

/// The fields after the attributes (9 to 12).
fn tail(trace: Option<&str>, span: Option<&str>, observed_ns: i64, event: &str, buf: &mut Vec<u8>) {
    id_field(TRACE_ID, trace, buf);
    id_field(SPAN_ID, span, buf);
    fixed64_field(OBSERVED_TIME, observed_ns.max(0) as u64, buf);
    string_field(EVENT_NAME, event, buf);
}

/// An attributed action, as `audit_schema::otlp::encode_action` builds it.
pub(super) fn action(r: &AuditRecord, buf: &mut Vec<u8>) {
    head(r.start_time_ns, buf);
    r.for_each_attribute(|field, cell| match cell {
        Cell::Str(s) => opt_str(field.wire(), s, buf),
        Cell::Time(Some(ns)) | Cell::Int(Some(ns)) => attribute(field.wire(), Value::Int(ns), buf),
        Cell::List(items) if !items.is_empty() => attribute(field.wire(), Value::List(items), buf),
        // Unset; the map is the remainder, below; booleans are set only by
        // verifiers and do not travel.
        Cell::Time(None) | Cell::Int(None) | Cell::List(_) | Cell::Map(_) | Cell::Bool(_) => {}
    });
    for (k, val) in &r.attributes {
        let value = if k == Field::Dangerous.wire() {
            Value::Bool(val == "true")
        } else {
            Value::Str(val)
        };
        attribute(k, value, buf);
    }
    tail(
        r.trace_id.as_deref(),
        r.span_id.as_deref(),
        r.end_time_ns.unwrap_or(r.start_time_ns),
        wire::EVENT_ACTION,
        buf,
    );
}

/// A violation, as `audit_schema::otlp::encode_violation` builds it.
pub(super) fn violation(x: &ViolationRecord, buf: &mut Vec<u8>) {
    head(x.time_ns, buf);
    attribute(Field::EventId.wire(), Value::Str(&x.event_id), buf);
    attribute(v::DETECTED_BY, Value::Str(&x.detected_by), buf);
    attribute(v::KIND, Value::Str(x.kind_or_inferred()), buf);
    attribute(v::MISSING, Value::List(&x.missing), buf);
    attribute(v::REASON, Value::Str(&x.reason), buf);
    opt_str(v::SPAN_TARGET, x.span_target.as_deref(), buf);
    opt_str(v::SPAN_NAME, x.span_name.as_deref(), buf);
    opt_str(v::CODE_FILE, x.code_file.as_deref(), buf);
    if let Some(line) = x.code_line {
        attribute(v::CODE_LINE, Value::Int(line), buf);
    }
    opt_str(Field::Action.wire(), x.action.as_deref(), buf);
    opt_str(Field::ActorKind.wire(), x.actor_kind.as_deref(), buf);
    opt_str(Field::AgentId.wire(), x.agent_id.as_deref(), buf);
    opt_str(Field::OwnerId.wire(), x.owner_id.as_deref(), buf);
    opt_str(Field::TaskId.wire(), x.task_id.as_deref(), buf);
    opt_str(Field::Target.wire(), x.target.as_deref(), buf);
    for (k, val) in &x.attributes {
        attribute(k, Value::Str(val), buf);
    }
    tail(
        x.trace_id.as_deref(),
        x.span_id.as_deref(),
        x.time_ns,
        wire::EVENT_VIOLATION,
        buf,
    );
}
