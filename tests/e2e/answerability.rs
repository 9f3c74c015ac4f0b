//! `query`, `who`, `activity`, `prove-human` of the real collector binary,
//! against a dataset written through the real layer to the real collector
//! over loopback (`examples/answer_dataset.rs`), with answers known in advance.

use crate::common;

use crate::answer_dataset;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use answer_dataset::*;
use chrono::{DateTime, Utc};
use common::{collector_bin, Collector};
use serde_json::Value;

pub struct Dataset {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Built once for all tests (none of them writes to it; the console's
/// tests read it too).
pub fn dataset() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::start(dir.path(), &[]);
        let from = Utc::now() - chrono::Duration::seconds(1);
        build(&c.grpc_url()).expect("dataset sent");
        let to = Utc::now() + chrono::Duration::seconds(1);
        assert!(c.terminate(), "collector exits 0 after sealing");
        Dataset {
            path: dir.path().to_owned(),
            _dir: dir,
            from,
            to,
        }
    })
}

fn run(args: &[&str]) -> common::CliOut {
    common::cli(args, &[])
}

fn json(args: &[&str]) -> Vec<Value> {
    let o = run(args);
    assert!(o.ok, "{args:?}: {}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

fn dir_arg(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn who_tells_human_from_ai_with_everything_about_the_agent() {
    let d = dir_arg(&dataset().path);
    let h = json(&["who", "--data-dir", &d, "--format", "json", HUMAN_OK]);
    assert_eq!(h.len(), 1);
    let h = &h[0];
    assert_eq!(h["actor_kind"], "human");
    assert_eq!(h["agent_id"], Value::Null);
    assert_eq!(h["owner_id"], "usr_alice");
    assert_eq!(h["action"], "users.update_role");
    assert_eq!(h["service_name"], "hr-portal");
    assert_eq!(h["outcome"], "ok");
    assert!(
        h["file"].as_str().unwrap().starts_with("audit/date="),
        "{h}"
    );

    let a = &json(&["who", "--data-dir", &d, "--format", "json", AGENT_A2])[0];
    assert_eq!(a["actor_kind"], "agent");
    assert_eq!(a["agent_id"], "agt_ledger");
    assert_eq!(a["agent_name"], "ledger-bot");
    assert_eq!(a["agent_credential_id"], "key_A");
    assert_eq!(a["owner_id"], "usr_alice");
    assert_eq!(a["initiator_id"], "usr_alice");
    assert_eq!(a["task_id"], "tsk_close");
    assert_eq!(a["scopes"], serde_json::json!(["payments:write"]));
    assert_eq!(a["consent_id"], "cns_1");
    assert_eq!(a["action"], "payments.transfer");
    assert_eq!(a["service_name"], "billing");

    let t = run(&["who", "--data-dir", &d, AGENT_B1]);
    assert!(t.ok, "{}", t.stderr);
    assert!(
        t.stdout.contains(
            "AI: agent agt_ledger (ledger-bot) with credential key_B, accountable human usr_alice"
        ),
        "{}",
        t.stdout
    );
    let t = run(&["who", "--data-dir", &d, HUMAN_OK]);
    assert!(
        t.stdout.starts_with("HUMAN: usr_alice acted themselves"),
        "{}",
        t.stdout
    );

    let missing = run(&[
        "who",
        "--data-dir",
        &d,
        "019a0000-0000-7000-8000-0000000000ff",
    ]);
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("no audit row has event_id"),
        "{}",
        missing.stderr
    );
}

#[test]
fn activity_follows_the_agent_across_a_credential_rotation() {
    let ds = dataset();
    let d = dir_arg(&ds.path);
    let (from, to) = (ds.from.to_rfc3339(), ds.to.to_rfc3339());
    let rows = json(&[
        "activity",
        "--data-dir",
        &d,
        "--format",
        "json",
        "--agent",
        "agt_ledger",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["agent_credential_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, LEDGER_ACTIONS);

    // Everything usr_alice answers for: her own action and her agent's, not Bob's.
    let rows = json(&[
        "activity",
        "--data-dir",
        &d,
        "--format",
        "json",
        "--owner",
        "usr_alice",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [HUMAN_OK, AGENT_A1, AGENT_A2, AGENT_B1]);
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["start_time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );

    // A window after everything: nothing.
    let later = (ds.to + chrono::Duration::hours(1)).to_rfc3339();
    let later2 = (ds.to + chrono::Duration::hours(2)).to_rfc3339();
    let none = json(&[
        "activity",
        "--data-dir",
        &d,
        "--format",
        "json",
        "--agent",
        "agt_ledger",
        "--from",
        &later,
        "--to",
        &later2,
    ]);
    assert!(none.is_empty());

    let table = run(&[
        "activity",
        "--data-dir",
        &d,
        "--agent",
        "agt_ledger",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    // For a terminal: the id first, 120 columns at most, the rest named.
    assert!(
        table.ok && table.stdout.contains("(3 rows)"),
        "{}",
        table.stdout
    );
    let header = table.stdout.lines().nth(1).expect("header");
    assert!(header.starts_with("| event_id "), "{header}");
    assert!(table.stdout.contains(&format!("| {AGENT_B1} |")));
    assert!(
        table.stdout.lines().all(|l| l.chars().count() <= 120),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("--format json|csv has them"));
}

#[test]
fn query_runs_sql_over_both_tables_and_refuses_writes() {
    let d = dir_arg(&dataset().path);
    let n = json(&[
        "query",
        "--data-dir",
        &d,
        "--format",
        "json",
        "SELECT count(*) AS n, count(DISTINCT date) AS days FROM audit",
    ]);
    assert_eq!(n[0]["n"], 6);
    let v = json(&[
        "query",
        "--data-dir",
        &d,
        "--format",
        "json",
        "SELECT service_name, agent_id, hour FROM violations",
    ]);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["service_name"], "billing");
    assert_eq!(v[0]["agent_id"], "agt_rogue");
    assert_eq!(
        v[0]["hour"].as_str().map(str::len),
        Some(2),
        "hour is the path's string"
    );

    let csv = run(&[
        "query", "--data-dir", &d, "--format", "csv",
        "SELECT event_id, scopes FROM audit WHERE event_id = '019a0000-0000-7000-8000-000000000003'",
    ]);
    assert!(csv.ok, "{}", csv.stderr);
    assert_eq!(
        csv.stdout.lines().collect::<Vec<_>>(),
        [
            "event_id,scopes",
            "019a0000-0000-7000-8000-000000000003,[payments:write]"
        ]
    );

    let bad = run(&["query", "--data-dir", &d, "SELEC nothing FROM audit"]);
    assert!(!bad.ok);
    assert!(bad.stderr.contains("query failed"), "{}", bad.stderr);
    let unknown = run(&[
        "query",
        "--data-dir",
        &d,
        "SELECT no_such_column FROM audit",
    ]);
    assert!(
        !unknown.ok && unknown.stderr.contains("no_such_column"),
        "{}",
        unknown.stderr
    );
    let write = run(&[
        "query",
        "--data-dir",
        &d,
        "COPY (SELECT 1) TO '/tmp/answerability-should-not-exist.csv'",
    ]);
    assert!(!write.ok, "{}", write.stdout);
}

#[test]
fn prove_human_passes_only_for_a_clean_human_action() {
    let d = dir_arg(&dataset().path);
    let ok = run(&["prove-human", "--data-dir", &d, HUMAN_OK]);
    assert!(ok.ok, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("PROVEN"), "{}", ok.stdout);
    assert_eq!(ok.stdout.matches("PASS").count(), 4, "{}", ok.stdout);

    let agent = run(&["prove-human", "--data-dir", &d, AGENT_A1]);
    assert!(!agent.ok);
    assert!(agent.stdout.contains("FAIL  row"), "{}", agent.stdout);
    assert!(agent.stdout.contains("PASS  file"), "{}", agent.stdout);

    // An unrelated agent's violation in the same service, right after:
    // another trace, no task, target or owner in common, another callsite.
    // Counted as information, not held against Carol's action.
    let near = run(&["prove-human", "--data-dir", &d, HUMAN_NEAR_VIOLATION]);
    assert!(near.ok, "{}", near.stdout);
    assert!(
        near.stdout.contains(
            "no violation could be this action (same trace, task, target, owner or callsite)"
        ),
        "{}",
        near.stdout
    );
    assert!(
        near.stdout
            .contains("1 violation(s) in service \"billing\" in the window (information)"),
        "{}",
        near.stdout
    );

    // The violation came after the refund closed: a zero window excludes it.
    let tight = run(&[
        "prove-human",
        "--data-dir",
        &d,
        "--window-secs",
        "0",
        HUMAN_NEAR_VIOLATION,
    ]);
    assert!(tight.ok, "{}", tight.stdout);

    let j = run(&[
        "prove-human",
        "--data-dir",
        &d,
        "--format",
        "json",
        AGENT_A1,
    ]);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["human"], false);
    assert_eq!(v["checks"][0]["check"], "row");
    assert_eq!(v["checks"][0]["pass"], false);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at: impl FnOnce(usize) -> usize) {
    use std::os::unix::fs::PermissionsExt;
    // Sealed files are read-only (0444): the tamperer has to chmod first.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn prove_human_fails_once_a_byte_of_the_file_is_flipped() {
    let d = dir_arg(&dataset().path);
    let file = json(&["who", "--data-dir", &d, "--format", "json", HUMAN_OK])[0]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    // A byte the Parquet reader never looks at (the leading magic): the row
    // still reads, and only the hash gives the change away.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dataset().path, copy.path());
    flip_byte(&copy.path().join(&file), |_| 0);
    let c = dir_arg(copy.path());
    let r = run(&["prove-human", "--data-dir", &c, HUMAN_OK]);
    assert!(!r.ok);
    assert!(r.stdout.contains("PASS  row"), "{}", r.stdout);
    assert!(r.stdout.contains("FAIL  file"), "{}", r.stdout);
    assert!(r.stdout.contains("sha256"), "{}", r.stdout);

    // A byte in the middle: whether or not the row still decodes, no proof.
    let copy2 = tempfile::tempdir().unwrap();
    copy_dir(&dataset().path, copy2.path());
    flip_byte(&copy2.path().join(&file), |n| n / 2);
    let r = run(&[
        "prove-human",
        "--data-dir",
        &dir_arg(copy2.path()),
        HUMAN_OK,
    ]);
    assert!(!r.ok, "{}", r.stdout);
}

#[test]
fn clear_errors_for_missing_dir_and_bad_ranges() {
    let d = dir_arg(&dataset().path);
    let missing = run(&["who", "--data-dir", "/nonexistent/audit-data", HUMAN_OK]);
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    let q = run(&["query", "--data-dir", "/nonexistent/audit-data", "SELECT 1"]);
    assert!(!q.ok && q.stderr.contains("does not exist"), "{}", q.stderr);

    let reversed = run(&[
        "activity",
        "--data-dir",
        &d,
        "--agent",
        "a",
        "--from",
        "2026-11-28T04:00:00Z",
        "--to",
        "2026-11-28T03:00:00Z",
    ]);
    assert!(!reversed.ok);
    assert!(
        reversed.stderr.contains("is not before --to"),
        "{}",
        reversed.stderr
    );
    let garbled = run(&[
        "activity",
        "--data-dir",
        &d,
        "--owner",
        "u",
        "--from",
        "yesterday",
        "--to",
        "2026-11-28T03:00:00Z",
    ]);
    assert!(!garbled.ok);
    assert!(
        garbled.stderr.contains("\"yesterday\" is not a time"),
        "{}",
        garbled.stderr
    );
    let neither = run(&[
        "activity",
        "--data-dir",
        &d,
        "--from",
        "2026-11-28T03:00:00Z",
        "--to",
        "2026-11-28T04:00:00Z",
    ]);
    assert!(!neither.ok);
}

/// The doc shows exactly the SQL the commands run (`--show-sql` prints it).
#[test]
fn docs_show_the_commands_sql() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/analysts.md"))
            .unwrap();
    let block = |name: &str| -> String {
        let start = doc
            .find(&format!("<!-- sql:{name} -->\n```sql\n"))
            .unwrap_or_else(|| panic!("{name}"));
        let body = &doc[start..];
        let body = &body[body.find("```sql\n").unwrap() + 7..];
        body[..body.find("```").unwrap()].to_owned()
    };
    let shown = |args: &[&str]| {
        let o = run(args);
        assert!(o.ok, "{}", o.stderr);
        o.stdout
    };
    assert_eq!(block("who"), shown(&["who", "--show-sql", AGENT_A2]));
    for (block_name, flag, id) in [
        ("activity-agent", "--agent", "agt_ledger"),
        ("activity-owner", "--owner", "usr_alice"),
        ("activity-origin", "--origin", "usr_alice"),
    ] {
        assert_eq!(
            block(block_name),
            shown(&[
                "activity",
                "--show-sql",
                flag,
                id,
                "--from",
                "2026-11-28T03:00:00Z",
                "--to",
                "2026-11-28T04:00:00Z",
            ])
        );
    }
}

/// `--on DAY`, `--last 24h` and a date as `--from` (with `--to` now) are
/// windows too, and a bad length of time is named.
#[test]
fn activity_takes_dates_a_day_and_a_length_of_time() {
    let d = dir_arg(&dataset().path);
    let first = &json(&["who", "--data-dir", &d, "--format", "json", AGENT_A1])[0];
    let day = first["start_time"].as_str().expect("start_time")[..10].to_owned();
    let ids = |window: &[&str]| -> Vec<String> {
        let mut args = vec![
            "activity",
            "--data-dir",
            &d,
            "--format",
            "json",
            "--agent",
            "agt_ledger",
        ];
        args.extend_from_slice(window);
        json(&args)
            .iter()
            .map(|r| r["event_id"].as_str().expect("event_id").to_owned())
            .collect()
    };
    let all: Vec<String> = LEDGER_ACTIONS
        .iter()
        .map(|(id, _, _)| (*id).to_owned())
        .collect();
    assert!(ids(&["--on", &day]).contains(&AGENT_A1.to_owned()));
    assert_eq!(ids(&["--last", "24h"]), all);
    assert_eq!(ids(&["--from", &day]), all);
    let long_ago = ids(&["--from", "2000-01-01", "--to", "2000-01-01"]);
    assert!(long_ago.is_empty(), "{long_ago:?}");
    let bad = run(&[
        "activity",
        "--data-dir",
        &d,
        "--agent",
        "agt_ledger",
        "--last",
        "1y",
    ]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("is not a length of time"),
        "{}",
        bad.stderr
    );
    let both = run(&[
        "activity",
        "--data-dir",
        &d,
        "--agent",
        "a",
        "--on",
        &day,
        "--last",
        "1h",
    ]);
    assert!(!both.ok, "--on and --last are one window or the other");
}

/// `who … | head -1`: a reader that closed the pipe ends the command
/// quietly, exit 0, like other Unix tools.
#[test]
fn a_closed_pipe_ends_the_answer_quietly() {
    let d = dir_arg(&dataset().path);
    for args in [
        vec!["who", "--data-dir", &d, HUMAN_OK],
        vec![
            "activity",
            "--data-dir",
            &d,
            "--format",
            "csv",
            "--agent",
            "agt_ledger",
            "--last",
            "24h",
        ],
    ] {
        let mut child = Command::new(collector_bin())
            .args(&args)
            .env("RUST_LOG", "warn")
            .env("AUDIT_ACCESS_DIR", common::access_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // Closed before the first write: every write meets a broken pipe.
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {} {stderr}", o.status);
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}
