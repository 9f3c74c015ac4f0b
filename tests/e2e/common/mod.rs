//! Test harness: the real `audit-collector` binary on ephemeral loopback
//! ports, in a temporary data dir.
#![allow(dead_code)]

pub mod prometheus;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit_schema::otlp::{encode_action, ResourceInfo};
use audit_schema::{ActorKind, AuditRecord, Draft, Rules};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

pub mod load;
pub mod moto;
pub mod pki;
pub mod raw;
pub mod reload;
pub mod tls_clients;

/// The event ids of the actions stored under `data` (sealed Parquet).
pub fn stored_ids(data: &Path) -> std::collections::BTreeSet<String> {
    audit_collector::partition::read_audit(data)
        .expect("read audit")
        .into_iter()
        .map(|(r, _, _)| r.event_id)
        .collect()
}

/// Where the answer commands run by the tests record their questions (the
/// access dataset, `--access-dir`): one directory for the test binary,
/// never the working directory. Tests that check access rows pass
/// `--access-dir` themselves.
pub fn access_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("access tempdir"))
        .path()
}

/// Path of the collector binary: cargo builds it for this test target
/// (the binary and these tests belong to the same package).
pub fn collector_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_audit-collector"))
}

/// An example's binary: `cargo test` builds the package's examples next to
/// its test binaries (`target/<profile>/examples/`).
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: cargo test builds the examples; run it through cargo",
        bin.display()
    );
    bin
}

/// What a command of the collector binary printed, and whether it exited 0.
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `audit-collector ARGS` with `env` added, logging at warn.
pub fn cli(args: &[&str], env: &[(&str, String)]) -> CliOut {
    let o = Command::new(collector_bin())
        .args(args)
        .env("AUDIT_ACCESS_DIR", access_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run audit-collector");
    CliOut {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `audit-collector serve` on ephemeral loopback ports for both protocols.
pub fn serve_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(collector_bin());
    cmd.arg("serve").arg("--data-dir").arg(data_dir).args([
        "--otlp-grpc",
        "127.0.0.1:0",
        "--otlp-http",
        "127.0.0.1:0",
    ]);
    cmd
}

/// The lines a started command prints on its piped stdout, as they come;
/// stdout is drained on a thread, so the process never blocks writing.
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line a started command (`serve`, `console`) prints: the one
/// that says where it listens.
pub fn listening_line(child: &mut Child) -> String {
    stdout_lines(child)
        .recv_timeout(Duration::from_secs(60))
        .expect("the process printed its listening line")
}

/// A collector process.
pub struct Collector {
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The separate admin listener (`--admin-listen`), if any.
    pub admin: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub collector_id: String,
}

impl Collector {
    /// Starts a collector on 127.0.0.1:0 for both protocols.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Collector {
        Collector::start_with_env(data_dir, extra, &[])
    }

    /// Like [`Collector::start`], with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Collector {
        let mut child = serve_command(data_dir)
            .envs(env.iter().copied())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        let line = listening_line(&mut child);
        let field = |k: &str| -> String {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in {line:?}"))
                .to_owned()
        };
        Collector {
            grpc: field("otlp_grpc").parse().expect("grpc addr"),
            http: field("otlp_http").parse().expect("http addr"),
            admin: line
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("admin="))
                .and_then(|a| a.parse().ok()),
            collector_id: field("collector_id"),
            data_dir: data_dir.to_owned(),
            child,
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited 0.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    eprintln!("collector exited with {status} after SIGTERM");
                }
                return status.success();
            }
            if Instant::now() > deadline {
                eprintln!("collector still running 30 s after SIGTERM; killing it");
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// One OTLP/gRPC export to `c`, answered (on a runtime of its own).
pub fn export_grpc(c: &Collector, req: ExportLogsServiceRequest) -> ExportLogsServiceResponse {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut client = LogsServiceClient::connect(c.grpc_url())
                .await
                .expect("connect");
            client.export(req).await.expect("export").into_inner()
        })
}

/// An agent's `db.write` by `agt_ops` for `owner` (empty: a refused record).
pub fn agent_action(event: &str, owner: &str) -> AuditRecord {
    let valid = Draft {
        event_id: Some(event.into()),
        start_time_ns: Some(1_764_300_000_000_000_000),
        agent_id: Some("agt_ops".into()),
        owner_id: Some("usr_ops".into()),
        action: Some("db.write".into()),
        service_name: Some("ops".into()),
        ..Draft::default()
    };
    AuditRecord {
        owner_id: owner.into(),
        ..Rules::default()
            .check(valid)
            .expect("a complete agent action")
    }
}

/// An OTLP request of one human `users.delete` record with event id
/// `event`; `forged_client` puts a value where the collector stamps the
/// authenticated client's name (it must be replaced).
pub fn audit_request(event: &str, forged_client: Option<&str>) -> ExportLogsServiceRequest {
    let mut attributes = std::collections::BTreeMap::new();
    if let Some(f) = forged_client {
        attributes.insert(audit_collector::auth::CLIENT_ATTR.to_owned(), f.to_owned());
    }
    let r = AuditRecord {
        actor_kind: ActorKind::Human,
        agent_id: None,
        action: "users.delete".into(),
        target: Some("usr_9".into()),
        service_name: "billing".into(),
        attributes: attributes.into_iter().collect(),
        ..agent_action(event, "usr_alice")
    };
    let res = ResourceInfo {
        service_name: Some("billing".into()),
        service_instance_id: None,
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(res.to_resource()),
            scope_logs: vec![ScopeLogs {
                log_records: vec![encode_action(&r)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
