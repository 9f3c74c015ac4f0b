//! Records to and from OTLP log records, following the wire table in
//! [`crate::wire`]. The layer encodes with [`encode_action`] and
//! [`encode_violation`]; the collector decodes with [`decode`] (or, from
//! request bytes, [`decode_view`]). Keeping both
//! directions here is what makes "every column round-trips" one property.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::column::Cell;
use crate::record::{AuditRecord, Field, ViolationRecord};
use crate::wire::{self, violation as v};

mod decode;
pub use decode::{decode, decode_view, stringify, view, Attr, AttrValue, Decoded, RecordView};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn push_str(attrs: &mut Vec<KeyValue>, key: &str, value: Option<&str>) {
    if let Some(s) = value {
        attrs.push(kv(key, Value::StringValue(s.to_owned())));
    }
}

fn string_array(items: &[String]) -> Value {
    Value::ArrayValue(ArrayValue {
        values: items
            .iter()
            .map(|s| AnyValue {
                value: Some(Value::StringValue(s.clone())),
            })
            .collect(),
    })
}

/// Hex of an id, or empty bytes when absent or not hex.
fn id_bytes(hex: Option<&str>) -> Vec<u8> {
    let Some(h) = hex else { return Vec::new() };
    if h.len() % 2 != 0 {
        return Vec::new();
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap_or_default()
}

/// Lower-case hex of an id; `None` for empty or all-zero ids (OTLP's "unset").
pub fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    // Per record on the ingest path: no per-byte formatting machinery.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    Some(s)
}

fn log_record(
    time_ns: i64,
    event_name: &str,
    trace: Option<&str>,
    span: Option<&str>,
) -> LogRecord {
    LogRecord {
        time_unix_nano: time_ns.max(0) as u64,
        observed_time_unix_nano: time_ns.max(0) as u64,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".to_owned(),
        event_name: event_name.to_owned(),
        trace_id: id_bytes(trace),
        span_id: id_bytes(span),
        ..LogRecord::default()
    }
}

/// An attributed action as an `audit.action` log record. The service name
/// and instance belong to the OTLP resource, not to the record.
pub fn encode_action(r: &AuditRecord) -> LogRecord {
    let mut lr = log_record(
        r.start_time_ns,
        wire::EVENT_ACTION,
        r.trace_id.as_deref(),
        r.span_id.as_deref(),
    );
    if let Some(end) = r.end_time_ns {
        lr.observed_time_unix_nano = end.max(0) as u64;
    }
    let a = &mut lr.attributes;
    r.for_each_attribute(|field, cell| match cell {
        Cell::Str(s) => push_str(a, field.wire(), s),
        Cell::Time(ns) | Cell::Int(ns) => {
            if let Some(ns) = ns {
                a.push(kv(field.wire(), Value::IntValue(ns)));
            }
        }
        Cell::List(items) => {
            if !items.is_empty() {
                a.push(kv(field.wire(), string_array(items)));
            }
        }
        // The attribute map is the record's remainder, added below.
        Cell::Map(_) => {}
        // Only verifiers set booleans, and a client's word is not taken
        // for them: they do not travel.
        Cell::Bool(_) => {}
    });
    for (k, val) in &r.attributes {
        if k == Field::Dangerous.wire() {
            a.push(kv(k, Value::BoolValue(val == "true")));
        } else {
            a.push(kv(k, Value::StringValue(val.clone())));
        }
    }
    lr
}

/// A violation as an `audit.violation` log record.
pub fn encode_violation(x: &ViolationRecord) -> LogRecord {
    let mut lr = log_record(
        x.time_ns,
        wire::EVENT_VIOLATION,
        x.trace_id.as_deref(),
        x.span_id.as_deref(),
    );
    let a = &mut lr.attributes;
    push_str(a, Field::EventId.wire(), Some(&x.event_id));
    push_str(a, v::DETECTED_BY, Some(&x.detected_by));
    push_str(a, v::KIND, Some(x.kind_or_inferred()));
    a.push(kv(v::MISSING, string_array(&x.missing)));
    push_str(a, v::REASON, Some(&x.reason));
    push_str(a, v::SPAN_TARGET, x.span_target.as_deref());
    push_str(a, v::SPAN_NAME, x.span_name.as_deref());
    push_str(a, v::CODE_FILE, x.code_file.as_deref());
    if let Some(line) = x.code_line {
        a.push(kv(v::CODE_LINE, Value::IntValue(line)));
    }
    push_str(a, Field::Action.wire(), x.action.as_deref());
    push_str(a, Field::ActorKind.wire(), x.actor_kind.as_deref());
    push_str(a, Field::AgentId.wire(), x.agent_id.as_deref());
    push_str(a, Field::OwnerId.wire(), x.owner_id.as_deref());
    push_str(a, Field::TaskId.wire(), x.task_id.as_deref());
    push_str(a, Field::Target.wire(), x.target.as_deref());
    for (k, val) in &x.attributes {
        a.push(kv(k, Value::StringValue(val.clone())));
    }
    lr
}

/// The service identity carried by an OTLP resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    /// `service.name`.
    pub service_name: Option<String>,
    /// `service.instance.id`.
    pub service_instance_id: Option<String>,
}

impl ResourceInfo {
    /// Reads `service.name` and `service.instance.id` from a resource.
    pub fn from_resource(res: Option<&Resource>) -> ResourceInfo {
        let attributes = res.map(|r| r.attributes.as_slice()).unwrap_or_default();
        ResourceInfo::from_attributes(&Attr::all(attributes))
    }

    /// The resource a client sends with its records.
    pub fn to_resource(&self) -> Resource {
        let mut attributes = Vec::new();
        push_str(
            &mut attributes,
            wire::RESOURCE_SERVICE_NAME,
            self.service_name.as_deref(),
        );
        push_str(
            &mut attributes,
            wire::RESOURCE_SERVICE_INSTANCE_ID,
            self.service_instance_id.as_deref(),
        );
        Resource {
            attributes,
            ..Resource::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Stored;
    use crate::Draft;
    use crate::Rules;

    /// A record with every column set: the fields a client sets come from
    /// the field table (so a new field is covered without a line here),
    /// the resource's and the log record's are set by hand.
    fn full_record() -> AuditRecord {
        let mut d = Draft {
            start_time_ns: Some(1_764_000_000_000_000_000),
            service_name: Some("billing".into()),
            service_instance_id: Some("billing-1".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            attributes: [("amount".to_owned(), "100".to_owned())].into(),
            ..Draft::default()
        };
        for spec in crate::FIELDS {
            let value = match spec.field {
                Field::ActorKind => "agent".to_owned(),
                Field::Outcome => "denied".to_owned(),
                Field::EndTime => "1764000000500000000".to_owned(),
                Field::Scopes => "payments:write, accounts:read".to_owned(),
                Field::Privileged | Field::Dangerous => "true".to_owned(),
                // A chain the rules accept: from the origin to this agent.
                Field::Delegation => crate::delegation::to_json(&[
                    crate::Hop::human("origin.id-value"),
                    crate::Hop::agent("agent.id-value", "owner.id-value"),
                ]),
                _ => format!("{}-value", spec.alias),
            };
            d.set(spec.field, value);
        }
        let r = Rules::default().check(d).expect("every field set");
        let mut unset = Vec::new();
        let mut cols = crate::columns::AUDIT.iter();
        r.cells(&mut |cell| {
            let col = cols.next();
            // What a verifier establishes is not the client's to send.
            let by_verifier = col.is_some_and(|c| c.wire.starts_with("set by the verifier"));
            let col = col.map_or("?", |c| c.name);
            if !by_verifier
                && (matches!(cell, Cell::Str(None) | Cell::Time(None) | Cell::Int(None))
                    || matches!(cell, Cell::List(l) if l.is_empty()))
            {
                unset.push(col);
            }
        });
        assert!(unset.is_empty(), "full_record leaves {unset:?} unset");
        r
    }

    #[test]
    fn every_action_column_round_trips() {
        let r = full_record();
        let res = ResourceInfo {
            service_name: Some(r.service_name.clone()),
            service_instance_id: r.service_instance_id.clone(),
        };
        let lr = encode_action(&r);
        let Decoded::Action(d) =
            decode(&lr, &ResourceInfo::from_resource(Some(&res.to_resource())))
        else {
            panic!("not an action")
        };
        assert_eq!(Rules::default().check(*d).expect("valid"), r);
    }

    #[test]
    fn every_violation_column_round_trips() {
        let x = ViolationRecord {
            event_id: "019ac0de-0000-7000-8000-000000000002".into(),
            time_ns: 1_764_000_000_000_000_000,
            detected_by: "layer".into(),
            kind: Some("unattributed".into()),
            missing: vec!["audit.owner.id".into()],
            reason: "agent action without `audit.owner.id`".into(),
            span_target: Some("audit::payments".into()),
            span_name: Some("payments.transfer".into()),
            code_file: Some("src/main.rs".into()),
            code_line: Some(42),
            action: Some("payments.transfer".into()),
            actor_kind: None,
            agent_id: Some("agt_7f3".into()),
            owner_id: None,
            task_id: Some("tsk_9".into()),
            target: Some("acct_42".into()),
            service_name: "billing".into(),
            service_instance_id: None,
            trace_id: None,
            span_id: Some("b7ad6b7169203331".into()),
            attributes: [("k".to_owned(), "v".to_owned())].into(),
        };
        let res = ResourceInfo {
            service_name: Some("billing".into()),
            service_instance_id: None,
        };
        assert_eq!(
            decode(&encode_violation(&x), &res),
            Decoded::Violation(Box::new(x))
        );
    }

    #[test]
    fn a_violation_without_a_kind_gets_the_one_older_clients_meant() {
        let res = ResourceInfo::default();
        let kind_of = |x: ViolationRecord| {
            let mut lr = encode_violation(&x);
            lr.attributes.retain(|kv| kv.key != v::KIND);
            match decode(&lr, &res) {
                Decoded::Violation(x) => x.kind.unwrap_or_default(),
                other => panic!("{other:?}"),
            }
        };
        let drop_report = ViolationRecord {
            missing: vec![crate::wire::violation_kind::DROPPED_COUNT_ATTR.into()],
            ..ViolationRecord::default()
        };
        assert_eq!(kind_of(drop_report), "dropped");
        let unattributed = ViolationRecord {
            missing: vec!["audit.owner.id".into()],
            ..ViolationRecord::default()
        };
        assert_eq!(kind_of(unattributed), "unattributed");
        let ungated = ViolationRecord {
            kind: Some("ungated".into()),
            ..ViolationRecord::default()
        };
        let Decoded::Violation(x) = decode(&encode_violation(&ungated), &res) else {
            panic!("not a violation")
        };
        assert_eq!(x.kind.as_deref(), Some("ungated"), "a stated kind is kept");
    }

    #[test]
    fn legacy_event_name_attribute_is_accepted() {
        let mut lr = encode_action(&full_record());
        lr.event_name.clear();
        lr.attributes
            .push(kv("event.name", Value::StringValue("audit.action".into())));
        assert!(matches!(
            decode(&lr, &ResourceInfo::default()),
            Decoded::Action(_)
        ));
        lr.attributes.pop();
        assert_eq!(
            decode(&lr, &ResourceInfo::default()),
            Decoded::NotAudit {
                event_name: String::new()
            }
        );
    }

    #[test]
    fn zero_ids_are_unset() {
        assert_eq!(hex_id(&[0; 16]), None);
        assert_eq!(hex_id(&[]), None);
        assert_eq!(hex_id(&[1, 0xab]).as_deref(), Some("01ab"));
    }
}
