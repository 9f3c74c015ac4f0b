//! Entry points for the fuzz targets in `fuzz/` (and for the test that
//! replays their corpus on every CI run). Not for production use: each
//! takes arbitrary bytes, drives one of the collector's input paths with
//! them, and panics only if that path breaks a guarantee (an `Err` is a
//! correct answer to garbage; a panic is a bug).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use audit_schema::{Limits, Rules};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use crate::config::Config;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::receive::body::{self, Encoding};
use crate::receive::http::{self, Format};
use crate::receive::{check_received, protobuf, read, Checked};
use crate::wal::Wal;

/// Bytes as an OTLP/HTTP body → decompression → records → the receivers'
/// checks, through the same functions the receivers call. A protobuf body
/// is also read through the generated types, and both readers must agree
/// ([`protobuf_readers_agree`]).
///
/// The first byte picks the path: bit 0 the format (0 protobuf, 1 JSON),
/// bits 1-2 the `Content-Encoding` (0 none, 1 gzip, 2 zstd, 3 none); the
/// rest is the body as sent. Returns what the checks made of a decodable
/// request (the fuzz target ignores it; the corpus test reads it).
pub fn otlp_request(data: &[u8]) -> Option<Checked> {
    /// Small, so that bombs are cut early and runs stay fast.
    const MAX_BODY: usize = 1 << 20;
    let (&mode, body) = data.split_first()?;
    let encoding = match (mode >> 1) & 3 {
        1 => Encoding::Gzip,
        2 => Encoding::Zstd,
        _ => Encoding::Identity,
    };
    let raw = body::decode(encoding, body.to_vec(), MAX_BODY).ok()?;
    assert!(raw.len() <= MAX_BODY, "a decoded body passed the cap");
    let format = if mode & 1 == 0 {
        Format::Protobuf
    } else {
        Format::Json
    };
    let rules = Rules::default().dangerous_action("payments.*");
    let limits = rules.limits.clone();
    if format == Format::Protobuf {
        protobuf_readers_agree(&raw, &limits);
    }
    let received = http::parse(format, &raw, &limits).ok()?;
    let records = received.len();
    let checked = check_received(received, &rules, None);
    let refused = usize::try_from(checked.refused).unwrap_or(usize::MAX);
    assert!(
        checked.batch.actions.len() + refused <= records,
        "more rows kept or refused than records received"
    );
    assert!(checked.batch.violations.len() <= records);
    for a in &checked.batch.actions {
        assert!(!a.event_id.trim().is_empty(), "stored action without an id");
        assert!(!a.owner_id.is_empty(), "stored action without its owner");
        assert!(
            limits.time_ok(a.start_time_ns),
            "stored action out of the time range"
        );
    }
    for v in &checked.batch.violations {
        let problems = limits.check_violation(v);
        assert!(
            problems.is_empty(),
            "stored violation breaks the limits: {problems:?}"
        );
    }
    let _ = checked.response();
    Some(checked)
}

/// Reads OTLP/protobuf bytes both ways, straight from the bytes
/// ([`protobuf::read`], the receivers' path) and through the generated
/// types ([`read`], prost), and panics unless they agree: the same records
/// with the same problems when the reader takes the request, and never a
/// request prost refuses. Returns whether the reader took it (`false`: it
/// left it to prost, which then answers).
pub fn protobuf_readers_agree(raw: &[u8], limits: &Limits) -> bool {
    let generated = ExportLogsServiceRequest::decode(raw).map(|req| read(req, limits));
    match (protobuf::read(raw, limits), generated) {
        (Ok(direct), Ok(generated)) => {
            assert_eq!(direct, generated, "the two protobuf readers disagree");
            true
        }
        (Ok(direct), Err(e)) => {
            panic!("the protobuf reader took a request prost refuses ({e}): {direct:?}")
        }
        (Err(protobuf::Unusual), _) => false,
    }
}

/// Bytes as an OTLP/protobuf request, read both ways
/// ([`protobuf_readers_agree`]) under the default limits and under tight
/// ones (3 attributes, nesting 1), so that cutting and depth replacement
/// are compared too. Returns whether the direct reader took the request
/// under the default limits.
pub fn otlp_protobuf(data: &[u8]) -> bool {
    let tight = Limits {
        max_attributes: 3,
        max_depth: 1,
        ..Limits::default()
    };
    protobuf_readers_agree(data, &tight);
    protobuf_readers_agree(data, &Limits::default())
}

/// Where a fuzz run's data dirs go: memory when the machine has it (the
/// store fsyncs; a disk would make each run slow).
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Bytes as a WAL segment left by a crash → the store's start-up recovery.
/// Recovery must answer `Ok` (and then a second start must find nothing
/// left to recover) or a typed error; never panic.
///
/// The first byte picks how the rest becomes the segment: even, the raw
/// file; odd, the rest split at `0xFF 0xFE` into payloads written as
/// well-formed frames (valid length and CRC), so that the frame decoder
/// and the seal behind it see fuzzed content instead of failing checksums.
///
/// Returns the rows the recovery sealed, or `None` if it refused the data
/// dir (or the scratch dir could not be made).
pub fn wal_recovery(data: &[u8]) -> Option<u64> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let (&mode, rest) = data.split_first()?;
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let dir = scratch().join(format!("audit-fuzz-{}-{n}", std::process::id()));
    // The segment is made by the WAL itself (its name, its frame format);
    // only the raw mode then overwrites its bytes.
    let written = Wal::create(&dir.join("wal").join("fuzz"), 1).and_then(|mut wal| {
        if mode % 2 == 0 {
            std::fs::write(wal.path(), rest)
        } else {
            split(rest, &[0xFF, 0xFE])
                .into_iter()
                .try_for_each(|payload| wal.append(payload))
        }
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    let mut sealed = None;
    let metrics = Arc::new(Metrics::default());
    let cfg = Config {
        data_dir: dir.clone(),
        ..Config::default()
    }
    .ingest("fuzz")
    .expect("the default settings are valid");
    if let Ok(ingest) = Ingest::start(cfg.clone(), metrics.clone()) {
        let first = ingest.shutdown();
        drop(ingest);
        // What the first recovery sealed is committed: a second start recovers nothing new.
        if first.is_ok() {
            sealed = Some(metrics.sealed_rows_total.load(Ordering::Relaxed));
            let metrics = Arc::new(Metrics::default());
            let again =
                Ingest::start(cfg, metrics.clone()).expect("a recovered data dir starts again");
            assert_eq!(
                metrics.sealed_rows_total.load(Ordering::Relaxed),
                0,
                "rows recovered twice"
            );
            let _ = again.shutdown();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    sealed
}

fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(sep.len()).position(|w| w == sep) {
        out.push(&data[..i]);
        data = &data[i + sep.len()..];
    }
    out.push(data);
    out
}
