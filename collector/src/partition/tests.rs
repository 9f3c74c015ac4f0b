//! Tests of the partition writer and readers.
use super::write::hour_of;
use super::*;
use audit_schema::{Draft, Limits, Rules};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;

/// ns since the epoch of a UTC date and time.
fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_nano_opt(h, mi, s, ns))
        .and_then(|t| t.and_utc().timestamp_nanos_opt())
        .expect("valid time")
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        received_time_ns: 1_800_000_000_000_000_000 + seq as i64,
        seq,
    }
}

/// A record through the rules the collector applies, with no bound on
/// future times: these tests are about files, not clocks.
fn checked(draft: Draft) -> AuditRecord {
    let rules = Rules {
        limits: Limits {
            max_future_secs: i64::MAX,
            ..Limits::default()
        },
        ..Rules::default()
    };
    rules.check(draft).expect("a complete record")
}

/// An agent action with every optional field set.
fn full(seq: u64, agent: &str, owner: &str, start_ns: i64) -> (AuditRecord, Stamp) {
    let record = checked(Draft {
        event_id: Some(format!("0190c0de-0000-7000-8000-{seq:012}")),
        start_time_ns: Some(start_ns),
        end_time_ns: Some(start_ns + 1_500),
        agent_id: Some(agent.into()),
        agent_name: Some(format!("{agent} (billing bot)")),
        agent_credential_id: Some("cred_2026_11".into()),
        owner_id: Some(owner.into()),
        initiator_id: Some("usr_bob".into()),
        task_id: Some("task-9".into()),
        action: Some("payments.transfer".into()),
        target: Some("acct:4411".into()),
        scopes: vec!["payments:write".into(), "accounts:read".into()],
        consent_id: Some("consent-77".into()),
        inputs_sha256: Some("ab".repeat(32)),
        delegation: Some(audit_schema::delegation::to_json(&[
            audit_schema::Hop::human("usr_root"),
            audit_schema::Hop::agent(agent, owner),
        ])),
        delegation_from: Some("planner".into()),
        service_name: Some("billing".into()),
        service_instance_id: Some("billing-0".into()),
        trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
        span_id: Some("b7ad6b7169203331".into()),
        attributes: [("amount", "12.50"), ("currency", "EUR"), ("ünï", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Draft::default()
    });
    (record, stamp(seq))
}

/// A human action with every optional field absent.
fn bare(seq: u64, owner: &str, start_ns: i64) -> (AuditRecord, Stamp) {
    let record = checked(Draft {
        event_id: Some(format!("0190c0de-0000-7000-9000-{seq:012}")),
        start_time_ns: Some(start_ns),
        actor_kind: Some("human".into()),
        owner_id: Some(owner.into()),
        action: Some("db.drop_table".into()),
        outcome: Some("denied".into()),
        service_name: Some("ops".into()),
        ..Draft::default()
    });
    (record, stamp(seq))
}

fn violation(seq: u64, service: &str, time_ns: i64, full: bool) -> (ViolationRecord, Stamp) {
    let mut v = ViolationRecord {
        event_id: format!("0190c0de-0000-7000-a000-{seq:012}"),
        time_ns,
        detected_by: "collector".into(),
        missing: vec!["audit.owner.id".into()],
        reason: "no accountable owner".into(),
        service_name: service.into(),
        ..Default::default()
    };
    if full {
        v.missing.push("gen_ai.agent.id".into());
        v.kind = Some("unattributed".into());
        v.span_target = Some("billing::pay".into());
        v.span_name = Some("transfer".into());
        v.code_file = Some("src/pay.rs".into());
        v.code_line = Some(42);
        v.action = Some("payments.transfer".into());
        v.actor_kind = Some("robot".into());
        v.agent_id = Some("agt_7f3".into());
        v.owner_id = Some("".into());
        v.service_instance_id = Some("billing-1".into());
        v.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        v.span_id = Some("b7ad6b7169203331".into());
        v.attributes.insert("k".into(), "v".into());
    }
    (v, stamp(seq))
}

fn file_sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn reader(path: &Path) -> SerializedFileReader<File> {
    SerializedFileReader::new_with_options(File::open(path).unwrap(), bloom_read_options()).unwrap()
}

const T0: (i32, u32, u32) = (2026, 11, 28);

#[test]
fn every_audit_column_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 14, 15, 926_535_897);
    let rows = vec![
        full(10, "agt_7f3", "usr_alice", t),
        bare(11, "usr_carol", t + 1),
        full(12, "agt_00a", "usr_alice", t + 2),
    ];
    let w = PartitionWriter::new(dir.path(), "col-1");
    let sealed = w.seal_audit(rows.clone()).unwrap();
    assert_eq!(sealed.len(), 1);
    let f = &sealed[0];
    assert_eq!(f.dataset, Dataset::Audit);
    assert_eq!(
        f.path,
        Path::new("audit/date=2026-11-28/hour=03/part-col-1-00000000000000000010.parquet")
    );
    assert_eq!((f.rows, f.seq_min, f.seq_max), (3, 10, 12));
    assert_eq!((f.time_min_ns, f.time_max_ns), (t, t + 2));
    let full_path = dir.path().join(&f.path);
    assert_eq!(f.sha256, file_sha256(&full_path));
    assert_eq!(f.bytes, fs::metadata(&full_path).unwrap().len());

    let back = read_audit(dir.path()).unwrap();
    let expected: Vec<_> = rows
        .into_iter()
        .map(|(r, s)| (r, s, "col-1".to_owned()))
        .collect();
    assert_eq!(back, expected);

    // The file's schema is exactly the shared one: no date/hour inside.
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&full_path).unwrap()).unwrap();
    let want = columns::arrow_schema(columns::AUDIT);
    assert_eq!(builder.schema().fields(), want.fields());
}

#[test]
fn every_violation_column_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 23, 59, 59, 999_999_999);
    let rows = vec![
        violation(5, "billing", t, true),
        violation(6, "billing", t, false),
    ];
    let sealed = PartitionWriter::new(dir.path(), "c")
        .seal_violations(rows.clone())
        .unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].dataset, Dataset::Violations);
    assert_eq!(
        sealed[0].path,
        Path::new("violations/date=2026-11-28/hour=23/part-c-00000000000000000005.parquet")
    );
    let back = read_violations(dir.path()).unwrap();
    let expected: Vec<_> = rows.into_iter().map(|(r, s)| (r, s, "c".into())).collect();
    assert_eq!(back, expected);
    assert!(read_audit(dir.path()).unwrap().is_empty());
    let file = dir.path().join(&sealed[0].path);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap()).unwrap();
    let want = columns::arrow_schema(columns::VIOLATIONS);
    assert_eq!(builder.schema().fields(), want.fields());
}

/// The same file as a schema before `columns` would have written it: them
/// projected away, beside the original as `old.parquet`.
fn without_columns(file: &Path, columns: &[&str]) -> std::path::PathBuf {
    let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !columns.contains(&batch.schema().field(i).name().as_str()))
        .collect();
    let old = batch.project(&keep).unwrap();
    let old_file = file.with_file_name("old.parquet");
    let mut w = ArrowWriter::try_new(File::create(&old_file).unwrap(), old.schema(), None).unwrap();
    w.write(&old).unwrap();
    w.close().unwrap();
    old_file
}

/// An audit file sealed before schema v2 (no `delegation`, `origin_id`,
/// `delegation_from`) still reads: those are null, the rest as written.
#[test]
fn an_audit_file_sealed_before_schema_v2_reads_with_null_chain_columns() {
    let dir = tempfile::tempdir().unwrap();
    let row = full(5, "agt_a", "usr_alice", at(T0.0, T0.1, T0.2, 3, 0, 0, 0));
    assert!(row.0.delegation.is_some() && row.0.origin_id.is_some());
    let sealed = PartitionWriter::new(dir.path(), "c")
        .seal_audit(vec![row.clone()])
        .unwrap();
    let v2 = dir.path().join(&sealed[0].path);
    assert_eq!(
        read_audit_file(&v2).unwrap(),
        [(row.0.clone(), row.1.clone(), "c".into())]
    );
    let v1 = without_columns(&v2, &["delegation", "origin_id", "delegation_from"]);
    let (mut want, stamp) = row;
    (want.delegation, want.origin_id, want.delegation_from) = (None, None, None);
    assert_eq!(
        read_audit_file(&v1).unwrap(),
        [(want, stamp, "c".to_owned())]
    );
}

/// A file sealed before violations had a `kind` column still reads: the
/// column is null there, everything else as written.
#[test]
fn a_violations_file_sealed_before_the_kind_column_reads_with_a_null_kind() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let rows = vec![violation(5, "billing", t, true)];
    let sealed = PartitionWriter::new(dir.path(), "c")
        .seal_violations(rows.clone())
        .unwrap();
    let old_file = without_columns(&dir.path().join(&sealed[0].path), &["kind"]);
    let back = read_violations_file(&old_file).unwrap();
    let (mut want, stamp) = rows[0].clone();
    want.kind = None;
    assert_eq!(back, [(want, stamp, "c".to_owned())]);
}

#[test]
fn rows_of_two_hours_go_to_two_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let late = at(T0.0, T0.1, T0.2, 3, 59, 59, 999_999_999);
    let next = at(T0.0, T0.1, T0.2, 4, 0, 0, 0);
    let midnight = at(T0.0, T0.1, T0.2 + 1, 0, 0, 0, 1);
    // The later hour holds the smaller seq: files come back in seq order.
    let rows = vec![
        full(7, "agt_a", "usr_alice", next),
        full(8, "agt_a", "usr_alice", late),
        full(9, "agt_a", "usr_alice", midnight),
        full(10, "agt_b", "usr_alice", next),
    ];
    let sealed = PartitionWriter::new(dir.path(), "c1")
        .seal_audit(rows)
        .unwrap();
    let paths: Vec<_> = sealed.iter().map(|f| f.path.to_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "audit/date=2026-11-28/hour=04/part-c1-00000000000000000007.parquet",
            "audit/date=2026-11-28/hour=03/part-c1-00000000000000000008.parquet",
            "audit/date=2026-11-29/hour=00/part-c1-00000000000000000009.parquet",
        ]
    );
    let seqs: Vec<_> = sealed
        .iter()
        .map(|f| (f.rows, f.seq_min, f.seq_max))
        .collect();
    assert_eq!(seqs, [(2, 7, 10), (1, 8, 8), (1, 9, 9)]);
    assert_eq!((sealed[0].time_min_ns, sealed[0].time_max_ns), (next, next));
    for f in &sealed {
        let rows = read_audit_file(&dir.path().join(&f.path)).unwrap();
        assert_eq!(rows.len() as u64, f.rows);
        for (r, _, _) in rows {
            let (y, m, d, h) = hour_of(r.start_time_ns);
            let prefix = format!("audit/date={y:04}-{m:02}-{d:02}/hour={h:02}/");
            assert!(f.path.to_str().unwrap().starts_with(&prefix));
        }
    }
    assert_eq!(read_audit(dir.path()).unwrap().len(), 4);
}

#[test]
fn before_1970_partitions_by_utc_too() {
    assert_eq!(hour_of(-1), (1969, 12, 31, 23));
    assert_eq!(hour_of(0), (1970, 1, 1, 0));
}

#[cfg(unix)]
#[test]
fn files_are_read_only_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let w = PartitionWriter::new(dir.path(), "c");
    let first = w.seal_audit(vec![full(1, "agt_a", "usr_a", t)]).unwrap();
    let path = dir.path().join(&first[0].path);
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444);

    let again = w.seal_audit(vec![full(1, "agt_other", "usr_b", t)]);
    match again {
        Err(PartitionError::AlreadyExists { path: p }) => {
            assert_eq!(p, path);
            let msg = PartitionError::AlreadyExists { path: p }.to_string();
            assert!(msg.contains("part-c-00000000000000000001.parquet"), "{msg}");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A batch where only one file collides writes nothing at all.
    let mixed = w.seal_audit(vec![
        full(1, "agt_x", "usr_b", t),
        full(2, "agt_x", "usr_b", t + 3_600_000_000_000),
    ]);
    assert!(matches!(mixed, Err(PartitionError::AlreadyExists { .. })));
    assert_eq!(file_sha256(&path), first[0].sha256);
    let rows = read_audit(dir.path()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.agent_id.as_deref(), Some("agt_a"));
    // Nothing else, temp files included, was left behind.
    let part_dir = path.parent().unwrap();
    assert_eq!(fs::read_dir(part_dir).unwrap().count(), 1);
    assert_eq!(fs::read_dir(dir.path().join("audit")).unwrap().count(), 1);
}

#[test]
fn rows_inside_a_file_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 5, 0, 0, 0);
    let rows = vec![
        full(1, "agt_b", "usr_a", t + 5),
        full(2, "agt_a", "usr_b", t + 1),
        bare(3, "usr_z", t + 9),
        full(4, "agt_a", "usr_a", t + 7),
        full(5, "agt_a", "usr_a", t + 2),
        bare(6, "usr_a", t + 9),
        full(7, "agt_a", "usr_a", t + 2),
    ];
    let w = PartitionWriter::new(dir.path(), "c").with_row_group_size(3);
    let sealed = w.seal_audit(rows).unwrap();
    let path = dir.path().join(&sealed[0].path);
    let got: Vec<u64> = read_audit_file(&path)
        .unwrap()
        .iter()
        .map(|r| r.1.seq)
        .collect();
    // Humans (null agent) first, then by agent, owner, start time, seq.
    assert_eq!(got, [6, 3, 5, 7, 4, 2, 1]);
    let meta = reader(&path).metadata().clone();
    assert_eq!(meta.num_row_groups(), 3);
    let sorting = meta.row_group(0).sorting_columns().unwrap();
    let leaf = |i: i32| {
        meta.file_metadata()
            .schema_descr()
            .column(i as usize)
            .name()
            .to_owned()
    };
    let names: Vec<_> = sorting
        .iter()
        .map(|s| (leaf(s.column_idx), s.nulls_first))
        .collect();
    assert_eq!(
        names,
        [
            ("agent_id".to_owned(), true),
            ("owner_id".to_owned(), false),
            ("start_time".to_owned(), false),
            ("seq".to_owned(), false),
        ]
    );

    let t = at(T0.0, T0.1, T0.2, 6, 0, 0, 0);
    let vs = vec![
        violation(20, "zeta", t, false),
        violation(21, "alpha", t + 5, true),
        violation(22, "alpha", t + 1, false),
        violation(23, "alpha", t + 1, true),
    ];
    let sealed = w.seal_violations(vs).unwrap();
    let got: Vec<u64> = read_violations_file(&dir.path().join(&sealed[0].path))
        .unwrap()
        .iter()
        .map(|r| r.1.seq)
        .collect();
    assert_eq!(got, [22, 23, 21, 20]);
}

#[test]
fn empty_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let w = PartitionWriter::new(&root, "c");
    assert!(w.seal_audit(Vec::new()).unwrap().is_empty());
    assert!(w.seal_violations(Vec::new()).unwrap().is_empty());
    assert!(!root.exists());
    assert!(read_audit(&root).unwrap().is_empty());
    assert!(read_violations(&root).unwrap().is_empty());
}

#[test]
fn temp_files_left_behind_are_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let w = PartitionWriter::new(dir.path(), "c");
    let sealed = w.seal_audit(vec![full(1, "agt_a", "usr_a", t)]).unwrap();
    let part_dir = dir
        .path()
        .join(&sealed[0].path)
        .parent()
        .unwrap()
        .to_owned();
    // What a crash mid-seal leaves: a half-written temp file (garbage).
    fs::write(
        part_dir.join(".part-c-00000000000000000002.parquet.tmp"),
        b"PAR1 trunc",
    )
    .unwrap();
    fs::write(
        part_dir.join("part-c-00000000000000000003.parquet.tmp"),
        b"junk",
    )
    .unwrap();
    fs::write(part_dir.join("notes.txt"), b"junk").unwrap();
    assert_eq!(read_audit(dir.path()).unwrap().len(), 1);
    assert_eq!(data_files(dir.path(), Dataset::Audit).unwrap().len(), 1);
    // And a stale temp file with the next seq's name does not block its seal.
    let next = w.seal_audit(vec![full(2, "agt_a", "usr_a", t)]).unwrap();
    assert_eq!(next[0].seq_min, 2);
    assert_eq!(read_audit(dir.path()).unwrap().len(), 2);
    assert!(!part_dir
        .join(".part-c-00000000000000000002.parquet.tmp")
        .exists());
}

#[test]
fn files_are_zstd_with_a_bloom_filter_on_event_id_and_no_dictionary_on_ids_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let rows: Vec<_> = (1..=5)
        .map(|s| full(s, "agt_a", "usr_a", t + s as i64))
        .collect();
    let ids: Vec<_> = rows.iter().map(|r| r.0.event_id.clone()).collect();
    let w = PartitionWriter::new(dir.path(), "c").with_row_group_size(2);
    let sealed = w.seal_audit(rows).unwrap();
    let file = reader(&dir.path().join(&sealed[0].path));
    let meta = file.metadata();
    assert_eq!(meta.num_row_groups(), 3);
    let schema = meta.file_metadata().schema_descr();
    let event_id = (0..schema.num_columns())
        .find(|&i| schema.column(i).path().string() == "event_id")
        .unwrap();
    let owner_id = (0..schema.num_columns())
        .find(|&i| schema.column(i).path().string() == "owner_id")
        .unwrap();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            assert!(
                matches!(c.compression(), Compression::ZSTD(_)),
                "{} is {:?}",
                c.column_path(),
                c.compression()
            );
            assert!(
                c.statistics().is_some(),
                "{} has no statistics",
                c.column_path()
            );
            assert!(
                c.column_index_offset().is_some(),
                "{} has no page index",
                c.column_path()
            );
        }
        assert!(rg.column(event_id).bloom_filter_offset().is_some());
        assert!(rg.column(owner_id).bloom_filter_offset().is_none());
        // Ids and times are plain (a reader decompresses only the pages
        // of the rows it wants); repeating values keep their dictionary.
        for c in rg.columns() {
            let unique = [
                "event_id",
                "start_time",
                "end_time",
                "trace_id",
                "span_id",
                "seq",
            ]
            .contains(&c.column_path().string().as_str());
            let repeating =
                ["agent_id", "owner_id", "action"].contains(&c.column_path().string().as_str());
            if unique {
                assert!(
                    c.dictionary_page_offset().is_none(),
                    "{} has a dictionary",
                    c.column_path()
                );
            }
            if repeating {
                assert!(
                    c.dictionary_page_offset().is_some(),
                    "{} has no dictionary",
                    c.column_path()
                );
            }
        }
        let bloom = file
            .get_row_group(g)
            .unwrap()
            .get_column_bloom_filter(event_id)
            .cloned()
            .expect("bloom filter on event_id");
        let first = &ids[g * 2];
        assert!(bloom.check(first.as_str()));
    }
    assert!(meta.file_metadata().key_value_metadata().is_some());
}

#[test]
fn bad_collector_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    for id in ["", "../x", ".hidden", "a/b"] {
        let err = PartitionWriter::new(dir.path(), id)
            .seal_audit(vec![full(1, "a", "o", t)])
            .unwrap_err();
        assert!(
            matches!(err, PartitionError::InvalidCollectorId { .. }),
            "{id}: {err}"
        );
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit/date=2026-11-28/hour=03");
    fs::create_dir_all(&p).unwrap();
    fs::write(
        p.join("part-c-00000000000000000001.parquet"),
        b"not parquet",
    )
    .unwrap();
    let err = read_audit(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("part-c-00000000000000000001.parquet"),
        "{err}"
    );
}

#[test]
fn files_written_before_the_added_columns_read_them_as_null_and_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let w = PartitionWriter::new(dir.path(), "col-1");
    let f = w
        .seal_audit(vec![full(1, "agt_7f3", "usr_alice", t)])
        .unwrap();
    // The same file as the first version wrote it: without the columns.
    let path = dir.path().join(&f[0].path);
    let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            !audit_schema::record::AUDIT_ADDED.contains(&batch.schema().field(i).name().as_str())
        })
        .collect();
    let old = batch.project(&keep).unwrap();
    rewrite(&path, &old);
    let (r, _, _) = &read_audit(dir.path()).unwrap()[0];
    assert_eq!(r.consent_id.as_deref(), Some("consent-77"));
    assert_eq!(
        (r.consent_verified, r.consent_key_id.as_deref()),
        (false, None)
    );
    // A column that was always there is still required.
    let keep: Vec<usize> = (1..old.num_columns()).collect();
    rewrite(&path, &old.project(&keep).unwrap());
    assert!(
        read_audit(dir.path()).is_err(),
        "event_id missing is an error"
    );
}

/// Replaces the file at `path` with one holding `batch`.
fn rewrite(path: &Path, batch: &arrow_array::RecordBatch) {
    fs::remove_file(path).unwrap();
    let file = File::create(path).unwrap();
    let mut out = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    out.write(batch).unwrap();
    out.close().unwrap();
}

/// Pages are cut at `PAGE_ROWS` rows even where a page would stay under
/// the writer's byte limit: a reader that found a few rows through the
/// page index decompresses only their pages, not a megabyte per column.
#[test]
fn data_pages_hold_at_most_page_rows_rows() {
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    let dir = tempfile::tempdir().unwrap();
    let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
    let n = 3 * super::write::PAGE_ROWS + 100;
    let rows: Vec<_> = (1..=n as u64)
        .map(|s| full(s, "agt_a", "usr_a", t + s as i64))
        .collect();
    let sealed = PartitionWriter::new(dir.path(), "c")
        .seal_audit(rows)
        .unwrap();
    let file = SerializedFileReader::new_with_options(
        File::open(dir.path().join(&sealed[0].path)).unwrap(),
        ReadOptionsBuilder::new().with_page_index().build(),
    )
    .unwrap();
    let meta = file.metadata();
    assert_eq!(meta.num_row_groups(), 1);
    let schema = meta.file_metadata().schema_descr();
    let offsets = &meta.offset_index().expect("an offset index")[0];
    for column in ["event_id", "start_time", "target"] {
        let c = (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == column)
            .unwrap();
        let firsts: Vec<i64> = offsets[c]
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .chain([n as i64])
            .collect();
        let largest = firsts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            largest <= super::write::PAGE_ROWS as i64,
            "{column}: a page of {largest} rows ({} pages for {n} rows)",
            firsts.len() - 1
        );
    }
}
