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
//! - [`who`], [`activity`], [`prove`]: the three questions and the negative.
//!   Each runs SQL through the same engine; [`who::sql`] and
//!   [`activity::sql`] return exactly the text that `docs/analysts.md`
//!   shows, so what an analyst runs in DuckDB is what the command runs.
//! - [`output`]: a readable table, JSON or CSV.
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

pub mod activity;
pub mod cli;
pub mod engine;
pub mod output;
pub mod prove;
pub mod who;

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// The arrow the answers are made of, for readers of [`Engine`]'s batches
/// (the console) without a second copy of the dependency to keep in step.
pub use datafusion::arrow;
pub use engine::Engine;
pub use output::Format;

/// What went wrong answering a question.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The data directory is not there.
    #[error("data dir {} does not exist (pass --data-dir, default ./audit-data)", .0.display())]
    MissingDataDir(PathBuf),
    /// Nothing at all is stored under a bucket prefix.
    #[error(
        "nothing is stored under {0}: check the bucket and prefix (the collector's store URL)"
    )]
    EmptyLocation(String),
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
    /// A time given on the command line is not RFC 3339.
    #[error("{flag} {value:?} is not an RFC 3339 time (e.g. 2026-11-28T03:00:00Z)")]
    BadTime {
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

/// Parses an RFC 3339 time given on the command line.
pub fn parse_time(flag: &'static str, value: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| QueryError::BadTime {
            flag,
            value: value.to_owned(),
        })
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
    fn times_and_ranges() {
        let t = parse_time("--from", "2026-11-28T03:04:05.5+01:00").unwrap();
        assert_eq!(
            ts_literal(t),
            "TIMESTAMPTZ '2026-11-28T02:04:05.500000000+00:00'"
        );
        assert!(matches!(
            parse_time("--to", "yesterday"),
            Err(QueryError::BadTime { flag: "--to", .. })
        ));
        let to = parse_time("--to", "2026-11-29T00:30:00Z").unwrap();
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
