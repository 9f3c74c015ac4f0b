//! The collector's metrics, exposed in Prometheus' text format on `/metrics`.
//!
//! Plain counters and gauges are fields declared once in `metrics!`;
//! the few metrics with a label (refusals and throttling, by reason) and the
//! fsync latency histogram are fields of their own types below. Label
//! values are `&'static str` chosen by the code, never taken from a
//! request, so their number is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const PREFIX: &str = "audit_collector_";

macro_rules! metrics {
    (
        counters { $($c:ident: $ch:literal,)* }
        gauges { $($g:ident: $gh:literal,)* }
    ) => {
        /// Counters, gauges and histograms, shared by the receivers and the
        /// ingest thread.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $ch] pub $c: AtomicU64,)*
            $(#[doc = $gh] pub $g: AtomicU64,)*
            /// Log records refused, by reason.
            pub records_refused: Labeled,
            /// Requests answered with a retryable error (HTTP 429/503,
            /// gRPC `UNAVAILABLE`/`RESOURCE_EXHAUSTED`), by reason.
            pub requests_throttled: Labeled,
            /// Time one WAL fsync (group commit) takes.
            pub wal_fsync_seconds: Histogram,
        }

        impl Metrics {
            /// Everything in Prometheus' text exposition format (0.0.4).
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(scalar(&mut out, stringify!($c), $ch, "counter", self.$c.load(Ordering::Relaxed));)*
                $(scalar(&mut out, stringify!($g), $gh, "gauge", self.$g.load(Ordering::Relaxed));)*
                self.records_refused.render(
                    &mut out,
                    "records_refused_total",
                    "Log records refused (partial_success), by reason.",
                );
                self.requests_throttled.render(
                    &mut out,
                    "requests_throttled_total",
                    "Requests answered with a retryable error telling the client to back off, by reason.",
                );
                self.wal_fsync_seconds.render(
                    &mut out,
                    "wal_fsync_seconds",
                    "Latency of WAL fsyncs (one per group commit).",
                );
                out
            }
        }
    };
}

metrics! {
    counters {
        requests_total: "OTLP export requests received.",
        records_received_total: "Log records received.",
        actions_stored_total: "Audit rows made durable (WAL fsynced).",
        violations_stored_total: "Violation rows made durable, from clients and from the collector's own checks.",
        duplicates_total: "Records dropped as duplicates of an already stored event_id.",
        unauthenticated_total: "Requests refused for a missing or unknown bearer token.",
        tls_handshake_failures_total: "Connections dropped in the TLS handshake (no, unknown, expired or revoked client certificate; plaintext; timeout).",
        tls_reloads_total: "TLS files reloaded (changed files, or SIGHUP): new handshakes use them.",
        tls_reload_failures_total: "TLS reloads refused (unreadable or unusable files); the previous certificates stay in use.",
        tokens_reloads_total: "Tokens file reloaded (changed file, or SIGHUP): later requests are checked against the new tokens.",
        tokens_reload_failures_total: "Tokens file reloads refused (unreadable, malformed or empty file); the previous tokens stay in use.",
        consent_keys_reloads_total: "Consent keys file reloaded (changed file, or SIGHUP): later records are verified with the new keys.",
        consent_keys_reload_failures_total: "Consent keys file reloads refused (unreadable, or not a JWK Set of Ed25519 keys); the previous keys stay in use.",
        overloaded_total: "Requests answered with a retryable overload error (write queue or buffer full).",
        shed_total: "Requests refused at once because max_in_flight_requests were being served.",
        connections_refused_total: "Connections to the OTLP listeners closed at once because max_connections were open.",
        header_read_timeouts_total: "Connections closed because a request's head (HTTP, idle keep-alive included) or the HTTP/2 preface (gRPC) did not arrive within header_read_timeout_secs.",
        storage_errors_total: "Requests answered with a retryable storage error.",
        wal_fsyncs_total: "WAL group commits (one fsync each).",
        wal_bytes_total: "Bytes appended to the WAL (frames with their headers).",
        sealed_files_total: "Parquet files sealed.",
        sealed_rows_total: "Rows sealed into Parquet.",
        sealed_bytes_total: "Bytes of Parquet files sealed.",
        retention_deletions_total: "Sealed files deleted by the retention policy, as recorded in this collector's manifest.",
        witness_checkpoints_total: "Signed checkpoints of the manifest head written to the witness.",
        witness_failures_total: "Checkpoints that could not be written to the witness (retried at the next digest; ingest goes on).",
    }
    gauges {
        stored_bytes: "Bytes of this collector's sealed files that retention has not deleted.",
        buffered_rows: "Rows durable in the WAL and not yet sealed into Parquet.",
        queue_depth: "Requests waiting for the writer thread.",
        connections_open: "Connections open on the OTLP listeners.",
        store_failing: "1 while the last WAL write or fsync failed, or after a seal's manifest entry failed its fsync (until a restart), else 0.",
        witness_failing_since_timestamp_seconds: "When writing checkpoints to the witness started failing (seconds since the epoch); 0 while they are written.",
        tls_crl_next_update_timestamp_seconds: "When the earliest client CRL in use passes its next update (seconds since the epoch; 0 without CRLs): from then on the client certificates it covers are refused.",
    }
}

impl Metrics {
    /// Adds `n` to a counter (or a gauge).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Lowers a gauge by `n`, stopping at 0.
    pub fn sub(gauge: &AtomicU64, n: u64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }
}

fn scalar(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
    let _ = writeln!(out, "{PREFIX}{name} {value}");
}

/// A counter with one label, `reason`.
#[derive(Debug, Default)]
pub struct Labeled(Mutex<BTreeMap<&'static str, u64>>);

impl Labeled {
    /// Adds `n` under `reason` (a fixed snake_case word from the code).
    pub fn add(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut m) = self.0.lock() {
            *m.entry(reason).or_default() += n;
        }
    }

    /// The count under `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} counter");
        if let Ok(m) = self.0.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "{PREFIX}{name}{{reason=\"{reason}\"}} {n}");
            }
        }
    }
}

/// Upper bounds of the latency buckets, seconds: fsync on a local SSD is
/// well under a millisecond, on network storage tens of milliseconds; a
/// second or more means the disk is in trouble.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative; summed on render).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(out, "# TYPE {PREFIX}{name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{PREFIX}{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{PREFIX}{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{PREFIX}{name}_sum {sum}");
        let _ = writeln!(out, "{PREFIX}{name}_count {count}");
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
