//! Batches larger than the collector's `max_request_bytes`, through the
//! real layer and the real collector binary: the layer splits them (up
//! front when it knows the cap, on "too large" answers when it does not),
//! every record is stored exactly once, and only a record too large by
//! itself is refused, and reported in the layer's status.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use audit_collector::partition::read_audit;
use audit_layer::{privileged_span, Actor, AuditLayer, AuditLayerBuilder, StatsSnapshot};
use common::{prometheus, Collector};
use tracing_subscriber::layer::SubscriberExt;

/// How a test sizes the collector's cap and the layer's batch.
#[derive(Clone, Copy)]
struct Shape {
    /// The collector's `max_request_bytes`.
    cap: usize,
    /// Ordinary records emitted, in one batch.
    records: usize,
    /// Bytes of the filler attribute of an ordinary record.
    filler: usize,
}

/// A cap of a few dozen ordinary records; the batch is about 1.2 x 8 caps
/// (see the last test).
const SMALL: Shape = Shape {
    cap: 32 << 10,
    records: 220,
    filler: 1000,
};

/// Bytes of each of the ten attributes of the record too large by itself
/// (80 KB, within the per-record limits, so only its size is wrong).
const HUGE_VALUE: usize = 8000;

fn start_collector(dir: &Path, cap: usize) -> Collector {
    let config = dir.join("collector.toml");
    std::fs::write(&config, format!("max_request_bytes = {cap}\n")).expect("config");
    Collector::start(
        &dir.join("data"),
        &["--config", config.to_str().expect("utf-8 path")],
    )
}

/// Emits `shape.records` ordinary actions (attribute `seq` = 0..records)
/// and, in the middle, one action over the cap by itself; all in one batch.
fn emit_through_layer(
    shape: Shape,
    build: impl FnOnce(AuditLayerBuilder) -> AuditLayerBuilder,
) -> (StatsSnapshot, Option<String>) {
    let (layer, guard) = build(
        AuditLayer::builder()
            .service_name("sizes")
            .batch_size(shape.records + 1)
            .queue_capacity(shape.records + 1)
            .linger(Duration::from_secs(1)),
    )
    .build()
    .expect("layer");
    let status = guard.status();
    let filler = "f".repeat(shape.filler);
    let h = "h".repeat(HUGE_VALUE);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let actor = Actor::agent("agt_sizes", "usr_alice");
        for seq in 0..shape.records {
            if seq == shape.records / 2 {
                privileged_span!(
                    &actor,
                    "blob.put",
                    b0 = %h, b1 = %h, b2 = %h, b3 = %h, b4 = %h,
                    b5 = %h, b6 = %h, b7 = %h, b8 = %h, b9 = %h
                )
                .in_scope(|| {});
            }
            privileged_span!(&actor, "db.write", seq = seq, filler = %filler).in_scope(|| {});
        }
    });
    guard.shutdown(Duration::from_secs(60)).expect("delivered");
    (status.snapshot(), status.last_refusal())
}

/// Stored rows by `seq`, with how many times each was stored.
fn stored(c: Collector) -> BTreeMap<String, usize> {
    let dir = c.data_dir.clone();
    assert!(c.terminate(), "collector stopped cleanly");
    let mut by_seq = BTreeMap::new();
    for (r, _, _) in read_audit(&dir).expect("read the store") {
        assert_eq!(
            r.action, "db.write",
            "the oversized record must not be stored"
        );
        *by_seq.entry(r.attributes["seq"].clone()).or_insert(0) += 1;
    }
    by_seq
}

fn assert_all_stored_once_and_the_huge_one_refused(
    records: usize,
    (stats, last_refusal): &(StatsSnapshot, Option<String>),
    c: Collector,
) {
    assert_eq!(stats.exported, records as u64, "{stats:?}");
    assert_eq!(stats.refused, 1, "{stats:?}");
    assert_eq!(stats.export_failures, 0, "{stats:?}");
    let reason = last_refusal.clone().unwrap_or_default();
    assert!(reason.contains("too large"), "reason: {reason}");
    let by_seq = stored(c);
    let want: BTreeMap<String, usize> = (0..records).map(|s| (s.to_string(), 1)).collect();
    assert_eq!(by_seq, want, "every record stored exactly once");
}

#[test]
fn grpc_batches_over_the_collectors_cap_are_split_on_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_collector(dir.path(), SMALL.cap);
    let url = c.grpc_url();
    let stats = emit_through_layer(SMALL, |b| b.otlp_grpc(url));
    assert_all_stored_once_and_the_huge_one_refused(SMALL.records, &stats, c);
}

#[test]
fn http_batches_over_the_collectors_cap_are_split_on_its_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start_collector(dir.path(), SMALL.cap);
    let url = format!("{}/v1/logs", c.http_url());
    let stats = emit_through_layer(SMALL, |b| b.otlp_http(url));
    assert_all_stored_once_and_the_huge_one_refused(SMALL.records, &stats, c);
}

/// OTLP requests the collector took (decoded; "too large" answers are not
/// counted), from its `/metrics`.
fn requests_taken(c: &Collector) -> f64 {
    let mut conn = TcpStream::connect(c.http).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: collector\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read /metrics");
    let text = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let samples = prometheus::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    prometheus::get(&samples, "audit_collector_requests_total", &[]).expect("requests_total")
}

#[test]
fn a_layer_told_the_cap_splits_before_sending_into_fewer_fuller_requests() {
    let mut taken = Vec::new();
    for told in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = start_collector(dir.path(), SMALL.cap);
        let url = format!("{}/v1/logs", c.http_url());
        let stats = emit_through_layer(SMALL, |b| {
            let b = b.otlp_http(url);
            if told {
                b.max_request_bytes(SMALL.cap)
            } else {
                b
            }
        });
        taken.push(requests_taken(&c));
        assert_all_stored_once_and_the_huge_one_refused(SMALL.records, &stats, c);
    }
    // Halving on the collector's answer stops at the first size under the
    // cap (a batch of 1.3 caps ends as two requests of 0.65); cutting up
    // front fills requests to the cap. SMALL is sized so that the counts
    // differ (the batch is a little over a power of two of caps).
    assert!(
        taken[1] < taken[0],
        "requests taken (untold, told): {taken:?}"
    );
}

/// A request many times the cap: the collector answers "too large" while
/// the layer is still sending. The answer must reach the layer (over HTTP
/// the collector reads the rest of the body before closing): a connection
/// reset instead would look like an outage, and the layer would resend the
/// same request.
#[test]
fn too_large_reaches_a_client_still_sending_a_large_request() {
    let shape = Shape {
        cap: 64 << 10,
        records: 1000,
        filler: 8000,
    };
    for grpc in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = start_collector(dir.path(), shape.cap);
        let (grpc_url, http_url) = (c.grpc_url(), format!("{}/v1/logs", c.http_url()));
        let stats = emit_through_layer(shape, |b| {
            if grpc {
                b.otlp_grpc(grpc_url)
            } else {
                b.otlp_http(http_url)
            }
        });
        assert_eq!(
            stats.0.retries, 0,
            "grpc {grpc}: only 413 / RESOURCE_EXHAUSTED or success: {stats:?}"
        );
        assert_all_stored_once_and_the_huge_one_refused(shape.records, &stats, c);
    }
}
