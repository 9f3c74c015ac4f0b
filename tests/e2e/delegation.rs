//! Delegation chains at the collector, sent by a raw OTLP client (hand-set
//! attributes, no layer to refuse them first): each chain rule refuses its
//! record by itself, naming the hop, and the rest of the batch is kept.

use crate::common;

use std::collections::BTreeSet;

use audit_schema::delegation::to_json;
use audit_schema::otlp::encode_action;
use audit_schema::Hop;
use common::wire::{action, http_post, request};
use common::{stored_ids, Collector};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

/// `common::wire::action` (agent `agt_7f3` for `usr_alice`) with string
/// attributes added as a client would send them.
pub(crate) fn record(event: &str, attrs: &[(&str, String)]) -> LogRecord {
    let mut lr = encode_action(&action(event));
    for (k, v) in attrs {
        lr.attributes.push(KeyValue {
            key: (*k).to_owned(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.clone())),
            }),
            ..KeyValue::default()
        });
    }
    lr
}

fn chain(hops: &[Hop]) -> (&'static str, String) {
    ("audit.delegation", to_json(hops))
}

fn scoped(mut hop: Hop, scopes: &[&str]) -> Hop {
    hop.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
    hop
}

#[test]
fn each_chain_rule_refuses_its_record_at_the_collector_naming_the_hop() {
    let acting = || Hop::agent("agt_7f3", "usr_alice");
    let planner = || Hop::agent("agt_planner", "usr_carol");
    let mut ownerless = planner();
    ownerless.owner_id = None;
    let mut deep = vec![Hop::human("usr_carol")];
    deep.extend((0..8).map(|i| Hop::agent(format!("agt_{i}"), "usr_carol")));
    deep.push(acting());
    let cases: Vec<(LogRecord, &str)> = vec![
        (
            record(
                "widening",
                &[chain(&[
                    Hop::human("usr_carol"),
                    scoped(planner(), &["db:read"]),
                    scoped(acting(), &["db:read", "db:drop"]),
                ])],
            ),
            "delegation hop 2 (\"agt_7f3\"): scopes [\"db:drop\"]",
        ),
        (record("deep", &[chain(&deep)]), "10 hops; at most 8"),
        (
            record(
                "ownerless",
                &[chain(&[Hop::human("usr_carol"), ownerless, acting()])],
            ),
            "delegation hop 1 (\"agt_planner\"): agent hop without `owner_id`",
        ),
        (
            // A hop naming another human as origin, with no chain to show for it.
            record("forged-origin", &[("audit.origin.id", "usr_ceo".into())]),
            "`audit.origin.id`: \"usr_ceo\" differs from `audit.owner.id`",
        ),
        (
            record(
                "not-the-actor",
                &[chain(&[Hop::human("usr_carol"), planner()])],
            ),
            "delegation hop 1 (\"agt_planner\"): the last hop is not the acting actor",
        ),
    ];
    let good = record(
        "chained",
        &[chain(&[Hop::human("usr_carol"), planner(), acting()])],
    );
    let mut records = vec![good];
    records.extend(cases.iter().map(|(r, _)| r.clone()));

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let c = Collector::start(&data, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answer = rt.block_on(async {
        let http = reqwest::Client::new();
        let body = request(records).encode_to_vec();
        http_post(&http, c.http, body, "application/x-protobuf", None).await
    });
    assert_eq!(answer.status, 200);
    let ps = answer.export().partial_success.expect("partial success");
    assert_eq!(
        ps.rejected_log_records,
        cases.len() as i64,
        "{}",
        ps.error_message
    );
    for (_, says) in &cases {
        assert!(
            ps.error_message.contains(says),
            "{says}\nnot in: {}",
            ps.error_message
        );
    }
    assert!(c.terminate(), "clean exit");
    let want: BTreeSet<String> = ["chained".to_owned()].into();
    assert_eq!(stored_ids(&data), want, "the rest of the batch is kept");
}
