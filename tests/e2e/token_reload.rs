//! Tokens file reload on the real collector binary: after SIGHUP (or the
//! next `--tokens-reload-interval-secs` check) a token removed from the
//! file is refused with 401 / UNAUTHENTICATED over both protocols and
//! writes nothing, a token added is accepted, and a malformed file keeps
//! the previous tokens and is counted as a failed reload. The interval
//! check is run on a file laid out as a Kubernetes Secret volume is.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::raw::{metric, metric_reaches};
use common::reload::{eventually, runtime, sighup};
use common::tls_clients::{arg, stored_clients};
use common::wire::{channel, grpc_raw};
use common::{audit_request, Collector};
use prost::Message;

const BILLING: &str = "billing-token-0123456789";
const OPS: &str = "ops-token-abcdefghijklmn";
const CI: &str = "ci-token-zyxwvutsrqponmlk";

/// Replaces the tokens file by renaming a complete one into place, as an
/// operator (or Kubernetes) would.
fn write_tokens(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write tokens");
    std::fs::rename(&tmp, path).expect("rename tokens");
}

fn start(dir: &Path, tokens: &Path, interval: &str) -> Collector {
    Collector::start(
        &dir.join("data"),
        &[
            "--tokens-file",
            arg(tokens),
            "--tokens-reload-interval-secs",
            interval,
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
}

/// The HTTP status of one export with `token`.
async fn http(c: &Collector, token: &str, event: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/logs", c.http_url()))
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {token}"))
        .timeout(Duration::from_secs(30))
        .body(audit_request(event, Some("forged")).encode_to_vec())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// The gRPC status code of one export with `token`.
async fn grpc(c: &Collector, token: &str, event: &str) -> tonic::Code {
    let body = audit_request(event, Some("forged")).encode_to_vec();
    let auth = format!("Bearer {token}");
    let metadata = [("authorization", auth.as_str())];
    match grpc_raw(channel(c.grpc).await, body, None, &metadata).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

fn event(n: u32) -> String {
    format!("019ac0de-0000-7000-8000-0000000003{n:02x}")
}

#[test]
fn sighup_revokes_removed_tokens_adds_new_ones_and_a_malformed_file_keeps_the_old_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    write_tokens(&tokens, &format!("billing:{BILLING}\nops:{OPS}\n"));
    let c = start(dir.path(), &tokens, "0");
    let admin = c.admin.expect("admin listener");
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(http(&c, BILLING, &event(1)).await, 200);
        assert_eq!(
            grpc(&c, CI, &event(0xf1)).await,
            tonic::Code::Unauthenticated
        );
    });

    // Billing revoked, ci added.
    write_tokens(&tokens, &format!("ops:{OPS}\nci:{CI}\n"));
    sighup(&c);
    assert_eq!(metric_reaches(admin, "tokens_reloads_total", 1), 1);
    rt.block_on(async {
        assert_eq!(http(&c, BILLING, &event(0xf2)).await, 401);
        assert_eq!(
            grpc(&c, BILLING, &event(0xf3)).await,
            tonic::Code::Unauthenticated
        );
        assert_eq!(http(&c, CI, &event(2)).await, 200);
        assert_eq!(grpc(&c, CI, &event(3)).await, tonic::Code::Ok);
        assert_eq!(grpc(&c, OPS, &event(4)).await, tonic::Code::Ok);
    });

    // A malformed line: the whole file is refused, ops and ci stay valid.
    write_tokens(&tokens, &format!("ops:{OPS}\nci {CI}\nnew:{BILLING}\n"));
    sighup(&c);
    assert_eq!(metric_reaches(admin, "tokens_reload_failures_total", 1), 1);
    rt.block_on(async {
        assert_eq!(http(&c, CI, &event(5)).await, 200);
        assert_eq!(
            grpc(&c, BILLING, &event(0xf4)).await,
            tonic::Code::Unauthenticated
        );
    });
    assert_eq!(metric(admin, "tokens_reloads_total"), 1);
    assert_eq!(metric(admin, "unauthenticated_total"), 4);
    drop(rt); // closes the client connections it pooled
    assert!(c.terminate());
    let stored = stored_clients(&dir.path().join("data"));
    let expected: Vec<(String, String)> =
        [(1, "billing"), (2, "ci"), (3, "ci"), (4, "ops"), (5, "ci")]
            .into_iter()
            .map(|(n, client)| (event(n), client.to_owned()))
            .collect();
    assert_eq!(stored, expected, "refused requests wrote nothing");
}

/// Writes `text` as a Kubernetes Secret volume holds `tokens`: the file is
/// a symlink to `..data/tokens`, and an update writes a new timestamped
/// directory and swaps the `..data` symlink to it by a rename.
fn kubelet_update(volume: &Path, generation: u32, text: &str) {
    let version = volume.join(format!("..2026_12_01_{generation:02}"));
    std::fs::create_dir(&version).expect("version dir");
    std::fs::write(version.join("tokens"), text).expect("write tokens");
    let tmp = volume.join("..data_tmp");
    std::os::unix::fs::symlink(version.file_name().expect("name"), &tmp).expect("symlink");
    std::fs::rename(&tmp, volume.join("..data")).expect("swap ..data");
    let link = volume.join("tokens");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/tokens", &link).expect("symlink tokens");
    }
}

#[test]
fn a_secret_volume_update_is_picked_up_by_the_interval_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("secret");
    std::fs::create_dir(&volume).expect("volume");
    kubelet_update(&volume, 1, &format!("billing:{BILLING}\n"));
    let c = start(dir.path(), &volume.join("tokens"), "1");
    kubelet_update(&volume, 2, &format!("ci:{CI}\n"));
    let rt = runtime();
    rt.block_on(async {
        eventually("the interval check loads ci's token", || async {
            http(&c, CI, &event(1)).await == 200
        })
        .await;
        assert_eq!(http(&c, BILLING, &event(0xf1)).await, 401);
    });
    drop(rt); // closes the client connections it pooled
    assert!(c.terminate());
    assert_eq!(
        stored_clients(&dir.path().join("data")),
        [(event(1), "ci".to_owned())]
    );
}
