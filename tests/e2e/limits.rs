//! Limits against the real binary: set on the command line and in the
//! environment they take effect (the config file's keys are covered by
//! tests/e2e/hostile.rs); slow, silent and idle connections are closed after
//! the header read timeout while valid clients are served; connections past
//! the cap are closed at once; shutdown finishes requests in flight and
//! closes idle keep-alive connections.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use audit_schema::otlp::encode_action;
use common::pki::{client_config, https, Ca};
use common::raw::{
    closed_by_collector, connect, metric, metric_reaches, raw_post, trickle_until_closed,
};
use common::wire::{action, channel, grpc_raw, http_post, request, try_http_post};
use common::{stored_ids, Collector};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;

const PROTOBUF: &str = "application/x-protobuf";

#[test]
fn limit_flag_and_variable_refuse_records_the_defaults_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ok0 = encode_action(&action("ok-0"));
    // Attributes as sent: the audit.* fields are attributes too. The cap is
    // set to exactly what a plain record has, far below the default 128.
    let cap = ok0.attributes.len();
    let mut extra = encode_action(&action("extra-attribute"));
    extra.attributes.push(KeyValue {
        key: "one.more".into(),
        value: Some(AnyValue {
            value: Some(Value::BoolValue(true)),
        }),
        ..KeyValue::default()
    });
    // 101 bytes: refused under the variable's 100, accepted under 8192.
    let mut long = action("long-value");
    long.target = Some("t".repeat(101));
    let body = request(vec![
        ok0,
        extra,
        encode_action(&long),
        encode_action(&action("ok-1")),
    ])
    .encode_to_vec();

    let c = Collector::start_with_env(
        &data,
        &["--max-attributes", &cap.to_string()],
        &[("AUDIT_COLLECTOR_MAX_VALUE_BYTES", "100")],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answer = rt.block_on(async {
        let http = reqwest::Client::new();
        http_post(&http, c.http, body, PROTOBUF, None).await
    });
    assert_eq!(answer.status, 200);
    let ps = answer.export().partial_success.expect("partial success");
    assert_eq!(ps.rejected_log_records, 2, "{}", ps.error_message);
    for says in [
        format!("{} attributes; at most {cap} are accepted", cap + 1),
        "is 101 bytes; at most 100 are accepted".to_owned(),
    ] {
        assert!(ps.error_message.contains(&says), "{}", ps.error_message);
    }
    assert!(c.terminate(), "clean exit");
    let want: BTreeSet<String> = ["ok-0", "ok-1"].map(String::from).into();
    assert_eq!(stored_ids(&data), want, "the rest of the batch is kept");
}

/// One record over OTLP/HTTP (reqwest, its own connection); the status.
fn post(rt: &tokio::runtime::Runtime, addr: SocketAddr, event: &str) -> u16 {
    let body = request(vec![encode_action(&action(event))]).encode_to_vec();
    rt.block_on(async {
        let http = reqwest::Client::new();
        match try_http_post(&http, addr, body, PROTOBUF, None).await {
            Ok(a) if a.export().partial_success.is_none() => a.status,
            Ok(a) => panic!("{event}: refused: {:?}", a.export().partial_success),
            Err(_) => 0,
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn slow_silent_and_idle_clients_are_cut_while_valid_ones_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let c = Collector::start(
        &data,
        &[
            "--header-read-timeout-secs",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let admin = c.admin.expect("admin listener");
    let rt = runtime();

    let silent = connect(c.http);
    let mut line = connect(c.http);
    line.write_all(b"POST /v1/lo").expect("send");
    let mut head = connect(c.http);
    head.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-pro")
        .expect("send");
    let http = c.http;
    let trickler = std::thread::spawn(move || trickle_until_closed(connect(http), BOUND));
    // HTTP/2 has no header timeout of its own: the preface is bounded instead.
    let grpc_silent = connect(c.grpc);
    let mut grpc_partial = connect(c.grpc);
    grpc_partial.write_all(b"PRI * HTTP/2.0\r\n").expect("send");

    // Served while those hang.
    assert_eq!(post(&rt, c.http, "during"), 200);
    let mut keep_alive = connect(c.http);
    keep_alive.write_all(&raw_post("keep-alive")).expect("send");

    for (what, mut s) in [
        ("silent", silent),
        ("partial request line", line),
        ("partial headers", head),
        ("gRPC silent", grpc_silent),
        ("gRPC partial preface", grpc_partial),
    ] {
        assert!(
            closed_by_collector(&mut s, BOUND).is_some(),
            "{what}: still open"
        );
    }
    assert!(
        trickler.join().expect("trickler"),
        "trickled headers: still open"
    );
    // The keep-alive connection got its answer, then was closed once idle.
    let answer = closed_by_collector(&mut keep_alive, BOUND).expect("idle keep-alive: still open");
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(metric_reaches(admin, "header_read_timeouts_total", 7) >= 7);

    // And afterwards, over both protocols.
    assert_eq!(post(&rt, c.http, "after"), 200);
    rt.block_on(async {
        let body = request(vec![encode_action(&action("after-grpc"))]).encode_to_vec();
        let resp = grpc_raw(channel(c.grpc).await, body, None, &[])
            .await
            .expect("gRPC export");
        assert_eq!(resp.partial_success, None);
    });
    drop(rt);
    assert!(c.terminate(), "clean exit");
    let want: BTreeSet<String> = ["during", "keep-alive", "after", "after-grpc"]
        .map(String::from)
        .into();
    assert_eq!(stored_ids(&data), want);
}

#[test]
fn connections_past_the_cap_are_closed_and_shutdown_finishes_requests_and_closes_idle_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Long timeouts: nothing here is closed by one, and a shutdown that
    // waited for idle connections would outlast `terminate`'s 30 s.
    let c = Collector::start(
        &data,
        &[
            "--header-read-timeout-secs",
            "120",
            "--shutdown-timeout-secs",
            "120",
            "--max-connections",
            "3",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let admin = c.admin.expect("admin listener");
    let rt = runtime();

    // Three connections open: one served and kept alive, two silent.
    let mut keep_alive = connect(c.http);
    keep_alive.write_all(&raw_post("kept-alive")).expect("send");
    keep_alive
        .set_read_timeout(Some(BOUND))
        .expect("read timeout");
    let mut buf = [0u8; 12];
    keep_alive.read_exact(&mut buf).expect("answer");
    assert_eq!(&buf, b"HTTP/1.1 200");
    let held = [connect(c.http), connect(c.grpc)];
    assert_eq!(metric_reaches(admin, "connections_open", 3), 3);

    // The fourth is closed at once, without an answer, long before any timeout.
    let mut extra = connect(c.http);
    let got = closed_by_collector(&mut extra, BOUND).expect("past the cap: still open");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(metric(admin, "connections_refused_total"), 1);

    // A slot freed, a new client is served (once the collector has seen the close).
    drop(held);
    let deadline = Instant::now() + BOUND;
    while post(&rt, c.http, "after-cap") != 200 {
        assert!(Instant::now() < deadline, "no slot freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(rt);

    // A request in flight at SIGTERM: its head is in (the collector asked
    // for the body with 100 Continue) when the signal comes.
    let mut in_flight = connect(c.http);
    let req = raw_post("in-flight");
    let split = req.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 2;
    in_flight.write_all(&req[..split]).expect("head");
    in_flight
        .write_all(b"Expect: 100-continue\r\n\r\n")
        .expect("head");
    in_flight
        .set_read_timeout(Some(BOUND))
        .expect("read timeout");
    let mut cont = [0u8; 25];
    in_flight.read_exact(&mut cont).expect("100 Continue");
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // No new connection once the signal is handled...
    let deadline = Instant::now() + BOUND;
    while TcpStream::connect_timeout(&c.http, Duration::from_secs(1)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...but the request in flight finishes, and its connection closes.
    in_flight.write_all(&req[split + 2..]).expect("body");
    let answer = closed_by_collector(&mut in_flight, BOUND).expect("in flight: still open");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200 "), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // The idle keep-alive connection is closed without waiting for it.
    assert!(closed_by_collector(&mut keep_alive, BOUND).is_some());
    assert!(c.terminate(), "clean, prompt exit");
    let want: BTreeSet<String> = ["kept-alive", "after-cap", "in-flight"]
        .map(String::from)
        .into();
    assert_eq!(stored_ids(&data), want);
}

#[test]
fn over_tls_the_same_bounds_hold_once_the_handshake_is_done() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ours");
    let server = ca.server();
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
    let (cert, key) = (path(&server.cert), path(&server.key));
    let c = Collector::start(
        &data,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--header-read-timeout-secs",
            "1",
        ],
    );
    let rt = runtime();
    rt.block_on(async {
        let tls = |addr: SocketAddr, alpn: &'static [u8]| {
            let config = client_config(&ca.cert(), None, alpn);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .expect("handshake")
            }
        };
        let mut head = tls(c.http, b"http/1.1").await;
        head.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: collector\r\n")
            .await
            .expect("send");
        let silent_h2 = tls(c.grpc, b"h2").await;
        for (what, mut s) in [("partial headers", head), ("silent HTTP/2", silent_h2)] {
            // EOF, or an error for a close without close_notify: either way closed.
            let closed = tokio::time::timeout(BOUND, async {
                let _ = s.read_to_end(&mut Vec::new()).await;
            })
            .await;
            assert!(closed.is_ok(), "{what}: still open");
        }
        let body = request(vec![encode_action(&action("tls-after"))]).encode_to_vec();
        let config = client_config(&ca.cert(), None, b"http/1.1");
        let answer = https(c.http, config, "/v1/logs", Some((PROTOBUF, &body))).await;
        assert_eq!(answer.map(|(status, _)| status), Ok(200));
    });
    drop(rt);
    assert!(c.terminate(), "clean exit");
    let want: BTreeSet<String> = ["tls-after"].map(String::from).into();
    assert_eq!(stored_ids(&data), want);
}
