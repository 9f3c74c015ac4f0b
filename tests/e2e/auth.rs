//! Bearer-token authentication on both receivers: a request without a
//! known token is refused with 401 / UNAUTHENTICATED and writes nothing;
//! rows from an authenticated client carry its name.

use crate::common;

use std::time::Duration;

use audit_collector::auth::CLIENT_ATTR;
use audit_collector::partition::{read_audit, read_violations};
use audit_layer::{privileged_span, Actor, AuditLayer};
use common::Collector;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

const BILLING: &str = "billing-token-0123456789";
const OPS: &str = "ops-token-abcdefghijklmn";

async fn grpc(c: &Collector, token: Option<&str>, event: &str) -> Result<(), tonic::Status> {
    let mut client = LogsServiceClient::connect(c.grpc_url())
        .await
        .expect("connect");
    let mut req = tonic::Request::new(common::audit_request(event, None));
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("metadata value");
        req.metadata_mut().insert("authorization", value);
    }
    client.export(req).await.map(|_| ())
}

#[test]
fn unknown_or_missing_tokens_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# name:token\nbilling:{BILLING}\nops:{OPS}\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let c = Collector::start(&data, &["--tokens-file", tokens.to_str().unwrap()]);
    let url = format!("{}/v1/logs", c.http_url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    rt.block_on(async {
        let post = |auth: Option<String>, event: &str| {
            let mut req = http
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(common::audit_request(event, Some("forged")).encode_to_vec());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            async move { req.send().await.expect("post") }
        };
        for (auth, n) in [
            (None, 1),
            (Some("Bearer not-a-known-token-at-all".to_owned()), 2),
            (Some(format!("Basic {BILLING}")), 3),
            (Some(format!("Bearer {BILLING}x")), 4),
        ] {
            let resp = post(
                auth.clone(),
                &format!("019ac0de-0000-7000-8000-00000000000{n}"),
            )
            .await;
            assert_eq!(resp.status(), 401, "{auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
        let ok = post(
            Some(format!("Bearer {BILLING}")),
            "019ac0de-0000-7000-8000-0000000000a1",
        )
        .await;
        assert_eq!(ok.status(), 200);

        for (token, n) in [(None, 5), (Some("Bearer-less-wrong-token-xx"), 6)] {
            let err = grpc(
                &c,
                token,
                &format!("019ac0de-0000-7000-8000-00000000000{n}"),
            )
            .await
            .expect_err("refused");
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{token:?}: {err}");
        }
        grpc(&c, Some(OPS), "019ac0de-0000-7000-8000-0000000000a2")
            .await
            .expect("authenticated gRPC export");

        let metrics = http
            .get(format!("{}/metrics", c.http_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("audit_collector_unauthenticated_total 6\n"),
            "{metrics}"
        );
    });

    // The layer's exporter authenticates with a header.
    let (layer, guard) = AuditLayer::builder()
        .service_name("auth-e2e")
        .otlp_http(c.http_url())
        .header("authorization", format!("Bearer {OPS}"))
        .build()
        .expect("layer");
    let status = guard.status();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let actor = Actor::agent("agt_1", "usr_bob");
        let span = privileged_span!(&actor, "db.drop", target = "tbl_1");
        span.in_scope(|| {});
    });
    guard.shutdown(Duration::from_secs(20)).expect("flushed");
    assert_eq!(status.snapshot().exported, 1);

    assert!(c.terminate());
    let mut rows: Vec<(String, String)> = read_audit(&data)
        .unwrap()
        .into_iter()
        .map(|(r, _, _)| (r.action, r.attributes[CLIENT_ATTR].clone()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("db.drop".to_owned(), "ops".to_owned()),
            ("users.delete".to_owned(), "billing".to_owned()),
            ("users.delete".to_owned(), "ops".to_owned()),
        ],
        "only authenticated requests stored, each with its client's name (forged value replaced)"
    );
    assert!(
        read_violations(&data).unwrap().is_empty(),
        "refused requests leave no rows"
    );
}

#[test]
fn a_bad_token_list_stops_the_collector_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::serve_command(dir.path())
        .env("AUDIT_COLLECTOR_TOKENS", "billing:short")
        .output()
        .expect("run collector");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
    assert!(
        !err.contains("short\""),
        "the token itself is not echoed: {err}"
    );
}
