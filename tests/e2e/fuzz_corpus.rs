//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/seed-*`),
//! replayed through the same entry points `cargo fuzz` drives, on every
//! test run: a crash the fuzzer once found stays fixed even where the
//! instrumented build is not run. `write_seeds` (ignored) regenerates the
//! seeds from valid requests and a real WAL:
//!
//! ```sh
//! cargo test --test e2e fuzz_corpus -- --ignored write_seeds
//! ```

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_collector::config::Config;
use audit_collector::fuzzing;
use audit_collector::ingest::Ingest;
use audit_collector::metrics::Metrics;
use audit_collector::receive::check;
use audit_collector::wal;
use audit_schema::otlp::encode_action;
use audit_schema::Rules;
use common::wire::{action, request};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every committed input of `target`, run through `entry`, with what it
/// returned by file name. Panics (the entry points' assertions) fail the
/// test; so does a near-empty corpus, which would check nothing.
fn replay<T>(target: &str, entry: fn(&[u8]) -> T) -> BTreeMap<String, T> {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "{}: only {} inputs",
        dir.display(),
        files.len()
    );
    let mut out = BTreeMap::new();
    for f in files {
        let data = std::fs::read(&f).expect("corpus file");
        eprintln!("{}: {} bytes", f.display(), data.len());
        let name = f
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        out.insert(name, entry(&data));
    }
    out
}

#[test]
fn otlp_request_corpus_replays() {
    let seen = replay("otlp_request", fuzzing::otlp_request);
    // The seeds still mean what they were made to mean, in every encoding:
    // otherwise the fuzzer starts from inputs the receivers refuse early.
    for kind in ["pb", "json", "pb-gzip", "pb-zstd"] {
        let got = |name: &str| {
            let c = seen[&format!("seed-{name}-{kind}")]
                .as_ref()
                .unwrap_or_else(|| panic!("seed-{name}-{kind} no longer decodes"));
            (c.batch.actions.len(), c.batch.violations.len(), c.refused)
        };
        assert_eq!(got("valid"), (1, 0, 0), "{kind}");
        assert_eq!(got("ownerless"), (0, 1, 1), "{kind}");
        assert_eq!(got("over-limits"), (0, 1, 1), "{kind}");
        assert_eq!(got("mixed"), (1, 1, 1), "{kind}");
    }
}

#[test]
fn otlp_protobuf_corpus_replays() {
    let seen = replay("otlp_protobuf", fuzzing::otlp_protobuf);
    // The seeds are read by the direct reader itself (the entry point
    // compares it with prost's), not left to prost.
    for name in ["valid", "ownerless", "over-limits", "mixed"] {
        assert!(seen[&format!("seed-{name}")], "seed-{name} left to prost");
    }
}

#[test]
fn wal_recovery_corpus_replays() {
    let seen = replay("wal_recovery", fuzzing::wal_recovery);
    // The seed segment holds five rows (see `write_seeds`: two actions,
    // three violations), and the two actions share an event id: the
    // recovery keeps four.
    assert_eq!(
        seen["seed-whole"],
        Some(4),
        "a whole segment recovers every row"
    );
    assert_eq!(
        seen["seed-framed"],
        Some(4),
        "the framed mode rebuilds the segment"
    );
    let torn = seen["seed-torn"].expect("a torn tail is cut, not refused");
    assert!(torn < 4, "the torn frame's rows are not recovered");
}

/// Requests the seeds start from: a valid action, one without its owner
/// (refused, becomes a violation row), one over a limit, and a mix.
fn requests() -> Vec<(&'static str, ExportLogsServiceRequest)> {
    let valid = encode_action(&action("seed-valid"));
    let mut ownerless = action("seed-ownerless");
    ownerless.owner_id.clear();
    let ownerless = encode_action(&ownerless);
    let mut big = action("seed-big");
    for i in 0..200 {
        big.attributes.insert(format!("k{i}"), "v".repeat(i));
    }
    let big = encode_action(&big);
    vec![
        ("valid", request(vec![valid.clone()])),
        ("ownerless", request(vec![ownerless.clone()])),
        ("over-limits", request(vec![big])),
        ("mixed", request(vec![valid, ownerless])),
    ]
}

/// First byte of an `otlp_request` input: bit 0 the format, bits 1-2 the
/// compression (see `audit_collector::fuzzing::otlp_request`).
fn otlp_input(json: bool, compression: u8, body: &[u8]) -> Vec<u8> {
    let compressed = match compression {
        1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body).expect("gzip");
            gz.finish().expect("gzip")
        }
        2 => zstd::encode_all(body, 1).expect("zstd"),
        _ => body.to_vec(),
    };
    let mut out = vec![u8::from(json) | (compression << 1)];
    out.extend(compressed);
    out
}

#[test]
#[ignore = "writes the committed seeds; run by hand"]
fn write_seeds() {
    let otlp = corpus("otlp_request");
    std::fs::create_dir_all(&otlp).expect("corpus dir");
    for (name, req) in requests() {
        let pb = req.encode_to_vec();
        let json = serde_json::to_vec(&req).expect("json");
        let inputs = [
            ("pb", otlp_input(false, 0, &pb)),
            ("json", otlp_input(true, 0, &json)),
            ("pb-gzip", otlp_input(false, 1, &pb)),
            ("pb-zstd", otlp_input(false, 2, &pb)),
        ];
        for (kind, data) in inputs {
            std::fs::write(otlp.join(format!("seed-{name}-{kind}")), data).expect("seed");
        }
        let protobuf = corpus("otlp_protobuf");
        std::fs::create_dir_all(&protobuf).expect("corpus dir");
        std::fs::write(protobuf.join(format!("seed-{name}")), &pb).expect("seed");
    }

    // A WAL segment as a crash leaves it: batches acknowledged (fsynced)
    // and never sealed. The writer thread is left running while the file
    // is copied, so no seal happens.
    let wal = corpus("wal_recovery");
    std::fs::create_dir_all(&wal).expect("corpus dir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        data_dir: tmp.path().into(),
        ..Config::default()
    }
    .ingest("seed")
    .expect("default settings");
    let ingest = Ingest::start(cfg, Arc::new(Metrics::default())).expect("ingest");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let rules = Rules::default();
    for (_, req) in requests() {
        let batch = check(req, &rules, None).batch;
        rt.block_on(ingest.submit(batch)).expect("submit");
    }
    let dir = tmp.path().join("wal/seed");
    let segment = std::fs::read_dir(&dir)
        .expect("wal dir")
        .map(|e| e.expect("wal entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a WAL segment");
    let bytes = std::fs::read(&segment).expect("segment");
    let raw = |b: &[u8]| [&[0u8][..], b].concat();
    std::fs::write(wal.join("seed-whole"), raw(&bytes)).expect("seed");
    std::fs::write(wal.join("seed-torn"), raw(&bytes[..bytes.len() - 7])).expect("seed");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(wal.join("seed-bad-crc"), raw(&flipped)).expect("seed");
    // The framed mode (odd first byte): payloads split at 0xFF 0xFE, each
    // written as a well-formed frame, so mutations reach the frame decoder.
    let payloads = wal::replay(&segment, true).expect("replay").frames;
    let mut framed = vec![1u8];
    framed.extend(payloads.join(&[0xFF, 0xFE][..]));
    std::fs::write(wal.join("seed-framed"), framed).expect("seed");
    std::mem::forget(ingest);
}
