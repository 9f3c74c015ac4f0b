//! Who looked: every question asked through the console is an access row,
//! written through the collector's own durable path (WAL, fsync, sealed
//! Parquet, hash-chained manifest) into a dataset of its own, before the
//! answer is sent. A question whose access row cannot be made durable is
//! not answered. `verify --data-dir ACCESS_DIR` covers the dataset like
//! any other; the "Who looked" view reads it with the same engine.
//!
//! An access row is an audit row: the viewer is the human who acted
//! (`actor_kind = human`, `owner_id` = viewer), the question is the action
//! (`console.find`, `console.timeline.csv`, …), its subject the target (an
//! event id, an agent, an owner), and `attributes` hold the parameters as
//! asked (`console.query`), the rows returned (`console.rows`) and the
//! HTTP status (`console.status`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use audit_collector::config::Config;
use audit_collector::ingest::{Batch, Ingest, IngestError};
use audit_collector::metrics::Metrics;
use audit_schema::{ActorKind, AuditRecord};
use chrono::{DateTime, Utc};

use crate::ConsoleError;

/// The service name of access rows.
pub const SERVICE: &str = "audit-console";
/// Access rows are sealed this often, so that the "Who looked" view (which
/// reads sealed files) is at most this far behind.
const SEAL_INTERVAL: Duration = Duration::from_secs(5);
/// Longest query string kept in an access row.
const MAX_QUERY: usize = 4096;

/// Rows an answer returned, set by each view on its response.
#[derive(Clone, Copy, Debug)]
pub struct Rows(pub u64);

/// The access dataset's writer.
#[derive(Debug)]
pub struct AccessLog {
    ingest: Ingest,
    dir: PathBuf,
}

/// One question, as the access row records it.
pub struct Question<'a> {
    /// The viewer.
    pub viewer: &'a str,
    /// The view's path (`/find`).
    pub path: &'a str,
    /// The query string as sent.
    pub query: &'a str,
    /// When the question arrived.
    pub asked: DateTime<Utc>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// Rows returned, when the view counts them.
    pub rows: Option<u64>,
}

impl AccessLog {
    /// Opens (recovering what a previous run left) the access dataset in
    /// `dir`, with a collector id of its own kept there.
    pub fn open(dir: &Path) -> Result<AccessLog, ConsoleError> {
        let cfg = Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        };
        let id = cfg
            .resolve_collector_id()
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        let mut ingest = cfg
            .ingest(&id)
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        ingest.seal_interval = SEAL_INTERVAL;
        let ingest = Ingest::start(ingest, Arc::new(Metrics::default()))
            .map_err(|e| ConsoleError::Access(e.to_string()))?;
        Ok(AccessLog {
            ingest,
            dir: dir.to_owned(),
        })
    }

    /// Where the access dataset is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records `q`; resolves once the row is durable.
    pub async fn record(&self, q: &Question<'_>) -> Result<(), IngestError> {
        let now = Utc::now();
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or_default();
        let mut attributes = BTreeMap::new();
        let query: String = q.query.chars().take(MAX_QUERY).collect();
        attributes.insert("console.query".to_owned(), query);
        attributes.insert("console.status".to_owned(), q.status.to_string());
        if let Some(n) = q.rows {
            attributes.insert("console.rows".to_owned(), n.to_string());
        }
        let record = AuditRecord {
            event_id: uuid::Uuid::now_v7().to_string(),
            start_time_ns: ns(q.asked),
            end_time_ns: Some(ns(now)),
            actor_kind: ActorKind::Human,
            agent_id: None,
            agent_name: None,
            agent_credential_id: None,
            owner_id: q.viewer.to_owned(),
            initiator_id: None,
            task_id: None,
            action: format!(
                "console.{}",
                q.path.trim_start_matches('/').replace('/', ".")
            ),
            target: subject(q.query),
            outcome: if q.status < 400 { "ok" } else { "error" }.to_owned(),
            scopes: Vec::new(),
            consent_id: None,
            inputs_sha256: None,
            delegation: None,
            origin_id: None,
            delegation_from: None,
            service_name: SERVICE.to_owned(),
            service_instance_id: None,
            trace_id: None,
            span_id: None,
            attributes,
        };
        self.ingest
            .submit(Batch {
                actions: vec![record],
                violations: Vec::new(),
            })
            .await
            .map(|_| ())
    }

    /// Seals what is buffered and stops the writer (blocking).
    pub fn close(&self) -> Result<(), IngestError> {
        self.ingest.shutdown()
    }
}

/// What a question was about: its event id, agent or owner, as `key=value`.
fn subject(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    ["event_id", "agent", "owner"].iter().find_map(|k| {
        pairs
            .iter()
            .find(|(name, v)| name == k && !v.trim().is_empty())
            .map(|(name, v)| format!("{name}={}", v.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_the_event_id_or_the_agent_or_the_owner() {
        assert_eq!(
            subject("event_id=019a&x=1").as_deref(),
            Some("event_id=019a")
        );
        assert_eq!(
            subject("from=a&owner=usr%20x&agent=").as_deref(),
            Some("owner=usr x")
        );
        assert_eq!(subject("from=2026-12-04"), None);
    }
}
