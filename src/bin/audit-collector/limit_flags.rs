//! `serve` flags for the limits (part of the binary, declared by `main.rs`,
//! not of the library): each overrides the config key of the same name, and
//! each has an `AUDIT_COLLECTOR_*` variable, like every other `serve` flag.
//! Defaults are the config's (`[default: …]` in the help repeats them).

use audit_collector::config::Config;
use clap::Args;

#[derive(Args, Debug, Default)]
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
    queue_depth: Option<usize>,
    /// Unsealed rows held before new requests get a retryable error [default: 2000000].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_BUFFERED_ROWS")]
    max_buffered_rows: Option<usize>,
    /// Attributes on one log record, as sent; a record with more is refused by itself [default: 128].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_ATTRIBUTES")]
    max_attributes: Option<usize>,
    /// Bytes of one attribute key [default: 256].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_KEY_BYTES")]
    max_key_bytes: Option<usize>,
    /// Bytes of one string value, schema fields included [default: 8192].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_VALUE_BYTES")]
    max_value_bytes: Option<usize>,
    /// Nesting of array and kvlist values [default: 8].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_DEPTH")]
    max_depth: Option<usize>,
    /// Earliest accepted record time, seconds since the epoch [default: 946684800, 2000-01-01].
    #[arg(long, env = "AUDIT_COLLECTOR_MIN_TIME_UNIX_SECS")]
    min_time_unix_secs: Option<i64>,
    /// Latest accepted record time, seconds past the collector's clock [default: 86400].
    #[arg(long, env = "AUDIT_COLLECTOR_MAX_FUTURE_SECS")]
    max_future_secs: Option<i64>,
}

/// `if let Some(v) = flags.f { cfg.path = v }` for each pair.
macro_rules! set {
    ($flags:ident, $cfg:ident, $($flag:ident => $($key:ident).+;)*) => {
        $(if let Some(v) = $flags.$flag {
            $cfg.$($key).+ = v;
        })*
    };
}

impl LimitFlags {
    /// Overrides the config's values with the flags given.
    pub fn apply(&self, cfg: &mut Config) {
        let flags = self;
        set!(flags, cfg,
            max_request_bytes => max_request_bytes;
            max_in_flight_requests => max_in_flight_requests;
            request_timeout_secs => request_timeout_secs;
            header_read_timeout_secs => header_read_timeout_secs;
            max_connections => max_connections;
            queue_depth => store.queue_depth;
            max_buffered_rows => store.max_buffered_rows;
            max_attributes => rules.limits.max_attributes;
            max_key_bytes => rules.limits.max_key_bytes;
            max_value_bytes => rules.limits.max_value_bytes;
            max_depth => rules.limits.max_depth;
            min_time_unix_secs => rules.limits.min_time_unix_secs;
            max_future_secs => rules.limits.max_future_secs;
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitFlags,
    }

    fn applied(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("flags parse");
        let mut cfg = Config::default();
        cli.limits.apply(&mut cfg);
        cfg
    }

    #[test]
    fn no_flag_keeps_the_config() {
        assert_eq!(applied(&[]), Config::default());
    }

    #[test]
    fn the_defaults_the_help_states_are_the_configs() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let mut seen = 0;
        for arg in Cli::command().get_arguments() {
            let long = arg.get_long().expect("long flag");
            let doc = arg.get_help().expect("help").to_string();
            let stated = doc
                .split_once("[default: ")
                .and_then(|(_, d)| d.split([']', ',']).next())
                .unwrap_or_else(|| panic!("--{long} states no default: {help}"));
            let flag = format!("--{long}={stated}");
            assert_eq!(applied(&[&flag]), Config::default(), "{flag}");
            seen += 1;
        }
        assert_eq!(seen, 13);
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
        ];
        assert_eq!(got, std::array::from_fn(|i| 1001 + i as i64));
    }
}
