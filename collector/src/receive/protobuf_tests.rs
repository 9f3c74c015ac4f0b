//! The protobuf reader against prost's generated types, on generated
//! requests, on the same requests with their fields shuffled, repeated,
//! dropped, interleaved with unknown fields (at every level), and with
//! bytes flipped or cut; and on hand-made shapes with a known answer.
//! Every input goes through [`protobuf_readers_agree`], which panics when
//! the readers disagree.

use audit_schema::otlp::{encode_action, Decoded};
use audit_schema::Limits;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;

use super::requests::{request, Rng};
use super::{read, Unusual};
use crate::fuzzing::protobuf_readers_agree;

/// Which fields of which message hold a message, for the mutator:
/// (message, tag) -> the nested message.
#[derive(Clone, Copy)]
enum Msg {
    Request,
    ResourceLogs,
    Resource,
    ScopeLogs,
    Scope,
    LogRecord,
    KeyValue,
    AnyValue,
    Array,
    KvList,
    Leaf,
}

fn nested(msg: Msg, tag: u32) -> Option<Msg> {
    Some(match (msg, tag) {
        (Msg::Request, 1) => Msg::ResourceLogs,
        (Msg::ResourceLogs, 1) => Msg::Resource,
        (Msg::ResourceLogs, 2) => Msg::ScopeLogs,
        (Msg::Resource, 1) | (Msg::Scope, 3) | (Msg::LogRecord, 6) | (Msg::KvList, 1) => {
            Msg::KeyValue
        }
        (Msg::Resource, 3) => Msg::Leaf,
        (Msg::ScopeLogs, 1) => Msg::Scope,
        (Msg::ScopeLogs, 2) => Msg::LogRecord,
        (Msg::LogRecord, 5) | (Msg::KeyValue, 2) | (Msg::Array, 1) => Msg::AnyValue,
        (Msg::AnyValue, 5) => Msg::Array,
        (Msg::AnyValue, 6) => Msg::KvList,
        _ => return None,
    })
}

/// One field as sent: its key and its payload, length prefix excluded.
struct RawField {
    tag: u32,
    wire_type: WireType,
    payload: Vec<u8>,
}

fn fields(mut buf: &[u8]) -> Vec<RawField> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).expect("a key");
        let payload = match wire_type {
            WireType::Varint => {
                let mut v = Vec::new();
                encode_varint(decode_varint(&mut buf).expect("varint"), &mut v);
                v
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                let (head, rest) = buf.split_at(n);
                buf = rest;
                head.to_vec()
            }
            WireType::LengthDelimited => {
                let n = decode_varint(&mut buf).expect("length") as usize;
                let (head, rest) = buf.split_at(n);
                buf = rest;
                head.to_vec()
            }
            other => panic!("prost wrote {other:?}"),
        };
        out.push(RawField {
            tag,
            wire_type,
            payload,
        });
    }
    out
}

/// What a rewrite may do besides shuffling, repeating scalars and
/// messages, dropping fields and inserting unknown ones: the shapes the
/// reader leaves to prost, each in a few requests only (most of the
/// rewritten requests must stay comparable).
#[derive(Clone, Copy)]
struct Plan {
    /// Repeat a `KeyValue`'s value or an `AnyValue`'s (prost merges them).
    merge: bool,
    /// Insert groups among the unknown fields.
    groups: bool,
    /// Send a known field under the wrong wire type.
    corrupt: bool,
}

impl Plan {
    fn new(rng: &mut Rng) -> Plan {
        Plan {
            merge: rng.chance(10),
            groups: rng.chance(10),
            corrupt: rng.chance(10),
        }
    }
}

/// Rewrites a message prost encoded, at every level (see [`Plan`]).
fn mutate(rng: &mut Rng, plan: Plan, msg: Msg, buf: &[u8]) -> Vec<u8> {
    let mut fs = fields(buf);
    for f in &mut fs {
        if let Some(inner) = nested(msg, f.tag) {
            f.payload = mutate(rng, plan, inner, &f.payload);
        }
    }
    if fs.len() > 1 && rng.chance(30) {
        let (a, b) = (rng.below(fs.len()), rng.below(fs.len()));
        fs.swap(a, b);
    }
    let merges = |tag| matches!((msg, tag), (Msg::KeyValue, 2) | (Msg::AnyValue, _));
    let i = rng.below(fs.len().max(1));
    if !fs.is_empty() && rng.chance(10) && (plan.merge || !merges(fs[i].tag)) {
        let copy = RawField {
            tag: fs[i].tag,
            wire_type: fs[i].wire_type,
            payload: fs[i].payload.clone(),
        };
        fs.insert(rng.below(fs.len() + 1), copy);
    }
    if !fs.is_empty() && rng.chance(5) {
        fs.remove(rng.below(fs.len()));
    }
    let mut out = Vec::new();
    for (i, f) in fs.iter().enumerate() {
        if rng.chance(8) {
            unknown(rng, plan, &mut out);
        }
        let wire_type = if plan.corrupt && rng.chance(2) {
            WireType::Varint
        } else {
            f.wire_type
        };
        encode_key(f.tag, wire_type, &mut out);
        if f.wire_type == WireType::LengthDelimited {
            encode_varint(f.payload.len() as u64, &mut out);
        }
        out.extend(&f.payload);
        if i + 1 == fs.len() && rng.chance(5) {
            unknown(rng, plan, &mut out);
        }
    }
    out
}

fn unknown(rng: &mut Rng, plan: Plan, out: &mut Vec<u8>) {
    let tag = 13 + rng.below(3000) as u32;
    match rng.below(9) {
        3 if !plan.groups => {
            encode_key(tag, WireType::Varint, out);
            encode_varint(0, out);
        }
        0 => {
            encode_key(tag, WireType::Varint, out);
            encode_varint(rng.next(), out);
        }
        1 => {
            encode_key(tag, WireType::ThirtyTwoBit, out);
            out.extend([1, 2, 3, 4]);
        }
        2 => {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend([0; 8]);
        }
        3 => {
            encode_key(tag, WireType::StartGroup, out);
            encode_key(tag + 1, WireType::Varint, out);
            encode_varint(7, out);
            encode_key(tag, WireType::EndGroup, out);
        }
        _ => {
            encode_key(tag, WireType::LengthDelimited, out);
            let n = rng.below(6);
            encode_varint(n as u64, out);
            out.extend((0..n).map(|_| rng.below(256) as u8));
        }
    }
}

fn limit_sets() -> [Limits; 2] {
    [
        Limits::default(),
        Limits {
            max_attributes: 3,
            max_depth: 1,
            ..Limits::default()
        },
    ]
}

#[test]
fn generated_and_mutated_requests_read_the_same_both_ways() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut plain, mut structured, mut structured_taken) = (0, 0, 0);
    let (mut bytewise, mut bytewise_taken) = (0, 0);
    for _ in 0..300 {
        let req = request(&mut rng);
        let bytes = req.encode_to_vec();
        for limits in &limit_sets() {
            // What prost writes itself, the reader must always take.
            assert!(protobuf_readers_agree(&bytes, limits), "{req:?}");
            plain += 1;
            for _ in 0..3 {
                let plan = Plan::new(&mut rng);
                let m = mutate(&mut rng, plan, Msg::Request, &bytes);
                structured += 1;
                structured_taken += usize::from(protobuf_readers_agree(&m, limits));
            }
            for _ in 0..3 {
                let mut m = bytes.clone();
                if m.is_empty() {
                    continue;
                }
                let at = rng.below(m.len());
                if rng.chance(50) {
                    m[at] ^= 1 << rng.below(8);
                } else {
                    m.truncate(at);
                }
                bytewise += 1;
                bytewise_taken += usize::from(protobuf_readers_agree(&m, limits));
            }
        }
    }
    eprintln!(
        "plain {plain}; structured {structured_taken}/{structured} taken; \
         bytewise {bytewise_taken}/{bytewise} taken"
    );
    // Most rewritten requests keep to shapes the reader takes (a group or
    // a repeated value sends one to prost): it is what is being compared.
    assert!(
        structured_taken * 2 > structured,
        "{structured_taken}/{structured}"
    );
    assert!(bytewise_taken > 0);
}

fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(payload.len() as u64, &mut out);
    out.extend(payload);
    out
}

fn action_bytes() -> Vec<u8> {
    let r = crate::test_records::agent_action(
        "019ac0de-0000-7000-8000-0000000000aa".into(),
        1_764_000_000_000_000_000,
    );
    encode_action(&r).encode_to_vec()
}

fn service(name: &str) -> Vec<u8> {
    let kv = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(name.into())),
        }),
        ..KeyValue::default()
    };
    field(1, &kv.encode_to_vec())
}

/// The resource after its records, and in two parts: the last
/// `service.name` counts, as prost merges the two parts.
#[test]
fn a_resource_after_its_records_and_in_parts_names_their_service() {
    let scope_logs = field(2, &field(2, &action_bytes()));
    let rl = [
        scope_logs,
        field(1, &service("first")),
        field(1, &service("billing")),
    ]
    .concat();
    let req = field(1, &rl);
    let limits = Limits::default();
    assert!(protobuf_readers_agree(&req, &limits));
    let got = super::read(&req, &limits).expect("taken");
    let Decoded::Action(d) = &got[0].decoded else {
        panic!("{got:?}")
    };
    assert_eq!(d.service_name.as_deref(), Some("billing"));
}

/// A second `value` in a `KeyValue` (prost merges the two) and a group
/// are left to prost; the answer is then prost's own.
#[test]
fn merged_values_and_groups_are_left_to_prost() {
    let mut lr = action_bytes();
    let array = |s: &str| {
        let any = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue(s.into())),
                }],
            })),
        };
        field(2, &any.encode_to_vec())
    };
    let kv = [field(1, b"audit.scopes"), array("a:read"), array("b:write")].concat();
    lr.extend(field(6, &kv));
    let req = field(1, &field(2, &field(2, &lr)));
    let limits = Limits::default();
    assert_eq!(read(&req, &limits), Err(Unusual));
    assert!(!protobuf_readers_agree(&req, &limits));
    let got = super::super::read_protobuf(&req, &limits).expect("prost reads it");
    let Decoded::Action(d) = &got[0].decoded else {
        panic!("{got:?}")
    };
    assert_eq!(d.scopes, ["a:read", "b:write"], "the arrays merged");

    let mut grouped = Vec::new();
    encode_key(99, WireType::StartGroup, &mut grouped);
    encode_key(99, WireType::EndGroup, &mut grouped);
    let req = [req, grouped].concat();
    assert_eq!(read(&req, &limits), Err(Unusual));
    assert!(super::super::read_protobuf(&req, &limits).is_ok());
}

/// prost's recursion limit, counted the same way: arrays nested just
/// under it are read, one level more is refused by both.
#[test]
fn the_recursion_limit_is_prosts() {
    let limits = Limits::default();
    let mut refused_from = None;
    for levels in 40..50 {
        let mut v = AnyValue {
            value: Some(Value::StringValue("x".into())),
        };
        for _ in 0..levels {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let kv = KeyValue {
            key: "deep".into(),
            value: Some(v),
            ..KeyValue::default()
        };
        let mut lr = action_bytes();
        lr.extend(field(6, &kv.encode_to_vec()));
        let req = field(1, &field(2, &field(2, &lr)));
        let prost_ok = ExportLogsServiceRequest::decode(&req[..]).is_ok();
        assert_eq!(read(&req, &limits).is_ok(), prost_ok, "{levels} levels");
        protobuf_readers_agree(&req, &limits);
        if !prost_ok && refused_from.is_none() {
            refused_from = Some(levels);
        }
    }
    assert!(
        refused_from.is_some(),
        "the limit is within the range tried"
    );
}

/// What prost refuses anywhere in the request, the reader refuses too,
/// also in the parts it only validates (scope, body, entity references).
#[test]
fn invalid_utf8_and_wrong_wire_types_are_refused_everywhere() {
    let limits = Limits::default();
    let bad = &[0xff, 0xfe][..];
    let scope = field(1, &field(1, bad));
    let body = field(5, &field(1, bad));
    let entity = field(1, &field(3, &field(2, bad)));
    let record = |extra: &[u8]| field(2, &[action_bytes(), extra.to_vec()].concat());
    let mut varint_time = Vec::new();
    encode_key(1, WireType::Varint, &mut varint_time);
    encode_varint(5, &mut varint_time);
    let requests = [
        field(1, &field(2, &[scope, record(&[])].concat())),
        field(1, &field(2, &record(&body))),
        field(1, &[entity, field(2, &record(&[]))].concat()),
        field(1, &field(2, &record(&varint_time))),
        field(1, &field(2, &record(&field(12, bad)))),
    ];
    for req in requests {
        assert!(ExportLogsServiceRequest::decode(&req[..]).is_err());
        assert_eq!(read(&req, &limits), Err(Unusual));
        assert!(super::super::read_protobuf(&req, &limits).is_err());
    }
}
