//! A large generated `audit` dataset for the answerability benchmark
//! (`benches/answer.sh`), written with the collector's own
//! `PartitionWriter` (same layout, sort order, bloom filter, statistics)
//! and a valid hash-chained manifest, so `verify` and `prove-human` work.
//!
//! ```text
//! cargo run --release --example gen_dataset -- DIR [ROWS] [HOURS] [FILES_PER_HOUR]
//! ```
//! Defaults: 10,000,000 rows over 48 hours from 2026-11-01T00:00Z, 4 files
//! per hour (192 files), 1,000 agents for 200 owners, each agent's
//! credential rotating every day, 1% human actions. Prints one JSON line
//! with a sample event id, agent and one-hour window for the benchmark.

use std::path::PathBuf;

use anyhow::Context;
use audit_collector::manifest::{self, Body, FileEntry, Manifest};
use audit_collector::partition::{PartitionWriter, SealedFile};
use audit_schema::{AuditRecord, Draft, Limits, Rules, Stamp};

const START_NS: i64 = 1_793_491_200_000_000_000; // 2026-11-01T00:00:00Z
const HOUR_NS: i64 = 3_600_000_000_000;
const AGENTS: u64 = 1_000;
const OWNERS: u64 = 200;
const ACTIONS: [&str; 8] = [
    "invoices.read",
    "invoices.update",
    "payments.transfer",
    "users.read",
    "users.update_role",
    "reports.read",
    "refunds.approve",
    "accounts.read",
];
const COLLECTOR: &str = "gen-1";

/// Row `i`'s time: rows are spread evenly, so each hour holds a contiguous
/// range of them.
fn time_of(i: u64, rows: u64, hours: u64) -> i64 {
    let span = i128::from(hours) * i128::from(HOUR_NS);
    START_NS + (i128::from(i) * span / i128::from(rows)) as i64
}

/// A UUIDv7-shaped id: the time's milliseconds up front (as a real one),
/// the row number in the random bits, so ids are unique and reproducible.
fn event_id(t_ns: i64, i: u64) -> String {
    let ms = (t_ns / 1_000_000) as u64;
    format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        (i >> 52) & 0xfff,
        (i >> 40) & 0xfff,
        i & 0xffff_ffff_ffff
    )
}

fn row(i: u64, rows: u64, hours: u64) -> (AuditRecord, Stamp) {
    let t = time_of(i, rows, hours);
    // A cheap scramble so consecutive rows come from different agents.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let human = h.is_multiple_of(100);
    let agent = h % AGENTS;
    let owner = format!("usr_{:03}", agent % OWNERS);
    let day = (t - START_NS) / (24 * HOUR_NS);
    let action = ACTIONS[(h / AGENTS % ACTIONS.len() as u64) as usize];
    let draft = Draft {
        event_id: Some(event_id(t, i)),
        start_time_ns: Some(t),
        end_time_ns: Some(t + 1_500_000),
        actor_kind: Some(if human { "human" } else { "agent" }.to_owned()),
        agent_id: (!human).then(|| format!("agt_{agent:04}")),
        agent_name: (!human).then(|| format!("bot-{}", agent % 50)),
        agent_credential_id: (!human).then(|| format!("key_{agent:04}_d{day}")),
        owner_id: Some(owner.clone()),
        initiator_id: Some(owner),
        task_id: Some(format!("tsk_{}", i / 64)),
        action: Some(action.to_owned()),
        target: Some(format!("obj_{}", h % 100_000)),
        outcome: Some(if h.is_multiple_of(97) { "denied" } else { "ok" }.to_owned()),
        scopes: vec![format!("{}:rw", action.split('.').next().unwrap_or("x"))],
        consent_id: action.starts_with("payments").then(|| format!("cns_{i}")),
        service_name: Some(format!("svc-{}", agent % 8)),
        service_instance_id: Some("gen-1".to_owned()),
        ..Draft::default()
    };
    // The dataset may reach past the clock: only the time bound is relaxed.
    let rules = Rules {
        limits: Limits {
            max_future_secs: i64::MAX,
            ..Limits::default()
        },
        ..Rules::default()
    };
    let record = rules
        .check(draft)
        .expect("every generated row is attributed");
    let stamp = Stamp {
        received_time_ns: t + 5_000_000,
        seq: i + 1,
    };
    (record, stamp)
}

fn file_entry(f: &SealedFile) -> FileEntry {
    FileEntry {
        path: f.path.to_string_lossy().replace('\\', "/"),
        sha256: f.sha256.clone(),
        rows: f.rows,
        seq_min: f.seq_min,
        seq_max: f.seq_max,
        time_min_ns: f.time_min_ns,
        time_max_ns: f.time_max_ns,
        bytes: f.bytes,
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: gen_dataset DIR [ROWS] [HOURS] [FILES_PER_HOUR]")?,
    );
    let mut num = |d: u64| -> anyhow::Result<u64> {
        args.next().map_or(Ok(d), |s| s.parse().context("a number"))
    };
    let (rows, hours, per_hour) = (num(10_000_000)?, num(48)?, num(4)?);
    anyhow::ensure!(
        rows > 0 && hours > 0 && per_hour > 0,
        "all counts must be positive"
    );
    anyhow::ensure!(
        !manifest::manifest_path(&dir, COLLECTOR).exists(),
        "{} already holds a generated dataset",
        dir.display()
    );
    let chunks = hours * per_hour;
    let chunk_rows = rows.div_ceil(chunks);
    let writer = PartitionWriter::new(&dir, COLLECTOR);
    let started = std::time::Instant::now();
    // Two workers (the CI machine has two cores), each sealing every other
    // chunk; the manifest is appended afterwards in seq order.
    let sealed: Vec<(u64, u64, Vec<SealedFile>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let writer = writer.clone();
                s.spawn(
                    move || -> anyhow::Result<Vec<(u64, u64, Vec<SealedFile>)>> {
                        let mut out = Vec::new();
                        for c in (w..chunks).step_by(2) {
                            let (lo, hi) = (c * chunk_rows, ((c + 1) * chunk_rows).min(rows));
                            if lo >= hi {
                                continue;
                            }
                            let batch: Vec<_> = (lo..hi).map(|i| row(i, rows, hours)).collect();
                            out.push((lo + 1, hi, writer.seal_audit(batch)?));
                        }
                        Ok(out)
                    },
                )
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??);
        }
        anyhow::Ok(all)
    })?;
    let mut sealed = sealed;
    sealed.sort_by_key(|(first, _, _)| *first);
    let mut m = Manifest::open(&manifest::manifest_path(&dir, COLLECTOR))?;
    let mut files = 0;
    for (seq_first, seq_last, fs) in &sealed {
        files += fs.len();
        m.append(
            audit_collector::now_ns(),
            Body::Seal {
                seq_first: *seq_first,
                seq_last: *seq_last,
                files: fs.iter().map(file_entry).collect(),
            },
        )?;
    }
    let sample = rows / 2;
    let (rec, _) = row(sample, rows, hours);
    let hour_start = START_NS + (rec.start_time_ns - START_NS) / HOUR_NS * HOUR_NS;
    let iso = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339();
    eprintln!(
        "wrote {rows} rows in {files} files under {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "files": files,
            "event_id": rec.event_id,
            "agent": rec.agent_id.unwrap_or_else(|| "agt_0000".into()),
            "from": iso(hour_start),
            "to": iso(hour_start + HOUR_NS),
        })
    );
    Ok(())
}
