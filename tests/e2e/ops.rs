//! Operating the real collector binary: liveness and readiness probes,
//! Prometheus metrics that parse line by line, an admin listener apart
//! from the OTLP port, and structured (JSON) logs of its own.

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use audit_schema::otlp::{encode_action, ResourceInfo};
use common::prometheus::{self, get};
use common::{agent_action, collector_bin, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use prost::Message;

/// One accepted record and one refused (an agent action without its owner).
fn mixed_request() -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(
                ResourceInfo {
                    service_name: Some("ops".into()),
                    service_instance_id: None,
                }
                .to_resource(),
            ),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    encode_action(&agent_action(
                        "019ac0de-0000-7000-8000-0000000000f1",
                        "usr_ops",
                    )),
                    encode_action(&agent_action("019ac0de-0000-7000-8000-0000000000f2", "")),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// GET, answering (status, body).
async fn fetch(client: &reqwest::Client, url: String) -> (u16, String) {
    let resp = client.get(&url).send().await.expect(&url);
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn export(client: &reqwest::Client, base: &str) {
    let resp = client
        .post(format!("{base}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(mixed_request())
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
}

/// Bytes of the sealed files under a data dir.
fn parquet_bytes(dir: &Path) -> u64 {
    audit_collector::fsio::walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn probes_and_metrics_on_the_otlp_port_parse_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &[]);
    let base = c.http_url();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        assert_eq!(fetch(&client, format!("{base}/healthz")).await.0, 200);
        assert_eq!(
            fetch(&client, format!("{base}/readyz")).await,
            (200, "ready\n".into())
        );
        export(&client, &base).await;
        let (status, text) = fetch(&client, format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name: &str| get(&m, &format!("audit_collector_{name}"), &[]);
        let refused = get(
            &m,
            "audit_collector_records_refused_total",
            &[("reason", "agent_without_owner")],
        );
        assert_eq!(refused, Some(1.0), "{text}");
        assert_eq!(v("records_received_total"), Some(2.0));
        // The accepted action and the violation the refusal left.
        assert_eq!(v("buffered_rows"), Some(2.0), "not sealed yet");
        assert_eq!(v("queue_depth"), Some(0.0));
        assert_eq!(v("store_failing"), Some(0.0));
        let fsyncs = v("wal_fsyncs_total").expect("fsyncs");
        assert!(fsyncs >= 1.0);
        assert_eq!(v("wal_fsync_seconds_count"), Some(fsyncs));
        assert!(v("wal_bytes_total").is_some_and(|b| b > 0.0), "{text}");
        assert_eq!(v("stored_bytes"), Some(0.0));
    });
    assert!(c.terminate(), "clean shutdown seals the buffer");
    let on_disk = parquet_bytes(dir.path());
    assert!(on_disk > 0);

    // A restart counts what the manifest says is stored.
    let c = Collector::start(dir.path(), &[]);
    let base = c.http_url();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        let text = fetch(&client, format!("{base}/metrics")).await.1;
        let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            get(&m, "audit_collector_stored_bytes", &[]),
            Some(on_disk as f64)
        );
        assert_eq!(
            get(&m, "audit_collector_retention_deletions_total", &[]),
            Some(0.0)
        );
    });
    assert!(c.terminate());
}

#[test]
fn admin_listener_serves_probes_and_the_otlp_port_no_longer_does() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), &["--admin-listen", "127.0.0.1:0"]);
    let admin = format!(
        "http://{}",
        c.admin.expect("admin address in the listening line")
    );
    let base = c.http_url();
    runtime().block_on(async {
        let client = reqwest::Client::new();
        for path in ["healthz", "readyz", "metrics"] {
            assert_eq!(
                fetch(&client, format!("{admin}/{path}")).await.0,
                200,
                "{path}"
            );
            assert_eq!(
                fetch(&client, format!("{base}/{path}")).await.0,
                404,
                "{path}"
            );
        }
        export(&client, &base).await;
        let text = fetch(&client, format!("{admin}/metrics")).await.1;
        let m = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(get(&m, "audit_collector_requests_total", &[]), Some(1.0));
    });
    assert!(c.terminate());
}

#[test]
fn the_exposition_checker_rejects_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{reason=\"x\"} 1\n";
    assert!(prometheus::parse(ok).is_ok());
    for bad in [
        "a_total 1\n",                                          // no HELP/TYPE
        "# HELP a_total A.\n# TYPE a_total counter\na_total{reason=x} 1\n", // unquoted
        "# HELP a A.\n# TYPE a counter\na 1\n",                 // counter without _total
        "# HELP a_total A.\n# TYPE a_total counter\na_total one\n", // bad value
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1", // no final newline
    ] {
        assert!(prometheus::parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn json_logs_report_start_listeners_recovery_refusals_seal_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(collector_bin())
        .args(["--log-format", "json", "serve", "--data-dir"])
        .arg(dir.path())
        .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn collector");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let http = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("otlp_http="))
        .expect("otlp_http")
        .to_owned();
    runtime().block_on(async {
        export(&reqwest::Client::new(), &format!("http://{http}")).await;
    });
    let c = Collector {
        child,
        grpc: "127.0.0.1:1".parse().unwrap(),
        http: http.parse().unwrap(),
        admin: None,
        data_dir: dir.path().to_owned(),
        collector_id: String::new(),
    };
    assert!(c.terminate());
    let text = errors.join().expect("stderr reader");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
        assert!(e["fields"]["message"].is_string(), "{e}");
    }
    let find = |message: &str| -> &serde_json::Value {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in\n{text}"))
    };
    assert!(find("collector starting")["fields"]["version"].is_string());
    assert_eq!(find("recovery finished")["fields"]["rows"], 0);
    let serving = &find("serving")["fields"];
    assert_eq!(serving["http"], http.as_str());
    assert!(serving["grpc"]
        .as_str()
        .is_some_and(|g| g.starts_with("127.0.0.1:")));
    assert_eq!(serving["admin"], "off");
    let refused = &find("refused records")["fields"];
    assert_eq!(refused["refused"], 1);
    assert!(refused["first"]
        .as_str()
        .is_some_and(|f| f.contains("audit.owner.id")));
    let sealed = &find("sealed")["fields"];
    assert_eq!(sealed["rows"], 2);
    assert!(sealed["bytes"].as_u64().is_some_and(|b| b > 0));
    find("signal received: draining and sealing");
    find("stopped; everything acknowledged is sealed");
}
