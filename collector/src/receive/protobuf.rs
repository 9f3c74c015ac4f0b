//! OTLP/protobuf request bytes read straight into what the checks take
//! (one [`Received`] per log record), without the generated types: keys
//! and string values are borrowed from the request and matched against the
//! wire table, so a record costs the strings it keeps, not a `String` per
//! key and value on the way.
//!
//! The answer must be exactly prost's (the generated types, then
//! [`super::read`]), so this reader takes only shapes whose meaning is
//! unambiguous and gives up ([`Unusual`]) on everything else: any error
//! (prost's decoder then produces the exact error message), groups, and a
//! field prost would merge rather than replace (a second `value` in a
//! `KeyValue`, a second value in an `AnyValue`). Everything prost checks
//! is checked here too, in the parts of the request that are read and in
//! those that are only validated: wire types of known fields, UTF-8 of
//! strings, lengths, and prost's recursion limit, counted the same way.

use std::borrow::Cow;

use audit_schema::otlp::{Attr, AttrValue, RecordView, ResourceInfo};
use audit_schema::Limits;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};

use super::{receive, Received};

/// The request is left to prost's decoder, which gives the answer: its
/// exact error, or the same records for a shape this reader does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unusual;

type R<T> = Result<T, Unusual>;

/// prost's recursion limit: nested messages allowed below the request.
const RECURSION_LIMIT: u32 = 100;

/// One field's value, as the wire type delimits it.
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Len(&'a [u8]),
}

impl<'a> Field<'a> {
    fn wire_type(&self) -> WireType {
        match self {
            Field::Varint(_) => WireType::Varint,
            Field::Fixed64(_) => WireType::SixtyFourBit,
            Field::Fixed32 => WireType::ThirtyTwoBit,
            Field::Len(_) => WireType::LengthDelimited,
        }
    }

    fn varint(self) -> R<u64> {
        match self {
            Field::Varint(v) => Ok(v),
            _ => Err(Unusual),
        }
    }

    fn fixed64(self) -> R<u64> {
        match self {
            Field::Fixed64(v) => Ok(v),
            _ => Err(Unusual),
        }
    }

    fn bytes(self) -> R<&'a [u8]> {
        match self {
            Field::Len(b) => Ok(b),
            _ => Err(Unusual),
        }
    }

    fn str(self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Unusual)
    }

    /// A nested message's bytes, read by prost at recursion count `count`
    /// (that of the enclosing message's fields): the count of its own
    /// fields, one less.
    fn message(self, count: u32) -> R<(&'a [u8], u32)> {
        let b = self.bytes()?;
        let inner = count.checked_sub(1).ok_or(Unusual)?;
        Ok((b, inner))
    }
}

/// The fields of one message, in the order sent.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    fn take(&mut self, n: u64) -> R<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Unusual)?;
        if n > self.buf.len() {
            return Err(Unusual);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn read(&mut self) -> R<(u32, Field<'a>)> {
        let (tag, wire_type) = decode_key(&mut self.buf).map_err(|_| Unusual)?;
        let value = match wire_type {
            WireType::Varint => Field::Varint(decode_varint(&mut self.buf).map_err(|_| Unusual)?),
            WireType::SixtyFourBit => Field::Fixed64(self.take(8)?.get_u64_le()),
            WireType::ThirtyTwoBit => {
                self.take(4)?;
                Field::Fixed32
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut self.buf).map_err(|_| Unusual)?;
                Field::Len(self.take(len)?)
            }
            // Only legacy proto2 writers send groups; prost skips them
            // (counting recursion), and so does the fallback.
            WireType::StartGroup | WireType::EndGroup => return Err(Unusual),
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = R<(u32, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        (!self.buf.is_empty()).then(|| self.read())
    }
}

/// An unknown field, skipped as prost does: only where its recursion
/// count allows (`skip_field` checks the limit first).
fn skip(count: u32) -> R<()> {
    if count == 0 {
        Err(Unusual)
    } else {
        Ok(())
    }
}

/// Messages only validated (their content is not stored), with the kind
/// of each known field.
#[derive(Clone, Copy)]
enum Schema {
    AnyValue,
    ArrayValue,
    KeyValueList,
    KeyValue,
    InstrumentationScope,
    EntityRef,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    Varint,
    Fixed64,
    Message(Schema),
}

impl Schema {
    fn kind(self, tag: u32) -> Option<Kind> {
        use Kind::*;
        Some(match (self, tag) {
            (Schema::AnyValue, 1) => Str,
            (Schema::AnyValue, 2 | 3 | 8) => Varint,
            (Schema::AnyValue, 4) => Fixed64,
            (Schema::AnyValue, 5) => Message(Schema::ArrayValue),
            (Schema::AnyValue, 6) => Message(Schema::KeyValueList),
            (Schema::AnyValue, 7) => Bytes,
            (Schema::ArrayValue, 1) => Message(Schema::AnyValue),
            (Schema::KeyValueList, 1) => Message(Schema::KeyValue),
            (Schema::KeyValue, 1) => Str,
            (Schema::KeyValue, 2) => Message(Schema::AnyValue),
            (Schema::KeyValue, 3) => Varint,
            (Schema::InstrumentationScope, 1 | 2) => Str,
            (Schema::InstrumentationScope, 3) => Message(Schema::KeyValue),
            (Schema::InstrumentationScope, 4) => Varint,
            (Schema::EntityRef, 1..=4) => Str,
            _ => return None,
        })
    }
}

/// Checks a message prost would decode and the collector discards (a
/// scope, a body, an entity reference); `count` is the recursion count of
/// its fields.
fn validate(schema: Schema, buf: &[u8], count: u32) -> R<()> {
    for field in Fields::of(buf) {
        let (tag, value) = field?;
        let Some(kind) = schema.kind(tag) else {
            skip(count)?;
            continue;
        };
        match kind {
            Kind::Str => {
                value.str()?;
            }
            Kind::Bytes => {
                value.bytes()?;
            }
            Kind::Varint => {
                value.varint()?;
            }
            Kind::Fixed64 => {
                value.fixed64()?;
            }
            Kind::Message(inner) => {
                let (b, c) = value.message(count)?;
                validate(inner, b, c)?;
            }
        }
    }
    Ok(())
}

/// An `AnyValue`'s value: scalars borrowed, arrays and kvlists built as the
/// generated types. `None` for an `AnyValue` with no value set.
fn any_value(buf: &[u8], count: u32) -> R<Option<AttrValue<'_>>> {
    let mut out = None;
    for field in Fields::of(buf) {
        let (tag, value) = field?;
        let v = match tag {
            1 => AttrValue::Str(value.str()?),
            2 => AttrValue::Bool(value.varint()? != 0),
            3 => AttrValue::Int(value.varint()? as i64),
            4 => AttrValue::Double(f64::from_bits(value.fixed64()?)),
            5 => {
                let (b, c) = value.message(count)?;
                AttrValue::Other(Cow::Owned(Value::ArrayValue(array(b, c)?)))
            }
            6 => {
                let (b, c) = value.message(count)?;
                AttrValue::Other(Cow::Owned(Value::KvlistValue(kvlist(b, c)?)))
            }
            7 => AttrValue::Bytes(value.bytes()?),
            8 => AttrValue::Other(Cow::Owned(Value::StringValueStrindex(
                value.varint()? as i32
            ))),
            _ => {
                skip(count)?;
                continue;
            }
        };
        // A second value merges into the first in prost (arrays append):
        // left to it.
        if out.replace(v).is_some() {
            return Err(Unusual);
        }
    }
    Ok(out)
}

fn owned(v: AttrValue<'_>) -> Value {
    match v {
        AttrValue::Str(s) => Value::StringValue(s.to_owned()),
        AttrValue::Bool(b) => Value::BoolValue(b),
        AttrValue::Int(i) => Value::IntValue(i),
        AttrValue::Double(d) => Value::DoubleValue(d),
        AttrValue::Bytes(b) => Value::BytesValue(b.to_vec()),
        AttrValue::Other(v) => v.into_owned(),
    }
}

fn array(buf: &[u8], count: u32) -> R<ArrayValue> {
    let mut values = Vec::new();
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                values.push(AnyValue {
                    value: any_value(b, c)?.map(owned),
                });
            }
            _ => skip(count)?,
        }
    }
    Ok(ArrayValue { values })
}

fn kvlist(buf: &[u8], count: u32) -> R<KeyValueList> {
    let mut values = Vec::new();
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                let attr = key_value(b, c)?;
                values.push(KeyValue {
                    key: attr.key.to_owned(),
                    value: attr.value.map(|v| AnyValue {
                        value: Some(owned(v)),
                    }),
                    ..KeyValue::default()
                });
            }
            _ => skip(count)?,
        }
    }
    Ok(KeyValueList { values })
}

fn key_value(buf: &[u8], count: u32) -> R<Attr<'_>> {
    let mut key = "";
    let mut value = None;
    let mut seen_value = false;
    for field in Fields::of(buf) {
        match field? {
            (1, v) => key = v.str()?,
            (2, v) => {
                // prost merges a second `value` into the first.
                if std::mem::replace(&mut seen_value, true) {
                    return Err(Unusual);
                }
                let (b, c) = v.message(count)?;
                value = any_value(b, c)?;
            }
            (3, v) => {
                v.varint()?;
            }
            _ => skip(count)?,
        }
    }
    Ok(Attr { key, value })
}

/// Reads a whole `ExportLogsServiceRequest` under `limits`.
pub fn read(buf: &[u8], limits: &Limits) -> R<Vec<Received>> {
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    let count = RECURSION_LIMIT;
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                resource_logs(b, c, limits, &mut scratch, &mut out)?;
            }
            _ => skip(count)?,
        }
    }
    Ok(out)
}

/// Attribute lists reused from record to record.
#[derive(Default)]
struct Scratch<'a> {
    resource: Vec<Attr<'a>>,
    record: Vec<Attr<'a>>,
}

fn resource_logs<'a>(
    buf: &'a [u8],
    count: u32,
    limits: &Limits,
    scratch: &mut Scratch<'a>,
    out: &mut Vec<Received>,
) -> R<()> {
    // The resource may follow the records it describes: read it first.
    scratch.resource.clear();
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                resource(b, c, &mut scratch.resource)?;
            }
            (2, value) => {
                value.message(count)?;
            }
            (3, value) => {
                value.str()?;
            }
            _ => skip(count)?,
        }
    }
    let res = ResourceInfo::from_attributes(&scratch.resource);
    for field in Fields::of(buf) {
        if let (2, value) = field? {
            let (b, c) = value.message(count)?;
            scope_logs(b, c, limits, &res, &mut scratch.record, out)?;
        }
    }
    Ok(())
}

fn resource<'a>(buf: &'a [u8], count: u32, attrs: &mut Vec<Attr<'a>>) -> R<()> {
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                attrs.push(key_value(b, c)?);
            }
            (2, value) => {
                value.varint()?;
            }
            (3, value) => {
                let (b, c) = value.message(count)?;
                validate(Schema::EntityRef, b, c)?;
            }
            _ => skip(count)?,
        }
    }
    Ok(())
}

fn scope_logs<'a>(
    buf: &'a [u8],
    count: u32,
    limits: &Limits,
    res: &ResourceInfo,
    attrs: &mut Vec<Attr<'a>>,
    out: &mut Vec<Received>,
) -> R<()> {
    for field in Fields::of(buf) {
        match field? {
            (1, value) => {
                let (b, c) = value.message(count)?;
                validate(Schema::InstrumentationScope, b, c)?;
            }
            (2, value) => {
                let (b, c) = value.message(count)?;
                out.push(log_record(b, c, limits, res, attrs)?);
            }
            (3, value) => {
                value.str()?;
            }
            _ => skip(count)?,
        }
    }
    Ok(())
}

fn log_record<'a>(
    buf: &'a [u8],
    count: u32,
    limits: &Limits,
    res: &ResourceInfo,
    attrs: &mut Vec<Attr<'a>>,
) -> R<Received> {
    attrs.clear();
    let mut view = RecordView {
        event_name: "",
        time_unix_nano: 0,
        observed_time_unix_nano: 0,
        trace_id: &[],
        span_id: &[],
        attributes: &[],
    };
    for field in Fields::of(buf) {
        let (tag, value) = field?;
        match tag {
            1 => view.time_unix_nano = value.fixed64()?,
            2 | 7 => {
                value.varint()?;
            }
            3 => {
                value.str()?;
            }
            5 => {
                let (b, c) = value.message(count)?;
                validate(Schema::AnyValue, b, c)?;
            }
            6 => {
                let (b, c) = value.message(count)?;
                attrs.push(key_value(b, c)?);
            }
            8 => {
                if value.wire_type() != WireType::ThirtyTwoBit {
                    return Err(Unusual);
                }
            }
            9 => view.trace_id = value.bytes()?,
            10 => view.span_id = value.bytes()?,
            11 => view.observed_time_unix_nano = value.fixed64()?,
            12 => view.event_name = value.str()?,
            _ => skip(count)?,
        }
    }
    Ok(receive(limits, view, attrs, res))
}

#[cfg(test)]
#[path = "protobuf_requests.rs"]
mod requests;
#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
