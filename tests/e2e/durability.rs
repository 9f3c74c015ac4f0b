//! Crash safety and tamper evidence of the real collector binary: acked
//! rows survive SIGKILL exactly once, and `verify` catches every edit.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_collector::partition::read_audit;
use audit_schema::AuditRecord;
use common::load::{load, record, request};
use common::{collector_bin, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

fn verify(dir: &Path) -> (bool, String) {
    verify_with(dir, &[])
}

fn verify_with(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(collector_bin())
        .args(["verify", "--format", "json", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn acked_records_survive_repeated_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        // Small seals so that kills also land mid-seal and mid-manifest.
        let c = Collector::start(
            dir.path(),
            &["--seal-rows", "40", "--seal-interval-secs", "1"],
        );
        let stop = Arc::new(AtomicBool::new(false));
        let loader = {
            let (url, stop, acked) = (c.grpc_url(), stop.clone(), acked.clone());
            std::thread::spawn(move || load(url, format!("r{round}"), stop, acked))
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 250));
        let mut c = c;
        c.child.kill().expect("SIGKILL");
        let _ = c.child.wait();
        stop.store(true, Ordering::Relaxed);
        loader.join().unwrap();
    }
    let c = Collector::start(dir.path(), &[]);
    assert!(c.terminate());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the loader got acks ({})", acked.len());
    let mut count: HashMap<String, usize> = HashMap::new();
    for (r, _, _) in read_audit(dir.path()).unwrap() {
        *count.entry(r.event_id).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(count.get(id), Some(&1), "acked {id} stored exactly once");
    }
    assert!(count.values().all(|n| *n == 1), "no duplicate rows at all");
    let (ok, out) = verify(dir.path());
    assert!(ok, "verify passes after the crash loop: {out}");
}

/// A dataset with several seals (so several manifest entries and files).
fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(
        dir.path(),
        &["--seal-rows", "3", "--seal-interval-secs", "1"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
        for b in 0..4 {
            let batch: Vec<AuditRecord> = (0..3)
                .map(|i| {
                    record(
                        format!("t-{b}-{i}"),
                        1_764_300_000_000_000_000 + b * 3_600_000_000_000 + i,
                    )
                })
                .collect();
            client.export(request(&batch)).await.unwrap();
        }
    });
    drop(rt);
    assert!(c.terminate());
    dir
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    audit_collector::partition::data_files(dir, audit_collector::partition::Dataset::Audit).unwrap()
}

fn manifest(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("manifest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a manifest")
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn assert_detected(tamper: impl FnOnce(&Path), kind: &str) {
    let dir = dataset();
    assert!(verify(dir.path()).0, "intact before tampering");
    tamper(dir.path());
    let (ok, out) = verify(dir.path());
    assert!(!ok, "verify must fail");
    assert!(
        out.contains(&format!("\"kind\": \"{kind}\"")),
        "expected {kind} in {out}"
    );
}

#[test]
fn verify_detects_a_flipped_byte() {
    assert_detected(
        |d| {
            let f = &parquet_files(d)[0];
            make_writable(f);
            let mut b = std::fs::read(f).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(f, b).unwrap();
        },
        "file_modified",
    );
}

#[test]
fn verify_detects_a_deleted_file() {
    assert_detected(
        |d| std::fs::remove_file(&parquet_files(d)[0]).unwrap(),
        "file_missing",
    );
}

#[test]
fn verify_detects_an_added_file() {
    assert_detected(
        |d| {
            let f = &parquet_files(d)[0];
            std::fs::copy(
                f,
                f.with_file_name("part-intruder-00000000000000000099.parquet"),
            )
            .unwrap();
        },
        "file_added",
    );
}

#[test]
fn verify_detects_a_renamed_file() {
    assert_detected(
        |d| {
            let f = &parquet_files(d)[0];
            std::fs::rename(
                f,
                f.with_file_name("part-renamed-00000000000000000001.parquet"),
            )
            .unwrap();
        },
        "file_missing",
    );
}

#[test]
fn verify_detects_swapped_manifest_entries() {
    assert_detected(
        |d| {
            let m = manifest(d);
            let text = std::fs::read_to_string(&m).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            assert!(lines.len() >= 3, "several seals");
            lines.swap(0, 1);
            std::fs::write(&m, lines.join("\n") + "\n").unwrap();
        },
        "chain_broken",
    );
}

#[test]
fn verify_detects_a_rewritten_entry_hash() {
    assert_detected(
        |d| {
            let m = manifest(d);
            let text = std::fs::read_to_string(&m).unwrap();
            let mut lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            lines[1]["hash"] = serde_json::Value::String("ab".repeat(32));
            let out: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
            std::fs::write(&m, out.join("\n") + "\n").unwrap();
        },
        "entry_edited",
    );
}

#[test]
fn verify_detects_a_dropped_manifest_entry() {
    assert_detected(
        |d| {
            let m = manifest(d);
            let text = std::fs::read_to_string(&m).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let kept: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, l)| *l)
                .collect();
            std::fs::write(&m, kept.join("\n") + "\n").unwrap();
        },
        "chain_broken",
    );
}

#[test]
fn verify_detects_a_valid_file_with_one_row_removed() {
    assert_detected(
        |d| {
            // Rewrite a sealed file as a perfectly valid Parquet file, minus a row.
            let f = parquet_files(d)[0].clone();
            let mut rows = audit_collector::partition::read_audit_file(&f).unwrap();
            assert!(rows.len() > 1);
            rows.pop();
            let cid = rows[0].2.clone();
            let scratch = tempfile::tempdir().unwrap();
            let w = audit_collector::partition::PartitionWriter::new(scratch.path(), cid);
            let sealed = w
                .seal_audit(rows.into_iter().map(|(r, s, _)| (r, s)).collect())
                .unwrap();
            make_writable(&f);
            std::fs::remove_file(&f).unwrap();
            std::fs::copy(scratch.path().join(&sealed[0].path), &f).unwrap();
        },
        "file_modified",
    );
}

#[test]
fn verify_reports_a_missing_data_dir_clearly() {
    let out = Command::new(collector_bin())
        .args(["verify", "--data-dir", "/nonexistent/audit-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data dir /nonexistent/audit-data does not exist"),
        "{err}"
    );
}

/// `verify`, `checkpoint` and `retention` find the dataset as `serve` does
/// (flag, variable, config file), and one that needs a data dir refuses a
/// store URL instead of ignoring it.
#[test]
fn dataset_commands_take_the_data_dir_from_the_config_file_or_variable() {
    let dir = dataset();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("collector.toml");
    let toml = format!(
        "data_dir = {:?}\n[retention]\nmax_days = 36500\n",
        dir.path()
    );
    std::fs::write(&config, toml).unwrap();
    let (private, public) = (etc.path().join("key"), etc.path().join("key.pub"));
    let run = |args: &[&str], env: Option<&Path>| {
        let mut cmd = Command::new(collector_bin());
        cmd.args(args).env_remove("AUDIT_COLLECTOR_DATA_DIR");
        if let Some(d) = env {
            cmd.env("AUDIT_COLLECTOR_DATA_DIR", d);
        }
        let out = cmd.output().expect("run audit-collector");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let config = config.to_str().unwrap();
    let (key, key_pub) = (private.to_str().unwrap(), public.to_str().unwrap());

    for (args, env) in [
        (
            &["verify", "--format", "json", "--config", config][..],
            None,
        ),
        (&["verify", "--format", "json"][..], Some(dir.path())),
    ] {
        let (ok, out) = run(args, env);
        assert!(ok && out.contains("\"rows\": 12"), "{args:?}: {out}");
    }
    let (ok, out) = run(&["retention", "--config", config], None);
    assert!(ok && out.contains("would be deleted"), "{out}");
    let keygen = ["keygen", "--private", key, "--public", key_pub];
    assert!(run(&keygen, None).0);
    let (ok, out) = run(&["checkpoint", "--key", key, "--config", config], None);
    assert!(ok && out.contains("audit-collector"), "{out}");

    let data = dir.path().to_str().unwrap();
    let bucket = ["--data-dir", data, "--store-url", "s3://audit-bucket/trail"];
    let (ok, out) = run(&[&["retention"][..], &bucket].concat(), None);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "retention works on a data dir, not on the object store s3://audit-bucket/trail"
        ),
        "{out}"
    );
    let note = etc.path().join("cp.note");
    std::fs::write(&note, "not read").unwrap();
    let check = [
        "--checkpoint",
        note.to_str().unwrap(),
        "--public-key",
        key_pub,
    ];
    let (ok, out) = run(&[&["verify"][..], &check, &bucket].concat(), None);
    assert!(
        !ok && out.contains("--checkpoint works on a data dir"),
        "{out}"
    );
}

fn send(c: &Collector, batch: &[AuditRecord]) {
    common::load::send(&c.grpc_url(), batch)
}

#[test]
fn resend_after_a_restart_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<AuditRecord> = (0..5)
        .map(|i| record(format!("once-{i}"), 1_764_300_000_000_000_000 + i))
        .collect();
    let c = Collector::start(dir.path(), &[]);
    send(&c, &batch);
    assert!(c.terminate());
    // The client never saw the ack and resends to the restarted collector.
    let c = Collector::start(dir.path(), &[]);
    send(&c, &batch);
    assert!(c.terminate());
    assert_eq!(read_audit(dir.path()).unwrap().len(), 5);
    assert!(verify(dir.path()).0);
}

#[test]
fn digests_are_appended_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--digest-interval-secs", "1"]);
    send(&c, &[record("d-1".into(), 1_764_300_000_000_000_000)]);
    let digests = || {
        let text = std::fs::read_to_string(manifest(dir.path())).unwrap_or_default();
        let n = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "digest")
            .count();
        (n, text)
    };
    // Waits for them (a loaded machine may take longer than 3 s to append
    // three), bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while digests().0 < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.terminate());
    let (n, text) = digests();
    assert!(n >= 3, "one at start and one a second while idle: {text}");
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("\"digests\": "), "{out}");
}

#[test]
fn verify_detects_a_cleanly_cut_tail_against_a_signed_checkpoint() {
    let dir = dataset();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = (keys.path().join("key"), keys.path().join("key.pub"));
    let bin = collector_bin();
    let ok = Command::new(&bin)
        .args(["keygen", "--name", "audit-test", "--private"])
        .arg(&private)
        .arg("--public")
        .arg(&public)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let cp = Command::new(&bin)
        .args(["checkpoint", "--key"])
        .arg(&private)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let note = keys.path().join("checkpoint.note");
    std::fs::write(&note, &cp.stdout).unwrap();

    // Cut the last two seals and their files: the chain that remains is intact.
    let m = manifest(dir.path());
    let text = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (kept, cut) = lines.split_at(lines.len() - 2);
    for line in cut {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for f in v["files"].as_array().unwrap() {
            std::fs::remove_file(dir.path().join(f["path"].as_str().unwrap())).unwrap();
        }
    }
    std::fs::write(&m, kept.join("\n") + "\n").unwrap();
    assert!(
        verify(dir.path()).0,
        "alone, a clean cut looks like a shorter history"
    );

    let out = Command::new(&bin)
        .args(["verify", "--format", "json", "--data-dir"])
        .arg(dir.path())
        .arg("--checkpoint")
        .arg(&note)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("\"kind\": \"manifest_truncated\""),
        "{stdout}"
    );
}

fn days_ago(n: i64) -> i64 {
    audit_collector::now_ns() - n * 86_400_000_000_000
}

fn run(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(collector_bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn retention_deletes_expired_keeps_held_refuses_too_early_and_verify_tells_policy_from_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = (keys.path().join("op.key"), keys.path().join("op.pub"));
    let (sk, pk) = audit_collector::checkpoint::generate("operator").unwrap();
    std::fs::write(&private, sk).unwrap();
    std::fs::write(&public, pk).unwrap();
    let private = private.to_str().unwrap();
    let c = Collector::start(dir.path(), &["--seal-rows", "1"]);
    for age in [100, 70, 40, 5] {
        send(&c, &[record(format!("age-{age}"), days_ago(age))]);
    }
    let hold = {
        let d = chrono::DateTime::from_timestamp_nanos(days_ago(100)).date_naive();
        format!("{}..{}", d.pred_opt().unwrap(), d.succ_opt().unwrap())
    };
    // While the collector runs, it owns its manifest.
    let (ok, out) = run(
        &[
            "retention",
            "--max-days",
            "60",
            "--apply",
            "--operator-key",
            private,
        ],
        dir.path(),
    );
    assert!(!ok && out.contains("is running"), "{out}");
    assert!(c.terminate());

    let policy = ["--min-days", "30", "--max-days", "60", "--hold", &hold];
    let (ok, out) = run(&[&["retention"][..], &policy[..]].concat(), dir.path());
    assert!(ok, "{out}");
    assert_eq!(
        read_audit(dir.path()).unwrap().len(),
        4,
        "a dry run deletes nothing"
    );

    let too_early = chrono::DateTime::from_timestamp_nanos(days_ago(10))
        .date_naive()
        .to_string();
    let (ok, out) = run(
        &[
            "retention",
            "--min-days",
            "30",
            "--before",
            &too_early,
            "--apply",
            "--operator-key",
            private,
        ],
        dir.path(),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("inside the minimum retention of 30 days"),
        "{out}"
    );

    let (ok, out) = run(
        &[&["retention", "--apply"][..], &policy[..]].concat(),
        dir.path(),
    );
    assert!(
        !ok && out.contains("needs --operator-key"),
        "deleting needs the operator's key: {out}"
    );
    let signed = ["--operator-key", private];
    let (ok, out) = run(
        &[&["retention", "--apply"][..], &policy[..], &signed[..]].concat(),
        dir.path(),
    );
    assert!(ok, "{out}");
    let mut left: Vec<String> = read_audit(dir.path())
        .unwrap()
        .into_iter()
        .map(|(r, _, _)| r.event_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["age-100", "age-40", "age-5"],
        "70 days expired; 100 days held"
    );

    let (ok, out) = verify(dir.path());
    assert!(
        !ok && out.contains("delete_unauthorized"),
        "without the operator's public key no deletion is valid: {out}"
    );
    let op = ["--operator-key", public.to_str().unwrap()];
    let (ok, out) = verify_with(dir.path(), &op);
    assert!(ok, "a policy deletion is not tampering: {out}");
    assert!(out.contains("\"deleted\": 1"), "{out}");
    // Deleting another file by hand still is.
    std::fs::remove_file(&parquet_files(dir.path())[0]).unwrap();
    let (ok, out) = verify_with(dir.path(), &op);
    assert!(!ok && out.contains("file_missing"), "{out}");
}

/// Whether the manifest under `data` has a seal entry.
fn seal_committed(data: &Path) -> bool {
    std::fs::read_dir(data.join("manifest"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"kind\":\"seal\"")))
}

/// WAL segments under `data`, every collector's.
fn wal_segments(data: &Path) -> usize {
    std::fs::read_dir(data.join("wal"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count()
}

/// A small tmpfs of our own, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_a_retryable_error_and_the_collector_recovers_when_space_returns() {
    // A test that cannot run its subject fails: mounting a small tmpfs
    // needs root, which CI and the development machines have.
    let disk = SmallDisk::mount("8m").expect("cannot mount an 8 MiB tmpfs (needs root)");
    let data = disk.0.path().join("data");
    let c = Collector::start(
        &data,
        &["--seal-rows", "10", "--shutdown-timeout-secs", "1"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // 10 records of over 4 KiB each: the WAL write needs new pages, so it
    // cannot fit in the slack of a page the segment already has (with small
    // records it could, and then the "full" disk accepted the write).
    let batch = |tag: &str| -> Vec<AuditRecord> {
        (0..10)
            .map(|i| {
                let mut r = record(format!("{tag}-{i}"), 1_764_300_000_000_000_000 + i);
                r.attributes.insert("padding".into(), "p".repeat(4096));
                r
            })
            .collect()
    };
    let export = |b: &[AuditRecord]| {
        rt.block_on(async {
            let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
            client.export(request(b)).await.map(|r| r.into_inner())
        })
    };
    assert!(export(&batch("before")).is_ok());
    // Those 10 rows fill a seal (`--seal-rows 10`), which runs beside
    // ingest and ends by removing the WAL segment it covers: wait for
    // that, so that nothing the collector frees itself makes room on the
    // disk filled next (a write that fits is rightly acknowledged).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(seal_committed(&data) && wal_segments(&data) == 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first seal did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Fill the disk.
    let filler = disk.0.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let err = export(&batch("full")).expect_err("no ack while the disk is full");
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
        ),
        "retryable, got {err:?}"
    );
    std::fs::remove_file(&filler).unwrap();
    // Space is back: the same client retries and succeeds, no restart.
    let resp = export(&batch("full")).expect("accepted once space returns");
    assert_eq!(resp.partial_success, None);
    assert!(c.terminate());
    let mut ids: Vec<String> = read_audit(&data)
        .unwrap()
        .into_iter()
        .map(|(r, _, _)| r.event_id)
        .collect();
    ids.sort();
    let mut want: Vec<String> = batch("before")
        .into_iter()
        .chain(batch("full"))
        .map(|r| r.event_id)
        .collect();
    want.sort();
    assert_eq!(ids, want);
    let (ok, out) = verify(&data);
    assert!(ok, "store consistent after the full disk: {out}");
}

#[test]
fn verify_reports_a_seq_hole_even_when_the_chain_is_rewritten_consistently() {
    // An attacker drops a whole seal (entry and files) and recomputes every
    // later hash: the chain checks out, but the rows' seqs have a hole.
    let dir = dataset();
    let m = manifest(dir.path());
    let text = std::fs::read_to_string(&m).unwrap();
    let mut entries: Vec<audit_collector::manifest::Entry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let victim = entries
        .iter()
        .position(|e| matches!(e.body, audit_collector::manifest::Body::Seal { .. }))
        .unwrap();
    if let audit_collector::manifest::Body::Seal { files, .. } = &entries[victim].body {
        for f in files {
            std::fs::remove_file(dir.path().join(&f.path)).unwrap();
        }
    }
    entries.remove(victim);
    let mut prev = audit_collector::manifest::GENESIS.to_owned();
    for (i, e) in entries.iter_mut().enumerate() {
        e.index = i as u64;
        e.prev = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
    }
    let out: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&m, out.join("\n") + "\n").unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("\"kind\": \"seq_hole\""), "{out}");
    assert!(
        !out.contains("chain_broken"),
        "the chain itself was made consistent: {out}"
    );
}

#[test]
fn a_second_collector_on_the_same_data_dir_is_refused_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let mut second = common::serve_command(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second collector");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second collector on the same data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("is running on this data dir"), "{err}");
    assert!(!err.contains("run retention"), "{err}");
    assert!(c.terminate());
}
