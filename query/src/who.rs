//! `who EVENT_ID`: human or AI, which agent with which credential, the
//! accountable human, provenance, authorization, outcome, and where the row
//! is kept.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, UInt64Type};

use super::engine::audit_table_schema;
use super::{partition_range, partitions, quote, scan, Engine, QueryError};
use audit_collector::manifest::{Body, Entry, FileEntry};
use audit_collector::store::{chain, Location};

/// The columns `who` shows, in order.
pub const COLUMNS: &str = "event_id, actor_kind, agent_id, agent_name, agent_credential_id, \
owner_id, initiator_id, task_id, action, target, outcome, scopes, consent_id, \
consent_verified, consent_key_id, consent_approver, \
inputs_sha256, start_time, end_time, service_name, service_instance_id, trace_id, \
span_id, received_time, collector_id, seq, origin_id, delegation_from, delegation";

/// The SQL `who` runs (and `docs/analysts.md` shows). The bloom filter on
/// `event_id` and the column statistics decide which row groups are read.
pub fn sql(event_id: &str) -> String {
    format!(
        "SELECT {COLUMNS}\nFROM audit\nWHERE event_id = {}",
        quote(event_id)
    )
}

/// The answer: the row(s) found (more than one would mean a duplicate),
/// each with the sealed file that holds it.
pub struct Answer {
    /// The rows, as the SQL returned them plus a `file` column.
    pub batches: Vec<RecordBatch>,
    /// One per row, in order.
    pub rows: Vec<RowFacts>,
}

/// The typed facts of one row that the commands reason about.
#[derive(Clone, Debug)]
pub struct RowFacts {
    /// `actor_kind`.
    pub actor_kind: String,
    /// `agent_id`.
    pub agent_id: Option<String>,
    /// `agent_name`.
    pub agent_name: Option<String>,
    /// `agent_credential_id`.
    pub credential: Option<String>,
    /// `owner_id`.
    pub owner_id: String,
    /// `service_name`.
    pub service_name: String,
    /// `task_id`.
    pub task_id: Option<String>,
    /// `action`.
    pub action: String,
    /// `target`.
    pub target: Option<String>,
    /// `trace_id`.
    pub trace_id: Option<String>,
    /// `consent_id`.
    pub consent_id: Option<String>,
    /// `consent_verified`: the collector checked the consent token.
    pub consent_verified: bool,
    /// `consent_key_id`: the key that verified it.
    pub consent_key_id: Option<String>,
    /// `consent_approver`: the human who approved (the token's `sub`).
    pub consent_approver: Option<String>,
    /// `delegation`, the chain as stored (JSON); `None` for single-hop rows.
    pub delegation: Option<String>,
    /// `origin_id`.
    pub origin_id: Option<String>,
    /// `delegation_from`: the service that sent the chain.
    pub delegation_from: Option<String>,
    /// `start_time`.
    pub start: DateTime<Utc>,
    /// `end_time`, when the span recorded one.
    pub end: Option<DateTime<Utc>>,
    /// `collector_id`.
    pub collector_id: String,
    /// `seq`.
    pub seq: u64,
    /// The sealed file holding the row, per its collector's manifest.
    pub file: Option<Located>,
}

/// A file found in a manifest.
#[derive(Clone, Debug)]
pub struct Located {
    /// The seal entry's file record.
    pub file: FileEntry,
    /// Index of the seal entry in the chain.
    pub entry: u64,
}

/// How far from a UUIDv7 event id's own time its row is looked for first.
/// Rows are partitioned by `start_time`, which comes from the same client
/// clock as the id: the layer makes the id as the action starts (a gate)
/// or as its span closes, so the row's hour is the id's hour or one before
/// it, whatever the client's skew to the collector. An hour either side
/// keeps the first look to at most three hour partitions.
pub const LOCATED_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// The time range whose hour partitions a UUIDv7 event id's row is looked
/// for in first; `None` for any other id (a caller may supply its own).
pub fn located_range(event_id: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let id = uuid::Uuid::try_parse(event_id).ok()?;
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let t = DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)?;
    Some((
        t.checked_sub_signed(LOCATED_WINDOW)?,
        t.checked_add_signed(LOCATED_WINDOW)?,
    ))
}

/// [`sql`] restricted to the hour partitions of `range` (see
/// [`located_range`]): only those directories are listed and only their
/// files' footers read.
pub fn located_sql(event_id: &str, (from, to): (DateTime<Utc>, DateTime<Utc>)) -> String {
    format!("{}\n  AND {}", sql(event_id), partition_range(from, to))
}

/// Where [`who`] looks for the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A UUIDv7 id's hours first ([`located_sql`]); every file only when
    /// they hold no row with the id (or the id is not a UUIDv7). A second
    /// row with the same id outside those hours is not looked for.
    Located,
    /// Every file, always ([`sql`]): every row with the id, wherever it
    /// is, so that a duplicate is always seen (`prove-human`).
    Everywhere,
}

/// Runs [`sql`] (first [`located_sql`], as `scope` says) and locates each
/// row's file.
pub async fn who(engine: &Engine, event_id: &str) -> Result<Answer, QueryError> {
    lookup(engine, event_id, Scope::Located).await
}

/// [`who`], looking where `scope` says.
pub async fn lookup(engine: &Engine, event_id: &str, scope: Scope) -> Result<Answer, QueryError> {
    let located = match (scope, located_range(event_id)) {
        (Scope::Located, Some(range)) => engine.sql(&located_sql(event_id, range)).await?,
        _ => Vec::new(),
    };
    let batches = if has_rows(&located) {
        located
    } else {
        engine.sql(&sql(event_id)).await?
    };
    answer(engine.location(), event_id, batches).await
}

/// [`who`] over a local dataset (the directory `root`, at `location`)
/// by the direct reader ([`crate::scan`]): the same look, the same answer,
/// no SQL planned.
pub async fn who_direct(
    location: &Location,
    root: &Path,
    event_id: &str,
) -> Result<Answer, QueryError> {
    let audit = partitions::Audit::new(root);
    let schema = scan::result_schema(&audit_table_schema(), COLUMNS)?;
    let q = scan::Question::EventId(event_id.to_owned());
    let located = match located_range(event_id) {
        Some((from, to)) => scan::read(&audit.hours(from, to)?, &q, &schema)?,
        None => Vec::new(),
    };
    let batches = if has_rows(&located) {
        located
    } else {
        scan::read(&audit.all()?, &q, &schema)?
    };
    answer(location, event_id, batches).await
}

fn has_rows(batches: &[RecordBatch]) -> bool {
    batches.iter().any(|b| b.num_rows() > 0)
}

/// The rows found, each with the sealed file that holds it.
async fn answer(
    location: &Location,
    event_id: &str,
    batches: Vec<RecordBatch>,
) -> Result<Answer, QueryError> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for b in batches {
        let mut files = Vec::new();
        for i in 0..b.num_rows() {
            let mut facts = facts(&b, i)?;
            facts.file = locate(location, &facts).await?;
            files.push(facts.file.as_ref().map(|l| l.file.path.clone()));
            rows.push(facts);
        }
        let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("file", DataType::Utf8, true)));
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(StringArray::from(files)));
        out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?);
    }
    if rows.is_empty() {
        return Err(QueryError::NotFound(event_id.to_owned()));
    }
    Ok(Answer { batches: out, rows })
}

/// A one-line statement of human or AI (and of the consent, if any), for
/// the table output.
pub fn headline(r: &RowFacts) -> String {
    let actor = match (r.actor_kind.as_str(), &r.agent_id) {
        ("human", None) => format!(
            "HUMAN: {} acted themselves (actor_kind = human, no agent id)",
            r.owner_id
        ),
        ("agent", Some(a)) => format!(
            "AI: agent {a}{} with credential {}, accountable human {}",
            r.agent_name
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            r.credential.as_deref().unwrap_or("(none stated)"),
            r.owner_id
        ),
        (kind, agent) => format!(
            "INCONSISTENT: actor_kind {kind:?} with agent_id {agent:?} (the collector never writes this)"
        ),
    };
    format!("{actor}{}", consent_clause(r))
}

/// `; consent … verified by key …, approved by …` (or not verified), or
/// nothing for a row without consent.
pub fn consent_clause(r: &RowFacts) -> String {
    match (&r.consent_id, r.consent_verified) {
        (None, _) => String::new(),
        (Some(id), true) => format!(
            "; consent {id} verified by key {}, approved by {}",
            r.consent_key_id.as_deref().unwrap_or("?"),
            r.consent_approver.as_deref().unwrap_or("?")
        ),
        (Some(id), false) => format!("; consent {id} NOT verified (no consent keys configured)"),
    }
}

/// The delegation chain as one line, origin first, with who supplied it;
/// `None` for a single-hop row (all v1 rows).
pub fn chain_line(r: &RowFacts) -> Option<String> {
    let json = r.delegation.as_deref()?;
    let Ok(hops) = audit_schema::delegation::parse(json) else {
        return Some(format!("CHAIN (unreadable, as stored): {json}"));
    };
    let hops: Vec<String> = hops
        .iter()
        .map(|h| {
            let mut parts = vec![h.kind.as_str().to_owned()];
            parts.extend(h.owner_id.as_ref().map(|o| format!("owner {o}")));
            parts.extend(h.credential_id.as_ref().map(|c| format!("credential {c}")));
            parts.extend(h.scopes.as_ref().map(|s| format!("scopes {}", s.join(","))));
            format!("{} ({})", h.id, parts.join(", "))
        })
        .collect();
    let claimed = match &r.delegation_from {
        Some(from) => format!(", as claimed by service {from}"),
        None => String::new(),
    };
    Some(format!(
        "CHAIN (origin {}{claimed}): {}",
        r.origin_id.as_deref().unwrap_or("not a human"),
        hops.join(" -> ")
    ))
}

fn col_str(b: &RecordBatch, name: &str, row: usize) -> Result<Option<String>, QueryError> {
    let c = b.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!("column {name} missing"))
    })?;
    // Whatever string representation the scan chose (Utf8, Utf8View, dictionary).
    let c = cast(c, &DataType::Utf8)?;
    let s = c.as_string::<i32>();
    Ok((!s.is_null(row)).then(|| s.value(row).to_owned()))
}

fn col_time(b: &RecordBatch, name: &str, row: usize) -> Result<Option<DateTime<Utc>>, QueryError> {
    let c = b.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!("column {name} missing"))
    })?;
    let c = cast(c, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
    let t = c.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
    Ok((!t.is_null(row)).then(|| DateTime::from_timestamp_nanos(t.value(row))))
}

/// Reads the facts of row `i` of a result that has `who`'s columns.
pub fn facts(b: &RecordBatch, i: usize) -> Result<RowFacts, QueryError> {
    let seq_col = b
        .column_by_name("seq")
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("column seq missing".into()))?;
    let seq = cast(seq_col, &DataType::UInt64)?;
    let missing = |c: &str| datafusion::error::DataFusionError::Internal(format!("{c} is null"));
    Ok(RowFacts {
        actor_kind: col_str(b, "actor_kind", i)?.unwrap_or_default(),
        agent_id: col_str(b, "agent_id", i)?,
        agent_name: col_str(b, "agent_name", i)?,
        credential: col_str(b, "agent_credential_id", i)?,
        owner_id: col_str(b, "owner_id", i)?.unwrap_or_default(),
        service_name: col_str(b, "service_name", i)?.unwrap_or_default(),
        task_id: col_str(b, "task_id", i)?,
        action: col_str(b, "action", i)?.unwrap_or_default(),
        target: col_str(b, "target", i)?,
        trace_id: col_str(b, "trace_id", i)?,
        consent_id: col_str(b, "consent_id", i)?,
        consent_verified: col_str(b, "consent_verified", i)?.as_deref() == Some("true"),
        consent_key_id: col_str(b, "consent_key_id", i)?,
        consent_approver: col_str(b, "consent_approver", i)?,
        delegation: col_str(b, "delegation", i)?,
        origin_id: col_str(b, "origin_id", i)?,
        delegation_from: col_str(b, "delegation_from", i)?,
        start: col_time(b, "start_time", i)?.ok_or_else(|| missing("start_time"))?,
        end: col_time(b, "end_time", i)?,
        collector_id: col_str(b, "collector_id", i)?.unwrap_or_default(),
        seq: seq.as_primitive::<UInt64Type>().value(i),
        file: None,
    })
}

/// Finds, in the row's collector's manifest, the sealed audit file that
/// covers its `seq` in the partition of its `start_time` (the writer puts a
/// row in the hour of its event time, and names files after their smallest
/// seq). Returns the seal entry too; `None` when no seal lists such a file.
pub async fn locate(location: &Location, r: &RowFacts) -> Result<Option<Located>, QueryError> {
    let entries = chain::entries(location, &r.collector_id).await?;
    Ok(locate_in(&entries, r))
}

/// [`locate`] over entries already read.
pub fn locate_in(entries: &[Entry], r: &RowFacts) -> Option<Located> {
    let prefix = format!(
        "audit/date={}/hour={}/part-{}-",
        r.start.format("%Y-%m-%d"),
        r.start.format("%H"),
        r.collector_id
    );
    entries.iter().find_map(|e| match &e.body {
        Body::Seal { files, .. } => files
            .iter()
            .find(|f| f.path.starts_with(&prefix) && f.seq_min <= r.seq && r.seq <= f.seq_max)
            .map(|f| Located {
                file: f.clone(),
                entry: e.index,
            }),
        _ => None,
    })
}

#[cfg(test)]
#[path = "who_tests.rs"]
pub(crate) mod tests;
