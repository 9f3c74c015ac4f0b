//! A small dataset with answers known in advance, written through the real
//! layer and a real collector: the fixture of the answerability tests
//! (`tests/e2e/answerability.rs` includes this file; `tests/python/test_analysts.py`
//! runs it).
//!
//! ```text
//! cargo run --example answer_dataset DIR [WITNESS_DIR]   # in-process collector; prints the ids as JSON
//! ```
//!
//! With a witness directory, the collector signs a checkpoint to it every
//! second, the last one after every row is sealed.
//!
//! What it holds (event ids are fixed, so the tests know them in advance):
//! - `hr-portal`: usr_alice changes a role herself (a human action, no
//!   violation anywhere in that service): `prove-human` must pass.
//! - `billing`: agent `agt_ledger` ("ledger-bot") for usr_alice, task
//!   `tsk_close`, reads an invoice and makes a transfer with credential
//!   `key_A`, then its credential rotates and it reads another invoice with
//!   `key_B`; usr_carol approves a refund herself; an unattributed span
//!   leaves a violation in `billing` (so the refund is not provable);
//!   agent `agt_report` for usr_bob reads a report.
#![allow(dead_code)] // included by tests that use only part of it

use std::path::PathBuf;
use std::time::Duration;

use audit_layer::{privileged_span, Actor, AuditLayer};
use tracing_subscriber::layer::SubscriberExt;

/// usr_alice's own role change in `hr-portal`.
pub const HUMAN_OK: &str = "019a0000-0000-7000-8000-000000000001";
/// agt_ledger, key_A: invoices.read inv_1.
pub const AGENT_A1: &str = "019a0000-0000-7000-8000-000000000002";
/// agt_ledger, key_A: payments.transfer acct_9 with consent cns_1.
pub const AGENT_A2: &str = "019a0000-0000-7000-8000-000000000003";
/// agt_ledger, key_B (after rotation): invoices.read inv_2.
pub const AGENT_B1: &str = "019a0000-0000-7000-8000-000000000004";
/// usr_carol's own refund approval in `billing`, near a violation.
pub const HUMAN_NEAR_VIOLATION: &str = "019a0000-0000-7000-8000-000000000005";
/// agt_report for usr_bob: reports.read.
pub const OTHER_AGENT: &str = "019a0000-0000-7000-8000-000000000006";

/// agt_ledger's actions in order, with the credential each used.
pub const LEDGER_ACTIONS: [(&str, &str, &str); 3] = [
    (AGENT_A1, "invoices.read", "key_A"),
    (AGENT_A2, "payments.transfer", "key_A"),
    (AGENT_B1, "invoices.read", "key_B"),
];

fn with_layer(grpc_url: &str, service: &str, app: impl FnOnce()) -> anyhow::Result<()> {
    let (layer, guard) = AuditLayer::builder()
        .service_name(service)
        .service_instance_id(format!("{service}-1"))
        .otlp_grpc(grpc_url)
        .build()?;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), app);
    guard.shutdown(Duration::from_secs(20))?;
    Ok(())
}

/// Sends the dataset to the collector at `grpc_url` (`http://host:port`).
pub fn build(grpc_url: &str) -> anyhow::Result<()> {
    with_layer(grpc_url, "hr-portal", || {
        let alice = Actor::human("usr_alice");
        privileged_span!(
            &alice,
            "users.update_role",
            target = "usr_bob",
            event.id = HUMAN_OK
        )
        .in_scope(|| {});
    })?;
    with_layer(grpc_url, "billing", || {
        let ledger = |key: &str| {
            Actor::agent("agt_ledger", "usr_alice")
                .name("ledger-bot")
                .credential(key)
                .initiator("usr_alice")
                .task("tsk_close")
        };
        privileged_span!(
            &ledger("key_A"),
            "invoices.read",
            target = "inv_1",
            scopes = "invoices:read",
            event.id = AGENT_A1
        )
        .in_scope(|| {});
        // Distinct start times keep the order unambiguous.
        std::thread::sleep(Duration::from_millis(5));
        privileged_span!(
            &ledger("key_A"),
            "payments.transfer",
            target = "acct_9",
            scopes = "payments:write",
            consent = "cns_1",
            event.id = AGENT_A2
        )
        .in_scope(|| {});
        std::thread::sleep(Duration::from_millis(5));
        // The credential rotates; the principal stays agt_ledger.
        privileged_span!(
            &ledger("key_B"),
            "invoices.read",
            target = "inv_2",
            scopes = "invoices:read",
            event.id = AGENT_B1
        )
        .in_scope(|| {});
        let carol = Actor::human("usr_carol");
        privileged_span!(
            &carol,
            "refunds.approve",
            target = "rfd_7",
            event.id = HUMAN_NEAR_VIOLATION
        )
        .in_scope(|| {});
        // Names an agent but no accountable human: a violation in `billing`.
        tracing::info_span!(target: "audit", "refunds.issue", agent.id = "agt_rogue")
            .in_scope(|| {});
        let report = Actor::agent("agt_report", "usr_bob").credential("key_R");
        privileged_span!(
            &report,
            "reports.read",
            target = "rep_1",
            event.id = OTHER_AGENT
        )
        .in_scope(|| {});
    })
}

fn main() -> anyhow::Result<()> {
    use audit_collector::{config::Config, server::Server};
    let data_dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("./answer-data"), PathBuf::from);
    let witness = std::env::args().nth(2).map(PathBuf::from);
    let mut cfg = Config {
        data_dir: data_dir.clone(),
        otlp_grpc: Some(([127, 0, 0, 1], 0).into()),
        otlp_http: None,
        ..Config::default()
    };
    if witness.is_some() {
        // A digest (which seals first) and its checkpoint every second.
        cfg.store.witness_dir = witness.clone();
        cfg.store.digest_interval_secs = 1;
    }
    let rt = tokio::runtime::Runtime::new()?;
    let server = rt.block_on(Server::start(cfg))?;
    let grpc = server
        .grpc_addr
        .ok_or_else(|| anyhow::anyhow!("no gRPC listener"))?;
    let from = chrono::Utc::now();
    build(&format!("http://{grpc}"))?;
    let to = chrono::Utc::now();
    if witness.is_some() {
        // A digest after the last row: the witness signs a head covering it.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    rt.block_on(server.shutdown())?;
    // One JSON line for scripts: the ids and a window that holds every action.
    println!(
        "{}",
        serde_json::json!({
            "data_dir": data_dir,
            "from": (from - chrono::Duration::seconds(1)).to_rfc3339(),
            "to": (to + chrono::Duration::seconds(1)).to_rfc3339(),
            "human_ok": HUMAN_OK,
            "human_near_violation": HUMAN_NEAR_VIOLATION,
            "ledger": LEDGER_ACTIONS.map(|(id, _, _)| id),
            "other_agent": OTHER_AGENT,
        })
    );
    Ok(())
}
