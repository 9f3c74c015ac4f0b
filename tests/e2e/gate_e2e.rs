//! The gate in services as they are written, against the real collector:
//! the side-doors example app (a gated path and a side door to one store),
//! strict mode, a raw OTLP client's `ungated` row, 2,000 spawned gated
//! actions on a multi-threaded runtime, and the event id in the app's own
//! `fmt` log.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_collector::partition::{read_audit, read_violations};
use audit_layer::{gate_span, privileged_span, require_gate, Actor, AuditLayer};
use common::Collector;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Instrument};
use tracing_subscriber::layer::SubscriberExt;

#[path = "../../examples/side_doors.rs"]
mod side_doors;

/// The line of the example's side door (marked `// the side door`).
fn side_door_line() -> u32 {
    let src = include_str!("../../examples/side_doors.rs");
    let at = src
        .lines()
        .position(|l| l.trim_end().ends_with("// the side door"))
        .expect("the example marks its side door");
    u32::try_from(at + 1).expect("line")
}

#[test]
fn the_gated_path_stores_a_row_and_the_side_door_an_ungated_violation_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let (event_id, side_door) =
        side_doors::run(AuditLayer::builder().otlp_grpc(c.grpc_url())).expect("example ran");
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 1, "the side door leaves no audit row");
    assert_eq!(
        (rows[0].0.event_id.as_str(), rows[0].0.action.as_str()),
        (event_id.as_str(), "ledger.transfer")
    );
    let v = read_violations(dir.path()).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    let v = &v[0].0;
    assert_eq!(v.kind.as_deref(), Some("ungated"));
    assert_eq!(v.detected_by, "layer");
    assert_eq!(v.service_name, "ledger");
    assert_eq!(v.action.as_deref(), Some("ledger.*"));
    assert!(
        v.code_file
            .as_deref()
            .is_some_and(|f| f.ends_with("examples/side_doors.rs")),
        "{v:?}"
    );
    assert_eq!(v.code_line, Some(i64::from(side_door_line())));
    assert_eq!(
        (side_door.file, side_door.line),
        (v.code_file.as_deref().unwrap(), side_door_line())
    );
}

#[test]
fn in_strict_mode_the_side_door_panics_and_its_row_is_still_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let strict = AuditLayer::builder().otlp_grpc(c.grpc_url()).strict(true);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| side_doors::run(strict)))
        .expect_err("strict mode panics at the side door");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("examples/side_doors.rs"), "{msg}");
    // The exporter's guard delivered while the panic unwound.
    assert!(c.terminate());
    let v = read_violations(dir.path()).unwrap();
    assert_eq!(
        v.iter()
            .map(|(v, _, _)| (v.kind.as_deref(), v.code_line))
            .collect::<Vec<_>>(),
        [(Some("ungated"), Some(i64::from(side_door_line())))]
    );
}

/// The wire contract, without our layer: a violation record that says
/// `audit.violation.kind = ungated` is stored with that kind.
#[test]
fn a_raw_otlp_clients_ungated_violation_is_kept_with_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let s = |k: &str, v: &str| kv(k, Value::StringValue(v.into()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let record = LogRecord {
        time_unix_nano: now,
        event_name: "audit.violation".into(),
        attributes: vec![
            s("audit.event.id", "019ac0de-0000-7000-8000-00000000a001"),
            s("audit.violation.detected_by", "layer"),
            s("audit.violation.kind", "ungated"),
            s(
                "audit.violation.reason",
                "payments client called outside a gate",
            ),
            s("audit.action", "payments.*"),
            s("code.file.path", "src/payments.rs"),
            kv("code.line.number", Value::IntValue(42)),
        ],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt.block_on(async {
        let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
        let req = common::wire::request(vec![record]);
        client.export(req).await.unwrap().into_inner()
    });
    assert!(resp.partial_success.is_none(), "{resp:?}");
    assert!(c.terminate());
    let v = read_violations(dir.path()).unwrap();
    assert_eq!(v.len(), 1);
    let v = &v[0].0;
    assert_eq!(
        (
            v.kind.as_deref(),
            v.code_file.as_deref(),
            v.code_line,
            v.action.as_deref()
        ),
        (
            Some("ungated"),
            Some("src/payments.rs"),
            Some(42),
            Some("payments.*")
        )
    );
}

/// The crate docs' async shape, as a service writes it: spawned tasks on a
/// multi-threaded runtime, a gate held across awaits, a nested privileged
/// span, the effect checked inside; every action stored exactly once.
#[test]
fn two_thousand_spawned_gated_actions_are_stored_once_each() {
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let (layer, guard) = AuditLayer::builder()
        .service_name("ledger")
        .otlp_grpc(c.grpc_url())
        .queue_capacity(4 * N)
        .strict(true)
        .build()
        .expect("layer");
    let status = guard.status();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let ids: Vec<(String, String)> = rt.block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                tokio::spawn(
                    async move {
                        let agent = Actor::agent("agt_ledger", "usr_alice");
                        let gated = gate_span(&agent, "ledger.write", &format!("acct_{i}"))?;
                        let id = gated.event_id().to_owned();
                        let child_id = format!("019ac0de-0000-7000-8000-{i:012}");
                        gated
                            .instrument(async {
                                tokio::task::yield_now().await;
                                let child = privileged_span!(
                                    &agent,
                                    "ledger.append",
                                    event.id = child_id.as_str()
                                );
                                async {
                                    tokio::task::yield_now().await;
                                    require_gate("ledger.*").expect("inside the gate");
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                .instrument(child)
                                .await;
                                tokio::task::yield_now().await;
                            })
                            .await;
                        Ok::<_, audit_layer::GateError>((id, child_id))
                    }
                    .with_subscriber(dispatch.clone()),
                )
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("task").expect("gate"));
        }
        ids
    });
    drop(rt);
    guard.shutdown(Duration::from_secs(60)).expect("delivered");
    assert_eq!(status.ungated(), 0);
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 2 * N, "each action and its child once");
    let by_id: BTreeMap<&str, &audit_schema::AuditRecord> = rows
        .iter()
        .map(|(r, _, _)| (r.event_id.as_str(), r))
        .collect();
    assert_eq!(by_id.len(), 2 * N, "no event id twice");
    for (gate_id, child_id) in &ids {
        let (g, ch) = (by_id[gate_id.as_str()], by_id[child_id.as_str()]);
        assert_eq!(
            (g.action.as_str(), ch.action.as_str()),
            ("ledger.write", "ledger.append")
        );
        assert_eq!(g.trace_id, ch.trace_id, "the child joins its gate's trace");
        assert_eq!(ch.agent_id.as_deref(), Some("agt_ledger"));
    }
}

/// A `fmt` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_apps_fmt_log_shows_the_event_id_the_collector_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let (audit, guard) = AuditLayer::builder()
        .service_name("billing")
        .otlp_grpc(c.grpc_url())
        .build()
        .expect("layer");
    let buf = Buffer::default();
    let writer = buf.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || writer.clone());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(fmt).with(audit), || {
        let agent = Actor::agent("agt_7f3", "usr_alice");
        privileged_span!(&agent, "reports.export", target = "q3")
            .in_scope(|| tracing::info!("exported"));
    });
    guard.shutdown(Duration::from_secs(20)).expect("delivered");
    assert!(c.terminate());
    let stored = common::stored_ids(dir.path());
    assert_eq!(stored.len(), 1);
    let id = stored.first().unwrap();
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains(&format!("event.id=\"{id}\"")),
        "{id} not in {log}"
    );
}

/// The answers count the side door: `prove-human` for a human action of
/// the same service and window (as information: it is not this action), `query` by kind, and the console's
/// trail-health view.
#[tokio::test(flavor = "multi_thread")]
async fn prove_human_query_and_the_console_count_ungated_effects() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let url = c.grpc_url();
    let human_id = tokio::task::spawn_blocking(move || {
        side_doors::run(AuditLayer::builder().otlp_grpc(&url)).expect("example ran");
        let (layer, guard) = AuditLayer::builder()
            .service_name("ledger")
            .otlp_grpc(url)
            .build()
            .expect("layer");
        let id = "019ac0de-0000-7000-8000-0000000000b1";
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            privileged_span!(Actor::human("usr_carol"), "ledger.close", event.id = id)
                .in_scope(|| {});
        });
        guard.shutdown(Duration::from_secs(20)).expect("delivered");
        id
    })
    .await
    .unwrap();
    assert!(c.terminate());
    let data = dir.path().to_str().unwrap();

    let proof = common::cli(&["prove-human", "--data-dir", data, human_id], &[]);
    // The side door ran in another trace, with no owner, target or callsite
    // of this action: it cannot be this action, so it does not fail the
    // proof, but the answer counts it for the reader.
    assert!(
        proof.ok,
        "an unrelated side door does not fail the proof: {}",
        proof.stdout
    );
    assert!(
        proof
            .stdout
            .contains("ungated effects in this service and window: 1"),
        "{}",
        proof.stdout
    );

    let by_kind = common::cli(
        &[
            "query",
            "--data-dir",
            data,
            "--format",
            "csv",
            "SELECT kind, count(*) AS n FROM violations GROUP BY kind",
        ],
        &[],
    );
    assert!(by_kind.ok, "{}", by_kind.stderr);
    assert_eq!(by_kind.stdout.trim(), "kind,n\nungated,1");

    let console = crate::console::Console::start_over(dir.path(), &[]);
    let health = crate::console::view(&console, "/health").await.body;
    let table = &health[health.find("id=\"ungated\"").expect("the ungated table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    assert!(
        table.contains("<td>ledger</td><td class=\"fail\">1</td>"),
        "{table}"
    );
}
