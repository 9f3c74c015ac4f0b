//! Proofs that hold against someone who can write the disk, and answers
//! that never pass for what they are not: a mistyped path is an error, not
//! "intact"; every answer says how far its sealed rows reach.

use crate::common;

use std::path::Path;

use audit_collector::checkpoint::{self, NoteSigner};
use audit_collector::manifest::{self, Body, Entry, FileEntry, Manifest};
use audit_collector::policy_chain::{Hold, HoldAction, Policy};
use audit_collector::store::chain;
use audit_schema::otlp::{encode_action, encode_violation};
use audit_schema::{AuditRecord, ViolationRecord};
use common::load::record;
use common::moto::Moto;
use common::{CliOut, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

fn run_env(args: &[&str], env: &[(&'static str, String)]) -> CliOut {
    common::cli(args, env)
}

fn run(args: &[&str]) -> CliOut {
    run_env(args, &[])
}

fn send(c: &Collector, batch: &[AuditRecord]) {
    common::load::send(&c.grpc_url(), batch)
}

/// The three answers an auditor starts with, over `data` (a dir or URL).
fn answers(data: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        ("verify", v(&["verify", "--data-dir", data])),
        ("who", v(&["who", "--data-dir", data, "evt-1"])),
        (
            "activity",
            v(&[
                "activity",
                "--data-dir",
                data,
                "--agent",
                "agt_ops",
                "--from",
                "2020-01-01T00:00:00Z",
                "--to",
                "2030-01-01T00:00:00Z",
            ]),
        ),
    ]
}

fn assert_refused(data: &str, env: &[(&'static str, String)], expected: &str) {
    for (name, args) in answers(data) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_env(&args, env);
        assert!(!o.ok, "{name} on {data} must fail: {}", o.stdout);
        assert!(
            o.stderr.contains(expected),
            "{name} on {data}: want {expected:?} in: {}",
            o.stderr
        );
        assert!(!o.stdout.contains("intact"), "{name}: {}", o.stdout);
    }
}

#[test]
fn answers_refuse_an_empty_dir_a_subfolder_and_an_empty_prefix_and_say_sealed_through() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("audit-data");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let c = Collector::start(&data, &["--seal-rows", "1"]);
    send(&c, &[record("evt-1".into(), 1_764_300_000_000_000_000)]);
    assert!(c.terminate());
    let root = data.to_str().unwrap();

    let empty = tempfile::tempdir().unwrap();
    assert_refused(
        empty.path().to_str().unwrap(),
        &[],
        "is not an audit data dir",
    );
    // One level too deep: refused, pointing at the data dir above.
    let sub = data.join("audit");
    assert_refused(sub.to_str().unwrap(), &[], &format!("did you mean {root}?"));

    // Over the real dataset the same commands answer, saying how far.
    let o = run(&["verify", "--data-dir", root]);
    assert!(o.ok, "{}{}", o.stdout, o.stderr);
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("sealed through "))
        .unwrap_or_else(|| panic!("no sealed-through line: {}", o.stdout));
    let t = line
        .trim_start_matches("sealed through ")
        .split_whitespace()
        .next()
        .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(t >= before, "sealed through {t}, sent after {before}");
    let who = run(&["who", "--data-dir", root, "evt-1"]);
    assert!(who.ok, "{}", who.stderr);
    assert!(who.stdout.contains(line), "{}", who.stdout);
    let json = run(&["who", "--format", "json", "--data-dir", root, "evt-1"]);
    assert!(json.ok, "{}", json.stderr);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("stdout stays JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert!(json.stderr.contains(line), "{}", json.stderr);
    let report = run(&["verify", "--format", "json", "--data-dir", root]);
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert!(
        report["sealed_through"][0]["through"].is_string(),
        "{report}"
    );
}

#[test]
fn answers_refuse_an_empty_bucket_prefix() {
    let moto = Moto::start();
    moto.create_bucket("audit");
    // A bucket with objects, none of them a manifest: still not a dataset.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let loc = moto.location("audit", "other");
    rt.block_on(async {
        use audit_collector::store::object_store::ObjectStoreExt;
        loc.store
            .put(&loc.path("notes.txt"), b"not audit data".to_vec().into())
            .await
            .unwrap();
    });
    for url in ["s3://audit/trail", "s3://audit/other"] {
        assert_refused(url, &moto.env(), "is not an audit dataset");
    }
}

const DAY_NS: i64 = 86_400_000_000_000;

fn days_ago(n: i64) -> i64 {
    audit_collector::now_ns() - n * DAY_NS
}

/// An operator key pair in files, and the parsed private key.
struct Keys {
    _dir: tempfile::TempDir,
    private: String,
    public: String,
    signer: NoteSigner,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = checkpoint::generate(name).unwrap();
    let (private, public) = (dir.path().join("key"), dir.path().join("key.pub"));
    std::fs::write(&private, &sk).unwrap();
    std::fs::write(&public, &pk).unwrap();
    Keys {
        signer: NoteSigner::parse(&sk).unwrap(),
        private: private.to_str().unwrap().to_owned(),
        public: public.to_str().unwrap().to_owned(),
        _dir: dir,
    }
}

/// `verify --format json`: whether it passed, and each finding's kind and
/// detail.
fn verify_json(args: &[&str], env: &[(&'static str, String)]) -> (bool, Vec<(String, String)>) {
    let o = run_env(&[&["verify", "--format", "json"][..], args].concat(), env);
    let report: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("verify printed JSON ({e}): {}{}", o.stdout, o.stderr));
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (o.ok, findings)
}

fn kinds(findings: &[(String, String)]) -> Vec<&str> {
    findings.iter().map(|f| f.0.as_str()).collect()
}

/// The sealed file holding `event_id`, as its seal lists it.
fn file_of(entries: &[Entry], data: &Path, event_id: &str) -> FileEntry {
    entries
        .iter()
        .filter_map(|e| match &e.body {
            Body::Seal { files, .. } => Some(files),
            _ => None,
        })
        .flatten()
        .filter(|f| data.join(&f.path).exists())
        .find(|f| {
            audit_collector::partition::read_audit_file(&data.join(&f.path))
                .unwrap()
                .iter()
                .any(|(r, _, _)| r.event_id == event_id)
        })
        .cloned()
        .unwrap_or_else(|| panic!("a sealed file holds {event_id}"))
}

fn delete(file: &FileEntry) -> Body {
    Body::Delete {
        file: file.clone(),
        reason: "retention".into(),
    }
}

#[test]
fn only_deletions_an_operator_signed_policy_allows_pass_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let c = Collector::start(data, &["--seal-rows", "1"]);
    for age in [100, 90, 5] {
        send(&c, &[record(format!("age-{age}"), days_ago(age))]);
    }
    let id = c.collector_id.clone();
    assert!(c.terminate());
    let (op, thief) = (keys("operator"), keys("operator"));
    let root = data.to_str().unwrap();
    let held_day = chrono::DateTime::from_timestamp_nanos(days_ago(90)).date_naive();
    let (from, to) = (held_day.pred_opt().unwrap(), held_day.succ_opt().unwrap());
    let o = run(&[
        "hold",
        "--data-dir",
        root,
        "--operator-key",
        &op.private,
        "add",
        "--id",
        "case-1",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--reason",
        "litigation",
    ]);
    assert!(o.ok, "{}{}", o.stdout, o.stderr);
    let o = run(&[
        "retention",
        "--data-dir",
        root,
        "--min-days",
        "30",
        "--max-days",
        "60",
        "--apply",
        "--operator-key",
        &op.private,
    ]);
    assert!(o.ok, "{}{}", o.stdout, o.stderr);
    assert_eq!(
        common::stored_ids(data).into_iter().collect::<Vec<_>>(),
        ["age-5", "age-90"],
        "100 days expired; 90 days held; 5 days young"
    );
    let with_op = ["--data-dir", root, "--operator-key", &op.public];
    let (ok, found) = verify_json(&with_op, &[]);
    assert!(ok, "the operator's policy deleted it: {found:?}");
    let (ok, found) = verify_json(&["--data-dir", root], &[]);
    assert!(!ok, "without an operator key no deletion is valid");
    assert_eq!(kinds(&found), ["delete_unauthorized"]);

    // Whoever can write the disk appends well-chained entries and unlinks.
    let path = manifest::manifest_path(data, &id);
    let tamper = |body: Body| {
        let mut m = Manifest::open(&path).unwrap();
        m.append(audit_collector::now_ns(), body).unwrap();
    };
    let entries = manifest::read(&path).unwrap().0;
    let (fresh, held) = (
        file_of(&entries, data, "age-5"),
        file_of(&entries, data, "age-90"),
    );
    tamper(delete(&fresh));
    std::fs::remove_file(data.join(&fresh.path)).unwrap();
    let (ok, found) = verify_json(&with_op, &[]);
    assert!(!ok);
    assert_eq!(kinds(&found), ["delete_unauthorized"], "{found:?}");
    assert!(found[0].1.contains("inside min_days 30"), "{found:?}");

    // A laxer policy signed by a key that is not the operator's, and a
    // release of the hold signed by it: neither takes effect.
    let head = Manifest::open(&path).unwrap().head().to_owned();
    tamper(Body::Policy(Policy::signed(
        &thief.signer,
        &id,
        &head,
        0,
        Some(0),
        None,
    )));
    let head = Manifest::open(&path).unwrap().head().to_owned();
    let release = Hold {
        action: HoldAction::Release,
        id: "case-1".into(),
        from: None,
        to: None,
        reason: String::new(),
        signature: String::new(),
    };
    tamper(Body::Hold(release.signed(&thief.signer, &id, &head)));
    tamper(delete(&held));
    std::fs::remove_file(data.join(&held.path)).unwrap();
    let (ok, found) = verify_json(&with_op, &[]);
    assert!(!ok);
    assert_eq!(
        kinds(&found),
        [
            "delete_unauthorized",
            "policy_unsigned",
            "hold_unsigned",
            "delete_unauthorized"
        ],
        "{found:?}"
    );
    assert!(found[3].1.contains("legal hold case-1"), "{found:?}");
}

#[test]
fn a_forged_deletion_in_a_bucket_is_unauthorized() {
    let moto = Moto::start();
    moto.create_bucket("audit");
    let dir = tempfile::tempdir().unwrap();
    let env = moto.env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = "s3://audit/trail";
    let c = Collector::start_with_env(
        dir.path(),
        &[
            "--store-url",
            url,
            "--collector-id",
            "east",
            "--seal-rows",
            "1",
        ],
        &env_ref,
    );
    send(&c, &[record("fresh".into(), days_ago(1))]);
    assert!(c.terminate());
    let (ok, found) = verify_json(&["--store-url", url], &env);
    assert!(ok, "{found:?}");

    // Extend the stored chain by one correctly hashed entry, remove the file.
    let loc = moto.location("audit", "trail");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = rt.block_on(chain::entries(&loc, "east")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut copy = Manifest::open(&scratch.path().join("east.jsonl")).unwrap();
    for e in stored {
        copy.adopt(e).unwrap();
    }
    let file = copy
        .entries()
        .iter()
        .find_map(|e| match &e.body {
            Body::Seal { files, .. } => files.first().cloned(),
            _ => None,
        })
        .unwrap();
    let forged = copy
        .append(audit_collector::now_ns(), delete(&file))
        .unwrap()
        .clone();
    rt.block_on(async {
        use audit_collector::store::object_store::ObjectStoreExt;
        let rel = chain::entry_rel("east", forged.index);
        let bytes = chain::entry_bytes(&forged).unwrap();
        loc.store.put(&loc.path(&rel), bytes.into()).await.unwrap();
        loc.store.delete(&loc.path(&file.path)).await.unwrap();
    });
    let (ok, found) = verify_json(&["--store-url", url], &env);
    assert!(!ok);
    assert_eq!(kinds(&found), ["delete_unauthorized"], "{found:?}");
}

/// An action, a violation the layer reported, and an action the collector
/// refuses (no accountable owner), in one request.
fn mixed_request() -> ExportLogsServiceRequest {
    let mut req = common::load::request(&[record("act-1".into(), days_ago(0))]);
    let violation = ViolationRecord {
        event_id: "viol-1".into(),
        time_ns: days_ago(0),
        detected_by: "layer".into(),
        missing: vec!["audit.owner.id".into()],
        reason: "no accountable owner".into(),
        service_name: "loader".into(),
        ..Default::default()
    };
    let refused = common::agent_action("refused-1", "");
    let logs = &mut req.resource_logs[0].scope_logs[0].log_records;
    logs.push(encode_violation(&violation));
    logs.push(encode_action(&refused));
    req
}

fn send_mixed(c: &Collector) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt.block_on(async {
        let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
        client.export(mixed_request()).await.unwrap().into_inner()
    });
    let rejected = resp.partial_success.map(|p| p.rejected_log_records);
    assert_eq!(rejected, Some(1), "the owner-less action is refused");
}

#[test]
fn resent_actions_and_violations_are_stored_once_after_their_seal_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--seal-rows", "1"]);
    send_mixed(&c);
    // Sealed by now (one row seals): the resend is found in the files.
    send_mixed(&c);
    assert!(c.terminate());
    let c = Collector::start(dir.path(), &["--seal-rows", "1"]);
    send_mixed(&c);
    assert!(c.terminate());

    assert_eq!(
        common::stored_ids(dir.path())
            .into_iter()
            .collect::<Vec<_>>(),
        ["act-1"]
    );
    let violations = audit_collector::partition::read_violations(dir.path()).unwrap();
    let mut by: Vec<(String, String)> = violations
        .into_iter()
        .map(|(v, _, _)| {
            let refused = v.attributes.get("audit.refused_event_id").cloned();
            (v.detected_by, refused.unwrap_or(v.event_id))
        })
        .collect();
    by.sort();
    assert_eq!(
        by,
        [
            ("collector".to_owned(), "refused-1".to_owned()),
            ("layer".to_owned(), "viol-1".to_owned())
        ],
        "one row per violation, however often it was sent"
    );
    let (ok, found) = verify_json(&["--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(ok, "{found:?}");
}

/// `verify --format json` over a data dir, the whole report.
fn report(args: &[&str]) -> (bool, serde_json::Value) {
    let o = run(&[&["verify", "--format", "json"][..], args].concat());
    let report = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("verify printed JSON ({e}): {}{}", o.stdout, o.stderr));
    (o.ok, report)
}

fn finding_kinds(report: &serde_json::Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// Serve flags: a witness at `w`, a digest (so a checkpoint) every second,
/// a seal per row.
fn witness_flags(w: &str) -> [&str; 6] {
    [
        "--witness-dir",
        w,
        "--digest-interval-secs",
        "1",
        "--seal-rows",
        "1",
    ]
}

/// Waits (bounded, generously) until `digests` more checkpoints are in the
/// witness than now. Called right after a send: the writer sealed it
/// before any later digest, so the last entry is then a witnessed digest
/// covering it, however slow the machine.
fn witnessed_after_this(c: &Collector, digests: u64) {
    let name = "witness_checkpoints_total";
    let want = common::raw::metric(c.http, name) + digests;
    let got = common::raw::metric_reaches(c.http, name, want);
    assert!(
        got >= want,
        "{got} checkpoints witnessed, waited for {want}"
    );
}

/// Cuts a manifest's last entry off cleanly; returns the whole text before.
fn cut_last_entry(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(path, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    text
}

#[test]
fn the_witness_catches_a_cut_tail_and_a_rewritten_chain_without_a_checkpoint_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let witness = tempfile::tempdir().unwrap();
    let (data, w) = (dir.path(), witness.path().to_str().unwrap());
    let flags = witness_flags(w);
    let c = Collector::start(data, &flags);
    send(&c, &[record("w-1".into(), days_ago(0))]);
    witnessed_after_this(&c, 1);
    send(&c, &[record("w-2".into(), days_ago(0))]);
    witnessed_after_this(&c, 2);
    let id = c.collector_id.clone();
    assert!(c.terminate());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = data.join("keys").join(format!("{id}.key"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the generated private key is private");
    }
    let config = dir.path().join("verify.toml");
    std::fs::write(&config, format!("[store]\nwitness_dir = {w:?}\n")).unwrap();
    let root = data.to_str().unwrap();
    let by_config = ["--data-dir", root, "--config", config.to_str().unwrap()];
    let (ok, r) = report(&by_config);
    assert!(ok, "{r}");
    assert!(
        r["witnessed"].as_u64().unwrap() >= 3,
        "a checkpoint per digest: {r}"
    );

    // Cut the last entry (a digest: no file goes with it) cleanly.
    let path = manifest::manifest_path(data, &id);
    let text = cut_last_entry(&path);
    let (ok, r) = report(&["--data-dir", root]);
    assert!(ok, "without the witness a clean cut looks intact: {r}");
    let (ok, r) = report(&by_config);
    assert!(!ok);
    assert_eq!(finding_kinds(&r, "findings"), ["manifest_truncated"], "{r}");

    // Rewrite the chain consistently from its first digest on.
    std::fs::write(&path, &text).unwrap();
    let mut entries = manifest::read(&path).unwrap().0;
    let first_digest = entries
        .iter()
        .position(|e| matches!(e.body, Body::Digest { .. }))
        .unwrap();
    if let Body::Digest { seals, .. } = &mut entries[first_digest].body {
        *seals += 7;
    }
    let mut prev = entries[first_digest].prev.clone();
    for e in &mut entries[first_digest..] {
        e.prev = prev;
        e.hash = e.compute_hash();
        prev = e.hash.clone();
    }
    let rewritten: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&path, rewritten).unwrap();
    let (ok, r) = report(&["--data-dir", root]);
    assert!(ok, "a consistent rewrite passes the chain alone: {r}");
    let (ok, r) = report(&by_config);
    assert!(!ok);
    let kinds = finding_kinds(&r, "findings");
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "checkpoint_mismatch"),
        "{r}"
    );
}

#[test]
fn downtime_after_a_sigkill_is_a_coverage_gap_and_activity_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let flags = ["--digest-interval-secs", "1", "--seal-rows", "1"];
    let mut c = Collector::start(data, &flags);
    let human = AuditRecord {
        actor_kind: audit_schema::ActorKind::Human,
        agent_id: None,
        ..record("human-1".into(), days_ago(0))
    };
    send(&c, &[record("before".into(), days_ago(0)), human]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.child.kill().unwrap();
    let _ = c.child.wait();
    let killed = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let c = Collector::start(data, &flags);
    let restarted = chrono::Utc::now();
    send(&c, &[record("after".into(), days_ago(0))]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(c.terminate());

    let root = data.to_str().unwrap();
    let (ok, r) = report(&["--data-dir", root]);
    assert!(ok, "a gap is a warning, not tampering: {r}");
    assert_eq!(finding_kinds(&r, "warnings"), ["coverage_gap"], "{r}");
    let detail = r["warnings"][0]["detail"].as_str().unwrap();
    let secs: i64 = detail
        .rsplit_once(" s)")
        .and_then(|(head, _)| head.rsplit_once('(')?.1.parse().ok())
        .unwrap_or_else(|| panic!("seconds in {detail:?}"));
    assert!((4..=20).contains(&secs), "about the downtime: {detail}");

    let (from, to) = (
        (killed - chrono::Duration::seconds(1)).to_rfc3339(),
        (restarted + chrono::Duration::seconds(1)).to_rfc3339(),
    );
    let args = [
        "activity",
        "--data-dir",
        root,
        "--agent",
        "agt_load",
        "--from",
        &from,
        "--to",
        &to,
    ];
    let o = run(&args);
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("NOT COVERED: collector"), "{}", o.stdout);
    let json = run(&[&args[..], &["--format", "json"][..]].concat());
    assert!(
        json.ok && json.stderr.contains("NOT COVERED"),
        "{}",
        json.stderr
    );
    // A window the collector was listening through says nothing of the kind.
    let listening = (restarted + chrono::Duration::milliseconds(100)).to_rfc3339();
    let later = (restarted + chrono::Duration::seconds(1)).to_rfc3339();
    let o = run(&[
        "activity",
        "--data-dir",
        root,
        "--agent",
        "agt_load",
        "--from",
        &listening,
        "--to",
        &later,
    ]);
    assert!(o.ok && !o.stdout.contains("NOT COVERED"), "{}", o.stdout);
    // No violation near a human action proves nothing if nobody listened.
    let o = run(&["prove-human", "--data-dir", root, "human-1"]);
    assert!(!o.ok, "{}", o.stdout);
    assert!(o.stdout.contains("PASS  row"), "{}", o.stdout);
    assert!(o.stdout.contains("FAIL  coverage"), "{}", o.stdout);
}

#[test]
fn an_unwritable_witness_does_not_stop_ingest_and_readyz_says_so_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the witness directory should be: every write fails.
    let blocked = dir.path().join("witness-is-a-file");
    std::fs::write(&blocked, b"").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[store]\nwitness_grace_secs = 1\n").unwrap();
    let data = dir.path().join("data");
    let c = Collector::start(
        &data,
        &[
            "--witness-dir",
            blocked.to_str().unwrap(),
            "--digest-interval-secs",
            "1",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let answer = loop {
        let a = common::raw::get(c.http, "/readyz");
        if a.starts_with("HTTP/1.1 503") || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("witness failing"), "{answer}");
    assert!(common::raw::metric(c.http, "witness_failures_total") >= 1);
    send(&c, &[record("still-stored".into(), days_ago(0))]);
    assert!(c.terminate());
    assert_eq!(
        common::stored_ids(&data).into_iter().collect::<Vec<_>>(),
        ["still-stored"]
    );
}

#[test]
fn a_witness_in_a_bucket_catches_a_cut_tail() {
    let moto = Moto::start();
    moto.create_bucket("witness");
    let env = moto.env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let w = "s3://witness/checkpoints";
    let flags = witness_flags(w);
    let c = Collector::start_with_env(data, &flags, &env_ref);
    send(&c, &[record("b-1".into(), days_ago(0))]);
    witnessed_after_this(&c, 1);
    let id = c.collector_id.clone();
    assert!(c.terminate());

    let root = data.to_str().unwrap();
    let args = ["--data-dir", root, "--witness", w];
    let (ok, found) = verify_json(&args, &env);
    assert!(ok, "{found:?}");
    cut_last_entry(&manifest::manifest_path(data, &id));
    let (ok, found) = verify_json(&args, &env);
    assert!(!ok);
    assert_eq!(kinds(&found), ["manifest_truncated"], "{found:?}");
}
