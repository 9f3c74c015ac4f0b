use std::time::Duration;

use audit_schema::{Stamp, ViolationRecord};

use super::*;
use crate::partition::PartitionWriter;

const HOUR: i64 = 3_600_000_000_000;

fn id(i: u64) -> String {
    format!("0190c0de-0000-7000-a000-{i:012}")
}

/// Reads files under `root` as the store would, counting each read in
/// `reads`.
fn counting_reader<'a>(
    root: &'a Path,
    reads: &'a std::cell::Cell<usize>,
) -> impl Fn(&str) -> Result<Bytes, String> + 'a {
    move |rel| {
        reads.set(reads.get() + 1);
        std::fs::read(root.join(rel))
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

/// Seals violations with ids `ids` into `root`, as the writer would,
/// telling `dedup` at `now`.
fn seal(root: &Path, dedup: &mut Dedup, ids: &[u64], now: i64) {
    let rows: Vec<(ViolationRecord, Stamp)> = ids
        .iter()
        .map(|&i| {
            dedup.insert(id(i));
            let v = ViolationRecord {
                event_id: id(i),
                time_ns: 1_764_300_000_000_000_000,
                detected_by: "layer".into(),
                service_name: "svc".into(),
                ..Default::default()
            };
            let stamp = Stamp {
                received_time_ns: now,
                seq: i + 1,
            };
            (v, stamp)
        })
        .collect();
    let files = PartitionWriter::new(root, "c1")
        .seal_violations(rows)
        .unwrap();
    dedup.begin_seal();
    dedup.sealed(
        now,
        files
            .iter()
            .map(|f| f.path.to_string_lossy().replace('\\', "/")),
    );
}

#[test]
fn a_resend_hours_later_is_found_in_the_sealed_file_until_the_window_ends() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let reads = std::cell::Cell::new(0);
    let read = counting_reader(&root, &reads);
    // A budget of one byte: the cache keeps only the file read last.
    let mut d = Dedup::new(Duration::from_secs(24 * 3600), 1);
    let t0 = 1_800_000_000 * 1_000_000_000;
    seal(&root, &mut d, &(0..1000).step_by(2).collect::<Vec<_>>(), t0);
    seal(&root, &mut d, &(2000..2500).collect::<Vec<_>>(), t0 + HOUR);
    assert_eq!((d.pending(), d.files()), (0, 2), "ids left memory at seal");

    let now = t0 + 5 * HOUR;
    d.prune(now);
    assert!(
        d.contains(&id(500), &read),
        "sealed 5 h ago, still a duplicate"
    );
    assert!(d.contains(&id(2499), &read));
    assert!(
        !d.contains(&id(501), &read),
        "inside the range, never stored"
    );
    assert!(!d.contains(&id(9999), &read), "after every range");
    let before = reads.get();
    assert!(!d.contains(&id(99_999), &read));
    assert_eq!(reads.get(), before, "an id after every range reads nothing");

    d.insert(id(501));
    assert!(d.contains(&id(501), &read), "acknowledged, not sealed");
    d.forget(&id(501));
    assert!(!d.contains(&id(501), &read), "withdrawn");

    d.prune(t0 + 24 * HOUR + 1);
    assert_eq!(d.files(), 1, "the first file left the window");
    assert!(!d.contains(&id(500), &read));
    assert!(d.contains(&id(2000), &read));
}

#[test]
fn an_unreadable_file_stores_the_record_rather_than_drop_it() {
    let mut d = Dedup::new(Duration::from_secs(3600), DEFAULT_CACHE_BYTES);
    d.add_file(0, "violations/gone.parquet".into(), &[id(1), id(9)]);
    let read = |_: &str| -> Result<Bytes, String> { Err("gone".into()) };
    assert!(!d.contains(&id(5), &read));
}

#[test]
fn new_ids_inside_overlapping_ranges_read_each_file_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let reads = std::cell::Cell::new(0);
    let read = counting_reader(&root, &reads);
    let mut d = Dedup::new(Duration::from_secs(24 * 3600), DEFAULT_CACHE_BYTES);
    let t0 = 1_800_000_000 * 1_000_000_000;
    // Two clients' ids interleaved: each file's range covers the other's.
    seal(&root, &mut d, &(0..4000).step_by(2).collect::<Vec<_>>(), t0);
    seal(&root, &mut d, &(1..4000).step_by(2).collect::<Vec<_>>(), t0);
    // New ids sorting inside both ranges: every one is checked against
    // both files' bloom filters, and some of them are a "maybe".
    let fresh: Vec<String> = (0..4000).map(|i| format!("{}x", id(i))).collect();
    for f in &fresh {
        assert!(!d.contains(f, &read), "{f} was never stored");
    }
    // Each file: once for its bloom filters, once for its id hashes.
    assert!(
        reads.get() <= 4,
        "{} file reads for 4000 new ids",
        reads.get()
    );
    assert!(d.contains(&id(3998), &read) && d.contains(&id(3999), &read));
}

/// A seal runs beside ingest: the ids acknowledged meanwhile are not
/// part of it and stay exact after it; a failed seal's ids are pending
/// again.
#[test]
fn ids_acknowledged_while_a_seal_runs_stay_exact_after_it() {
    let mut d = Dedup::new(Duration::from_secs(3600), 1 << 20);
    let no_files = |rel: &str| -> Result<Bytes, String> { Err(format!("{rel}: none")) };
    d.insert("a".into());
    d.begin_seal();
    d.insert("b".into());
    assert!(d.contains("a", &no_files) && d.contains("b", &no_files));
    d.seal_failed();
    assert_eq!(d.pending(), 2);
    d.begin_seal();
    d.insert("c".into());
    d.sealed(1, Vec::<String>::new());
    assert_eq!(d.pending(), 1, "only the sealed rows' ids left memory");
    assert!(d.contains("c", &no_files));
    assert!(!d.contains("a", &no_files));
}
