//! Load beyond capacity: several clients over both protocols against a
//! collector with a small write queue and in-flight cap. The collector must
//! throttle (429 when the write queue is full and 503 past the in-flight
//! cap, each with `Retry-After`; `UNAVAILABLE` with `RetryInfo`) rather
//! than queue, keep its memory under a stated bound, and store every
//! acknowledged record exactly once.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_collector::partition::read_audit;
use audit_schema::otlp::encode_action;
use common::wire::{action, channel, grpc_raw, request, try_http_post};
use common::Collector;
use prost::Message;
use tonic_types::StatusExt;

/// Peak resident memory the collector may reach under this load. Its
/// working set is bounded by `max_in_flight_requests` x `max_request_bytes`
/// (decoded, a few times the wire size) plus the write queue and the
/// unsealed rows; this bound leaves room for the allocator and runtime.
const MAX_PEAK_RSS_KIB: u64 = 256 * 1024;
/// How long the clients push.
const LOAD: Duration = Duration::from_secs(4);
const CLIENTS_PER_PROTOCOL: usize = 6;
const RECORDS_PER_REQUEST: usize = 200;

#[derive(Default)]
struct Tally {
    /// Event ids the collector acknowledged.
    acked: Vec<String>,
    /// Records sent.
    sent: usize,
    /// Throttling answers seen, by kind.
    throttled: BTreeMap<String, usize>,
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn batch(client: &str, n: usize) -> (Vec<String>, Vec<u8>) {
    let ids: Vec<String> = (0..RECORDS_PER_REQUEST)
        .map(|i| format!("{client}-{n}-{i}"))
        .collect();
    let req = request(ids.iter().map(|id| encode_action(&action(id))).collect());
    (ids, req.encode_to_vec())
}

async fn http_client(c: std::net::SocketAddr, name: String, tally: Arc<Mutex<Tally>>) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < LOAD {
        n += 1;
        let (ids, body) = batch(&name, n);
        let a = try_http_post(&http, c, body, "application/x-protobuf", None).await;
        let mut t = tally.lock().expect("tally");
        t.sent += ids.len();
        // Refused before its body was read, a request may see its
        // connection closed instead of the 503: not acknowledged either.
        let Ok(a) = a else {
            *t.throttled
                .entry("http connection closed".into())
                .or_default() += 1;
            continue;
        };
        match a.status {
            200 => {
                assert_eq!(a.export().partial_success, None);
                t.acked.extend(ids);
            }
            429 | 503 => {
                assert_eq!(
                    a.retry_after.as_deref(),
                    Some("1"),
                    "Retry-After on {}",
                    a.status
                );
                *t.throttled.entry(format!("http {}", a.status)).or_default() += 1;
            }
            other => panic!("unexpected HTTP {other}"),
        }
    }
}

async fn grpc_client(c: std::net::SocketAddr, name: String, tally: Arc<Mutex<Tally>>) {
    let ch = channel(c).await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < LOAD {
        n += 1;
        let (ids, body) = batch(&name, n);
        let result = grpc_raw(ch.clone(), body, None, &[]).await;
        let mut t = tally.lock().expect("tally");
        t.sent += ids.len();
        match result {
            Ok(resp) => {
                assert_eq!(resp.partial_success, None);
                t.acked.extend(ids);
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                let retry = s.get_details_retry_info().and_then(|r| r.retry_delay);
                assert_eq!(retry, Some(Duration::from_secs(1)), "RetryInfo on {s:?}");
                *t.throttled.entry("grpc UNAVAILABLE".into()).or_default() += 1;
            }
            Err(s) => panic!("unexpected gRPC status {s:?}"),
        }
    }
}

#[test]
fn beyond_capacity_the_collector_throttles_stays_bounded_and_keeps_every_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        // Eight requests in flight for a write queue of one: more reach
        // the queue than it holds, which is answered 429 (over a hundred
        // times in each of three runs).
        "max_request_bytes = 1048576\nmax_in_flight_requests = 8\n\
         [store]\nqueue_depth = 1\nseal_rows = 20000\nmax_buffered_rows = 40000\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let c = Collector::start(&data, &["--config", config.to_str().expect("utf-8")]);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..CLIENTS_PER_PROTOCOL {
            tasks.push(tokio::spawn(http_client(
                c.http,
                format!("h{i}"),
                tally.clone(),
            )));
            tasks.push(tokio::spawn(grpc_client(
                c.grpc,
                format!("g{i}"),
                tally.clone(),
            )));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    });
    drop(rt);
    let peak = peak_rss_kib(c.child.id());
    assert!(c.terminate(), "clean exit after the load");

    let t = tally.lock().expect("tally");
    let throttled: usize = t.throttled.values().sum();
    eprintln!(
        "overload: {} records sent, {} acknowledged, throttled {:?}, collector peak RSS {} KiB",
        t.sent,
        t.acked.len(),
        t.throttled,
        peak
    );
    assert!(throttled > 0, "load beyond capacity was throttled");
    // The write queue's own answer, not only the in-flight cap's (each
    // 429 and 503 was checked for `Retry-After: 1` as it came).
    assert!(
        t.throttled.get("http 429").is_some_and(|n| *n > 0),
        "a full write queue answered HTTP 429: {:?}",
        t.throttled
    );
    assert!(!t.acked.is_empty(), "some load was served");
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "peak RSS {peak} KiB over the stated bound {MAX_PEAK_RSS_KIB} KiB"
    );
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for (r, _, _) in read_audit(&data).expect("read audit") {
        *stored.entry(r.event_id).or_default() += 1;
    }
    assert!(stored.values().all(|n| *n == 1), "every row stored once");
    // A throttled request is refused before it reaches the write queue, so
    // what is stored is exactly what was acknowledged.
    let acked: BTreeSet<&String> = t.acked.iter().collect();
    assert_eq!(acked.len(), t.acked.len(), "ids are unique");
    let missing = acked.iter().filter(|id| !stored.contains_key(**id)).count();
    assert_eq!(missing, 0, "every acknowledged record is stored");
    let unacked = stored.keys().filter(|id| !acked.contains(id)).count();
    assert_eq!(unacked, 0, "nothing stored that was refused");
}
