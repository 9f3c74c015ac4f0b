//! The answer commands over a dataset in an S3 bucket give the answers they
//! give over the same dataset in a directory. The bucket is a real
//! S3-compatible server (moto's server mode, from `tests/python/
//! requirements.txt`) started here on loopback; the dataset is written into
//! it by the real layer and the real collector (`examples/answer_dataset.rs`,
//! `serve --store-url`), then copied to a directory in the local layout.

use crate::common;

use crate::answer_dataset;

use std::path::Path;
use std::process::{Command, Output};

use answer_dataset::*;
use audit_collector::store::object_store::{ObjectStoreExt, PutPayload};
use audit_collector::store::put::read;
use audit_collector::store::Location;
use common::moto::Moto;
use common::{collector_bin, Collector};

const BUCKET: &str = "audit";
const URL: &str = "s3://audit/prod/eu";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Copies the dataset at `loc` into `root` as a local data dir holds it:
/// the Parquet files at the same relative paths, each collector's chain of
/// entry objects (`manifest/<id>/<index>.json`) as the lines of
/// `manifest/<id>.jsonl`.
fn download(loc: &Location, root: &Path) {
    let rt = runtime();
    // Sorted: a chain's entry objects come in index order.
    for rel in rt.block_on(loc.list("")).expect("list the bucket") {
        let bytes = rt
            .block_on(read(loc.store.as_ref(), &loc.path(&rel)))
            .expect("read an object");
        let (path, append) = match rel.strip_prefix("manifest/") {
            Some(rest) => {
                let (id, _) = rest.split_once('/').expect("manifest/<id>/<entry>");
                (root.join(format!("manifest/{id}.jsonl")), true)
            }
            None => (root.join(&rel), false),
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &bytes).unwrap();
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs an answer command over `data` (a directory or an s3:// URL), with
/// the moto endpoint and test credentials in the standard AWS_* variables
/// (ignored for a directory).
fn run(moto: &Moto, data: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(collector_bin());
    // Only the test's settings: none of the machine's AWS_* variables.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let o: Output = cmd
        .arg(args[0])
        .args(["--data", data])
        .args(&args[1..])
        .env("RUST_LOG", "warn")
        .env("AUDIT_ACCESS_DIR", common::access_dir())
        .envs(moto.env())
        .output()
        .expect("run audit-collector");
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn answer_commands_give_the_same_answers_over_the_bucket_as_over_the_directory() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let wal = tempfile::tempdir().unwrap();
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = Collector::start_with_env(wal.path(), &["--store-url", URL], &env);
    let c_id = c.collector_id.clone();
    let from = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    build(&c.grpc_url()).expect("dataset sent");
    let to = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    assert!(
        c.terminate(),
        "collector exits 0 after sealing and uploading"
    );
    let bucket = moto.location(BUCKET, "prod/eu");
    let dir = tempfile::tempdir().unwrap();
    download(&bucket, dir.path());

    let local = dir.path().to_str().unwrap();
    let s3 = URL;
    // Each command with the exit code it must have (1: not proven, or an
    // unknown event id), so that two identical failures cannot agree.
    let commands: Vec<(i32, Vec<&str>)> = vec![
        (0, vec!["who", "--format", "json", HUMAN_OK]),
        (0, vec!["who", AGENT_B1]),
        (1, vec!["who", "019a0000-0000-7000-8000-0000000000ff"]),
        (
            0,
            vec![
                "activity",
                "--format",
                "json",
                "--agent",
                "agt_ledger",
                "--from",
                &from,
                "--to",
                &to,
            ],
        ),
        (
            0,
            vec![
                "activity",
                "--format",
                "csv",
                "--owner",
                "usr_alice",
                "--from",
                &from,
                "--to",
                &to,
            ],
        ),
        (0, vec!["prove-human", HUMAN_OK]),
        (1, vec!["prove-human", "--format", "json", AGENT_A1]),
        (0, vec!["prove-human", HUMAN_NEAR_VIOLATION]),
        (
            0,
            vec![
                "query",
                "--format",
                "json",
                "SELECT date, hour, collector_id, count(*) AS n FROM audit \
                 GROUP BY date, hour, collector_id ORDER BY date, hour",
            ],
        ),
        (
            0,
            vec![
                "query",
                "--format",
                "csv",
                "SELECT service_name, agent_id, hour FROM violations",
            ],
        ),
    ];
    for (code, args) in &commands {
        let here = run(&moto, local, args);
        assert_eq!(
            here.code,
            Some(*code),
            "{args:?} over the directory: {}{}",
            here.stdout,
            here.stderr
        );
        assert!(
            !here.stdout.is_empty() || *code != 0,
            "{args:?} printed nothing"
        );
        let there = run(&moto, s3, args);
        assert_eq!(
            (there.code, &there.stdout),
            (here.code, &here.stdout),
            "{args:?}: the bucket's answer differs from the directory's; bucket stderr: {}",
            there.stderr
        );
    }
    // The answers themselves, not only their agreement.
    let proven = run(&moto, s3, &["prove-human", HUMAN_OK]);
    assert_eq!(proven.code, Some(0), "{}{}", proven.stdout, proven.stderr);
    assert_eq!(
        proven.stdout.matches("PASS").count(),
        4,
        "{}",
        proven.stdout
    );
    let count = run(
        &moto,
        s3,
        &[
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM audit",
        ],
    );
    assert_eq!(count.stdout, "n\n6\n", "{}", count.stderr);
    let agent = run(&moto, s3, &["who", AGENT_B1]);
    assert!(
        agent
            .stdout
            .contains("AI: agent agt_ledger (ledger-bot) with credential key_B"),
        "{}",
        agent.stdout
    );

    // The console over the bucket: the same answers, the same export.
    let console = ConsoleOverBucket::start(&moto);
    let agent_page = console.get(&format!("/find?event_id={AGENT_A2}"));
    assert!(
        agent_page.contains("id=\"verdict\" class=\"verdict agent\">AI</p>"),
        "{agent_page}"
    );
    assert!(agent_page.contains("<strong>PASS</strong>"), "{agent_page}");
    assert!(console.verified_health().contains(">INTACT</p>"));
    let q = format!(
        "agent=agt_ledger&from={}&to={}",
        from.replace('+', "%2B"),
        to.replace('+', "%2B")
    );
    let csv_args = [
        "activity",
        "--format",
        "csv",
        "--agent",
        "agt_ledger",
        "--from",
        &from,
        "--to",
        &to,
    ];
    assert_eq!(
        console.get(&format!("/timeline.csv?{q}")),
        run(&moto, local, &csv_args).stdout,
        "the console's export over the bucket is activity --format csv over the directory"
    );

    // Tampering in the bucket is caught as it is on disk: the file holding
    // the human action modified, then the first entry of its chain deleted.
    let who = run(&moto, s3, &["who", "--format", "json", HUMAN_OK]);
    let rows: serde_json::Value = serde_json::from_str(&who.stdout).expect("who json");
    let file = rows[0]["file"].as_str().expect("file column").to_owned();
    let rt = runtime();
    let mut bytes = rt
        .block_on(read(bucket.store.as_ref(), &bucket.path(&file)))
        .unwrap()
        .to_vec();
    bytes[0] ^= 1;
    rt.block_on(
        bucket
            .store
            .put(&bucket.path(&file), PutPayload::from(bytes)),
    )
    .unwrap();
    let r = run(&moto, s3, &["prove-human", HUMAN_OK]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    // The running console sees it too: the proof panel and the trail's health.
    let tampered = console.get(&format!("/find?event_id={HUMAN_OK}"));
    assert!(tampered.contains("<strong>FAIL</strong>"), "{tampered}");
    assert!(console.verified_health().contains(">NOT INTACT</p>"));
    drop(console);
    assert!(r.stdout.contains("FAIL  file"), "{}", r.stdout);
    assert!(r.stdout.contains("sha256"), "{}", r.stdout);

    let first = bucket.path(&format!("manifest/{c_id}/{:020}.json", 0));
    rt.block_on(bucket.store.delete(&first)).unwrap();
    let r = run(&moto, s3, &["prove-human", HUMAN_OK]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAIL  file"), "{}", r.stdout);
    assert!(r.stdout.contains("chain broken"), "{}", r.stdout);

    // A prefix with nothing under it (a typo) is an error, not "nothing
    // happened".
    let empty = run(
        &moto,
        &format!("s3://{BUCKET}/nothing-here"),
        &["who", HUMAN_OK],
    );
    assert_eq!(empty.code, Some(1));
    assert!(
        empty
            .stderr
            .contains("s3://audit/nothing-here is not an audit dataset"),
        "{}",
        empty.stderr
    );
}

/// `audit-collector console --store-url` over the test's bucket, killed
/// when dropped.
struct ConsoleOverBucket {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

const CONSOLE_TOKEN: &str = "bucket-console-token";

impl ConsoleOverBucket {
    fn start(moto: &Moto) -> ConsoleOverBucket {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("viewers");
        std::fs::write(&tokens, format!("ann:{CONSOLE_TOKEN}\n")).unwrap();
        let mut cmd = Command::new(collector_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args([
                "console",
                "--store-url",
                URL,
                "--listen",
                "127.0.0.1:0",
                "--tokens-file",
            ])
            .arg(&tokens)
            .arg("--access-dir")
            .arg(dir.path().join("access"))
            .env("RUST_LOG", "warn")
            .envs(moto.env())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn console");
        let line = common::listening_line(&mut child);
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        ConsoleOverBucket {
            child,
            base,
            _dir: dir,
        }
    }

    /// The body of a 200 answer to GET `path`.
    fn get(&self, path: &str) -> String {
        runtime().block_on(async {
            let resp = reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {CONSOLE_TOKEN}"))
                .send()
                .await
                .expect(path);
            assert_eq!(resp.status(), 200, "{path}");
            resp.text().await.expect("body")
        })
    }
}

impl ConsoleOverBucket {
    /// The trail-health page once `verify` (run in the background) has
    /// finished a run over the bucket as it is now.
    fn verified_health(&self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let page = self.get("/health");
            if !page.contains(">VERIFYING<") && !page.contains("under way") {
                return page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "verify still running: {page}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for ConsoleOverBucket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
