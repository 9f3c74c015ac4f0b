//! Immutable Parquet partitions of the `audit` and `violations` datasets.
//!
//! ```
//! use audit_collector::partition::{read_audit, PartitionWriter};
//! use audit_schema::{Draft, Field, Rules, Stamp};
//!
//! let mut draft = Draft::default();
//! draft.start_time_ns = Some(1_795_834_800_000_000_000); // 2026-11-28T03:00:00Z
//! draft.set(Field::AgentId, "agt_7f3".into());
//! draft.set(Field::OwnerId, "usr_alice".into());
//! draft.set(Field::Action, "payments.transfer".into());
//! let record = Rules::default().check(draft).expect("both keys present");
//! let stamp = Stamp { received_time_ns: 1_795_834_800_100_000_000, seq: 42 };
//!
//! let data = tempfile::tempdir()?;
//! let sealed = PartitionWriter::new(data.path(), "col-1").seal_audit(vec![(record, stamp)])?;
//! assert_eq!(
//!     sealed[0].path.to_str(),
//!     Some("audit/date=2026-11-28/hour=03/part-col-1-00000000000000000042.parquet")
//! );
//!
//! for (record, stamp, collector) in read_audit(data.path())? {
//!     // #42 via col-1: agent Some("agt_7f3") for usr_alice did payments.transfer
//!     println!(
//!         "#{} via {collector}: agent {:?} for {} did {}",
//!         stamp.seq, record.agent_id, record.owner_id, record.action
//!     );
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Rows are written Hive style, one new file per `(date, hour)` of the row's
//! event time (UTC) and per seal:
//!
//! ```text
//! DIR/audit/date=YYYY-MM-DD/hour=HH/part-<collector_id>-<seq>.parquet
//! DIR/violations/date=YYYY-MM-DD/hour=HH/part-<collector_id>-<seq>.parquet
//! ```
//!
//! `<seq>` is the smallest `seq` in the file, zero-padded to 20 digits so that
//! lexical order is numeric order. `date` and `hour` live only in the path
//! (DuckDB's `hive_partitioning` adds them back). The columns are exactly
//! [`audit_schema::columns::AUDIT`] / [`audit_schema::columns::VIOLATIONS`],
//! in that order; rows are sorted inside a file by (`agent_id` nulls first,
//! `owner_id`, `start_time`, `seq`) for audit and (`service_name`, `time`,
//! `seq`) for violations, so row-group statistics prune "agent X between T1
//! and T2". Files are ZSTD (level 3), dictionary encoded (except the columns
//! whose values never repeat: ids and times), with page-level
//! statistics and a bloom filter on `event_id`.
//!
//! A file is written under a temporary name (`.part-….parquet.tmp`, never read
//! as data), fsynced, made read-only (0o444), published under its final name
//! without ever replacing an existing file ([`PartitionError::AlreadyExists`]),
//! and its directory fsynced.
//!
//! Rows wait for their seal in an [`Unsealed`] buffer, already in Arrow
//! columns and split by hour; [`PartitionWriter::seal`] sorts each hour's
//! rows by a permutation and writes them one row group at a time, so a seal
//! needs one row group's sorted copy beside the buffer, not a second copy
//! of every row.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::{
    Array, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{ArrowError, Schema};
use audit_schema::columns::{self, Column};
use audit_schema::{AuditRecord, Stamp, ViolationRecord};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::fsio;

/// Default maximum number of rows per row group.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 65_536;

/// ZSTD level of every file.
const ZSTD_LEVEL: i32 = 3;

/// Which dataset a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    /// One row per privileged action (`audit/`).
    Audit,
    /// One row per dual-key violation (`violations/`).
    Violations,
}

impl Dataset {
    /// The dataset's directory name under the data root.
    pub fn dir_name(self) -> &'static str {
        match self {
            Dataset::Audit => "audit",
            Dataset::Violations => "violations",
        }
    }

    /// The dataset's stored columns, in file order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Dataset::Audit => columns::AUDIT,
            Dataset::Violations => columns::VIOLATIONS,
        }
    }
}

/// A file that has been sealed: durable, read-only, never rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedFile {
    /// Its dataset.
    pub dataset: Dataset,
    /// Relative to the data root, `/`-separated, e.g.
    /// `audit/date=2026-11-28/hour=03/part-col-1-00000000000000000042.parquet`.
    pub path: PathBuf,
    /// Number of rows.
    pub rows: u64,
    /// Smallest `seq` in the file (the one in its name).
    pub seq_min: u64,
    /// Largest `seq` in the file.
    pub seq_max: u64,
    /// Earliest event time (`start_time` / `time`), ns since the epoch.
    pub time_min_ns: i64,
    /// Latest event time, ns since the epoch.
    pub time_max_ns: i64,
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

/// What went wrong writing or reading a partition file, and where.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create directory`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The final name is taken: sealed files are never overwritten, and a
    /// `seq` is never reused.
    #[error("{}: already exists; a sealed file is never overwritten (was this seq already sealed?)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The Parquet library failed encoding or decoding.
    #[error("parquet error on {}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ParquetError,
    },
    /// Building or reading Arrow arrays failed.
    #[error("arrow error on {}: {source}", path.display())]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },
    /// A file's contents do not match the dataset's schema.
    #[error("{}: {message}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The collector id cannot be part of a file name.
    #[error("collector id {id:?} cannot be used in a file name: {reason}")]
    InvalidCollectorId {
        /// The id.
        id: String,
        /// Why not.
        reason: &'static str,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PartitionError + 'a {
    move |source| PartitionError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn pq_err(path: &Path) -> impl FnOnce(ParquetError) -> PartitionError + '_ {
    move |source| PartitionError::Parquet {
        path: path.to_owned(),
        source,
    }
}

fn arrow_err(path: &Path) -> impl FnOnce(ArrowError) -> PartitionError + '_ {
    move |source| PartitionError::Arrow {
        path: path.to_owned(),
        source,
    }
}

fn schema_err(path: &Path, message: impl Into<String>) -> PartitionError {
    PartitionError::Schema {
        path: path.to_owned(),
        message: message.into(),
    }
}

mod read;
mod rows;
mod unsealed;
mod write;

pub use read::{
    bloom_read_options, data_files, is_data_file_name, read_audit, read_audit_bytes,
    read_audit_file, read_event_ids, read_event_ids_bytes, read_violations, read_violations_bytes,
    read_violations_file,
};
pub use rows::Row;
pub use unsealed::Unsealed;
pub use write::PartitionWriter;

#[cfg(test)]
mod tests;
