//! TLS and mutual TLS on both receivers of the real collector binary:
//! a client that cannot complete the handshake (plaintext, no client
//! certificate, one from an unknown CA, an expired one) writes nothing
//! and does not disturb the clients that can; rows of a client
//! authenticated by certificate carry its certificate's name.

use crate::common;

use std::path::Path;

use audit_collector::auth::CLIENT_ATTR;
use audit_collector::partition::{read_audit, read_violations};
use audit_layer::{privileged_span, Actor, AuditLayer};
use common::pki::{client_config, https, Ca, Pair, Validity};
use common::tls_clients::{arg, grpc_tls, http_tls, stored_clients, PROTOBUF};
use common::{audit_request, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A counter from `/metrics`, served on the same (TLS) listener.
async fn metric(c: &Collector, ca: &Path, identity: Option<&Pair>, name: &str) -> u64 {
    let config = client_config(ca, identity, b"http/1.1");
    let (_, text) = https(c.http, config, "/metrics", None)
        .await
        .expect("metrics");
    let prefix = format!("audit_collector_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Plaintext OTLP/HTTP and OTLP/gRPC against the TLS listeners get no answer.
async fn plaintext_is_refused(c: &Collector) {
    let plain = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", c.http))
        .header("content-type", PROTOBUF)
        .body(audit_request("019ac0de-0000-7000-8000-0000000000f1", None).encode_to_vec())
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP answered: {plain:?}");
    let plain = async {
        let mut client = LogsServiceClient::connect(format!("http://{}", c.grpc))
            .await
            .map_err(|e| e.to_string())?;
        let req = audit_request("019ac0de-0000-7000-8000-0000000000f2", None);
        client.export(req).await.map_err(|e| e.to_string())
    }
    .await;
    assert!(plain.is_err(), "plaintext gRPC answered: {plain:?}");
}

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    ca: Ca,
    other_ca: Ca,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    Setup {
        data: dir.path().join("data"),
        ca: Ca::new(&pki, "ours"),
        other_ca: Ca::new(&pki, "theirs"),
        _dir: dir,
    }
}

fn start(s: &Setup, extra: &[&str]) -> Collector {
    let server = s.ca.server();
    let mut args = vec![
        "--tls-cert",
        arg(&server.cert),
        "--tls-key",
        arg(&server.key),
    ];
    args.extend_from_slice(extra);
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
    Collector::start(&s.data, &refs)
}

#[test]
fn mutual_tls_refuses_every_unverified_client_on_both_protocols_and_writes_nothing() {
    let s = setup();
    let ca_file = s.ca.cert();
    let c = start(&s, &["--tls-client-ca", arg(&ca_file)]);
    let good = s.ca.client("billing-svc", Validity::Current);
    let expired = s.ca.client("billing-svc", Validity::Expired);
    let stranger = s.other_ca.client("billing-svc", Validity::Current);
    let refused: [(&str, Option<&Pair>); 3] = [
        ("no client certificate", None),
        ("certificate from an unknown CA", Some(&stranger)),
        ("expired certificate", Some(&expired)),
    ];
    runtime().block_on(async {
        // A client that connects and never says anything must not hold
        // up anyone else's handshake.
        let _silent_grpc = tokio::net::TcpStream::connect(c.grpc).await.expect("tcp");
        let _silent_http = tokio::net::TcpStream::connect(c.http).await.expect("tcp");

        plaintext_is_refused(&c).await;

        for (n, (why, identity)) in refused.iter().enumerate() {
            let event = format!("019ac0de-0000-7000-8000-0000000000a{n}");
            let r = http_tls(c.http, &ca_file, *identity, &event).await;
            assert!(r.is_err(), "HTTP, {why}: answered {r:?}");
            let event = format!("019ac0de-0000-7000-8000-0000000000b{n}");
            let r = grpc_tls(c.grpc, &ca_file, *identity, None, &event).await;
            assert!(r.is_err(), "gRPC, {why}: answered");
        }

        // Afterwards, verified clients are served on both.
        let ok = http_tls(
            c.http,
            &ca_file,
            Some(&good),
            "019ac0de-0000-7000-8000-0000000000c1",
        );
        assert_eq!(ok.await, Ok(200));
        grpc_tls(
            c.grpc,
            &ca_file,
            Some(&good),
            None,
            "019ac0de-0000-7000-8000-0000000000c2",
        )
        .await
        .expect("verified gRPC client served");
        let requests = metric(&c, &ca_file, Some(&good), "requests_total").await;
        assert_eq!(requests, 2, "only verified requests reached a receiver");
        let failures = metric(&c, &ca_file, Some(&good), "tls_handshake_failures_total").await;
        assert!(
            failures >= 8,
            "2 plaintext + 6 refused certificates, got {failures}"
        );
    });
    assert!(c.terminate());
    assert_eq!(
        stored_clients(&s.data),
        [
            ("019ac0de-0000-7000-8000-0000000000c1".to_owned(), "billing-svc".to_owned()),
            ("019ac0de-0000-7000-8000-0000000000c2".to_owned(), "billing-svc".to_owned()),
        ],
        "only the verified requests are stored, named by their certificate's CN (forged value replaced)"
    );
    assert!(read_violations(&s.data).expect("violations").is_empty());
}

#[test]
fn tls_without_client_ca_serves_any_tls_client_and_refuses_plaintext() {
    let s = setup();
    let ca_file = s.ca.cert();
    let c = start(&s, &[]);
    runtime().block_on(async {
        plaintext_is_refused(&c).await;
        let r = http_tls(
            c.http,
            &ca_file,
            None,
            "019ac0de-0000-7000-8000-0000000000e1",
        );
        assert_eq!(r.await, Ok(200));
        let r = grpc_tls(
            c.grpc,
            &ca_file,
            None,
            None,
            "019ac0de-0000-7000-8000-0000000000e2",
        );
        r.await.expect("TLS gRPC client without a certificate");
    });
    assert!(c.terminate());
    assert_eq!(
        stored_clients(&s.data),
        [
            (
                "019ac0de-0000-7000-8000-0000000000e1".to_owned(),
                String::new()
            ),
            (
                "019ac0de-0000-7000-8000-0000000000e2".to_owned(),
                String::new()
            ),
        ],
        "stored over TLS; no authenticated client, so the forged name is removed, not kept"
    );
}

#[test]
fn tls_with_tokens_needs_a_token_and_records_the_token_name() {
    const OPS: &str = "ops-token-abcdefghijklmn";
    let s = setup();
    let ca_file = s.ca.cert();
    let tokens = format!("ops:{OPS}");
    let c = start(&s, &["--tls-client-ca", arg(&ca_file), "--tokens", &tokens]);
    let cert = s.ca.client("billing-svc", Validity::Current);
    runtime().block_on(async {
        // A verified certificate alone is not enough when tokens are set.
        let r = http_tls(
            c.http,
            &ca_file,
            Some(&cert),
            "019ac0de-0000-7000-8000-0000000000d1",
        );
        assert_eq!(r.await, Ok(401));
        let r = grpc_tls(
            c.grpc,
            &ca_file,
            Some(&cert),
            None,
            "019ac0de-0000-7000-8000-0000000000d2",
        );
        let err = r.await.expect_err("no token");
        assert!(err.starts_with("Unauthenticated"), "{err}");
        let r = grpc_tls(
            c.grpc,
            &ca_file,
            Some(&cert),
            Some(OPS),
            "019ac0de-0000-7000-8000-0000000000d3",
        );
        r.await.expect("certificate and token");
    });
    assert!(c.terminate());
    assert_eq!(
        stored_clients(&s.data),
        [(
            "019ac0de-0000-7000-8000-0000000000d3".to_owned(),
            "ops".to_owned()
        )],
        "the token's name wins over the certificate's"
    );
}

#[test]
fn unusable_tls_settings_stop_the_collector_at_start() {
    let s = setup();
    let server = s.ca.server();
    let out = common::serve_command(&s.data)
        // A certificate where the key should be.
        .args([
            "--tls-cert",
            arg(&server.cert),
            "--tls-key",
            arg(&server.cert),
        ])
        .output()
        .expect("run collector");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key_file"), "{err}");
}

/// One privileged agent action on `target`, recorded through `layer`.
fn act(layer: AuditLayer, target: &str) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let actor = Actor::agent("agt_1", "usr_bob");
        privileged_span!(&actor, "db.drop", target = target).in_scope(|| {});
    });
}

#[test]
fn the_audit_layer_ships_over_mutual_tls_on_both_protocols() {
    let s = setup();
    let ca_file = s.ca.cert();
    let c = start(&s, &["--tls-client-ca", arg(&ca_file)]);
    let me = s.ca.client("layer-client", Validity::Current);
    for (protocol, target) in [("grpc", "via-grpc"), ("http", "via-http")] {
        let builder = AuditLayer::builder()
            .service_name("tls-e2e")
            .tls_ca_file(&ca_file)
            .tls_client_identity(&me.cert, &me.key);
        let builder = match protocol {
            "grpc" => builder.otlp_grpc(format!("https://{}", c.grpc)),
            _ => builder.otlp_http(format!("https://{}/v1/logs", c.http)),
        };
        let (layer, guard) = builder.build().expect("layer");
        let status = guard.status();
        act(layer, target);
        guard
            .shutdown(std::time::Duration::from_secs(20))
            .expect("flushed");
        assert_eq!(status.snapshot().exported, 1, "{protocol}");
    }
    // Without its certificate the same layer is refused at the handshake:
    // the record waits (no spool here, so shutdown counts it as not
    // delivered) and the reason is visible in its status.
    let (layer, guard) = AuditLayer::builder()
        .service_name("tls-e2e")
        .tls_ca_file(&ca_file)
        .otlp_http(format!("https://{}/v1/logs", c.http))
        .build()
        .expect("layer");
    let status = guard.status();
    act(layer, "no-certificate");
    // Wait for the refusal to be reported rather than race a short
    // shutdown deadline against the handshake on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !status
        .last_error()
        .is_some_and(|e| e.contains("CertificateRequired"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no handshake refusal reported: {:?}",
            status.last_error()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The last attempt may be cut by the short shutdown deadline (then the
    // last error says so): the refusal was checked above, while it stood.
    let _ = guard.shutdown(std::time::Duration::from_secs(1));
    // Counted by the worker as it stops, which a loaded machine may finish
    // after shutdown gave up waiting for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status.snapshot().export_failures == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let snapshot = status.snapshot();
    assert_eq!((snapshot.exported, snapshot.export_failures), (0, 1));
    assert!(c.terminate());
    let mut rows: Vec<(String, String)> = read_audit(&s.data)
        .expect("read audit")
        .into_iter()
        .map(|(r, _, _)| {
            let target = r.target.unwrap_or_default();
            (target, r.attributes[CLIENT_ATTR].clone())
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("via-grpc".to_owned(), "layer-client".to_owned()),
            ("via-http".to_owned(), "layer-client".to_owned()),
        ]
    );
}
