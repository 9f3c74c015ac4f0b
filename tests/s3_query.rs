//! The answer commands over a dataset in an S3 bucket give the answers they
//! give over the same dataset in a directory. The bucket is a real
//! S3-compatible server (moto's server mode, from `tests/python/
//! requirements.txt`) started here on loopback; the dataset is written by
//! the real layer and collector (`examples/answer_dataset.rs`) and
//! uploaded as the collector lays it out.

mod common;

#[path = "../examples/answer_dataset.rs"]
mod answer_dataset;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use answer_dataset::*;
use common::{collector_bin, Collector};

const BUCKET: &str = "audit";

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        // moto takes a port, not a listener: find a free one, then hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install -r tests/python/requirements.txt)");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto server exited ({status}); is `moto[server]` installed?");
            }
            assert!(Instant::now() < deadline, "moto not listening after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the bucket (once) and uploads a data dir under `prefix` as a
/// collector lays it out in a bucket: the Parquet files of `audit/` and
/// `violations/` as they are, each manifest line as its own object
/// `manifest/<collector_id>/<index, 20 digits>.json` (a bucket has no
/// append), no WAL. Then, to tamper: flips the first byte of the object
/// `flip` and deletes the object `delete`, relative to the prefix.
const UPLOAD: &str = r#"
import os, sys, boto3
endpoint, bucket, prefix, root, flip, delete = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket)
for top in ("audit", "violations"):
    for d, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            p = os.path.join(d, f)
            s3.upload_file(p, bucket, prefix + "/" + os.path.relpath(p, root))
for f in os.listdir(os.path.join(root, "manifest")):
    collector = f.removesuffix(".jsonl")
    with open(os.path.join(root, "manifest", f), "rb") as m:
        for i, line in enumerate(m):
            key = "%s/manifest/%s/%020d.json" % (prefix, collector, i)
            s3.put_object(Bucket=bucket, Key=key, Body=line)
if flip:
    b = bytearray(s3.get_object(Bucket=bucket, Key=prefix + "/" + flip)["Body"].read())
    b[0] ^= 1
    s3.put_object(Bucket=bucket, Key=prefix + "/" + flip, Body=bytes(b))
if delete:
    s3.delete_object(Bucket=bucket, Key=prefix + "/" + delete)
"#;

fn upload(moto: &Moto, prefix: &str, root: &Path, flip: &str, delete: &str) {
    let o = Command::new("python3")
        .args(["-c", UPLOAD, &moto.endpoint, BUCKET, prefix])
        .arg(root)
        .args([flip, delete])
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
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
    // Only the test's credentials: none of the machine's AWS_* settings.
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
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
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
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let c_id = c.collector_id.clone();
    let from = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    build(&c.grpc_url()).expect("dataset sent");
    let to = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    assert!(c.terminate(), "collector exits 0 after sealing");
    upload(&moto, "prod/eu", dir.path(), "", "");

    let local = dir.path().to_str().unwrap();
    let s3 = format!("s3://{BUCKET}/prod/eu");
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
        (1, vec!["prove-human", HUMAN_NEAR_VIOLATION]),
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
        let there = run(&moto, &s3, args);
        assert_eq!(
            (there.code, &there.stdout),
            (here.code, &here.stdout),
            "{args:?}: the bucket's answer differs from the directory's; bucket stderr: {}",
            there.stderr
        );
    }
    // The answers themselves, not only their agreement.
    let proven = run(&moto, &s3, &["prove-human", HUMAN_OK]);
    assert_eq!(proven.code, Some(0), "{}{}", proven.stdout, proven.stderr);
    assert_eq!(
        proven.stdout.matches("PASS").count(),
        3,
        "{}",
        proven.stdout
    );
    let count = run(
        &moto,
        &s3,
        &[
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM audit",
        ],
    );
    assert_eq!(count.stdout, "n\n6\n", "{}", count.stderr);
    let agent = run(&moto, &s3, &["who", AGENT_B1]);
    assert!(
        agent
            .stdout
            .contains("AI: agent agt_ledger (ledger-bot) with credential key_B"),
        "{}",
        agent.stdout
    );

    // Tampering in the bucket is caught as it is on disk: the file holding
    // the human action, modified in one prefix, deleted in another.
    let who = run(&moto, &s3, &["who", "--format", "json", HUMAN_OK]);
    let rows: serde_json::Value = serde_json::from_str(&who.stdout).expect("who json");
    let file = rows[0]["file"].as_str().expect("file column").to_owned();
    upload(&moto, "modified", dir.path(), &file, "");
    let r = run(
        &moto,
        &format!("s3://{BUCKET}/modified"),
        &["prove-human", HUMAN_OK],
    );
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAIL  file"), "{}", r.stdout);
    assert!(r.stdout.contains("sha256"), "{}", r.stdout);

    // Without the first entry of its collector's manifest, the chain no
    // longer verifies, and nothing vouches for the file.
    let manifest = format!("manifest/{c_id}/{:020}.json", 0);
    upload(&moto, "unvouched", dir.path(), "", &manifest);
    let r = run(
        &moto,
        &format!("s3://{BUCKET}/unvouched"),
        &["prove-human", HUMAN_OK],
    );
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
            .contains("nothing is stored under s3://audit/nothing-here"),
        "{}",
        empty.stderr
    );
}
