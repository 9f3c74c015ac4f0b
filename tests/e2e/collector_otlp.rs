//! The collector as any OTLP client sees it: records built by hand from the
//! wire table (not through audit-layer), over gRPC and HTTP, against the
//! real binary on loopback.

use crate::common;

use audit_collector::partition::{read_audit, read_violations};
use audit_schema::otlp::encode_action;
use audit_schema::{ActorKind, AuditRecord, Draft, Rules};
use common::wire::request;
use common::Collector;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

fn record(n: u32) -> AuditRecord {
    let draft = Draft {
        event_id: Some(format!("019ac0de-0000-7000-8000-{n:012}")),
        start_time_ns: Some(1_764_300_000_000_000_000 + i64::from(n)),
        end_time_ns: Some(1_764_300_000_500_000_000),
        agent_id: Some("agt_7f3".into()),
        agent_name: Some("ledger-bot".into()),
        agent_credential_id: Some("key_2026_11".into()),
        owner_id: Some("usr_alice".into()),
        initiator_id: Some("usr_bob".into()),
        task_id: Some("tsk_1".into()),
        action: Some("payments.transfer".into()),
        target: Some("acct_42".into()),
        scopes: vec!["payments:write".into(), "accounts:read".into()],
        consent_id: Some("cns_1".into()),
        inputs_sha256: Some("ab".repeat(32)),
        service_name: Some("billing".into()),
        service_instance_id: Some("billing-1".into()),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        span_id: Some("b7ad6b7169203331".into()),
        attributes: [("amount".to_owned(), "100".to_owned())].into(),
        ..Draft::default()
    };
    Rules::default().check(draft).expect("every field set")
}

async fn grpc_export(c: &Collector, req: ExportLogsServiceRequest) -> ExportLogsServiceResponse {
    let mut client = LogsServiceClient::connect(c.grpc_url())
        .await
        .expect("connect");
    client.export(req).await.expect("export").into_inner()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn every_column_round_trips_over_grpc_into_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let sent = vec![record(1), record(2)];
    let resp = runtime().block_on(grpc_export(
        &c,
        request(sent.iter().map(encode_action).collect()),
    ));
    assert_eq!(resp.partial_success, None, "nothing refused");
    let cid = c.collector_id.clone();
    assert!(c.terminate(), "SIGTERM exits 0");
    let mut rows = read_audit(dir.path()).unwrap();
    rows.sort_by_key(|(_, s, _)| s.seq);
    assert_eq!(rows.len(), 2);
    for ((got, stamp, got_cid), want) in rows.iter().zip(&sent) {
        assert_eq!(got, want);
        assert_eq!(got_cid, &cid);
        assert!(stamp.received_time_ns > 0);
    }
    assert_eq!(
        rows.iter().map(|(_, s, _)| s.seq).collect::<Vec<_>>(),
        [1, 2],
        "seq is gap-free from 1"
    );
}

#[test]
fn bad_records_are_refused_by_themselves_and_leave_violations() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--dangerous-action", "payments.*"]);
    let mut no_owner = record(2);
    no_owner.owner_id = String::new();
    let mut human_unstated = encode_action(&{
        let mut r = record(3);
        r.actor_kind = ActorKind::Human;
        r.agent_id = None;
        r
    });
    // A human action with the kind left out: must not be inferred.
    human_unstated
        .attributes
        .retain(|kv| kv.key != "audit.actor.kind");
    let mut no_consent = record(4);
    no_consent.consent_id = None;
    let mut not_audit = encode_action(&record(5));
    not_audit.event_name = "http.request".into();
    let req = request(vec![
        encode_action(&record(1)),
        encode_action(&no_owner),
        human_unstated,
        encode_action(&no_consent),
        not_audit,
        encode_action(&record(6)),
    ]);
    let resp = runtime().block_on(grpc_export(&c, req));
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_log_records, 4);
    let m = &ps.error_message;
    assert!(
        m.contains("record 1 refused: agent action without `audit.owner.id`"),
        "{m}"
    );
    assert!(m.contains("record 2 refused: no actor"), "{m}");
    assert!(
        m.contains("record 3 refused: dangerous action without `audit.consent.id`"),
        "{m}"
    );
    assert!(
        m.contains("record 4 refused: event_name \"http.request\""),
        "{m}"
    );
    assert!(c.terminate());
    let mut kept: Vec<String> = read_audit(dir.path())
        .unwrap()
        .into_iter()
        .map(|(r, _, _)| r.event_id)
        .collect();
    kept.sort();
    assert_eq!(kept, [record(1).event_id, record(6).event_id]);
    let violations = read_violations(dir.path()).unwrap();
    assert_eq!(violations.len(), 3, "one per refused audit.action");
    assert!(violations
        .iter()
        .all(|(v, _, _)| v.detected_by == "collector"));
    let mut missing: Vec<String> = violations
        .iter()
        .flat_map(|(v, _, _)| v.missing.clone())
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        ["audit.actor.kind", "audit.consent.id", "audit.owner.id"]
    );
}

#[test]
fn http_accepts_protobuf_and_json_and_answers_spec_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let url = format!("{}/v1/logs", c.http_url());
    let rt = runtime();
    let client = reqwest::Client::new();
    let post = |ct: &'static str, body: Vec<u8>| {
        let req = client.post(&url).header("content-type", ct).body(body);
        async move { req.send().await.expect("post") }
    };
    rt.block_on(async {
        let mut bad = record(2);
        bad.agent_id = None;
        bad.actor_kind = ActorKind::Agent;
        let resp = post(
            "application/x-protobuf",
            request(vec![encode_action(&record(1)), encode_action(&bad)]).encode_to_vec(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body = ExportLogsServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
        let ps = body.partial_success.expect("one refused");
        assert_eq!(ps.rejected_log_records, 1);
        assert!(ps.error_message.contains("`gen_ai.agent.id`"), "{}", ps.error_message);

        // OTLP/JSON as the spec writes it: camelCase, hex ids, string int64.
        let json = serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ops"}}]},
            "scopeLogs": [{"logRecords": [{
                "timeUnixNano": "1764300000000000000",
                "eventName": "audit.action",
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": "b7ad6b7169203331",
                "attributes": [
                    {"key": "audit.event.id", "value": {"stringValue": "019ac0de-0000-7000-8000-00000000json"}},
                    {"key": "audit.actor.kind", "value": {"stringValue": "human"}},
                    {"key": "audit.owner.id", "value": {"stringValue": "usr_carol"}},
                    {"key": "audit.action", "value": {"stringValue": "users.delete"}},
                    {"key": "audit.scopes", "value": {"arrayValue": {"values": [{"stringValue": "users:admin"}]}}},
                    {"key": "audit.end_time_unix_nano", "value": {"intValue": "1764300000100000000"}}
                ]
            }]}]
        }]});
        let resp = post("application/json", json.to_string().into_bytes()).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);

        assert_eq!(post("text/plain", b"x".to_vec()).await.status(), 415);
        assert_eq!(post("application/x-protobuf", b"\xff\xff\xff".to_vec()).await.status(), 400);
        let health = client.get(format!("{}/healthz", c.http_url())).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let metrics = client.get(format!("{}/metrics", c.http_url())).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains(
                "audit_collector_records_refused_total{reason=\"agent_without_agent_id\"} 1\n"
            ),
            "{text}"
        );
    });
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    let human = rows
        .iter()
        .find(|(r, _, _)| r.owner_id == "usr_carol")
        .expect("JSON record stored");
    assert_eq!(human.0.actor_kind, ActorKind::Human);
    assert_eq!(human.0.agent_id, None);
    assert_eq!(human.0.scopes, ["users:admin"]);
    assert_eq!(human.0.end_time_ns, Some(1_764_300_000_100_000_000));
    assert_eq!(
        human.0.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(rows.len(), 2);
}

#[test]
fn resent_batch_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let req = request(vec![encode_action(&record(1)), encode_action(&record(2))]);
    runtime().block_on(grpc_export(&c, req.clone()));
    // A client that never saw its ack sends the same batch again.
    let resp = runtime().block_on(grpc_export(&c, req));
    assert_eq!(resp.partial_success, None, "a duplicate is not an error");
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows.iter().map(|r| r.1.seq).max(),
        Some(2),
        "no seq spent on duplicates"
    );
}

#[test]
fn sigterm_exits_even_with_an_idle_client_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--shutdown-timeout-secs", "1"]);
    // This runtime, and with it the client's connection, outlives the collector.
    let rt = runtime();
    let resp = rt.block_on(grpc_export(&c, request(vec![encode_action(&record(1))])));
    assert_eq!(resp.partial_success, None);
    assert!(
        c.terminate(),
        "exit 0 within the bound despite the open connection"
    );
    assert_eq!(
        read_audit(dir.path()).unwrap().len(),
        1,
        "acknowledged row sealed"
    );
    drop(rt);
}

#[test]
fn sigterm_right_after_readiness_is_a_graceful_stop() {
    // The handler is installed before the listening line: a supervisor's
    // early SIGTERM must drain and exit 0, not kill by default action.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        assert!(Collector::start(dir.path(), &[]).terminate());
    }
}
