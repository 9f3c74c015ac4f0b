//! Generated OTLP log requests for the protobuf reader's tests: real
//! actions and arbitrary records, with attributes from the wire table and
//! beyond, values of every kind (nested arrays and kvlists, empty ones),
//! resources, scopes, entity references and bodies.

use audit_schema::otlp::encode_action;
use audit_schema::{wire, FIELDS};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// xorshift64*: deterministic, so a failure replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const VIOLATION_KEYS: &[&str] = &[
    wire::violation::MISSING,
    wire::violation::REASON,
    wire::violation::DETECTED_BY,
    wire::violation::SPAN_TARGET,
    wire::violation::SPAN_NAME,
    wire::violation::CODE_FILE,
    wire::violation::CODE_LINE,
    wire::violation::KIND,
    wire::LEGACY_EVENT_NAME_ATTR,
    "audit.dropped.count",
    "",
    "k",
    "ключ",
];

const STRINGS: &[&str] = &[
    "",
    "usr_alice",
    "payments.transfer",
    "a:read, b:write c",
    "true",
    "42",
    "audit.action",
    "audit.violation",
    "é\u{0}\"\\",
    "019ac0de-0000-7000-8000-000000000002",
];

fn key(rng: &mut Rng) -> String {
    if rng.chance(50) {
        rng.pick(FIELDS).wire.to_owned()
    } else if rng.chance(70) {
        (*rng.pick(VIOLATION_KEYS)).to_owned()
    } else {
        format!("k{}", rng.below(20))
    }
}

fn value(rng: &mut Rng, depth: usize) -> Option<Value> {
    let nested = depth < 4;
    Some(match rng.below(if nested { 11 } else { 8 }) {
        0 => return None,
        1 | 2 => Value::StringValue((*rng.pick(STRINGS)).to_owned()),
        3 => Value::BoolValue(rng.chance(50)),
        4 => Value::IntValue(*rng.pick(&[0, -1, 42, i64::MAX, 1_764_000_000_000_000_000])),
        5 => Value::DoubleValue(*rng.pick(&[0.5, -0.0, f64::NAN, 1e300, 3.0])),
        6 => Value::BytesValue((0..rng.below(9)).map(|_| rng.below(3) as u8).collect()),
        7 => Value::StringValueStrindex(rng.below(5) as i32),
        8 | 9 => Value::ArrayValue(ArrayValue {
            values: (0..rng.below(4))
                .map(|_| AnyValue {
                    value: value(rng, depth + 1),
                })
                .collect(),
        }),
        _ => Value::KvlistValue(KeyValueList {
            values: (0..rng.below(4))
                .map(|_| key_value(rng, depth + 1))
                .collect(),
        }),
    })
}

fn key_value(rng: &mut Rng, depth: usize) -> KeyValue {
    KeyValue {
        key: key(rng),
        value: (!rng.chance(5)).then(|| AnyValue {
            value: value(rng, depth),
        }),
        ..KeyValue::default()
    }
}

fn log_record(rng: &mut Rng, n: usize) -> LogRecord {
    let now = 1_764_000_000_000_000_000u64;
    let mut lr = if rng.chance(40) {
        let id = format!("019ac0de-0000-7000-8000-{n:012}");
        encode_action(&crate::test_records::agent_action(id, now as i64))
    } else {
        LogRecord {
            event_name: (*rng.pick(&["audit.action", "audit.violation", "", "x"])).to_owned(),
            time_unix_nano: *rng.pick(&[0, now, u64::MAX]),
            observed_time_unix_nano: *rng.pick(&[0, now]),
            trace_id: (0..*rng.pick(&[0, 16, 3]))
                .map(|_| rng.below(2) as u8)
                .collect(),
            span_id: (0..*rng.pick(&[0, 8]))
                .map(|_| rng.below(256) as u8)
                .collect(),
            ..LogRecord::default()
        }
    };
    let extra = if rng.chance(3) { 130 } else { rng.below(8) };
    lr.attributes.extend((0..extra).map(|_| key_value(rng, 0)));
    if rng.chance(10) {
        lr.body = Some(AnyValue {
            value: value(rng, 0),
        });
    }
    lr.severity_text = (*rng.pick(STRINGS)).to_owned();
    lr.flags = rng.below(3) as u32;
    lr
}

/// A request of 1-2 resources, 1-2 scopes each, 0-3 records each.
pub fn request(rng: &mut Rng) -> ExportLogsServiceRequest {
    let mut n = 0;
    let resource_logs = (0..1 + rng.below(2))
        .map(|_| ResourceLogs {
            resource: rng.chance(85).then(|| Resource {
                attributes: (0..rng.below(4))
                    .map(|_| KeyValue {
                        key: (*rng.pick(&["service.name", "service.instance.id", "host"]))
                            .to_owned(),
                        ..key_value(rng, 0)
                    })
                    .collect(),
                entity_refs: (0..rng.below(2))
                    .map(|_| EntityRef {
                        r#type: "service".into(),
                        id_keys: vec!["service.name".into()],
                        ..EntityRef::default()
                    })
                    .collect(),
                ..Resource::default()
            }),
            scope_logs: (0..1 + rng.below(2))
                .map(|_| ScopeLogs {
                    scope: rng.chance(50).then(|| InstrumentationScope {
                        name: "audit-layer".into(),
                        attributes: (0..rng.below(2)).map(|_| key_value(rng, 0)).collect(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: (0..rng.below(4))
                        .map(|_| {
                            n += 1;
                            log_record(rng, n)
                        })
                        .collect(),
                    schema_url: "".into(),
                })
                .collect(),
            schema_url: "https://opentelemetry.io/schemas/1.0".into(),
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}
