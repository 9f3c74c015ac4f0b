//! Who looked: every question asked through the console or the CLI's
//! answer commands (`query`, `who`, `activity`, `prove-human`) is an
//! access row, written through the collector's own durable path (WAL,
//! fsync, sealed Parquet, hash-chained manifest) into a dataset of its own,
//! before the answer is shown. A question whose access row cannot be made
//! durable is not answered. `verify --data-dir ACCESS_DIR` covers the
//! dataset like any other; the console's "Who looked" view reads it.
//!
//! An access row is an audit row: the viewer is the human who acted
//! (`actor_kind = human`, `owner_id` = viewer), the question is the action
//! (`console.find`, `cli.who`, …), its subject the target (an event id, an
//! agent, an owner), and `attributes` hold the parameters as asked
//! (`access.parameters`), the rows returned (`access.rows`) and, for the
//! console, the HTTP status (`access.status`) or, for the CLI, why the
//! question failed (`access.error`).
//!
//! The console and the CLI write the same directory as two collectors of
//! its chain: the console under the directory's collector id (kept in
//! `ACCESS_DIR/collector_id`), each CLI process under [`CLI_COLLECTOR`],
//! waiting its turn for that collector's lock. A CLI process lives for one
//! question, so its writer records no digests (heartbeats would only mark
//! the time between two commands as a coverage gap).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_collector::config::Config;
use audit_collector::ingest::{Batch, Ingest, IngestError};
use audit_collector::metrics::Metrics;
use audit_collector::retention::RetentionError;
use audit_schema::{ActorKind, AuditRecord};
use chrono::{DateTime, Utc};

/// The service name of the console's access rows.
pub const CONSOLE: &str = "audit-console";
/// The service name of the CLI's access rows.
pub const CLI: &str = "audit-collector-cli";
/// The collector id the CLI's access rows are written under.
pub const CLI_COLLECTOR: &str = "cli";
/// The console's access rows are sealed this often, so that the "Who
/// looked" view (which reads sealed files) is at most this far behind.
const CONSOLE_SEAL_INTERVAL: Duration = Duration::from_secs(5);
/// How long a CLI command waits for another one to finish its access row.
const CLI_LOCK_WAIT: Duration = Duration::from_secs(30);
/// Longest parameter string kept in an access row.
const MAX_PARAMETERS: usize = 4096;

/// Who writes the access rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// A console: one long-lived writer, sealing every few seconds.
    Console,
    /// One CLI command: one question, sealed when it closes.
    Cli,
}

/// Why the access dataset could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The writer's settings or collector id are unusable.
    #[error("access dataset {dir}: {reason}")]
    Open {
        /// The access directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another CLI command held the writer's lock for too long.
    #[error(
        "access dataset {0}: another command has been writing its access row for 30 s; try again"
    )]
    Busy(PathBuf),
    /// The row could not be made durable.
    #[error("access row not recorded in {dir}: {source}")]
    Write {
        /// The access directory.
        dir: PathBuf,
        /// Why.
        source: IngestError,
    },
}

/// The access dataset's writer.
#[derive(Debug)]
pub struct AccessLog {
    ingest: Ingest,
    dir: PathBuf,
}

/// One question, as its access row records it.
#[derive(Clone, Debug)]
pub struct Asked {
    /// The viewer.
    pub viewer: String,
    /// [`CONSOLE`] or [`CLI`].
    pub service: &'static str,
    /// The question: `console.find`, `cli.activity`, …
    pub question: String,
    /// What it was about (`event_id=…`, `agent=…`, `owner=…`), if anything.
    pub subject: Option<String>,
    /// The parameters as asked (a query string, a command line).
    pub parameters: String,
    /// When the question arrived.
    pub asked: DateTime<Utc>,
    /// Whether it was answered.
    pub ok: bool,
    /// Rows returned, when counted.
    pub rows: Option<u64>,
    /// Further attributes (`access.status`, `access.error`).
    pub extra: BTreeMap<String, String>,
}

impl AccessLog {
    /// Opens (recovering what a previous run left) the access dataset in
    /// `dir` for `writer`. Blocking: call it off the async threads.
    pub fn open(dir: &Path, writer: Writer) -> Result<AccessLog, AccessError> {
        let fail = |reason: String| AccessError::Open {
            dir: dir.to_owned(),
            reason,
        };
        let cfg = Config {
            data_dir: dir.to_owned(),
            collector_id: (writer == Writer::Cli).then(|| CLI_COLLECTOR.to_owned()),
            ..Config::default()
        };
        let id = cfg
            .resolve_collector_id()
            .map_err(|e| fail(e.to_string()))?;
        let mut ingest = cfg.ingest(&id).map_err(|e| fail(e.to_string()))?;
        if writer == Writer::Cli {
            // No heartbeat and no dedup window to rebuild: the process
            // writes one fresh UUIDv7 row and seals it as it exits.
            ingest.digest_interval = Duration::MAX;
            ingest.dedup_window = Duration::ZERO;
        } else {
            ingest.seal_interval = CONSOLE_SEAL_INTERVAL;
        }
        let deadline = Instant::now() + CLI_LOCK_WAIT;
        // What the writer says when another process holds this collector's
        // lock (asking the lock again after the failure would race with its
        // release).
        let held = IngestError::Storage(RetentionError::Locked(id.clone()).to_string()).to_string();
        loop {
            match Ingest::start(ingest.clone(), Arc::new(Metrics::default())) {
                Ok(ingest) => {
                    return Ok(AccessLog {
                        ingest,
                        dir: dir.to_owned(),
                    })
                }
                // Another command of the same writer holds the lock: wait
                // for it (it holds it for one row). The console never waits.
                Err(e) if writer == Writer::Cli && e.to_string() == held => {
                    if Instant::now() >= deadline {
                        tracing::debug!(error = %e, "access lock still held");
                        return Err(AccessError::Busy(dir.to_owned()));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    }

    /// Where the access dataset is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records `q`; resolves once the row is durable.
    pub async fn record(&self, q: &Asked) -> Result<(), AccessError> {
        self.ingest
            .submit(Batch {
                actions: vec![row(q, Utc::now())],
                violations: Vec::new(),
            })
            .await
            .map(|_| ())
            .map_err(|source| AccessError::Write {
                dir: self.dir.clone(),
                source,
            })
    }

    /// Seals what is buffered and stops the writer (blocking).
    pub fn close(&self) -> Result<(), AccessError> {
        self.ingest.shutdown().map_err(|source| AccessError::Write {
            dir: self.dir.clone(),
            source,
        })
    }
}

/// The audit row of `q`, answered at `now`.
fn row(q: &Asked, now: DateTime<Utc>) -> AuditRecord {
    let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or_default();
    let mut attributes = q.extra.clone();
    let parameters: String = q.parameters.chars().take(MAX_PARAMETERS).collect();
    attributes.insert("access.parameters".to_owned(), parameters);
    if let Some(n) = q.rows {
        attributes.insert("access.rows".to_owned(), n.to_string());
    }
    AuditRecord {
        event_id: uuid::Uuid::now_v7().to_string(),
        start_time_ns: ns(q.asked),
        end_time_ns: Some(ns(now)),
        actor_kind: ActorKind::Human,
        agent_id: None,
        agent_name: None,
        agent_credential_id: None,
        owner_id: q.viewer.clone(),
        initiator_id: None,
        task_id: None,
        action: q.question.clone(),
        target: q.subject.clone(),
        outcome: if q.ok { "ok" } else { "error" }.to_owned(),
        scopes: Vec::new(),
        consent_id: None,
        consent_token: None,
        consent_verified: false,
        consent_key_id: None,
        consent_approver: None,
        inputs_sha256: None,
        origin_id: None,
        delegation_from: None,
        delegation: None,
        service_name: q.service.to_owned(),
        service_instance_id: None,
        trace_id: None,
        span_id: None,
        attributes,
    }
}

/// The viewer a CLI command records when `--viewer` is not given: the OS
/// user the shell names (`USER`, `LOGNAME`, `USERNAME`), else the uid.
pub fn os_user() -> String {
    for var in ["USER", "LOGNAME", "USERNAME"] {
        if let Some(v) = std::env::var_os(var)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.trim().is_empty())
        {
            return v.trim().to_owned();
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid {}", m.uid());
        }
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked {
        Asked {
            viewer: "ann".into(),
            service: CLI,
            question: "cli.who".into(),
            subject: Some("event_id=x".into()),
            parameters: "who x".repeat(2000),
            asked: Utc::now(),
            ok: false,
            rows: Some(0),
            extra: BTreeMap::from([("access.error".to_owned(), "not found".to_owned())]),
        }
    }

    #[test]
    fn the_row_is_the_viewer_acting_as_a_human() {
        let r = row(&asked(), Utc::now());
        assert_eq!(r.actor_kind, ActorKind::Human);
        assert_eq!(r.owner_id, "ann");
        assert_eq!(r.agent_id, None);
        assert_eq!(r.action, "cli.who");
        assert_eq!(r.outcome, "error");
        assert_eq!(r.service_name, CLI);
        assert_eq!(r.attributes["access.rows"], "0");
        assert_eq!(r.attributes["access.error"], "not found");
        assert_eq!(r.attributes["access.parameters"].len(), MAX_PARAMETERS);
    }

    /// Two CLI writers on one directory take turns; both rows are sealed
    /// into the chain, and the console's writer works beside them.
    #[test]
    fn cli_writers_take_turns_beside_the_console() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let console = AccessLog::open(dir.path(), Writer::Console).unwrap();
        let first = AccessLog::open(dir.path(), Writer::Cli).unwrap();
        let path = dir.path().to_owned();
        let second = std::thread::spawn(move || AccessLog::open(&path, Writer::Cli));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!second.is_finished(), "the second waits for the first");
        rt.block_on(first.record(&asked())).unwrap();
        first.close().unwrap();
        drop(first);
        let second = second.join().unwrap().unwrap();
        rt.block_on(second.record(&asked())).unwrap();
        second.close().unwrap();
        console.close().unwrap();
        let report =
            audit_collector::verify::verify(dir.path(), &Default::default()).expect("verify");
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.rows, 2);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    /// A question whose access row's fsync fails is refused (the CLI and
    /// the console then show no answer), and that row is never sealed: it
    /// would claim an answer nobody saw. The next question is recorded.
    #[test]
    fn an_access_row_whose_fsync_fails_is_refused_and_never_sealed() {
        use audit_durable::powerloss::{scratch, Recorder};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = scratch();
        let rec = Recorder::start(dir.path());
        let log = AccessLog::open(dir.path(), Writer::Cli).unwrap();
        rec.fail_syncs_under("wal", 1);
        let mut refused = asked();
        refused.question = "cli.refused".into();
        match rt.block_on(log.record(&refused)) {
            Err(e @ AccessError::Write { .. }) => {
                assert!(e.to_string().contains("fsync"), "{e}")
            }
            other => panic!("recorded although its fsync failed: {other:?}"),
        }
        rt.block_on(log.record(&asked())).expect("the next row");
        log.close().unwrap();
        drop(log);
        drop(rec.finish());
        let report =
            audit_collector::verify::verify(dir.path(), &Default::default()).expect("verify");
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.rows, 1, "the refused row was sealed");
    }
}
