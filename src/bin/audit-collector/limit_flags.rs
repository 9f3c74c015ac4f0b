//! `serve` flags for the limits (part of the binary, declared by `main.rs`,
//! not of the library): each overrides the config key it names, and each
//! has an `AUDIT_COLLECTOR_*` variable, like every other `serve` flag (see
//! `serve_flags.rs`). Defaults are the config's (`[default: …]` in the help
//! repeats them; a test keeps the two equal).

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Default, Serialize)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Largest request accepted, bytes, as sent and after decompression [default: 16777216].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// Requests served at once, both protocols together; more get a retryable error at once [default: 64].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_IN_FLIGHT_REQUESTS")]
    max_in_flight_requests: Option<usize>,
    /// Seconds a request may take: an HTTP body (then 408), a whole gRPC call [default: 30].
    #[arg(long, env = "AUDIT_COLLECTOR_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// Seconds an HTTP client has to send a request's head (idle keep-alive too); a gRPC client, its HTTP/2 preface [default: 10].
    #[arg(long, env = "AUDIT_COLLECTOR_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
    /// Connections open at once on the OTLP listeners together; more are closed at once [default: 512].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Batches waiting for the WAL writer before new requests get a retryable error [default: 1024].
    #[arg(long, env = "AUDIT_COLLECTOR_QUEUE_DEPTH")]
    #[serde(rename = "store.queue_depth")]
    queue_depth: Option<usize>,
    /// Unsealed rows held before new requests get a retryable error [default: 400000].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_BUFFERED_ROWS")]
    #[serde(rename = "store.max_buffered_rows")]
    max_buffered_rows: Option<usize>,
    /// Attributes on one log record, as sent; a record with more is refused by itself [default: 128].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_ATTRIBUTES")]
    #[serde(rename = "rules.limits.max_attributes")]
    max_attributes: Option<usize>,
    /// Bytes of one attribute key [default: 256].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_KEY_BYTES")]
    #[serde(rename = "rules.limits.max_key_bytes")]
    max_key_bytes: Option<usize>,
    /// Bytes of one string value, schema fields included [default: 8192].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_VALUE_BYTES")]
    #[serde(rename = "rules.limits.max_value_bytes")]
    max_value_bytes: Option<usize>,
    /// Nesting of array and kvlist values [default: 8].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_DEPTH")]
    #[serde(rename = "rules.limits.max_depth")]
    max_depth: Option<usize>,
    /// Earliest accepted record time, seconds since the epoch [default: 946684800, 2000-01-01].
    #[arg(long, env = "AUDIT_COLLECTOR_MIN_TIME_UNIX_SECS")]
    #[serde(rename = "rules.limits.min_time_unix_secs")]
    min_time_unix_secs: Option<i64>,
    /// Latest accepted record time, seconds past the collector's clock [default: 86400].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_FUTURE_SECS")]
    #[serde(rename = "rules.limits.max_future_secs")]
    max_future_secs: Option<i64>,
    /// Hops of one delegation chain, origin and acting actor included [default: 8].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_DELEGATION_HOPS")]
    #[serde(rename = "rules.limits.max_delegation_hops")]
    max_delegation_hops: Option<usize>,
}

/// The help's stated defaults are checked with the other `serve` flags'
/// (`serve_flags::tests`), whose parser these tests share.
#[cfg(test)]
mod tests {
    use crate::serve_flags::tests::applied;
    use audit_collector::config::Config;

    #[test]
    fn no_flag_keeps_the_config() {
        assert_eq!(applied(&[]), Config::default());
    }

    #[test]
    fn every_flag_sets_its_config_key() {
        let cfg = applied(&[
            "--max-request-bytes=1001",
            "--max-in-flight-requests=1002",
            "--request-timeout-secs=1003",
            "--header-read-timeout-secs=1004",
            "--max-connections=1005",
            "--queue-depth=1006",
            "--max-buffered-rows=1007",
            "--max-attributes=1008",
            "--max-key-bytes=1009",
            "--max-value-bytes=1010",
            "--max-depth=1011",
            "--min-time-unix-secs=1012",
            "--max-future-secs=1013",
            "--max-delegation-hops=1014",
        ]);
        let l = &cfg.rules.limits;
        let got = [
            cfg.max_request_bytes as i64,
            cfg.max_in_flight_requests as i64,
            cfg.request_timeout_secs as i64,
            cfg.header_read_timeout_secs as i64,
            cfg.max_connections as i64,
            cfg.store.queue_depth as i64,
            cfg.store.max_buffered_rows as i64,
            l.max_attributes as i64,
            l.max_key_bytes as i64,
            l.max_value_bytes as i64,
            l.max_depth as i64,
            l.min_time_unix_secs,
            l.max_future_secs,
            l.max_delegation_hops as i64,
        ];
        assert_eq!(got, std::array::from_fn(|i| 1001 + i as i64));
    }
}
