//! The whole path on embedded defaults: a collector (in-process, loopback,
//! ephemeral ports, data in `./audit-data`), an app whose privileged spans go
//! through `audit-layer`, and the Parquet read back to say who did what.
//!
//! ```text
//! cargo run --example quickstart [DATA_DIR]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use audit_collector::config::Config;
use audit_collector::partition::{read_audit, read_violations};
use audit_collector::server::Server;
use audit_layer::{privileged_span, Actor, AuditLayer, Policy};
use audit_schema::{ActorKind, Rules};
use tracing_subscriber::layer::SubscriberExt;

/// The app: four privileged actions, one of them unattributed.
fn app() {
    // A human acts, and says so: this is what makes "no agent" provable.
    let alice = Actor::human("usr_alice");
    privileged_span!(
        &alice,
        "users.update_role",
        target = "usr_bob",
        role = "admin"
    )
    .in_scope(|| tracing::info!("role updated"));

    // An agent acts for Alice with its own principal and credential.
    let bot = Actor::agent("agt_7f3", "usr_alice")
        .name("ledger-bot")
        .credential("key_2026_11")
        .task("tsk_close_books");
    privileged_span!(
        &bot,
        "invoices.read",
        target = "inv_42",
        scopes = "invoices:read"
    )
    .in_scope(|| tracing::info!("invoice read"));

    // A dangerous action (policy: payments.*) needs a consent token.
    privileged_span!(
        &bot,
        "payments.transfer",
        target = "acct_9",
        scopes = "payments:write",
        consent = "cns_77",
        amount = 1200
    )
    .in_scope(|| tracing::info!("transfer sent"));

    // A raw tracing span that names an agent but no accountable human:
    // rejected by the layer, reported as a violation, never an audit row.
    tracing::info_span!(target: "audit", "users.delete", agent.id = "agt_rogue", target = "usr_carol")
        .in_scope(|| tracing::warn!("this action is not attributable"));
}

fn main() -> anyhow::Result<()> {
    let data_dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("./audit-data"), PathBuf::from);
    let run_id = format!("quickstart-{}", std::process::id());
    let rules = Rules::default().dangerous_action("payments.*");

    // 1. The collector, in-process on loopback.
    let rt = tokio::runtime::Runtime::new()?;
    let server = rt.block_on(Server::start(Config {
        data_dir: data_dir.clone(),
        otlp_grpc: Some(([127, 0, 0, 1], 0).into()),
        otlp_http: Some(([127, 0, 0, 1], 0).into()),
        rules: rules.clone(),
        ..Config::default()
    }))?;
    let grpc = server.grpc_addr.context("gRPC listener")?;
    println!(
        "collector {} listening on {grpc} (OTLP/gRPC), data in {}",
        server.collector_id,
        data_dir.display()
    );

    // 2. The app's tracing setup: an existing fmt layer, plus the audit layer.
    let (audit, guard) = AuditLayer::builder()
        .service_name("quickstart-billing")
        .service_instance_id(run_id.clone())
        .otlp_grpc(format!("http://{grpc}"))
        .policy(Policy::default().rules(rules))
        .build()?;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .with(audit);
    tracing::subscriber::with_default(subscriber, app);

    // 3. Flush the layer (delivery is acknowledged by the collector), then
    //    stop the collector, which seals everything into Parquet.
    let status = guard.status();
    guard.shutdown(Duration::from_secs(10))?;
    rt.block_on(server.shutdown())?;
    println!(
        "\nlayer: {} records acked by the collector (actions and violations), {} violation(s)",
        status.exported(),
        status.violations()
    );

    // 4. Read the Parquet back: who did what, human or AI, who is accountable.
    println!(
        "\n{:<19} {:<6} {:<22} {:<10} {:<18} {:<8} {:<7}",
        "action", "who", "actor", "owner", "target", "consent", "outcome"
    );
    let mut transfer_id = None;
    for (r, stamp, _) in read_audit(&data_dir)?
        .into_iter()
        .filter(|(r, _, _)| r.service_instance_id.as_deref() == Some(run_id.as_str()))
    {
        if r.action == "payments.transfer" {
            transfer_id = Some(r.event_id.clone());
        }
        let (who, actor) = match r.actor_kind {
            ActorKind::Human => ("HUMAN", r.owner_id.clone()),
            ActorKind::Agent => (
                "AI",
                format!(
                    "{} ({})",
                    r.agent_id.clone().unwrap_or_default(),
                    r.agent_credential_id.clone().unwrap_or_default()
                ),
            ),
        };
        println!(
            "{:<19} {:<6} {:<22} {:<10} {:<18} {:<8} {:<7} seq={}",
            r.action,
            who,
            actor,
            r.owner_id,
            r.target.unwrap_or_default(),
            r.consent_id.unwrap_or_else(|| "-".into()),
            r.outcome,
            stamp.seq
        );
    }
    println!("\nrejected (violations):");
    for (v, _, _) in read_violations(&data_dir)?
        .into_iter()
        .filter(|(v, _, _)| v.service_name == "quickstart-billing")
    {
        println!(
            "  {} at {}:{} missing {:?}: {}",
            v.span_name.unwrap_or_default(),
            v.code_file.unwrap_or_default(),
            v.code_line.unwrap_or_default(),
            v.missing,
            v.reason
        );
    }
    // Commands that work as printed from a clone, where the quickstart
    // ran: nothing here assumes a binary on the PATH or a DuckDB CLI.
    let dir = data_dir.display();
    println!("\nask the trail (`cargo run -q --` runs this repository's audit-collector binary):");
    if let Some(id) = transfer_id {
        println!("  cargo run -q -- who --data-dir {dir} {id}");
    }
    println!("  cargo run -q -- activity --data-dir {dir} --owner usr_alice --last 24h");
    println!("  cargo run -q -- verify --data-dir {dir}");
    println!("or read the Parquet with DuckDB (python3 -m pip install duckdb):");
    println!(
        "  python3 -c \"import duckdb; duckdb.read_parquet('{dir}/audit/**/*.parquet', \
         hive_partitioning=True).project('action, actor_kind, agent_id, owner_id').show()\""
    );
    Ok(())
}
