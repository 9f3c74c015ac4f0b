//! Raw TCP clients, for what a well-behaved HTTP client never does:
//! trickle or withhold a request's head, hold a connection idle, or read
//! `/metrics` without a connection pool of its own.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use audit_schema::otlp::encode_action;
use prost::Message;

use super::wire::{action, request};

/// Reads until the collector closes `s` (EOF or reset), returning what it
/// sent first (a response, HTTP/2 settings); `None` if `s` is still open
/// after `bound`, a generous bound only there so that a failure cannot hang.
pub fn closed_by_collector(s: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got),
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

/// Sends one more header byte every 100 ms, as a slowloris client does,
/// until the collector closes the connection; false if it is still open after `bound`.
pub fn trickle_until_closed(mut s: TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + bound;
    if s.write_all(b"POST /v1/logs HTTP/1.1\r\nX-Slow: ").is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if s.write_all(b"a").is_err() {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect")
}

/// A complete `POST /v1/logs` of one record, keeping the connection open.
pub fn raw_post(event: &str) -> Vec<u8> {
    let body = request(vec![encode_action(&action(event))]).encode_to_vec();
    let mut req = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// The whole answer (status line, headers, body) to `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    text
}

/// A counter or gauge from the admin listener's `/metrics`.
pub fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = get(admin, "/metrics");
    let line = format!("\naudit_collector_{name} ");
    text.split_once(&line)
        .and_then(|(_, rest)| rest.lines().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits (bounded generously: a loaded 2-core machine is slow, never this
/// slow) until a metric reaches `at_least`; its last value.
pub fn metric_reaches(admin: SocketAddr, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = metric(admin, name);
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
