//! What the unsealed buffer costs per row, counted by the allocator. The
//! collector holds up to `seal_rows` unsealed rows, which made the decoded
//! records (a `String` per field) most of its resident memory; the buffer
//! keeps them in Arrow columns instead, and a seal writes one row group at a
//! time. This test keeps both from regressing silently. One test in this
//! binary, so that no other thread allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use audit_collector::dedup::Dedup;
use audit_collector::partition::{read_audit, PartitionWriter, Unsealed};
use audit_schema::{AuditRecord, Draft, Rules, Stamp};

/// Bytes requested and not yet freed, their peak, and live allocations.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
            BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// glibc malloc's header and rounding per block, on top of what was asked.
const BLOCK_OVERHEAD: usize = 16;

const ROWS: usize = 50_000;
const ROW_GROUP: usize = 8_192;
/// 2026-11-28T03:00:00Z: every row in one hour partition.
const T0: i64 = 1_795_834_800_000_000_000;

/// Resident bytes of what `f` builds and keeps: asked for, plus each live
/// block's overhead.
fn held<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (bytes, blocks) = (LIVE.load(Relaxed), BLOCKS.load(Relaxed));
    let value = f();
    let grown = LIVE.load(Relaxed).saturating_sub(bytes);
    let new_blocks = BLOCKS.load(Relaxed).saturating_sub(blocks);
    (value, grown + new_blocks * BLOCK_OVERHEAD)
}

/// A record like the benchmarks' load generator sends.
fn record(n: usize) -> AuditRecord {
    let agent = n % 97;
    let draft = Draft {
        event_id: Some(format!("0193c1a2-7f00-7000-8000-{n:012}")),
        start_time_ns: Some(T0 + n as i64),
        end_time_ns: Some(T0 + n as i64 + 1_500_000),
        agent_id: Some(format!("agt_{agent:03}")),
        agent_name: Some(format!("worker-{agent}")),
        agent_credential_id: Some(format!("key_{agent:03}_2026")),
        owner_id: Some(format!("usr_{:02}", agent % 13)),
        task_id: Some(format!("tsk_{}", n / 100)),
        action: Some(["files.read", "invoices.approve", "users.update"][n % 3].into()),
        target: Some(format!("obj_{}", n % 5000)),
        scopes: vec!["files:read".into()],
        service_name: Some("loadgen".into()),
        service_instance_id: Some("run-1".into()),
        trace_id: Some(format!("{:032x}", (n as u128) << 64 | 0xabcdef)),
        span_id: Some(format!("{:016x}", n + 1)),
        ..Draft::default()
    };
    Rules::default()
        .check(draft)
        .expect("every generated record names its agent and owner")
}

fn stamp(n: usize) -> Stamp {
    Stamp {
        received_time_ns: T0 + 1_000 + n as i64,
        seq: n as u64 + 1,
    }
}

#[test]
fn unsealed_rows_cost_a_few_hundred_bytes_and_a_seal_adds_less_than_the_buffer() {
    let (records, as_records) =
        held(|| (0..ROWS).map(|n| (record(n), stamp(n))).collect::<Vec<_>>());
    let (buffer, as_columns) = held(|| {
        let mut b = Unsealed::default();
        for (r, s) in &records {
            b.push(r, s.clone());
        }
        b
    });
    let (ids, as_ids) = held(|| {
        let mut d = Dedup::new(Duration::from_secs(3600), 0);
        for (r, _) in &records {
            d.insert(r.event_id.clone());
        }
        d
    });
    drop(records);
    eprintln!(
        "per row: {} B as decoded records, {} B in columns, {} B as an unsealed id for dedup",
        as_records / ROWS,
        as_columns / ROWS,
        as_ids / ROWS
    );
    assert_eq!(buffer.len(), ROWS);
    assert_eq!(ids.pending(), ROWS);
    // About 300 B of values, offsets and validity per row, plus what the
    // builders reserved ahead (they grow by doubling).
    assert!(
        as_columns / ROWS <= 450,
        "the columnar buffer grew to {} B per row",
        as_columns / ROWS
    );
    assert!(
        as_columns * 2 <= as_records,
        "columns ({as_columns} B) are not half of the records ({as_records} B)"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let sealed = PartitionWriter::new(dir.path(), "col-1")
        .with_row_group_size(ROW_GROUP)
        .seal(buffer)
        .expect("seal");
    let extra = PEAK.load(Relaxed) - before;
    eprintln!(
        "seal of {ROWS} rows in row groups of {ROW_GROUP}: peak {} B above the buffer",
        extra
    );
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].rows, ROWS as u64);
    // Before, a seal copied every row into columns and then into arrays:
    // more than twice the records again. Now: the sort order, a slice of
    // sorted rows and the writer's encoded row group (a third of the
    // buffer here, and the same for a larger buffer).
    assert!(
        extra * 2 < as_columns,
        "sealing took {extra} B beyond a buffer of {as_columns} B"
    );
    let back = read_audit(dir.path()).expect("read back");
    assert_eq!(back.len(), ROWS);
    assert_eq!(back[0].0, record(0));
}
