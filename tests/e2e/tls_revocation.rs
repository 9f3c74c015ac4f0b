//! Client certificate revocation (CRL) on the real collector binary: a
//! client whose certificate the CA revoked is refused at the handshake on
//! both protocols and writes nothing, while another client of the same CA
//! writes; with a CRL past its next update nobody gets in (fail closed).

use crate::common;

use std::path::Path;

use common::pki::{Ca, Pair, Validity};
use common::raw::metric;
use common::tls_clients::{arg, grpc_tls, http_tls, stored_clients};
use common::Collector;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A collector requiring client certificates of `ca`, checked against `crl`.
fn start(data: &Path, ca: &Ca, crl: &Path) -> Collector {
    let server = ca.server();
    let ca_file = ca.cert();
    Collector::start(
        data,
        &[
            "--tls-cert",
            arg(&server.cert),
            "--tls-key",
            arg(&server.key),
            "--tls-client-ca",
            arg(&ca_file),
            "--tls-client-crl",
            arg(crl),
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
}

/// One export per protocol with `identity`: whether each got through.
async fn both(c: &Collector, ca: &Path, identity: &Pair, events: [&str; 2]) -> [bool; 2] {
    let http = http_tls(c.http, ca, Some(identity), events[0]).await;
    let grpc = grpc_tls(c.grpc, ca, Some(identity), None, events[1]).await;
    [http == Ok(200), grpc.is_ok()]
}

#[test]
fn a_revoked_client_is_refused_on_both_protocols_and_its_peers_still_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ours");
    let revoked = ca.client("leaked-svc", Validity::Current);
    let good = ca.client("billing-svc", Validity::Current);
    let crl = ca.crl(&[&revoked], Validity::Current);
    let c = start(&data, &ca, &crl);
    let admin = c.admin.expect("admin listener");
    let ca_file = ca.cert();
    runtime().block_on(async {
        let events = [
            "019ac0de-0000-7000-8000-0000000001a1",
            "019ac0de-0000-7000-8000-0000000001a2",
        ];
        assert_eq!(both(&c, &ca_file, &revoked, events).await, [false, false]);
        let events = [
            "019ac0de-0000-7000-8000-0000000001b1",
            "019ac0de-0000-7000-8000-0000000001b2",
        ];
        assert_eq!(both(&c, &ca_file, &good, events).await, [true, true]);
    });
    assert_eq!(metric(admin, "requests_total"), 2, "only the good client's");
    let expires = metric(admin, "tls_crl_next_update_timestamp_seconds");
    assert!(
        expires > now_secs(),
        "the CRL's next update, a day ahead: {expires}"
    );
    let failures = metric(admin, "tls_handshake_failures_total");
    assert!(failures >= 2, "the revoked client's handshakes: {failures}");
    assert!(c.terminate());
    let stored = stored_clients(&data);
    assert_eq!(
        stored,
        [
            (
                "019ac0de-0000-7000-8000-0000000001b1".to_owned(),
                "billing-svc".to_owned()
            ),
            (
                "019ac0de-0000-7000-8000-0000000001b2".to_owned(),
                "billing-svc".to_owned()
            ),
        ],
        "nothing of the revoked client is stored"
    );
}

#[test]
fn a_crl_past_its_next_update_refuses_every_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ours");
    let good = ca.client("billing-svc", Validity::Current);
    let crl = ca.crl(&[], Validity::Expired);
    let c = start(&data, &ca, &crl);
    let admin = c.admin.expect("admin listener");
    let ca_file = ca.cert();
    runtime().block_on(async {
        let events = [
            "019ac0de-0000-7000-8000-0000000001c1",
            "019ac0de-0000-7000-8000-0000000001c2",
        ];
        // Its revocation status is unknown since the CRL expired: fail closed.
        assert_eq!(both(&c, &ca_file, &good, events).await, [false, false]);
    });
    assert_eq!(metric(admin, "requests_total"), 0);
    let expired = metric(admin, "tls_crl_next_update_timestamp_seconds");
    assert!(
        (1..now_secs()).contains(&expired),
        "the gauge shows the CRL's past next update: {expired}"
    );
    assert!(c.terminate());
    assert!(stored_clients(&data).is_empty());
}
