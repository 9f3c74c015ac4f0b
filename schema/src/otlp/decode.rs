//! Reading log records by the wire table. The rules work on a borrowed
//! view of a record ([`RecordView`]), so that the same code serves the
//! generated OTLP types (JSON, tests) and the collector's protobuf decoder,
//! which reads attributes straight out of the request bytes without a
//! `String` per key and value.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::{hex_id, ResourceInfo};
use crate::record::{split_scopes, Draft, Field, ViolationRecord};
use crate::wire::{self, violation as v};

/// An attribute value as read: scalars borrowed from the request, arrays
/// and kvlists (rare, and nested) as the generated type.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue<'a> {
    /// `string_value`.
    Str(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// Anything else: `array_value`, `kvlist_value`, `string_value_strindex`.
    Other(Cow<'a, Value>),
}

impl<'a> AttrValue<'a> {
    /// The view of a generated value.
    pub fn of(v: &'a Value) -> AttrValue<'a> {
        match v {
            Value::StringValue(s) => AttrValue::Str(s),
            Value::BoolValue(b) => AttrValue::Bool(*b),
            Value::IntValue(i) => AttrValue::Int(*i),
            Value::DoubleValue(d) => AttrValue::Double(*d),
            Value::BytesValue(b) => AttrValue::Bytes(b),
            other => AttrValue::Other(Cow::Borrowed(other)),
        }
    }

    /// The value as stored in a string column (see [`stringify`]).
    pub fn stringify(&self) -> String {
        match self {
            AttrValue::Str(s) => (*s).to_owned(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => hex_id(b).unwrap_or_default(),
            AttrValue::Other(v) => stringify(v),
        }
    }

    /// The nested value whose depth the limits bound; scalars have none.
    pub fn nested(&self) -> Option<&Value> {
        match self {
            AttrValue::Other(v) => Some(v),
            _ => None,
        }
    }

    fn string_list(&self) -> Vec<String> {
        match self {
            AttrValue::Other(Cow::Borrowed(Value::ArrayValue(arr))) => string_items(arr),
            AttrValue::Other(Cow::Owned(Value::ArrayValue(arr))) => string_items(arr),
            AttrValue::Str(s) => split_scopes(s),
            other => vec![other.stringify()],
        }
    }
}

fn string_items(arr: &opentelemetry_proto::tonic::common::v1::ArrayValue) -> Vec<String> {
    arr.values
        .iter()
        .filter_map(|x| x.value.as_ref())
        .map(stringify)
        .filter(|s| !s.is_empty())
        .collect()
}

/// One attribute as sent: a `KeyValue` without a value (or with an empty
/// `AnyValue`) still counts toward `max_attributes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr<'a> {
    /// The key.
    pub key: &'a str,
    /// The value, if one was set.
    pub value: Option<AttrValue<'a>>,
}

impl<'a> Attr<'a> {
    /// The attributes of a generated log record (or resource).
    pub fn all(kvs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<Attr<'a>> {
        kvs.iter()
            .map(|kv| Attr {
                key: &kv.key,
                value: kv
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                    .map(AttrValue::of),
            })
            .collect()
    }
}

/// What the wire table reads of one log record.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'s, 'a> {
    /// `event_name`.
    pub event_name: &'a str,
    /// `time_unix_nano`.
    pub time_unix_nano: u64,
    /// `observed_time_unix_nano`.
    pub observed_time_unix_nano: u64,
    /// `trace_id`.
    pub trace_id: &'a [u8],
    /// `span_id`.
    pub span_id: &'a [u8],
    /// `attributes`, in the order sent.
    pub attributes: &'s [Attr<'a>],
}

impl ResourceInfo {
    /// Reads `service.name` and `service.instance.id` from a resource's
    /// attributes (the last of each wins; one without a value unsets it).
    pub fn from_attributes<'a>(attrs: impl IntoIterator<Item = &'a Attr<'a>>) -> ResourceInfo {
        let mut info = ResourceInfo::default();
        for attr in attrs {
            let val = attr.value.as_ref().map(AttrValue::stringify);
            match attr.key {
                wire::RESOURCE_SERVICE_NAME => info.service_name = val,
                wire::RESOURCE_SERVICE_INSTANCE_ID => info.service_instance_id = val,
                _ => {}
            }
        }
        info
    }
}

/// The string form of an attribute value, as stored in `attributes`.
/// Arrays become JSON-style lists so that nothing is silently flattened.
pub fn stringify(v: &Value) -> String {
    match v {
        Value::ArrayValue(arr) => {
            let items: Vec<String> = arr
                .values
                .iter()
                .map(|x| x.value.as_ref().map(stringify).unwrap_or_default())
                .map(|s| format!("{s:?}"))
                .collect();
            format!("[{}]", items.join(","))
        }
        Value::KvlistValue(kvs) => {
            let items: Vec<String> = kvs
                .values
                .iter()
                .map(|kv| {
                    let val = kv.value.as_ref().and_then(|x| x.value.as_ref());
                    format!("{:?}:{:?}", kv.key, val.map(stringify).unwrap_or_default())
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::StringValueStrindex(_) => String::new(),
        scalar => AttrValue::of(scalar).stringify(),
    }
}

/// What one OTLP log record is, for the audit trail.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// An `audit.action` record, not yet checked against the rules.
    Action(Box<Draft>),
    /// An `audit.violation` record reported by a client.
    Violation(Box<ViolationRecord>),
    /// Neither: the record is not for the audit trail.
    NotAudit {
        /// The event name it carried (possibly empty).
        event_name: String,
    },
}

/// Reads one log record according to the wire table.
pub fn decode(lr: &LogRecord, res: &ResourceInfo) -> Decoded {
    let attributes = Attr::all(&lr.attributes);
    decode_view(&view(lr, &attributes), res)
}

/// The view of a generated log record, over its attributes from [`Attr::all`].
pub fn view<'s, 'a>(lr: &'a LogRecord, attributes: &'s [Attr<'a>]) -> RecordView<'s, 'a> {
    RecordView {
        event_name: &lr.event_name,
        time_unix_nano: lr.time_unix_nano,
        observed_time_unix_nano: lr.observed_time_unix_nano,
        trace_id: &lr.trace_id,
        span_id: &lr.span_id,
        attributes,
    }
}

/// Reads one log record, as viewed, according to the wire table.
pub fn decode_view(lr: &RecordView<'_, '_>, res: &ResourceInfo) -> Decoded {
    let mut event_name = lr.event_name;
    if event_name.is_empty() {
        if let Some(AttrValue::Str(s)) = lr
            .attributes
            .iter()
            .find(|a| a.key == wire::LEGACY_EVENT_NAME_ATTR)
            .and_then(|a| a.value.as_ref())
        {
            event_name = s;
        }
    }
    // OTLP allows time_unix_nano = 0 ("unknown"); the observed time is then
    // the best evidence of when it happened.
    let time = if lr.time_unix_nano != 0 {
        lr.time_unix_nano
    } else {
        lr.observed_time_unix_nano
    };
    let time_ns = i64::try_from(time).ok().filter(|t| *t > 0);
    match event_name {
        wire::EVENT_ACTION => Decoded::Action(Box::new(decode_action(lr, res, time_ns))),
        wire::EVENT_VIOLATION => Decoded::Violation(Box::new(decode_violation(lr, res, time_ns))),
        _ => Decoded::NotAudit {
            event_name: event_name.to_owned(),
        },
    }
}

fn attrs<'v>(lr: &'v RecordView<'_, '_>) -> impl Iterator<Item = (&'v str, &'v AttrValue<'v>)> {
    lr.attributes
        .iter()
        .filter_map(|a| Some((a.key, a.value.as_ref()?)))
}

fn decode_action(lr: &RecordView<'_, '_>, res: &ResourceInfo, time_ns: Option<i64>) -> Draft {
    let mut d = Draft {
        start_time_ns: time_ns,
        service_name: res.service_name.clone(),
        service_instance_id: res.service_instance_id.clone(),
        trace_id: hex_id(lr.trace_id),
        span_id: hex_id(lr.span_id),
        ..Draft::default()
    };
    for (key, val) in attrs(lr) {
        if key == wire::LEGACY_EVENT_NAME_ATTR {
            continue;
        }
        match (Field::from_wire(key), val) {
            (Some(Field::Scopes), val) => d.scopes = val.string_list(),
            (Some(Field::EndTime), AttrValue::Int(ns)) => d.end_time_ns = Some(*ns),
            (Some(f @ (Field::Privileged | Field::Dangerous)), AttrValue::Bool(b)) => {
                d.set_bool(f, *b)
            }
            (Some(f), val) => d.set(f, val.stringify()),
            (None, val) => {
                d.attributes.insert(key.to_owned(), val.stringify());
            }
        }
    }
    d
}

fn decode_violation(
    lr: &RecordView<'_, '_>,
    res: &ResourceInfo,
    time_ns: Option<i64>,
) -> ViolationRecord {
    let mut x = ViolationRecord {
        time_ns: time_ns.unwrap_or(0),
        service_name: res
            .service_name
            .clone()
            .unwrap_or_else(|| wire::UNKNOWN_SERVICE.to_owned()),
        service_instance_id: res.service_instance_id.clone(),
        trace_id: hex_id(lr.trace_id),
        span_id: hex_id(lr.span_id),
        ..ViolationRecord::default()
    };
    for (key, val) in attrs(lr) {
        let s = || Some(val.stringify());
        match key {
            k if k == Field::EventId.wire() => x.event_id = val.stringify(),
            v::DETECTED_BY => x.detected_by = val.stringify(),
            v::KIND => x.kind = s(),
            v::MISSING => x.missing = val.string_list(),
            v::REASON => x.reason = val.stringify(),
            v::SPAN_TARGET => x.span_target = s(),
            v::SPAN_NAME => x.span_name = s(),
            v::CODE_FILE => x.code_file = s(),
            v::CODE_LINE => x.code_line = val.stringify().parse().ok(),
            k if k == Field::Action.wire() => x.action = s(),
            k if k == Field::ActorKind.wire() => x.actor_kind = s(),
            k if k == Field::AgentId.wire() => x.agent_id = s(),
            k if k == Field::OwnerId.wire() => x.owner_id = s(),
            k if k == Field::TaskId.wire() => x.task_id = s(),
            k if k == Field::Target.wire() => x.target = s(),
            wire::LEGACY_EVENT_NAME_ATTR => {}
            _ => {
                x.attributes.insert(key.to_owned(), val.stringify());
            }
        }
    }
    // Clients older than the `kind` column say it only through `missing`.
    x.kind = Some(x.kind_or_inferred().to_owned());
    x
}
