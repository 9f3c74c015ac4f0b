//! audit-layer → OTLP (gRPC and HTTP) → the real collector binary →
//! Parquet, over loopback.

use crate::common;

use std::time::Duration;

use audit_collector::partition::{read_audit, read_violations};
use audit_layer::{privileged_span, Actor, AuditLayer, Policy};
use audit_schema::ActorKind;
use common::Collector;
use tracing_subscriber::layer::SubscriberExt;

fn with_layer(
    build: impl FnOnce(audit_layer::AuditLayerBuilder) -> audit_layer::AuditLayerBuilder,
    app: impl FnOnce(),
) -> audit_layer::StatsSnapshot {
    let (layer, guard) = build(
        AuditLayer::builder()
            .service_name("e2e")
            .service_instance_id("e2e-1"),
    )
    .build()
    .expect("layer");
    let status = guard.status();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), app);
    guard.shutdown(Duration::from_secs(20)).expect("flushed");
    status.snapshot()
}

#[test]
fn every_column_round_trips_from_span_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let url = c.grpc_url();
    let stats = with_layer(
        |b| b.otlp_grpc(url),
        || {
            let actor = Actor::agent("agt_7f3", "usr_alice")
                .name("ledger-bot")
                .credential("key_2026_11")
                .initiator("usr_bob")
                .task("tsk_9");
            let span = privileged_span!(
                &actor,
                "payments.transfer",
                target = "acct_42",
                scopes = "payments:write, accounts:read",
                consent = "cns_1",
                inputs.sha256 = "ab12",
                amount = 100,
                outcome = tracing::field::Empty
            );
            span.in_scope(|| std::thread::sleep(Duration::from_millis(2)));
            // Recorded late, before close: counts.
            span.record("outcome", "denied");
        },
    );
    assert_eq!((stats.exported, stats.violations, stats.refused), (1, 0, 0));
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 1);
    let (r, stamp, _) = &rows[0];
    assert_eq!(r.actor_kind, ActorKind::Agent);
    assert_eq!(r.agent_id.as_deref(), Some("agt_7f3"));
    assert_eq!(r.agent_name.as_deref(), Some("ledger-bot"));
    assert_eq!(r.agent_credential_id.as_deref(), Some("key_2026_11"));
    assert_eq!(r.owner_id, "usr_alice");
    assert_eq!(r.initiator_id.as_deref(), Some("usr_bob"));
    assert_eq!(r.task_id.as_deref(), Some("tsk_9"));
    assert_eq!(r.action, "payments.transfer");
    assert_eq!(r.target.as_deref(), Some("acct_42"));
    assert_eq!(r.outcome, "denied");
    assert_eq!(r.scopes, ["payments:write", "accounts:read"]);
    assert_eq!(r.consent_id.as_deref(), Some("cns_1"));
    assert_eq!(r.inputs_sha256.as_deref(), Some("ab12"));
    assert_eq!(r.service_name, "e2e");
    assert_eq!(r.service_instance_id.as_deref(), Some("e2e-1"));
    assert_eq!(r.attributes["amount"], "100");
    assert_eq!(r.trace_id.as_ref().map(String::len), Some(32));
    assert_eq!(r.span_id.as_ref().map(String::len), Some(16));
    let end = r.end_time_ns.expect("end time");
    assert!(end - r.start_time_ns >= 2_000_000, "span duration kept");
    let id = uuid::Uuid::parse_str(&r.event_id).expect("uuid");
    assert_eq!(id.get_version_num(), 7, "event_id is a UUIDv7");
    assert_eq!(stamp.seq, 1);
}

#[test]
fn each_rule_is_enforced_at_the_layer_and_leaves_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let url = c.grpc_url();
    let stats = with_layer(
        |b| {
            b.otlp_grpc(url)
                .policy(Policy::default().dangerous_action("db.drop*"))
        },
        || {
            // Agent without its accountable human.
            tracing::info_span!(target: "audit", "a.no_owner", agent.id = "agt_1").in_scope(|| {});
            // A human not stated as such: never inferred.
            tracing::info_span!(target: "audit", "b.unstated_human", owner.id = "usr_1")
                .in_scope(|| {});
            // A human action naming an agent.
            tracing::info_span!(target: "audit::users", "c.human_with_agent",
                actor.kind = "human", owner.id = "usr_1", agent.id = "agt_1")
            .in_scope(|| {});
            // Dangerous by policy, no consent.
            privileged_span!(Actor::agent("agt_1", "usr_1"), "db.drop_table").in_scope(|| {});
            // Dangerous by flag, no consent.
            privileged_span!(Actor::human("usr_1"), "d.flagged", audit.dangerous = true)
                .in_scope(|| {});
            // Privileged by flag on a non-audit target, unattributed.
            tracing::info_span!("e.flagged_privileged", audit.privileged = true).in_scope(|| {});
            // The one good action.
            privileged_span!(Actor::human("usr_1"), "f.good").in_scope(|| {});
            // Not privileged at all: no row, no violation.
            tracing::info_span!("g.ordinary", user = "x").in_scope(|| {});
        },
    );
    assert_eq!(stats.violations, 6);
    assert_eq!(stats.exported, 7, "1 action + 6 violations acknowledged");
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.action.as_str()).collect::<Vec<_>>(),
        ["f.good"]
    );
    let mut v: Vec<(String, Vec<String>, String)> = read_violations(dir.path())
        .unwrap()
        .into_iter()
        .map(|(v, _, _)| {
            assert!(
                v.code_file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("layer_e2e.rs")),
                "{v:?}"
            );
            assert!(v.code_line.is_some_and(|l| l > 0));
            (v.span_name.unwrap_or_default(), v.missing, v.detected_by)
        })
        .collect();
    v.sort();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        v,
        [
            (s("a.no_owner"), vec![s("audit.owner.id")], s("layer")),
            (
                s("b.unstated_human"),
                vec![s("audit.actor.kind")],
                s("layer")
            ),
            (
                s("c.human_with_agent"),
                vec![s("gen_ai.agent.id")],
                s("layer")
            ),
            (s("d.flagged"), vec![s("audit.consent.id")], s("layer")),
            (s("db.drop_table"), vec![s("audit.consent.id")], s("layer")),
            (
                s("e.flagged_privileged"),
                vec![s("audit.actor.kind")],
                s("layer")
            ),
        ]
    );
}

#[test]
fn layer_ships_over_otlp_http_too() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let url = c.http_url();
    let stats = with_layer(
        |b| b.otlp_http(url),
        || {
            for i in 0..50 {
                privileged_span!(Actor::agent("agt_h", "usr_h"), "files.read", target = i)
                    .in_scope(|| {});
            }
        },
    );
    assert_eq!(stats.exported, 50);
    assert!(c.terminate());
    assert_eq!(read_audit(dir.path()).unwrap().len(), 50);
}

#[test]
fn a_collector_refusal_is_counted_by_the_layer() {
    // The collector's policy is stricter than the app's: defence in depth.
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--dangerous-action", "secrets.*"]);
    let url = c.grpc_url();
    let stats = with_layer(
        |b| b.otlp_grpc(url),
        || {
            privileged_span!(Actor::agent("agt_s", "usr_s"), "secrets.read").in_scope(|| {});
            privileged_span!(Actor::agent("agt_s", "usr_s"), "files.read").in_scope(|| {});
        },
    );
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert!(c.terminate());
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 1);
    let v = read_violations(dir.path()).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].0.detected_by.as_str(), v[0].0.missing.clone()),
        ("collector", vec!["audit.consent.id".to_owned()])
    );
}

/// A loopback proxy to the collector that loses the first answer: the
/// request reaches the collector, which stores and acknowledges it, and
/// the proxy closes the client's connection instead of forwarding the
/// answer. The rest pass through.
struct LosesFirstAnswer {
    port: u16,
    lost: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LosesFirstAnswer {
    fn start(target: std::net::SocketAddr) -> LosesFirstAnswer {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let lost = Arc::new(AtomicUsize::new(0));
        let lost_by_proxy = lost.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let Ok(mut server) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(mut to_server), Ok(mut from_client)) =
                    (server.try_clone(), client.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let lost = lost_by_proxy.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // The first answer the collector gives: dropped.
                        if lost
                            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                        {
                            let _ = client.shutdown(Shutdown::Both);
                            break;
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Write);
                });
            }
        });
        LosesFirstAnswer { port, lost }
    }

    fn lost(&self) -> usize {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_violation_resent_after_its_acknowledgement_was_lost_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let proxy = LosesFirstAnswer::start(c.http);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let stats = with_layer(
        |b| b.otlp_http(url),
        || {
            // Agent without its accountable human: a violation row.
            tracing::info_span!(target: "audit", "lost_ack.no_owner", agent.id = "agt_l")
                .in_scope(|| {});
        },
    );
    assert_eq!(proxy.lost(), 1, "the collector's first answer was lost");
    assert_eq!((stats.violations, stats.exported), (1, 1), "{stats:?}");
    assert!(c.terminate());
    let v = read_violations(dir.path()).unwrap();
    let names: Vec<_> = v.iter().map(|(v, _, _)| v.span_name.clone()).collect();
    assert_eq!(
        names,
        [Some("lost_ack.no_owner".to_owned())],
        "stored once, although it reached the collector twice"
    );
}
