//! The hour partitions of a local dataset's `audit` files, listed as
//! the SQL's table lists them, for the direct reader ([`crate::scan`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::activity::Range;
use super::QueryError;

const HOUR_NS: i64 = 3_600_000_000_000;

/// Where the question is answered from: the `audit` files of a local
/// dataset.
pub struct Audit {
    dir: PathBuf,
}

impl Audit {
    /// The `audit/` directory under the dataset directory `root`.
    pub fn new(root: &Path) -> Audit {
        Audit {
            dir: root.join("audit"),
        }
    }

    /// The data files of the hour partitions from `from`'s hour to `to`'s
    /// (both included), in path order: what the SQL's predicate on `date`
    /// and `hour` ([`crate::partition_range`]) keeps.
    pub fn hours(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PathBuf>, QueryError> {
        let hour = |t: DateTime<Utc>| t.timestamp().div_euclid(3600);
        let mut out = Vec::new();
        for h in hour(from)..=hour(to) {
            let Some(t) = DateTime::from_timestamp(h * 3600, 0) else {
                continue;
            };
            let dir = self
                .dir
                .join(format!("date={}", t.format("%Y-%m-%d")))
                .join(format!("hour={}", t.format("%H")));
            out.extend(files_in(&dir)?);
        }
        Ok(out)
    }

    /// The files `activity` over `range` needs: [`Audit::hours`], except
    /// the partition of `to` itself when `to` falls on the hour. Its rows
    /// all start at or after `to` (a row is kept in the hour of its
    /// `start_time`), so the SQL's `start_time < to` excludes them all.
    pub fn window(&self, range: Range) -> Result<Vec<PathBuf>, QueryError> {
        let to_ns = range.to.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let last = if to_ns.rem_euclid(HOUR_NS) == 0 {
            range.to - chrono::Duration::nanoseconds(1)
        } else {
            range.to
        };
        self.hours(range.from, last.max(range.from))
    }

    /// Every data file, in path order.
    pub fn all(&self) -> Result<Vec<PathBuf>, QueryError> {
        let mut out = Vec::new();
        for date in sorted_dirs(&self.dir, "date=")? {
            for hour in sorted_dirs(&date, "hour=")? {
                out.extend(files_in(&hour)?);
            }
        }
        Ok(out)
    }
}

fn sorted_dirs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, QueryError> {
    sorted_entries(dir, |dir, name| dir && name.starts_with(prefix))
}

/// The `.parquet` files of one partition directory, sorted (sealing's
/// temporary files end in `.tmp`: never data, as for the SQL's table).
fn files_in(dir: &Path) -> Result<Vec<PathBuf>, QueryError> {
    sorted_entries(dir, |dir, name| !dir && name.ends_with(".parquet"))
}

/// The entries of `dir` that `keep` (given whether each is a directory,
/// and its name) keeps, sorted; none when `dir` does not exist.
fn sorted_entries(
    dir: &Path,
    keep: impl Fn(bool, &str) -> bool,
) -> Result<Vec<PathBuf>, QueryError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        if keep(e.file_type()?.is_dir(), &e.file_name().to_string_lossy()) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}
