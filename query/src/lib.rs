//! # audit-query
//!
//! Answerability: the auditor's questions as commands, and free SQL over
//! the dataset. The `audit-collector` binary's `query`, `who`, `activity`
//! and `prove-human` commands are this crate's [`cli`]; it reads what the
//! collector library wrote (its store, manifests and partitions).
//!
//! - [`Engine`]: DataFusion over the two tables `audit` and `violations`,
//!   registered as listing tables over the Hive directories of a local
//!   directory or an S3 prefix (one code path, through [`audit_collector::store`]), with `date`
//!   and `hour` as partition columns (a filter on them skips whole
//!   directories) and Parquet pruning switched on: row-group statistics,
//!   page index, the bloom filter on `event_id`, and filters evaluated
//!   inside the scan.
//! - [`who`], [`activity`], [`prove`]: the three questions and the negative;
//!   [`ungated`]: the side doors (effects that ran outside their gate).
//!   Each runs SQL through the same engine; [`who::sql`] and
//!   [`activity::sql`] return exactly the text that `docs/analysts.md`
//!   shows, so what an analyst runs in DuckDB is what the command runs.
//!   `who` runs it first restricted to the hours of a UUIDv7 id's time
//!   ([`who::located_sql`]), and over every file only when those hold no
//!   row with the id.
//! - [`scan`]: over a local directory the CLI's `who` and `activity`
//!   answer that SQL without planning it, reading the Parquet directly
//!   (the hour directories of [`partitions`], row groups and pages pruned
//!   by statistics, bloom filter and [`pages`]); tests run both on the
//!   same files and compare what is printed.
//! - [`output`]: a readable table, JSON or CSV.
//! - [`access`]: who looked. Every question asked through the commands
//!   (and the console) is recorded, durably and hash-chained, in an access
//!   dataset of its own before its answer is shown.
//!
//! DataFusion is a large dependency, and the sidecar never needs it: it is
//! why this is a crate of its own. `cargo build --bin audit-collector
//! --no-default-features` builds a binary with `serve`, `verify`,
//! `checkpoint`, `keygen` and `retention` only.
//!
//! DataFusion 55 is built on arrow/parquet 59; the workspace pins the same
//! major so that one arrow is compiled, not two.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use audit_collector::store::Location;
//! use audit_query::Engine;
//!
//! // A collector that has sealed nothing yet: both tables exist, empty.
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(Location::local(dir.path())?).await?;
//! let batches = engine.sql("SELECT count(*) AS n FROM audit").await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod access;
pub mod activity;
pub mod cli;
pub mod engine;
pub mod output;
pub mod pages;
pub mod partitions;
pub mod prove;
pub mod scan;
pub mod ungated;
pub mod who;

use chrono::{DateTime, Utc};

/// The arrow the answers are made of, for readers of [`Engine`]'s batches
/// (the console) without a second copy of the dependency to keep in step.
pub use datafusion::arrow;
pub use engine::Engine;
pub use output::Format;

/// What went wrong answering a question.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The dataset flags name no usable dataset.
    #[error(transparent)]
    Dataset(#[from] audit_collector::dataset::DatasetError),
    /// Nothing at all is stored under a bucket prefix.
    #[error(
        "nothing is stored under {0}: check the bucket and prefix (the collector's store URL)"
    )]
    EmptyLocation(String),
    /// The location holds no collector manifest: not a dataset.
    #[error(transparent)]
    NotADataset(#[from] audit_collector::coverage::CoverageError),
    /// A location could not be turned into a table location.
    #[error("cannot use {location} as a table location: {reason}")]
    BadLocation {
        /// The location.
        location: String,
        /// Why not.
        reason: String,
    },
    /// The dataset's store could not be opened or read.
    #[error(transparent)]
    Store(#[from] audit_collector::store::StoreError),
    /// DataFusion refused or failed the query (bad SQL, unknown column, I/O).
    /// Not a `#[source]`: DataFusion's message already includes its causes,
    /// and printing the chain would repeat them.
    #[error("query failed: {0}")]
    Sql(datafusion::error::DataFusionError),
    /// Formatting the result failed.
    #[error("cannot format the result: {0}")]
    Output(datafusion::arrow::error::ArrowError),
    /// A time given on the command line is neither RFC 3339 nor a date.
    #[error(
        "{flag} {value:?} is not a time: use RFC 3339 (2026-11-28T03:00:00Z) or a date (2026-11-28, the whole day)"
    )]
    BadTime {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A length of time is not a number and a unit.
    #[error(
        "{flag} {value:?} is not a length of time: use a number and s, m, h, d or w (24h, 7d)"
    )]
    BadDuration {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// `--from` is not before `--to`.
    #[error("--from {from} is not before --to {to}")]
    BadRange {
        /// Start of the range.
        from: String,
        /// End of the range.
        to: String,
    },
    /// No row has this event id.
    #[error("no audit row has event_id {0:?}")]
    NotFound(String),
    /// Reading a manifest or a data file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The question could not be recorded in the access dataset, so it is
    /// not answered.
    #[error(transparent)]
    Access(#[from] access::AccessError),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::Sql(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::Output(e)
    }
}

/// Which end of a window a time is: a bare date is the start of that day
/// as a start, and the start of the next day (exclusive) as an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Inclusive start.
    From,
    /// Exclusive end.
    To,
}

/// Parses a time given on the command line or in the console: RFC 3339
/// (`2026-11-28T03:00:00Z`), a date-time without zone read as UTC
/// (`2026-11-28T03:00`, what a browser's date-time field sends), or a
/// date (`2026-11-28`: the whole day, see [`End`]).
pub fn parse_time(flag: &'static str, value: &str, end: End) -> Result<DateTime<Utc>, QueryError> {
    let s = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    let t = match (day, end) {
        (Some(t), End::From) => Some(t),
        (Some(t), End::To) => t.checked_add_signed(chrono::Duration::days(1)),
        (None, _) => None,
    };
    t.ok_or_else(|| QueryError::BadTime {
        flag,
        value: value.to_owned(),
    })
}

/// Parses a length of time: a whole number and a unit, `s`, `m`, `h`, `d`
/// or `w` (`90s`, `30m`, `24h`, `7d`, `2w`).
pub fn parse_duration(flag: &'static str, value: &str) -> Result<chrono::Duration, QueryError> {
    let bad = || QueryError::BadDuration {
        flag,
        value: value.to_owned(),
    };
    let s = value.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = s[..split].parse().map_err(|_| bad())?;
    let secs = match &s[split..] {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(7 * 86_400),
        _ => None,
    };
    secs.filter(|s| *s > 0)
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(bad)
}

/// A SQL string literal: quotes doubled, so an id can never end the string.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A timestamp literal both DataFusion and DuckDB read as UTC, with
/// nanoseconds (the columns are `timestamp ns UTC`).
pub fn ts_literal(t: DateTime<Utc>) -> String {
    format!("TIMESTAMPTZ '{}'", t.format("%Y-%m-%dT%H:%M:%S%.9f+00:00"))
}

/// Predicates on the Hive partition columns covering `[from, to]`, so that
/// directories outside the range are never listed or opened. Redundant
/// with the filter on the event time (which decides), but that one only
/// prunes by file statistics after the footers are read.
pub fn partition_range(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (d1, h1) = (from.format("%Y-%m-%d"), from.format("%H"));
    let (d2, h2) = (to.format("%Y-%m-%d"), to.format("%H"));
    format!(
        "(date > DATE '{d1}' OR (date = DATE '{d1}' AND hour >= '{h1}'))\n  \
         AND (date < DATE '{d2}' OR (date = DATE '{d2}' AND hour <= '{h2}'))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a'b"), "'a''b'");
    }

    #[test]
    fn dates_are_whole_days_and_durations_have_units() {
        let day = |end| parse_time("--on", "2026-12-04", end).unwrap().to_rfc3339();
        assert_eq!(day(End::From), "2026-12-04T00:00:00+00:00");
        assert_eq!(day(End::To), "2026-12-05T00:00:00+00:00");
        let local = parse_time("--from", "2026-12-04T10:30", End::From).unwrap();
        assert_eq!(local.to_rfc3339(), "2026-12-04T10:30:00+00:00");
        assert_eq!(parse_duration("--last", "24h").unwrap().num_hours(), 24);
        assert_eq!(parse_duration("--last", "2w").unwrap().num_days(), 14);
        assert_eq!(parse_duration("--last", "90s").unwrap().num_seconds(), 90);
        for bad in ["", "24", "h", "0h", "-1h", "1y", "99999999999999999999d"] {
            assert!(
                matches!(
                    parse_duration("--last", bad),
                    Err(QueryError::BadDuration { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn times_and_ranges() {
        let t = parse_time("--from", "2026-11-28T03:04:05.5+01:00", End::From).unwrap();
        assert_eq!(
            ts_literal(t),
            "TIMESTAMPTZ '2026-11-28T02:04:05.500000000+00:00'"
        );
        assert!(matches!(
            parse_time("--to", "yesterday", End::To),
            Err(QueryError::BadTime { flag: "--to", .. })
        ));
        let to = parse_time("--to", "2026-11-29T00:30:00Z", End::To).unwrap();
        let r = partition_range(t, to);
        assert!(
            r.contains("date = DATE '2026-11-28' AND hour >= '02'"),
            "{r}"
        );
        assert!(
            r.contains("date = DATE '2026-11-29' AND hour <= '00'"),
            "{r}"
        );
    }
}
