//! `who`'s located lookup: a UUIDv7 id's hours first, every file when they
//! do not hold the row. Whatever the id, a stored row is never answered
//! "no rows".

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_collector::config::Config;
use audit_collector::ingest::{Batch, Ingest};
use audit_collector::metrics::Metrics;
use audit_collector::store::Location;
use audit_schema::{AuditRecord, Draft, Rules};

use super::*;

const HOUR_NS: i64 = 3_600_000_000_000;
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200_000_000_000;

/// A UUIDv7 whose time is `ns` (to the millisecond), `n` in its random bits.
fn v7(ns: i64, n: u8) -> String {
    let ms = u64::try_from(ns / 1_000_000).expect("after 1970");
    uuid::Builder::from_unix_timestamp_millis(ms, &[n; 10])
        .into_uuid()
        .to_string()
}

fn action(event_id: &str, start_ns: i64) -> AuditRecord {
    let draft = Draft {
        event_id: Some(event_id.to_owned()),
        start_time_ns: Some(start_ns),
        agent_id: Some("agt_1".into()),
        owner_id: Some("usr_1".into()),
        action: Some("db.read".into()),
        service_name: Some("svc".into()),
        ..Draft::default()
    };
    Rules::default().check(draft).expect("a complete action")
}

/// Writes `rows` through collector `id`'s own ingest path (WAL, seal,
/// manifest) into `dir`.
pub(crate) fn store(dir: &Path, id: &str, rows: Vec<AuditRecord>) {
    let cfg = Config {
        data_dir: dir.to_owned(),
        collector_id: Some(id.to_owned()),
        ..Config::default()
    };
    let mut ingest = cfg.ingest(id).expect("ingest settings");
    ingest.digest_interval = Duration::MAX;
    let ingest = Ingest::start(ingest, Arc::new(Metrics::default())).expect("ingest starts");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(ingest.submit(Batch {
        actions: rows,
        violations: Vec::new(),
    }))
    .expect("durable");
    ingest.shutdown().expect("sealed");
}

fn ids(a: &Answer) -> Vec<(String, i64)> {
    a.rows
        .iter()
        .map(|r| {
            (
                r.collector_id.clone(),
                r.start.timestamp_nanos_opt().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_v7_id_locates_its_hours_and_nothing_else_does() {
    let t = T0 + 90 * 60_000_000_000; // 01:30
    let (from, to) = located_range(&v7(t, 1)).expect("a v7 id is located");
    assert_eq!(from.timestamp_nanos_opt(), Some(t - HOUR_NS));
    assert_eq!(to.timestamp_nanos_opt(), Some(t + HOUR_NS));
    let sql = located_sql(&v7(t, 1), (from, to));
    assert!(sql.starts_with(&super::sql(&v7(t, 1))), "{sql}");
    assert!(
        sql.contains("date = DATE '2026-11-01' AND hour >= '00'")
            && sql.contains("date = DATE '2026-11-01' AND hour <= '02'"),
        "{sql}"
    );
    for other in [
        "3f1c0a2e-5b7d-4c1e-9a2b-0c4d5e6f7a8b", // v4
        "019a0000-0000-6000-8000-000000000001", // v6: a time, but not v7's
        "order-42",
        "",
    ] {
        assert_eq!(located_range(other), None, "{other}");
    }
}

/// Rows whose id says nothing about their hour (its time three days off,
/// not a v7, not a UUID) are found by the full scan; a v7 id in its hour
/// by the located look; an id stored nowhere is "not found" after both.
#[test]
fn every_stored_row_is_found_whatever_its_id_says() {
    let dir = tempfile::tempdir().unwrap();
    let in_hour = v7(T0 + 30 * 60_000_000_000, 1);
    let far = v7(T0 + 30 * 60_000_000_000, 2); // its row is three days earlier
    let far_start = T0 - 72 * HOUR_NS;
    let v4 = "3f1c0a2e-5b7d-4c1e-9a2b-0c4d5e6f7a8b";
    let plain = "order-42";
    store(
        dir.path(),
        "c1",
        vec![
            action(&in_hour, T0 + 30 * 60_000_000_000),
            action(&far, far_start),
            action(v4, T0 + 5 * HOUR_NS),
            action(plain, T0 + 9 * HOUR_NS),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::open(Location::local(dir.path()).unwrap()))
        .unwrap();
    for (id, start) in [
        (in_hour.as_str(), T0 + 30 * 60_000_000_000),
        (far.as_str(), far_start),
        (v4, T0 + 5 * HOUR_NS),
        (plain, T0 + 9 * HOUR_NS),
    ] {
        let a = rt
            .block_on(who(&engine, id))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(ids(&a), vec![("c1".to_owned(), start)], "{id}");
        let file = a.rows[0].file.as_ref().expect("its sealed file");
        assert!(file.file.path.starts_with("audit/date="), "{id}");
    }
    let missing = v7(T0 + 30 * 60_000_000_000, 3);
    for scope in [Scope::Located, Scope::Everywhere] {
        assert!(
            matches!(
                rt.block_on(lookup(&engine, &missing, scope)),
                Err(QueryError::NotFound(id)) if id == missing
            ),
            "{scope:?}"
        );
    }
}

/// Two collectors each kept a row with the same id, days apart: the
/// located look answers with the one in the id's hours, the look
/// everywhere (what `prove-human` uses) with both.
#[test]
fn a_duplicate_outside_the_located_hours_is_seen_only_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let t = T0 + 10 * HOUR_NS;
    let id = v7(t, 4);
    store(dir.path(), "c1", vec![action(&id, t)]);
    store(dir.path(), "c2", vec![action(&id, t + 120 * HOUR_NS)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::open(Location::local(dir.path()).unwrap()))
        .unwrap();
    let located = rt.block_on(lookup(&engine, &id, Scope::Located)).unwrap();
    assert_eq!(ids(&located), vec![("c1".to_owned(), t)]);
    let mut everywhere = ids(&rt
        .block_on(lookup(&engine, &id, Scope::Everywhere))
        .unwrap());
    everywhere.sort();
    assert_eq!(
        everywhere,
        vec![("c1".to_owned(), t), ("c2".to_owned(), t + 120 * HOUR_NS)]
    );
}
