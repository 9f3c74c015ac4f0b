//! `prove-human EVENT_ID`: the evidence that a human acted and no agent was
//! involved. Three checks, all required:
//!
//! 1. `row`: the row states `actor_kind = 'human'` with `agent_id` null
//!    (a stated fact: the collector never infers a human).
//! 2. `file`: the sealed file holding it is listed in a seal entry of its
//!    collector's manifest, the chain of that manifest verifies up to its
//!    head, the file was not deleted by retention, its SHA-256 on disk
//!    matches the seal entry, and it does contain this event id.
//! 3. `violations`: no violation that could be this action was recorded
//!    within the window around the action (`[start - w, end + w]`): one of
//!    the same trace, task, target or owner, or of the same callsite (the
//!    action's name as action or span name, in the same service). They are
//!    named; the service's other violations in the window are counted as
//!    information, not held against an unrelated action.
//! 4. `coverage` (added by the command, from the manifests): the collector
//!    was listening throughout that window, so "no violation" means none
//!    was sent, not that nobody was there to receive one.

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::who::{self, RowFacts};
use super::{partition_range, quote, ts_literal, Engine, QueryError};
use audit_collector::manifest::{Body, Entry, GENESIS};
use audit_collector::partition;
use audit_collector::store::{chain, put, Location};

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `row`, `file` or `violations`.
    pub check: &'static str,
    /// Whether it holds.
    pub pass: bool,
    /// What was seen.
    pub detail: String,
}

/// The whole proof.
#[derive(Clone, Debug, Serialize)]
pub struct Proof {
    /// The event asked about.
    pub event_id: String,
    /// True only when every check passes.
    pub human: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The window the violations check covered, ns (start, end).
    #[serde(skip)]
    pub window_ns: (i64, i64),
}

impl Proof {
    /// Adds the coverage check: a window in which nothing was listening
    /// overlaps the violations window, so "no violation" there proves
    /// nothing; `uncovered` lists those windows (empty: the check passes).
    pub fn check_coverage(&mut self, uncovered: Vec<String>) {
        let pass = uncovered.is_empty();
        let detail = if pass {
            "the collector was listening throughout the violations window".to_owned()
        } else {
            uncovered.join("; ")
        };
        self.checks.push(Check {
            check: "coverage",
            pass,
            detail,
        });
        self.human &= pass;
    }
}

/// The violations that could be the action of `r`, in the window (also
/// in `docs/analysts.md`): same trace, task, target or owner, or the same
/// callsite (its action as action or span name, in its service).
pub fn related_violations_sql(r: &RowFacts, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut same = Vec::new();
    for (col, v) in [
        ("trace_id", r.trace_id.as_deref()),
        ("task_id", r.task_id.as_deref()),
        ("target", r.target.as_deref()),
        ("owner_id", Some(r.owner_id.as_str())),
    ] {
        if let Some(v) = v {
            same.push(format!("{col} = {}", quote(v)));
        }
    }
    same.push(format!(
        "(service_name = {} AND (action = {a} OR span_name = {a}))",
        quote(&r.service_name),
        a = quote(&r.action)
    ));
    format!(
        "SELECT event_id, service_name, reason, trace_id, task_id, target, owner_id, action, span_name\nFROM violations\nWHERE time >= {}\n  AND time <= {}\n  AND {}\n  AND ({})\nORDER BY time, event_id",
        ts_literal(from),
        ts_literal(to),
        partition_range(from, to),
        same.join("\n    OR ")
    )
}

/// The count of the service's violations in the window, and how many of
/// them were side doors (kind `ungated`), shown beside the check as
/// information.
pub fn violations_sql(service: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "SELECT count(*) AS violations, count(CASE WHEN kind = 'ungated' THEN 1 END) AS ungated\nFROM violations\nWHERE service_name = {}\n  AND time >= {}\n  AND time <= {}\n  AND {}",
        quote(service),
        ts_literal(from),
        ts_literal(to),
        partition_range(from, to)
    )
}

/// Runs the three checks. An unknown event id is an error, not a failed proof.
pub async fn prove_human(
    engine: &Engine,
    event_id: &str,
    window: Duration,
) -> Result<Proof, QueryError> {
    // Every file: a second row with this id anywhere fails the proof.
    let answer = who::lookup(engine, event_id, who::Scope::Everywhere).await?;
    let mut checks = Vec::new();
    if answer.rows.len() != 1 {
        // The collector deduplicates by event id; two rows is itself a finding.
        checks.push(Check {
            check: "row",
            pass: false,
            detail: format!(
                "{} rows carry this event_id; expected one",
                answer.rows.len()
            ),
        });
    }
    let r = &answer.rows[0];
    checks.push(row_check(r));
    checks.push(file_check(engine.location(), event_id, r).await);
    let (from, to) = violations_window(r, window);
    checks.push(violations_check(engine, r, from, to).await?);
    let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
    Ok(Proof {
        event_id: event_id.to_owned(),
        human: checks.iter().all(|c| c.pass),
        checks,
        window_ns: (ns(from), ns(to)),
    })
}

fn row_check(r: &RowFacts) -> Check {
    let pass = r.actor_kind == "human" && r.agent_id.is_none();
    Check {
        check: "row",
        pass,
        detail: format!(
            "actor_kind = {:?}, agent_id = {}, owner_id = {:?}{}",
            r.actor_kind,
            r.agent_id
                .as_deref()
                .map_or_else(|| "null".to_owned(), |a| format!("{a:?}")),
            r.owner_id,
            who::consent_clause(r)
        ),
    }
}

/// The `file` check alone: the row's sealed file is listed by an intact
/// chain, not deleted, unchanged (SHA-256) and holds the event id. The
/// console's proof panel shows it for every row, human or not.
pub async fn file_check(location: &Location, event_id: &str, r: &RowFacts) -> Check {
    let fail = |detail: String| Check {
        check: "file",
        pass: false,
        detail,
    };
    let entries = match chain::entries(location, &r.collector_id).await {
        Ok(e) => e,
        Err(e) => return fail(format!("manifest: {e}")),
    };
    if let Some(i) = chain_break(&entries) {
        return fail(format!(
            "manifest of collector {}: chain broken at entry {i}",
            r.collector_id
        ));
    }
    let Some(loc) = who::locate_in(&entries, r) else {
        return fail(format!(
            "no seal entry of the manifest of collector {} lists a file holding seq {}",
            r.collector_id, r.seq
        ));
    };
    let path = &loc.file.path;
    let deleted = entries
        .iter()
        .any(|e| matches!(&e.body, Body::Delete { file, .. } if &file.path == path));
    if deleted {
        return fail(format!("{path}: deleted by retention"));
    }
    // Read once: the digest and the event ids come from the same bytes,
    // wherever they are kept.
    let bytes = match put::read(location.store.as_ref(), &location.path(path)).await {
        Ok(bytes) => bytes,
        Err(e) => return fail(format!("{path}: {e}")),
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != loc.file.sha256 {
        return fail(format!(
            "{path}: sha256 {sha}, seal entry {} says {}",
            loc.entry, loc.file.sha256
        ));
    }
    match partition::read_event_ids_bytes(bytes, std::path::Path::new(path)) {
        Ok(ids) if ids.iter().any(|i| i == event_id) => Check {
            check: "file",
            pass: true,
            detail: format!(
                "{path}: sha256 matches seal entry {} of an intact chain of {} entries",
                loc.entry,
                entries.len()
            ),
        },
        Ok(_) => fail(format!("{path}: does not contain this event id")),
        Err(e) => fail(e.to_string()),
    }
}

/// The first entry at which a chain does not hold, as `verify` checks it
/// entry by entry (position, link to the previous entry, the entry's own
/// hash); `None` when it holds to its head.
pub fn chain_break(entries: &[Entry]) -> Option<usize> {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        if e.index != i as u64 || e.prev != prev || e.compute_hash() != e.hash {
            return Some(i);
        }
        prev = &e.hash;
    }
    None
}

/// `[start - w, end + w]` around the action.
fn violations_window(r: &RowFacts, window: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        r.start - window,
        r.end.unwrap_or(r.start).max(r.start) + window,
    )
}

async fn violations_check(
    engine: &Engine,
    r: &RowFacts,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Check, QueryError> {
    let batches = engine
        .sql(&violations_sql(&r.service_name, from, to))
        .await?;
    let (mut in_service, mut ungated) = (0i64, 0i64);
    for b in &batches {
        let sum = |i: usize| -> Result<i64, QueryError> {
            let c = cast(b.column(i), &DataType::Int64)?;
            Ok(c.as_primitive::<Int64Type>().iter().flatten().sum::<i64>())
        };
        in_service += sum(0)?;
        ungated += sum(1)?;
    }
    let mut related = Vec::new();
    for b in engine.sql(&related_violations_sql(r, from, to)).await? {
        for i in 0..b.num_rows() {
            let cell = |c: &str| text(&b, c, i);
            let on: Vec<&str> = [
                ("trace", "trace_id", r.trace_id.as_deref()),
                ("task", "task_id", r.task_id.as_deref()),
                ("target", "target", r.target.as_deref()),
                ("owner", "owner_id", Some(r.owner_id.as_str())),
            ]
            .into_iter()
            .filter(|(_, col, v)| v.is_some() && cell(col).as_deref() == *v)
            .map(|(name, _, _)| name)
            .chain(
                (cell("service_name").as_deref() == Some(r.service_name.as_str())
                    && [cell("action"), cell("span_name")]
                        .iter()
                        .any(|a| a.as_deref() == Some(r.action.as_str())))
                .then_some("callsite"),
            )
            .collect();
            related.push(format!(
                "{} (same {}: {})",
                cell("event_id").unwrap_or_default(),
                on.join(", "),
                cell("reason").unwrap_or_default()
            ));
        }
    }
    let window = format!("between {} and {}", from.to_rfc3339(), to.to_rfc3339());
    let service = format!(
        "{in_service} violation(s) in service {:?} in the window (information); \
         ungated effects in this service and window: {ungated}",
        r.service_name
    );
    let detail = if related.is_empty() {
        format!("no violation could be this action (same trace, task, target, owner or callsite) {window}; {service}")
    } else {
        format!(
            "{} violation(s) could be this action {window}: {}; {service}",
            related.len(),
            related.join("; ")
        )
    };
    Ok(Check {
        check: "violations",
        pass: related.is_empty(),
        detail,
    })
}

/// A string cell, whatever string type the scan chose.
fn text(b: &datafusion::arrow::array::RecordBatch, col: &str, i: usize) -> Option<String> {
    use datafusion::arrow::array::Array;
    let c = cast(b.column_by_name(col)?, &DataType::Utf8).ok()?;
    let s = c.as_string::<i32>();
    (!s.is_null(i)).then(|| s.value(i).to_owned())
}
