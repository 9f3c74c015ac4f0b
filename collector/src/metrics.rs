//! Counters of the collector, exposed in Prometheus' text format on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// Monotonic counters, shared by the receivers and the ingest thread.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// The counters in Prometheus' text exposition format.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP audit_collector_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE audit_collector_{} counter", stringify!($name));
                    let _ = writeln!(out, "audit_collector_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    requests_total: "OTLP export requests received.",
    records_received_total: "Log records received.",
    actions_stored_total: "Audit rows made durable (WAL fsynced).",
    violations_stored_total: "Violation rows made durable, from clients and from the collector's own checks.",
    records_refused_total: "Log records refused (partial_success), e.g. missing the dual key.",
    duplicates_total: "Records dropped as duplicates of an already stored event_id.",
    unauthenticated_total: "Requests refused for a missing or unknown bearer token.",
    tls_handshake_failures_total: "Connections dropped in the TLS handshake (no, unknown or expired client certificate; plaintext; timeout).",
    overloaded_total: "Requests answered with a retryable overload error (write queue or buffer full).",
    shed_total: "Requests refused at once because max_in_flight_requests were being served.",
    storage_errors_total: "Requests answered with a retryable storage error.",
    wal_fsyncs_total: "WAL group commits (one fsync each).",
    sealed_files_total: "Parquet files sealed.",
    sealed_rows_total: "Rows sealed into Parquet.",
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::default();
        Metrics::add(&m.records_refused_total, 3);
        let text = m.render();
        assert!(text.contains("# TYPE audit_collector_records_refused_total counter\n"));
        assert!(text.contains("\naudit_collector_records_refused_total 3\n"));
    }
}
