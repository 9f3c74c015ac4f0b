//! The bytes the worker sends against the structs the schema's encoder
//! builds (`encode_action`, `encode_violation`): for every record below,
//! the bytes decode to exactly the same `LogRecord`, and are the very
//! bytes prost encodes from it; a request is the request prost encodes.

use std::collections::BTreeMap;

use audit_schema::otlp::{encode_action, encode_violation, ResourceInfo};
use audit_schema::{delegation, AuditRecord, Draft, Field, Hop, Rules, ViolationRecord, FIELDS};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use super::{Encoded, RequestHead};
use crate::export::{Item, SCOPE_NAME};

/// A checked record with every field a client sets, each value made by
/// `value` from the field's alias (the delegation chain and the typed
/// fields excepted), and `attributes` as the remainder.
fn action(value: impl Fn(&str) -> String, attributes: &[(&str, &str)]) -> AuditRecord {
    let mut d = Draft {
        start_time_ns: Some(1_764_000_000_000_000_000),
        service_name: Some("billing".into()),
        service_instance_id: Some("billing-1".into()),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        span_id: Some("b7ad6b7169203331".into()),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Draft::default()
    };
    for spec in FIELDS {
        let v = match spec.field {
            Field::ActorKind => "agent".to_owned(),
            Field::Outcome => "denied".to_owned(),
            Field::EndTime => "1764000000500000000".to_owned(),
            Field::Scopes => format!("{}, accounts:read", value("scope")),
            Field::Privileged | Field::Dangerous => "true".to_owned(),
            Field::Delegation => delegation::to_json(&[
                Hop::human(value("origin")),
                Hop::agent(value("agent"), value("owner")),
            ]),
            Field::OriginId => value("origin"),
            Field::AgentId => value("agent"),
            Field::OwnerId => value("owner"),
            _ => value(spec.alias),
        };
        d.set(spec.field, v);
    }
    Rules::default().check(d).expect("a complete record")
}

fn actions() -> Vec<AuditRecord> {
    let plain = action(|a| format!("{a}-value"), &[("amount", "100")]);
    let unicode = action(
        |a| format!("{a}-Ünïcødé ✓ 𝄞 مرحبا"),
        &[("clé", "välue ✓"), ("emoji 🦀", "🦀🦀")],
    );
    let long = action(|a| format!("{a}-{}", "x".repeat(300)), &[]);
    let mut sparse = plain.clone();
    sparse.end_time_ns = None;
    sparse.trace_id = None;
    sparse.span_id = Some("not hex!".into());
    sparse.scopes.clear();
    sparse.agent_name = None;
    sparse.consent_id = Some(String::new());
    sparse.target = Some(String::new());
    // An empty key and an empty value, a value that is not `true` for
    // the one boolean attribute, and a large map.
    sparse.attributes = (0..200)
        .map(|i| (format!("k{i}"), i.to_string()))
        .chain([
            (String::new(), "no key".to_owned()),
            ("empty".to_owned(), String::new()),
            (Field::Dangerous.wire().to_owned(), "yes".to_owned()),
        ])
        .collect();
    let mut before_epoch = plain.clone();
    before_epoch.start_time_ns = -5;
    before_epoch.end_time_ns = Some(0);
    before_epoch.trace_id = Some("ABCDEF0123456789abcdef0123456789".into());
    before_epoch.span_id = Some("abc".into());
    vec![plain, unicode, long, sparse, before_epoch]
}

fn violations() -> Vec<ViolationRecord> {
    let full = ViolationRecord {
        event_id: "019ac0de-0000-7000-8000-000000000002".into(),
        time_ns: 1_764_000_000_000_000_000,
        detected_by: "layer".into(),
        kind: Some("unattributed".into()),
        missing: vec!["audit.owner.id".into(), "audit.consent.id".into()],
        reason: "agent action without `audit.owner.id` — ünïcødé".into(),
        span_target: Some("audit::payments".into()),
        span_name: Some("payments.transfer".into()),
        code_file: Some("src/main.rs".into()),
        code_line: Some(42),
        action: Some("payments.transfer".into()),
        actor_kind: Some("robot".into()),
        agent_id: Some("agt_7f3".into()),
        owner_id: Some(String::new()),
        task_id: Some("tsk_9".into()),
        target: Some("acct_42".into()),
        service_name: "billing".into(),
        service_instance_id: None,
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        span_id: Some("b7ad6b7169203331".into()),
        attributes: [
            ("k".to_owned(), "v".to_owned()),
            (String::new(), String::new()),
        ]
        .into(),
    };
    // The exporter's own drop report: no kind stated, the count attribute.
    let report = ViolationRecord {
        event_id: "019ac0de-0000-7000-8000-000000000003".into(),
        missing: vec![audit_schema::wire::violation_kind::DROPPED_COUNT_ATTR.into()],
        attributes: BTreeMap::from([(
            audit_schema::wire::violation_kind::DROPPED_COUNT_ATTR.to_owned(),
            "17".to_owned(),
        )]),
        ..ViolationRecord::default()
    };
    // Not hex at the last digit: the id is left out whole.
    let negative_line = ViolationRecord {
        code_line: Some(-1),
        time_ns: -1,
        trace_id: Some("0af7651916cd43dd8448eb211c80319z".into()),
        ..full.clone()
    };
    vec![full, report, negative_line, ViolationRecord::default()]
}

/// Every test record as an item and the log record the old path built.
fn items() -> Vec<(Item, LogRecord)> {
    let actions = actions().into_iter().map(|r| {
        let lr = encode_action(&r);
        (Item::Action(r), lr)
    });
    let violations = violations().into_iter().flat_map(|v| {
        let lr = encode_violation(&v);
        [
            (Item::Violation(v.clone()), lr.clone()),
            (Item::Report(v), lr),
        ]
    });
    actions.chain(violations).collect()
}

#[test]
fn each_record_is_the_bytes_prost_encodes_for_the_schema_s_log_record() {
    let items = items();
    let mut encoded = Encoded::default();
    for (item, _) in &items {
        encoded.push_item(item);
    }
    assert_eq!(encoded.len(), items.len());
    for (i, (_, expected)) in items.iter().enumerate() {
        let decoded = LogRecord::decode(encoded.message(i)).expect("decodes");
        assert_eq!(&decoded, expected, "record {i}");
        assert_eq!(
            encoded.message(i),
            expected.encode_to_vec().as_slice(),
            "record {i}: the bytes"
        );
    }
}

#[test]
fn a_request_is_the_request_prost_encodes_and_a_settled_head_is_dropped() {
    let items = items();
    let mut encoded = Encoded::with_capacity(2);
    for (item, _) in &items {
        encoded.push_item(item);
    }
    let records: Vec<LogRecord> = items.into_iter().map(|(_, lr)| lr).collect();
    let info = ResourceInfo {
        service_name: Some("billing ✓".into()),
        service_instance_id: Some("billing-1".into()),
    };
    for resource in [info.to_resource(), ResourceInfo::default().to_resource()] {
        let head = RequestHead::new(&resource);
        for range in [0..records.len(), 3..7, 0..0, 5..6] {
            let expected = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: SCOPE_NAME.to_owned(),
                            version: env!("CARGO_PKG_VERSION").to_owned(),
                            ..InstrumentationScope::default()
                        }),
                        log_records: records[range.clone()].to_vec(),
                        ..ScopeLogs::default()
                    }],
                    ..ResourceLogs::default()
                }],
            };
            let body = head.request(encoded.entries(range.clone()));
            assert_eq!(
                ExportLogsServiceRequest::decode(body.as_slice()).expect("decodes"),
                expected,
                "{range:?}"
            );
            assert_eq!(body, expected.encode_to_vec(), "{range:?}: the bytes");
            assert_eq!(head.request_len(encoded.entries(range).len()), body.len());
        }
    }
    encoded.drain_front(4);
    assert_eq!(encoded.decoded(), records[4..]);
    encoded.drain_front(100);
    assert_eq!(encoded.len(), 0);
}
