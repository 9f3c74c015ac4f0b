//! Three processes, each with its own audit layer shipping to the real
//! collector: the `delegation_chain` example as a planner app (an agent for
//! usr_alice), a worker app (HTTP, axum) and a tool service (gRPC, tonic).
//! The planner calls the worker, the worker calls the tool, and the chain
//! crosses both hops in `Audit-Delegation-Chain` headers with the W3C
//! `traceparent` beside it. Then: the tool's row carries the whole chain
//! (each hop's kind, id and owner), `activity --origin` finds every hop's
//! row, each row names the service that sent its chain, all rows share the
//! planner's trace id, `who` prints the chain, and a v1 file answers
//! beside the v2 ones. A hop forging an origin without a chain, sent by a
//! raw OTLP client, is refused at the collector in `delegation.rs`.

use crate::common;

use std::fs::File;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use audit_collector::partition::{read_audit, PartitionWriter};
use audit_layer::{identity, Actor, AuditLayer};
use audit_schema::{ActorKind, Draft, Rules, Stamp};
use common::{cli, example_bin, stdout_lines, Collector};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use tracing_subscriber::layer::SubscriberExt;

/// One role of the `delegation_chain` example, killed if the test ends
/// before it does.
struct Hop {
    child: Child,
    lines: Receiver<String>,
}

impl Hop {
    /// Starts `delegation_chain ARGS`, its layer shipping to `c`.
    fn start(c: &Collector, args: &[&str]) -> Hop {
        let mut child = Command::new(example_bin("delegation_chain"))
            .args(args)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", c.http_url())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the example");
        let lines = stdout_lines(&mut child);
        Hop { child, lines }
    }

    /// The next line it prints, `prefix` removed.
    fn line(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {prefix:?} line within 60 s"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
            .to_owned()
    }

    /// A server's address, from its first line.
    fn address(&self) -> SocketAddr {
        self.line("listening ").parse().expect("an address")
    }

    /// Waits (bounded) for it to exit; whether it exited 0.
    fn wait(mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("still running after 60 s");
    }

    /// Ctrl-C: a server flushes its layer and exits.
    fn stop(self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        assert!(sent.expect("kill").success());
        self.wait()
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alice's access change, which cascades to her planner agent, recorded by
/// an identity service of the test's own.
fn revoke_alices_access(c: &Collector) {
    let (layer, guard) = AuditLayer::builder()
        .service_name("iam")
        .otlp_http(c.http_url())
        .build()
        .expect("layer");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let alice = Actor::human("usr_alice");
        let planner = Actor::agent("agt_planner", "usr_alice");
        identity::owner_access_change(&alice, "usr_alice", "revoked db:write", &[planner])
            .expect("access change recorded");
    });
    guard.shutdown(Duration::from_secs(20)).expect("flushed");
}

/// Rows of `activity --format json ARGS`, as JSON objects.
fn activity(data: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![
        "activity",
        "--data-dir",
        data,
        "--last",
        "2h",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let o = cli(&all, &[]);
    assert!(o.ok, "{}", o.stderr);
    serde_json::from_str(&o.stdout).expect("JSON rows")
}

fn field<'a>(row: &'a serde_json::Value, name: &str) -> &'a str {
    row[name].as_str().unwrap_or("")
}

/// Writes `usr_alice`'s single-hop agent action as a v1 file: every column
/// added since (`AUDIT_ADDED`) projected away, as the first collectors
/// wrote it.
fn write_v1_file(data: &std::path::Path) {
    let now = chrono::Utc::now().timestamp_nanos_opt().expect("now");
    let draft = Draft {
        event_id: Some("v1-legacy-row".into()),
        start_time_ns: Some(now - 60_000_000_000),
        agent_id: Some("agt_legacy".into()),
        owner_id: Some("usr_alice".into()),
        action: Some("db.read".into()),
        service_name: Some("legacy".into()),
        ..Draft::default()
    };
    let record = Rules::default().check(draft).expect("valid");
    let stamp = Stamp {
        received_time_ns: now,
        seq: 1,
    };
    let sealed = PartitionWriter::new(data, "old-collector")
        .seal_audit(vec![(record, stamp)])
        .expect("sealed");
    let path = data.join(&sealed[0].path);
    let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
        .expect("parquet")
        .build()
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("read");
    let v1: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            !audit_schema::record::AUDIT_ADDED.contains(&batch.schema().field(i).name().as_str())
        })
        .collect();
    let old = batch.project(&v1).expect("project");
    let mut w = ArrowWriter::try_new(File::create(&path).expect("create"), old.schema(), None)
        .expect("writer");
    w.write(&old).expect("write");
    w.close().expect("close");
}

#[test]
fn a_chain_crosses_http_and_grpc_between_three_processes_and_answers_by_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let c = Collector::start(&data, &[]);

    let tool = Hop::start(&c, &["tool"]);
    let tool_addr = tool.address().to_string();
    let worker = Hop::start(&c, &["worker", &tool_addr]);
    let worker_addr = worker.address().to_string();
    let planner = Hop::start(&c, &["planner", &worker_addr]);
    let traceparent = planner.line("traceparent ");
    assert!(planner.wait(), "the planner's call went through both hops");
    assert!(worker.stop(), "the worker flushed and exited");
    assert!(tool.stop(), "the tool service flushed and exited");
    revoke_alices_access(&c);
    assert!(c.terminate(), "clean exit");

    // One trace: `00-<trace id>-<span id>-<flags>` is the planner's span.
    let sent: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(sent.len(), 4, "{traceparent}");
    let stored = read_audit(&data).expect("read");
    let span_of = |(agent, action): (&str, &str)| {
        let (r, _, _) = stored
            .iter()
            .find(|(r, _, _)| r.agent_id.as_deref() == Some(agent) && r.action == action)
            .unwrap_or_else(|| panic!("{agent}'s {action} row"));
        (r.trace_id.as_deref(), r.span_id.clone())
    };
    let spans = [
        ("agt_planner", "plan.dispatch"),
        ("agt_worker", "work.step"),
        ("agt_tool", "db.write"),
    ]
    .map(span_of);
    assert!(
        spans.iter().all(|(trace, _)| *trace == Some(sent[1])),
        "every hop in the planner's trace {traceparent}: {spans:?}"
    );
    assert_eq!(spans[0].1.as_deref(), Some(sent[2]), "{traceparent}");
    assert!(
        spans[1].1 != spans[0].1 && spans[2].1 != spans[1].1,
        "{spans:?}"
    );

    write_v1_file(&data);
    let d = data.to_str().expect("utf-8 path");
    let rows = activity(d, &["--origin", "usr_alice"]);
    let by_agent = |a: &str| rows.iter().find(|r| field(r, "agent_id") == a);
    let tool_row = by_agent("agt_tool").unwrap_or_else(|| panic!("tool row in {rows:#?}"));
    let hops = audit_schema::delegation::parse(field(tool_row, "delegation")).expect("chain");
    let hops: Vec<_> = hops
        .iter()
        .map(|h| (h.kind, h.id.as_str(), h.owner_id.as_deref()))
        .collect();
    assert_eq!(
        hops,
        [
            (ActorKind::Human, "usr_alice", None),
            (ActorKind::Agent, "agt_planner", Some("usr_alice")),
            (ActorKind::Agent, "agt_worker", Some("usr_bob")),
            (ActorKind::Agent, "agt_tool", Some("usr_ops")),
        ]
    );
    assert_eq!(field(tool_row, "origin_id"), "usr_alice");
    assert_eq!(field(tool_row, "service_name"), "tool");
    let sent_by = |a: &str| {
        field(
            by_agent(a).unwrap_or_else(|| panic!("{a}'s row")),
            "delegation_from",
        )
    };
    assert_eq!(
        sent_by("agt_tool"),
        "worker",
        "the worker sent the tool its chain"
    );
    assert_eq!(sent_by("agt_worker"), "planner");
    assert_eq!(sent_by("agt_planner"), "", "the planner's chain is its own");
    assert!(
        by_agent("agt_legacy").is_some(),
        "the v1 row, its owner its origin: {rows:#?}"
    );
    assert!(
        rows.iter()
            .all(|r| field(r, "origin_id") == "usr_alice" || field(r, "owner_id") == "usr_alice"),
        "{rows:#?}"
    );
    assert!(
        activity(d, &["--origin", "usr_bob"]).is_empty(),
        "a hop's owner is no origin"
    );

    // v1 and v2 files together: the owner question reads both.
    let owner = activity(d, &["--owner", "usr_alice"]);
    for a in ["agt_planner", "agt_legacy"] {
        assert!(
            owner.iter().any(|r| field(r, "agent_id") == a),
            "{a} in {owner:#?}"
        );
    }

    // The cascade row about the planner is in the planner's activity.
    let planner = activity(d, &["--agent", "agt_planner"]);
    let actions: Vec<_> = planner.iter().map(|r| field(r, "action")).collect();
    assert!(actions.contains(&"plan.dispatch"), "{actions:?}");
    assert!(
        actions.contains(&"identity.owner.access_change"),
        "{actions:?}"
    );

    // A point question over a v1 file (none of the later columns) too.
    let legacy = cli(&["who", "--data-dir", d, "v1-legacy-row"], &[]);
    assert!(legacy.ok, "{}", legacy.stderr);
    assert!(legacy.stdout.contains("agt_legacy"), "{}", legacy.stdout);

    let who = cli(&["who", "--data-dir", d, field(tool_row, "event_id")], &[]);
    assert!(who.ok, "{}", who.stderr);
    assert!(who.stdout.contains(CHAIN), "{}", who.stdout);

    // The console's find view shows the same chain, from the same code.
    let console = crate::console::Console::start_over(&data, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let page = rt.block_on(crate::console::view(
        &console,
        &format!("/find?event_id={}", field(tool_row, "event_id")),
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    let escaped = CHAIN.replace('>', "&gt;");
    assert!(
        page.body.contains(&escaped) || page.body.contains(CHAIN),
        "{}",
        page.body
    );
}

/// The tool service's chain as `who` prints it.
const CHAIN: &str = "CHAIN (origin usr_alice, as claimed by service worker): usr_alice (human) -> agt_planner (agent, owner usr_alice) -> agt_worker (agent, owner usr_bob, credential key_w1) -> agt_tool (agent, owner usr_ops)";
