//! Object storage end to end, against a real S3-compatible server (moto,
//! started here on loopback): real collectors seal into one bucket, a store
//! outage and a SIGKILL lose nothing and duplicate nothing, and `verify`
//! reads the whole bucket and catches a deleted and a modified object.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_collector::partition::read_audit_bytes;
use audit_collector::store::object_store::{ObjectStoreExt, PutPayload};
use audit_collector::store::put::read;
use audit_collector::store::Location;
use common::load::{load, record, request};
use common::moto::{Moto, Outage};
use common::{collector_bin, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

const URL: &str = "s3://audit/trail";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start(moto: &Moto, dir: &Path, id: &str) -> Collector {
    start_via(moto, moto.port, dir, id)
}

fn start_via(moto: &Moto, port: u16, dir: &Path, id: &str) -> Collector {
    let env = moto.env_via(port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Collector::start_with_env(
        dir,
        &[
            "--store-url",
            URL,
            "--collector-id",
            id,
            "--seal-rows",
            "40",
            "--seal-interval-secs",
            "1",
        ],
        &env,
    )
}

/// How many times each event id is in the bucket's audit files.
fn stored_ids(loc: &Location) -> HashMap<String, usize> {
    let rt = runtime();
    let mut count = HashMap::new();
    for rel in rt.block_on(loc.list("audit")).unwrap() {
        let bytes = rt
            .block_on(read(loc.store.as_ref(), &loc.path(&rel)))
            .unwrap();
        for (r, _, _) in read_audit_bytes(bytes, Path::new(&rel)).unwrap() {
            *count.entry(r.event_id).or_default() += 1;
        }
    }
    count
}

fn verify(moto: &Moto) -> (bool, serde_json::Value) {
    let out = Command::new(collector_bin())
        .envs(moto.env())
        .args(["verify", "--format", "json", "--store-url", URL])
        .output()
        .expect("run verify");
    let text = String::from_utf8_lossy(&out.stdout);
    let report =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("verify printed JSON ({e}): {text}"));
    (out.status.success(), report)
}

fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn local_parquet(dir: &Path) -> usize {
    audit_collector::fsio::walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}

#[test]
fn acked_records_wait_out_a_store_outage_and_land_once() {
    let moto = Moto::start();
    moto.create_bucket("audit");
    let dir = tempfile::tempdir().unwrap();
    let outage = Outage::start(moto.port);
    let c = start_via(&moto, outage.port, dir.path(), "solo");
    // The store goes away: seals commit locally and their push keeps failing.
    outage.set_up(false);
    let rt = runtime();
    let send = |tag: &str| {
        let batch: Vec<_> = (0..30)
            .map(|i| record(format!("{tag}-{i}"), 1_764_300_000_000_000_000 + i))
            .collect();
        rt.block_on(async {
            let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
            client.export(request(&batch)).await.unwrap();
        });
    };
    send("outage");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while local_parquet(dir.path()) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        local_parquet(dir.path()) > 0,
        "sealed locally while the store is down"
    );
    outage.set_up(true);
    send("after");
    drop(rt); // closes the client's connection, so the stop need not wait for it
    assert!(c.terminate(), "clean stop once the store is back");
    let loc = moto.location("audit", "trail");
    let count = stored_ids(&loc);
    assert_eq!(
        count.len(),
        60,
        "every acknowledged record is in the bucket"
    );
    assert!(count.values().all(|n| *n == 1), "exactly once: {count:?}");
    assert_eq!(local_parquet(dir.path()), 0, "local copies go once pushed");
    let (ok, report) = verify(&moto);
    assert!(ok, "verify passes over the bucket: {report}");
}

#[test]
fn three_collectors_share_a_bucket_through_a_sigkill_and_verify_catches_tampering() {
    let moto = Moto::start();
    moto.create_bucket("audit");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids = ["east", "west", "north"];
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let spawn_load = |c: &Collector, tag: String, stop: &Arc<AtomicBool>| {
        let (url, stop, acked) = (c.grpc_url(), stop.clone(), acked.clone());
        std::thread::spawn(move || load(url, tag, stop, acked))
    };
    let mut collectors: Vec<_> = (0..3)
        .map(|i| start(&moto, dirs[i].path(), ids[i]))
        .collect();
    let mut loaders: Vec<_> = collectors
        .iter()
        .zip(ids)
        .map(|(c, id)| spawn_load(c, id.to_owned(), &stop))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL one mid-stream (its loader sees the connection drop), restart it.
    let west_stop = Arc::new(AtomicBool::new(false));
    {
        let west = &mut collectors[1];
        west.child.kill().expect("SIGKILL");
        let _ = west.child.wait();
    }
    loaders.remove(1).join().unwrap();
    collectors[1] = start(&moto, dirs[1].path(), "west");
    loaders.push(spawn_load(&collectors[1], "west-again".into(), &west_stop));
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    west_stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    for c in collectors {
        assert!(c.terminate(), "clean stop");
    }

    let loc = moto.location("audit", "trail");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 300, "the loaders got acks ({})", acked.len());
    let count = stored_ids(&loc);
    for id in &acked {
        assert_eq!(count.get(id), Some(&1), "acked {id} stored exactly once");
    }
    assert!(count.values().all(|n| *n == 1), "no duplicate rows at all");
    let rt = runtime();
    let files = rt.block_on(loc.list("audit")).unwrap();
    for id in ids {
        assert!(
            files.iter().any(|f| f.contains(&format!("/part-{id}-"))),
            "{id} sealed files into the bucket"
        );
    }
    let (ok, report) = verify(&moto);
    assert!(ok, "verify passes over the bucket: {report}");
    assert_eq!(report["manifests"], 3, "one chain per collector");

    let (deleted, modified) = (&files[0], &files[files.len() - 1]);
    rt.block_on(async {
        loc.store.delete(&loc.path(deleted)).await.unwrap();
        let mut bytes = read(loc.store.as_ref(), &loc.path(modified))
            .await
            .unwrap()
            .to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        loc.store
            .put(&loc.path(modified), PutPayload::from(bytes))
            .await
            .unwrap();
    });
    let (ok, report) = verify(&moto);
    assert!(!ok, "tampering is detected");
    let found = findings(&report);
    assert!(
        found.contains(&("file_missing".into(), deleted.clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&("file_modified".into(), modified.clone())),
        "{found:?}"
    );
}

#[test]
fn sealed_objects_carry_object_lock_from_the_retention_policy() {
    let moto = Moto::start();
    moto.create_locked_bucket("locked");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "[store]\nurl = \"s3://locked/trail\"\nobject_lock = \"governance\"\n\
         [retention]\nmin_days = 30\n\
         legal_holds = [{ from = \"2000-01-01\", to = \"2100-01-01\", reason = \"case 7\" }]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = Collector::start_with_env(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--collector-id",
            "locked1",
        ],
        &env,
    );
    let now = chrono::Utc::now();
    let t = now.timestamp_nanos_opt().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut client = LogsServiceClient::connect(c.grpc_url()).await.unwrap();
        let batch: Vec<_> = (0..5).map(|i| record(format!("l-{i}"), t + i)).collect();
        client.export(request(&batch)).await.unwrap();
    });
    drop(rt);
    assert!(c.terminate());
    let loc = moto.location("locked", "trail");
    let rt = runtime();
    let files = rt.block_on(loc.list("audit")).unwrap();
    let entries = rt.block_on(loc.list("manifest")).unwrap();
    assert!(!files.is_empty() && !entries.is_empty());
    // Header lines are lowercased.
    let until = (now.date_naive() + chrono::Days::new(31)).format("%Y-%m-%dt00:00:00");
    // moto checks that a request is signed, not the signature.
    let auth = (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0",
    );
    let head = |rel: &str| {
        let (status, head) = moto
            .request("HEAD", &format!("/locked/trail/{rel}"), &[auth])
            .expect("moto answers");
        assert_eq!(status, 200, "{rel}");
        head
    };
    let has = |head: &[String], line: &str| head.iter().any(|h| h.starts_with(line));
    for rel in &files {
        let head = head(rel);
        assert!(
            has(&head, "x-amz-object-lock-mode: governance"),
            "{rel}: {head:?}"
        );
        assert!(
            has(
                &head,
                &format!("x-amz-object-lock-retain-until-date: {until}")
            ),
            "{rel} retained min_days past its newest row: {head:?}"
        );
        assert!(
            has(&head, "x-amz-object-lock-legal-hold: on"),
            "{rel}: {head:?}"
        );
    }
    let head = head(&entries[0]);
    assert!(has(&head, "x-amz-object-lock-mode: governance"), "{head:?}");
    assert!(!has(&head, "x-amz-object-lock-legal-hold: on"), "{head:?}");
}
