//! Why delivery fails, said at once and in words a new user can act on.
//!
//! The first failed attempt of an outage is logged on stderr with the
//! endpoint, the protocol and the cause; while the outage lasts, at most
//! one line a minute follows, and one when delivery resumes. The same text
//! is kept in [`AuditStatus::last_error`](crate::AuditStatus::last_error).
//!
//! The transports' own errors say little when the endpoint speaks another
//! protocol (an HTTP/1.1 client reading an HTTP/2 frame, a gRPC client
//! whose connection is closed at once), so on a plaintext `http://`
//! endpoint the first failure is followed by a probe: one TCP connection,
//! one `GET / HTTP/1.1`, and the first bytes of the answer. An HTTP/2
//! `SETTINGS` frame means a gRPC port; `HTTP/1.` means an HTTP port; a TLS
//! record means the endpoint wants `https://`; a refused connection means
//! nothing listens there.

use std::time::{Duration, Instant};

use hyper::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Protocol;

/// A repeated failure is logged at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(60);
/// How long the probe waits for the endpoint's first bytes.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What a plaintext endpoint answered to the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Nothing listens at that address.
    Refused,
    /// An HTTP/1 status line.
    Http1(String),
    /// An HTTP/2 server (a gRPC port): it sent a `SETTINGS` frame.
    Http2,
    /// A TLS server: it answered with a TLS record.
    Tls,
    /// Anything else (silence, a closed connection, an unknown answer).
    Unclear,
}

/// Probes `uri` (plaintext `http://` only; `None` otherwise).
pub(super) async fn probe(uri: &Uri) -> Option<Answer> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let exchange = async {
        let mut tcp = match tokio::net::TcpStream::connect((host, port)).await {
            Ok(tcp) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Answer::Refused,
            Err(_) => return Answer::Unclear,
        };
        let hello = format!("GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        if tcp.write_all(hello.as_bytes()).await.is_err() {
            return Answer::Unclear;
        }
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 9 {
            match tcp.read(&mut buf[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        classify(&buf[..got])
    };
    Some(
        tokio::time::timeout(PROBE_WAIT, exchange)
            .await
            .unwrap_or(Answer::Unclear),
    )
}

/// The first bytes of an answer to an HTTP/1.1 request.
fn classify(bytes: &[u8]) -> Answer {
    if bytes.starts_with(b"HTTP/1.") {
        let line = bytes.split(|b| *b == b'\r').next().unwrap_or_default();
        return Answer::Http1(String::from_utf8_lossy(line).into_owned());
    }
    // Frame header: 24-bit length, type 0x4 (SETTINGS), stream 0.
    if bytes.len() >= 9 && bytes[3] == 0x04 && bytes[5..9] == [0, 0, 0, 0] {
        return Answer::Http2;
    }
    // TLS record: alert (21) or handshake (22), version 3.x.
    if bytes.len() >= 2 && matches!(bytes[0], 21 | 22) && bytes[1] == 3 {
        return Answer::Tls;
    }
    Answer::Unclear
}

/// The cause of a failure, from the probe's answer when it explains it,
/// else from the transport's message.
pub(super) fn cause(protocol: Protocol, answer: Option<&Answer>, message: &str) -> String {
    let http_status_404_or_415 = ["404", "415"]
        .iter()
        .any(|s| message.contains(&format!("HTTP {s}")));
    match (protocol, answer) {
        (_, Some(Answer::Refused)) => "connection refused: nothing listens there".to_owned(),
        (Protocol::HttpProtobuf, Some(Answer::Http2)) => {
            "this endpoint answers gRPC (HTTP/2 only), not OTLP/HTTP: use the collector's \
             OTLP/HTTP port (4318 by default) or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
                .to_owned()
        }
        (Protocol::Grpc, Some(Answer::Http1(line))) => format!(
            "this endpoint answers HTTP/1 ({line}), not gRPC: it is an OTLP/HTTP port; use \
             the collector's gRPC port (4317 by default) or set \
             OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
        ),
        (_, Some(Answer::Tls)) => {
            "this endpoint answers TLS: use an https:// endpoint (and a CA file)".to_owned()
        }
        (Protocol::HttpProtobuf, _) if http_status_404_or_415 => {
            "this endpoint answers HTTP but not OTLP/HTTP logs: check the URL's path \
             (/v1/logs) and the port"
                .to_owned()
        }
        (Protocol::Grpc, _) if message.contains("mapped from HTTP status code") => {
            "this endpoint answers HTTP/2 but not gRPC: check the port".to_owned()
        }
        _ => message.to_owned(),
    }
}

/// The state of an outage: since when, how many attempts failed, and when
/// it was last logged.
#[derive(Debug, Default)]
pub(super) struct Outage {
    /// The raw message the cause was worked out from.
    message: Option<String>,
    /// The full description kept in `last_error`.
    pub described: Option<String>,
    since: Option<Instant>,
    failures: u64,
    logged_this_outage: bool,
    last_logged: Option<Instant>,
}

impl Outage {
    /// Whether `message` needs a new diagnosis (a new outage, or another cause).
    pub fn needs_diagnosis(&self, message: &str) -> bool {
        self.message.as_deref() != Some(message)
    }

    /// The next failure is diagnosed again, even with the same message.
    pub fn diagnose_again(&mut self) {
        self.message = None;
    }

    /// Records a failed attempt described as `described`; returns the line
    /// to log now, if any (the first of an outage, then one a minute).
    pub fn failed(&mut self, message: &str, described: String, where_: &str) -> Option<String> {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        self.failures += 1;
        self.message = Some(message.to_owned());
        self.described = Some(described.clone());
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= REPEAT_EVERY);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        let line = if self.logged_this_outage {
            format!(
                "audit-layer: still cannot deliver audit records ({} failed attempts in {:.0?}): \
                 {described}",
                self.failures,
                now.duration_since(since)
            )
        } else {
            format!(
                "audit-layer: cannot deliver audit records: {described}. {where_} Retrying \
                 with backoff; logged at most once a minute (AuditStatus::last_error)"
            )
        };
        self.logged_this_outage = true;
        Some(line)
    }

    /// An answer came back; returns the line to log if this outage was logged.
    pub fn resumed(&mut self, endpoint: &impl std::fmt::Display) -> Option<String> {
        let since = self.since?;
        let line = self.logged_this_outage.then(|| {
            format!(
                "audit-layer: delivery to {endpoint} resumed after {} failed attempts in {:.0?}",
                self.failures,
                since.elapsed()
            )
        });
        let last_logged = self.last_logged;
        *self = Outage {
            last_logged,
            ..Outage::default()
        };
        line
    }
}

#[cfg(test)]
mod tests {
    use super::{cause, classify, Answer, Outage};
    use crate::export::Protocol;

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(
            classify(b"HTTP/1.1 404 Not Found\r\n"),
            Answer::Http1("HTTP/1.1 404 Not Found".into())
        );
        let settings = [0, 0, 0x18, 4, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(classify(&settings), Answer::Http2);
        assert_eq!(classify(&[21, 3, 3, 0, 2, 2, 50]), Answer::Tls);
        assert_eq!(classify(b""), Answer::Unclear);
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Answer::Unclear);
    }

    #[test]
    fn a_mismatch_is_named_and_anything_else_keeps_the_transport_message() {
        let http2 = cause(Protocol::HttpProtobuf, Some(&Answer::Http2), "x");
        assert!(http2.contains("answers gRPC"), "{http2}");
        let http1 = cause(
            Protocol::Grpc,
            Some(&Answer::Http1("HTTP/1.1 404".into())),
            "x",
        );
        assert!(http1.contains("not gRPC"), "{http1}");
        // The same answers, to the protocol that expects them, explain nothing.
        assert_eq!(cause(Protocol::Grpc, Some(&Answer::Http2), "boom"), "boom");
        let not_found = cause(
            Protocol::HttpProtobuf,
            None,
            "POST u: HTTP 404 Not Found: <html>",
        );
        assert!(not_found.contains("/v1/logs"), "{not_found}");
        let refused = cause(Protocol::Grpc, Some(&Answer::Refused), "x");
        assert!(refused.contains("connection refused"), "{refused}");
    }

    #[test]
    fn an_outage_is_logged_once_then_rate_limited_and_its_end_is_said() {
        let mut o = Outage::default();
        assert!(o.failed("m", "d".into(), "").is_some(), "the first at once");
        assert!(o.failed("m", "d".into(), "").is_none(), "then rate-limited");
        let end = o.resumed(&"http://x").expect("the logged outage ends");
        assert!(end.contains("2 failed attempts"), "{end}");
        assert!(
            o.resumed(&"http://x").is_none(),
            "no outage, nothing to say"
        );
        // A new outage within the minute is not logged again.
        assert!(o.failed("m", "d".into(), "").is_none());
    }
}
