//! Certificate reload on the real collector binary: the server certificate
//! files are replaced by ones from another CA and, after SIGHUP or the
//! next `reload_interval_secs` check, new handshakes use them while a
//! connection opened before keeps its session; files that do not load
//! keep the old certificate in use and are counted as a failed reload.

use crate::common;

use common::pki::{client_config, request, tls_connect, Ca, Pair};
use common::raw::{metric, metric_reaches};
use common::reload::{eventually, runtime, sighup};
use common::tls_clients::{arg, grpc_tls, http_tls, stored_clients, PROTOBUF};
use common::{audit_request, Collector};
use prost::Message;

/// Puts `from`'s certificate and key where the collector reads them, each
/// by a rename of a complete file, as an operator (or Kubernetes) would.
fn install(from: &Pair, live: &Pair) {
    for (src, dst) in [(&from.cert, &live.cert), (&from.key, &live.key)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).expect("copy");
        std::fs::rename(&tmp, dst).expect("rename");
    }
}

struct Setup {
    dir: tempfile::TempDir,
    a: Ca,
    b: Ca,
    live: Pair,
}

/// Two CAs; the collector's certificate files hold A's server certificate.
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (Ca::new(dir.path(), "a"), Ca::new(dir.path(), "b"));
    let live = Pair {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
        serial: 0,
    };
    install(&a.server(), &live);
    Setup { dir, a, b, live }
}

fn start(s: &Setup, interval: &str) -> Collector {
    Collector::start(
        &s.dir.path().join("data"),
        &[
            "--tls-cert",
            arg(&s.live.cert),
            "--tls-key",
            arg(&s.live.key),
            "--tls-reload-interval-secs",
            interval,
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
}

const EVENTS: [&str; 5] = [
    "019ac0de-0000-7000-8000-0000000002a1",
    "019ac0de-0000-7000-8000-0000000002a2",
    "019ac0de-0000-7000-8000-0000000002a3",
    "019ac0de-0000-7000-8000-0000000002a4",
    "019ac0de-0000-7000-8000-0000000002a5",
];

#[test]
fn sighup_swaps_the_certificate_for_new_handshakes_and_bad_files_keep_the_old_one() {
    let s = setup();
    let c = start(&s, "0");
    let admin = c.admin.expect("admin listener");
    let (ca_a, ca_b) = (s.a.cert(), s.b.cert());
    let rt = runtime();
    let early = rt.block_on(async {
        assert_eq!(http_tls(c.http, &ca_a, None, EVENTS[0]).await, Ok(200));
        // Opened before the reload, used after it.
        tls_connect(c.http, client_config(&ca_a, None, b"http/1.1"))
            .await
            .expect("handshake with A")
    });

    install(&s.b.server(), &s.live);
    sighup(&c);
    rt.block_on(async {
        eventually("a client trusting only B's CA writes", || async {
            http_tls(c.http, &ca_b, None, EVENTS[1]).await == Ok(200)
        })
        .await;
        grpc_tls(c.grpc, &ca_b, None, None, EVENTS[2])
            .await
            .expect("gRPC with B");
        let r = http_tls(c.http, &ca_a, None, "019ac0de-0000-7000-8000-0000000002f1").await;
        assert!(r.is_err(), "new handshakes no longer use A: {r:?}");
        let body = audit_request(EVENTS[3], None).encode_to_vec();
        let r = request(early, c.http, "/v1/logs", Some((PROTOBUF, &body))).await;
        assert_eq!(r.map(|(status, _)| status), Ok(200), "open connection kept");
    });
    assert_eq!(metric(admin, "tls_reloads_total"), 1);
    assert_eq!(metric(admin, "tls_reload_failures_total"), 0);

    // A half-written certificate: refused, B stays in use.
    let pem = std::fs::read_to_string(s.a.server().cert).expect("read");
    std::fs::write(&s.live.cert, &pem[..pem.len() / 2]).expect("write half");
    sighup(&c);
    assert_eq!(metric_reaches(admin, "tls_reload_failures_total", 1), 1);
    rt.block_on(async {
        let r = http_tls(c.http, &ca_b, None, EVENTS[4]).await;
        assert_eq!(r, Ok(200), "still serving B after the bad reload");
    });
    assert_eq!(metric(admin, "tls_reloads_total"), 1);
    assert!(c.terminate());
    let stored: Vec<String> = stored_clients(&s.dir.path().join("data"))
        .into_iter()
        .map(|(event, _)| event)
        .collect();
    assert_eq!(
        stored, EVENTS,
        "every accepted request stored, nothing else"
    );
}

#[test]
fn changed_files_are_picked_up_by_the_interval_check() {
    let s = setup();
    let c = start(&s, "1");
    let admin = c.admin.expect("admin listener");
    install(&s.b.server(), &s.live);
    runtime().block_on(async {
        eventually("the interval check loads B", || async {
            http_tls(c.http, &s.b.cert(), None, EVENTS[0]).await == Ok(200)
        })
        .await;
    });
    assert!(metric(admin, "tls_reloads_total") >= 1);
    assert!(c.terminate());
    let stored = stored_clients(&s.dir.path().join("data"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, EVENTS[0]);
}

#[test]
fn changed_files_are_not_reloaded_without_sighup_when_the_interval_is_off() {
    let s = setup();
    let c = start(&s, "0");
    install(&s.b.server(), &s.live);
    let ca_a = s.a.cert();
    runtime().block_on(async {
        let r = http_tls(c.http, &ca_a, None, EVENTS[0]).await;
        assert_eq!(r, Ok(200), "A still in use: nothing asked for a reload");
    });
    assert!(c.terminate());
}
