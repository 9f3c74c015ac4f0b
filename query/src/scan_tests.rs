//! The direct reader against the SQL it replaces, on the same files: any
//! difference in what the commands would print fails.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use audit_collector::partition::PartitionWriter;
use audit_collector::store::Location;
use audit_schema::{AuditRecord, Draft, Rules, Stamp};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;

use crate::activity::{self, Range, Subject};
use crate::output::{self, Format};
use crate::who::tests::store;
use crate::{who, Engine, QueryError};

const MIN_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MIN_NS;
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200_000_000_000;

/// A UUIDv7 whose time is `ns` (to the millisecond), `n` in its random bits.
fn v7(ns: i64, n: u16) -> String {
    let ms = u64::try_from(ns / 1_000_000).expect("after 1970");
    let [a, b] = n.to_be_bytes();
    uuid::Builder::from_unix_timestamp_millis(ms, &[a, b, 0, 0, 0, 0, 0, 0, 0, 1])
        .into_uuid()
        .to_string()
}

fn row(
    event_id: &str,
    start: i64,
    agent: Option<&str>,
    owner: &str,
    action: &str,
    target: &str,
) -> AuditRecord {
    let draft = Draft {
        event_id: Some(event_id.to_owned()),
        start_time_ns: Some(start),
        end_time_ns: Some(start + 1_000),
        actor_kind: Some(if agent.is_some() { "agent" } else { "human" }.into()),
        agent_id: agent.map(str::to_owned),
        agent_credential_id: agent.map(|a| format!("cred_{a}")),
        owner_id: Some(owner.to_owned()),
        action: Some(action.to_owned()),
        target: Some(target.to_owned()),
        service_name: Some("svc".into()),
        ..Draft::default()
    };
    Rules::default().check(draft).expect("a complete action")
}

/// Rows of three agents of two owners over four hours, some exactly on an
/// hour boundary or a nanosecond before one, identity rows about an agent
/// done by someone else and one by the agent itself, human rows, and rows
/// with a delegation chain.
fn rows(collector: u16, offset: i64) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    for i in 0..120i64 {
        let start = T0 + offset + i * 2 * MIN_NS + i64::from(collector);
        let agent = ["agt_1", "agt_2", "agt_3"][(i % 3) as usize];
        let owner = if agent == "agt_3" { "usr_b" } else { "usr_a" };
        let id = v7(start, collector * 1000 + i as u16);
        let mut r = match i % 10 {
            0 => row(&id, start, None, "usr_a", "users.read", "acct_1"),
            1 => row(
                &id,
                start,
                Some("agt_9"),
                "usr_b",
                "identity.revoke",
                "agt_1",
            ),
            2 => row(
                &id,
                start,
                Some("agt_9"),
                "usr_b",
                "identityxrevoke",
                "agt_1",
            ),
            // An identity row the agent wrote about itself: matched by
            // both halves of the SQL's union, listed once.
            3 => row(
                &id,
                start,
                Some("agt_1"),
                "usr_a",
                "identity.credential.rotate",
                "agt_1",
            ),
            _ => row(&id, start, Some(agent), owner, "db.read", "acct_2"),
        };
        if i % 7 == 0 && r.agent_id.is_some() {
            r.origin_id = Some("usr_c".into());
            r.delegation = Some(r#"[{"kind":"human","id":"usr_c"}]"#.into());
        }
        out.push(r);
    }
    for (k, at) in [2 * HOUR_NS, 2 * HOUR_NS - 1, 3 * HOUR_NS]
        .into_iter()
        .enumerate()
    {
        let start = T0 + offset + at;
        out.push(row(
            &v7(start, 60_000 + collector * 10 + k as u16),
            start,
            Some("agt_1"),
            "usr_a",
            "db.write",
            "acct_3",
        ));
    }
    out
}

/// Writes `rows` as files of the first schema (every column added since
/// projected away), in row groups of 5 rows, with no manifest.
fn store_v1(dir: &Path, id: &str, rows: Vec<AuditRecord>) {
    let stamped = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let stamp = Stamp {
                received_time_ns: r.start_time_ns,
                seq: i as u64 + 1,
            };
            (r, stamp)
        })
        .collect();
    let sealed = PartitionWriter::new(dir, id)
        .with_row_group_size(5)
        .seal_audit(stamped)
        .expect("sealed");
    for file in sealed {
        let path = dir.join(&file.path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        let schema = batches[0].schema();
        let v1: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| {
                !audit_schema::record::AUDIT_ADDED.contains(&schema.field(i).name().as_str())
            })
            .collect();
        std::fs::remove_file(&path).unwrap();
        let projected = Arc::new(schema.project(&v1).unwrap());
        let props = datafusion::parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(5))
            // Pages of two rows: the page index has something to skip.
            .set_data_page_row_count_limit(2)
            .set_write_batch_size(1)
            .build();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), projected, Some(props)).unwrap();
        for b in &batches {
            w.write(&b.project(&v1).unwrap()).unwrap();
        }
        w.close().unwrap();
    }
}

/// A dataset of three collectors: `c1` and `c2` through the ingest path
/// (`c2` holding a copy of one of `c1`'s ids, 9 minutes later), `v1` in
/// files of the first schema.
fn dataset() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c2 = rows(2, 17 * MIN_NS);
    let dup = rows(1, 0)[4].event_id.clone();
    c2[0].event_id = dup.clone();
    store(dir.path(), "c1", rows(1, 0));
    store(dir.path(), "c2", c2);
    store_v1(dir.path(), "v1", rows(3, 33 * MIN_NS));
    (dir, dup)
}

fn printed(
    format: Format,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    b: &[datafusion::arrow::record_batch::RecordBatch],
) -> String {
    let mut out = Vec::new();
    output::write(&mut out, format, schema, b).unwrap();
    String::from_utf8(out).unwrap()
}

/// Both readers' `who` answers as JSON objects, sorted: the SQL has no
/// `ORDER BY`, so two rows with one id come in any order.
fn who_rows(a: &who::Answer) -> Vec<String> {
    let schema = a.batches[0].schema();
    let json = printed(Format::Json, &schema, &a.batches);
    let v: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let mut rows: Vec<String> = v.iter().map(ToString::to_string).collect();
    rows.sort();
    rows
}

#[test]
fn who_answers_as_the_sql_does() {
    let (dir, dup) = dataset();
    let location = Location::local(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(Engine::open(location.clone())).unwrap();
    let all = rt
        .block_on(engine.sql("SELECT event_id FROM audit"))
        .unwrap();
    let mut ids: Vec<String> = Vec::new();
    for b in &all {
        let c = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let s = datafusion::arrow::array::AsArray::as_string::<i32>(&c);
        ids.extend(s.iter().flatten().map(str::to_owned));
    }
    assert_eq!(ids.len(), 3 * 123, "every row stored");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3 * 123 - 1, "one id is stored twice");
    // Every third id (the SQL is slow in a debug build), and the duplicate.
    let mut ids: Vec<String> = ids.iter().step_by(3).cloned().collect();
    ids.extend([
        dup.clone(),
        "01a1998e-4400-7000-8000-ffffffffffff".to_owned(), // v7, stored nowhere
        "not-a-uuid".to_owned(),
        v7(T0 + HOUR_NS, 65_535), // v7 in the data's hours, stored nowhere
    ]);
    let mut found = 0;
    for id in &ids {
        let sql = rt.block_on(who::who(&engine, id));
        let direct = rt.block_on(who::who_direct(&location, dir.path(), id));
        match (sql, direct) {
            (Ok(s), Ok(d)) => {
                found += 1;
                assert_eq!(who_rows(&s), who_rows(&d), "{id}");
                if s.rows.len() == 1 {
                    for f in [Format::Json, Format::Csv, Format::Table] {
                        let schema = s.batches[0].schema();
                        assert_eq!(
                            printed(f, &schema, &s.batches),
                            printed(f, &d.batches[0].schema(), &d.batches),
                            "{id} {f:?}"
                        );
                    }
                }
            }
            (Err(QueryError::NotFound(_)), Err(QueryError::NotFound(_))) => {}
            (s, d) => panic!("{id}: SQL {:?}, direct {:?}", s.err(), d.err()),
        }
    }
    assert_eq!(found, ids.len() - 3, "every stored id found, by both");
    let both = rt
        .block_on(who::who_direct(&location, dir.path(), &dup))
        .unwrap();
    assert_eq!(
        both.rows.len(),
        2,
        "the duplicate an hour later is in the located hours"
    );
}

#[test]
fn activity_answers_as_the_sql_does() {
    let (dir, _) = dataset();
    let location = Location::local(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(Engine::open(location)).unwrap();
    let at = |ns: i64| chrono::DateTime::from_timestamp_nanos(T0 + ns);
    let windows = [
        (0, HOUR_NS),
        (HOUR_NS, 2 * HOUR_NS),
        (HOUR_NS, 2 * HOUR_NS - 1),
        (HOUR_NS + 1, 2 * HOUR_NS + 1),
        (2 * HOUR_NS - 1, 2 * HOUR_NS),
        (30 * MIN_NS, 3 * HOUR_NS + 30 * MIN_NS),
        (-24 * HOUR_NS, 24 * HOUR_NS),
        (5 * HOUR_NS, 6 * HOUR_NS),
    ];
    let subjects = [
        Subject::Agent("agt_1".into()),
        Subject::Agent("agt_3".into()),
        Subject::Agent("agt_none".into()),
        Subject::Owner("usr_a".into()),
        Subject::Owner("usr_b".into()),
        Subject::Origin("usr_c".into()),
        Subject::Origin("usr_a".into()),
    ];
    let mut rows = 0;
    for (from, to) in windows {
        let range = Range {
            from: at(from),
            to: at(to),
        };
        for who in &subjects {
            let (s_schema, s) = rt
                .block_on(activity::activity(&engine, who, range))
                .unwrap();
            let (d_schema, d) = activity::activity_direct(dir.path(), who, range).unwrap();
            for f in [Format::Json, Format::Csv, Format::Table] {
                assert_eq!(
                    printed(f, &s_schema, &s),
                    printed(f, &d_schema, &d),
                    "{who:?} {from}..{to} {f:?}"
                );
            }
            let mut fitted = (Vec::new(), Vec::new());
            output::write_fitted(&mut fitted.0, &s, activity::TABLE, activity::TABLE_WIDTH)
                .unwrap();
            output::write_fitted(&mut fitted.1, &d, activity::TABLE, activity::TABLE_WIDTH)
                .unwrap();
            assert_eq!(fitted.0, fitted.1, "{who:?} {from}..{to}");
            rows += d.iter().map(|b| b.num_rows()).sum::<usize>();
        }
    }
    assert!(rows > 500, "the windows hold rows to compare: {rows}");
}
