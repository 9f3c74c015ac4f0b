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
//! and T2". Files are ZSTD (level 3), dictionary encoded, with page-level
//! statistics and a bloom filter on `event_id`.
//!
//! A file is written under a temporary name (`.part-….parquet.tmp`, never read
//! as data), fsynced, made read-only (0o444), published under its final name
//! without ever replacing an existing file ([`PartitionError::AlreadyExists`]),
//! and its directory fsynced.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{
    Array, ArrayRef, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, FieldRef, Schema, SchemaRef};
use audit_schema::columns::{self, Column};
use audit_schema::{ActorKind, AuditRecord, Stamp, ViolationRecord};
use chrono::{DateTime, Datelike, Timelike};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

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

/// Writes sealed batches of rows as new, immutable Parquet files.
#[derive(Clone, Debug)]
pub struct PartitionWriter {
    root: PathBuf,
    collector_id: String,
    row_group_size: usize,
}

impl PartitionWriter {
    /// A writer of files under `root` (the data directory), named after
    /// `collector_id`.
    pub fn new(root: impl Into<PathBuf>, collector_id: impl Into<String>) -> Self {
        PartitionWriter {
            root: root.into(),
            collector_id: collector_id.into(),
            row_group_size: DEFAULT_ROW_GROUP_SIZE,
        }
    }

    /// Maximum rows per row group (default [`DEFAULT_ROW_GROUP_SIZE`]; 0 is
    /// treated as 1).
    pub fn with_row_group_size(mut self, rows: usize) -> Self {
        self.row_group_size = rows.max(1);
        self
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes rows into one new file per `(date, hour)` partition (UTC) of
    /// each row's `start_time`. Returns what was sealed, in `seq` order;
    /// empty input writes nothing.
    ///
    /// If a later file of the batch fails, earlier ones stay on disk (they
    /// are complete and valid); the caller decides whether to remove them.
    pub fn seal_audit(
        &self,
        rows: Vec<(AuditRecord, Stamp)>,
    ) -> Result<Vec<SealedFile>, PartitionError> {
        self.seal(rows)
    }

    /// Like [`PartitionWriter::seal_audit`] for violations, partitioned by
    /// each row's `time`.
    pub fn seal_violations(
        &self,
        rows: Vec<(ViolationRecord, Stamp)>,
    ) -> Result<Vec<SealedFile>, PartitionError> {
        self.seal(rows)
    }

    fn seal<R: Row>(&self, rows: Vec<(R, Stamp)>) -> Result<Vec<SealedFile>, PartitionError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        check_collector_id(&self.collector_id)?;
        let mut parts: BTreeMap<HourKey, Vec<(R, Stamp)>> = BTreeMap::new();
        for row in rows {
            parts
                .entry(hour_of(row.0.event_time()))
                .or_default()
                .push(row);
        }
        // Plan every file first, so a reused seq fails before anything is written.
        let mut plans = Vec::with_capacity(parts.len());
        for ((y, m, d, h), mut rows) in parts {
            rows.sort_by(R::cmp_in_file);
            let seq_min = rows.iter().map(|r| r.1.seq).min().unwrap_or_default();
            let rel = format!(
                "{}/date={y:04}-{m:02}-{d:02}/hour={h:02}/part-{}-{seq_min:020}.parquet",
                R::DATASET.dir_name(),
                self.collector_id
            );
            let full = self.root.join(&rel);
            if fs::symlink_metadata(&full).is_ok() {
                return Err(PartitionError::AlreadyExists { path: full });
            }
            plans.push((rel, full, seq_min, rows));
        }
        let schema: SchemaRef = Arc::new(columns::arrow_schema(R::DATASET.columns()));
        let mut sealed = Vec::with_capacity(plans.len());
        for (rel, full, seq_min, rows) in plans {
            let batch = R::batch(&rows, &self.collector_id, &schema).map_err(arrow_err(&full))?;
            let props = self.properties(&schema, R::SORTED_BY, rows.len(), &full)?;
            let (sha256, bytes) = write_immutable(&full, &batch, props)?;
            let times = rows.iter().map(|r| r.0.event_time());
            sealed.push(SealedFile {
                dataset: R::DATASET,
                path: PathBuf::from(rel),
                rows: rows.len() as u64,
                seq_min,
                seq_max: rows.iter().map(|r| r.1.seq).max().unwrap_or_default(),
                time_min_ns: times.clone().min().unwrap_or_default(),
                time_max_ns: times.max().unwrap_or_default(),
                sha256,
                bytes,
            });
        }
        sealed.sort_by_key(|f| f.seq_min);
        Ok(sealed)
    }

    fn properties(
        &self,
        schema: &Schema,
        sorted_by: &[(&str, bool)],
        rows: usize,
        path: &Path,
    ) -> Result<WriterProperties, PartitionError> {
        let descr = ArrowSchemaConverter::new()
            .convert(schema)
            .map_err(pq_err(path))?;
        let mut sorting = Vec::with_capacity(sorted_by.len());
        for (name, nulls_first) in sorted_by {
            let idx = descr
                .columns()
                .iter()
                .position(|c| c.path().string() == *name)
                .ok_or_else(|| schema_err(path, format!("sort column {name} is not a leaf")))?;
            sorting.push(SortingColumn {
                column_idx: idx as i32,
                descending: false,
                nulls_first: *nulls_first,
            });
        }
        let zstd = ZstdLevel::try_new(ZSTD_LEVEL).map_err(pq_err(path))?;
        let event_id = ColumnPath::from("event_id");
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(self.row_group_size))
            .set_column_bloom_filter_enabled(event_id.clone(), true)
            .set_column_bloom_filter_max_ndv(event_id, rows.min(self.row_group_size) as u64)
            .set_sorting_columns(Some(sorting))
            .build())
    }
}

fn check_collector_id(id: &str) -> Result<(), PartitionError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.starts_with('.') {
        "it starts with '.'"
    } else if id
        .chars()
        .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control())
    {
        "it contains a path separator or control character"
    } else {
        return Ok(());
    };
    Err(PartitionError::InvalidCollectorId {
        id: id.to_owned(),
        reason,
    })
}

/// `(year, month, day, hour)` of a partition, in UTC.
type HourKey = (i32, u32, u32, u32);

/// The partition of a time in ns since the epoch.
fn hour_of(ns: i64) -> HourKey {
    let t = DateTime::from_timestamp_nanos(ns);
    (t.year(), t.month(), t.day(), t.hour())
}

/// A `Write` that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `batch` to `path` under a temp name and publishes it without
/// replacing anything; returns the hex SHA-256 and size of the file.
fn write_immutable(
    path: &Path,
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<(String, u64), PartitionError> {
    let dir = path
        .parent()
        .ok_or_else(|| schema_err(path, "file path has no directory"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| schema_err(path, "file path has no UTF-8 name"))?;
    create_dir_synced(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temp file left by an interrupted seal is garbage (and may be read-only).
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("remove stale temp file", &tmp)(e))
        }
        _ => {}
    }
    let result = write_temp(&tmp, batch, props).and_then(|digest| {
        publish(&tmp, path)?;
        sync_dir(dir)?;
        Ok(digest)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_temp(
    tmp: &Path,
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<(String, u64), PartitionError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_err("create temp file", tmp))?;
    let sink = Hashing {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut writer =
        ArrowWriter::try_new(sink, batch.schema(), Some(props)).map_err(pq_err(tmp))?;
    writer.write(batch).map_err(pq_err(tmp))?;
    let sink = writer.into_inner().map_err(pq_err(tmp))?;
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| io_err("write", tmp)(e.into_error()))?;
    set_read_only(&file).map_err(io_err("make read-only", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))?;
    Ok((hex::encode(sink.hasher.finalize()), sink.bytes))
}

/// Gives `tmp` the name `path`, failing with `AlreadyExists` rather than
/// replacing a file.
fn publish(tmp: &Path, path: &Path) -> Result<(), PartitionError> {
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp).map_err(io_err("remove temp file", tmp)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(PartitionError::AlreadyExists {
            path: path.to_owned(),
        }),
        // No hard links on this file system: check, then rename.
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(PartitionError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
            fs::rename(tmp, path).map_err(io_err("rename temp file to", path))
        }
    }
}

#[cfg(unix)]
fn set_read_only(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn set_read_only(file: &File) -> io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(true);
    file.set_permissions(perms)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), PartitionError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), PartitionError> {
    Ok(())
}

/// Creates `dir` and any missing parents, fsyncing the parent of each new
/// directory so that the new entries are durable.
fn create_dir_synced(dir: &Path) -> Result<(), PartitionError> {
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("create directory", d)(e))
            }
            _ => {}
        }
        sync_dir(d.parent().unwrap_or(Path::new("")))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Rows → arrays

/// What the generic writer needs to know about a dataset's rows.
trait Row: Sized {
    const DATASET: Dataset;
    /// `(column, nulls_first)` the rows of a file are sorted by.
    const SORTED_BY: &'static [(&'static str, bool)];
    /// The partitioning time.
    fn event_time(&self) -> i64;
    /// Order of rows inside a file.
    fn cmp_in_file(a: &(Self, Stamp), b: &(Self, Stamp)) -> Ordering;
    /// The array of column `name`, or `None` if there is no such column.
    fn column(rows: &[(Self, Stamp)], name: &str, collector_id: &str) -> Option<Col>;

    /// A batch with the schema's columns, in the schema's order.
    fn batch(
        rows: &[(Self, Stamp)],
        collector_id: &str,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let arrays = schema
            .fields()
            .iter()
            .map(|f| {
                let col = Self::column(rows, f.name(), collector_id).ok_or_else(|| {
                    ArrowError::SchemaError(format!("no writer for column {}", f.name()))
                })?;
                Ok(col.into_array(f.data_type()))
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        RecordBatch::try_new(schema.clone(), arrays)
    }
}

/// A column's values before they are given their exact Arrow type.
enum Col {
    Str(Vec<Option<String>>),
    Time(Vec<Option<i64>>),
    Int(Vec<Option<i64>>),
    UInt(Vec<u64>),
    List(Vec<Vec<String>>),
    Map(Vec<Vec<(String, String)>>),
}

fn strs<'a, R: 'a>(rows: &'a [(R, Stamp)], f: impl Fn(&'a R) -> Option<&'a str>) -> Col {
    Col::Str(rows.iter().map(|r| f(&r.0).map(str::to_owned)).collect())
}

impl Col {
    fn into_array(self, ty: &DataType) -> ArrayRef {
        match self {
            Col::Str(v) => Arc::new(StringArray::from(v)),
            Col::Time(v) => Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")),
            Col::Int(v) => Arc::new(Int64Array::from(v)),
            Col::UInt(v) => Arc::new(UInt64Array::from(v)),
            Col::List(v) => {
                let mut b = ListBuilder::new(StringBuilder::new());
                if let DataType::List(item) = ty {
                    b = b.with_field(item.clone());
                }
                for list in v {
                    for s in list {
                        b.values().append_value(s);
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
            Col::Map(v) => {
                let mut b = map_builder(ty);
                for map in v {
                    for (k, val) in map {
                        b.keys().append_value(k);
                        b.values().append_value(val);
                    }
                    // Cannot fail: keys and values were appended in pairs.
                    let _ = b.append(true);
                }
                Arc::new(b.finish())
            }
        }
    }
}

/// A map builder whose entry, key and value fields are those of `ty`.
fn map_builder(ty: &DataType) -> MapBuilder<StringBuilder, StringBuilder> {
    let fields: Option<(&FieldRef, FieldRef, FieldRef)> = match ty {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => Some((entries, kv[0].clone(), kv[1].clone())),
            _ => None,
        },
        _ => None,
    };
    match fields {
        Some((entries, key, value)) => MapBuilder::new(
            Some(MapFieldNames {
                entry: entries.name().clone(),
                key: key.name().clone(),
                value: value.name().clone(),
            }),
            StringBuilder::new(),
            StringBuilder::new(),
        )
        .with_keys_field(key)
        .with_values_field(value),
        None => MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
    }
}

fn attrs(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Row for AuditRecord {
    const DATASET: Dataset = Dataset::Audit;
    const SORTED_BY: &'static [(&'static str, bool)] = &[
        ("agent_id", true),
        ("owner_id", false),
        ("start_time", false),
        ("seq", false),
    ];

    fn event_time(&self) -> i64 {
        self.start_time_ns
    }

    fn cmp_in_file(a: &(Self, Stamp), b: &(Self, Stamp)) -> Ordering {
        // `None < Some`: humans (null agent_id) first.
        (&a.0.agent_id, &a.0.owner_id, a.0.start_time_ns, a.1.seq).cmp(&(
            &b.0.agent_id,
            &b.0.owner_id,
            b.0.start_time_ns,
            b.1.seq,
        ))
    }

    fn column(rows: &[(Self, Stamp)], name: &str, collector_id: &str) -> Option<Col> {
        Some(match name {
            "event_id" => strs(rows, |r| Some(r.event_id.as_str())),
            "start_time" => Col::Time(rows.iter().map(|r| Some(r.0.start_time_ns)).collect()),
            "end_time" => Col::Time(rows.iter().map(|r| r.0.end_time_ns).collect()),
            "actor_kind" => strs(rows, |r| Some(r.actor_kind.as_str())),
            "agent_id" => strs(rows, |r| r.agent_id.as_deref()),
            "agent_name" => strs(rows, |r| r.agent_name.as_deref()),
            "agent_credential_id" => strs(rows, |r| r.agent_credential_id.as_deref()),
            "owner_id" => strs(rows, |r| Some(r.owner_id.as_str())),
            "initiator_id" => strs(rows, |r| r.initiator_id.as_deref()),
            "task_id" => strs(rows, |r| r.task_id.as_deref()),
            "action" => strs(rows, |r| Some(r.action.as_str())),
            "target" => strs(rows, |r| r.target.as_deref()),
            "outcome" => strs(rows, |r| Some(r.outcome.as_str())),
            "scopes" => Col::List(rows.iter().map(|r| r.0.scopes.clone()).collect()),
            "consent_id" => strs(rows, |r| r.consent_id.as_deref()),
            "inputs_sha256" => strs(rows, |r| r.inputs_sha256.as_deref()),
            "service_name" => strs(rows, |r| Some(r.service_name.as_str())),
            "service_instance_id" => strs(rows, |r| r.service_instance_id.as_deref()),
            "trace_id" => strs(rows, |r| r.trace_id.as_deref()),
            "span_id" => strs(rows, |r| r.span_id.as_deref()),
            "attributes" => Col::Map(rows.iter().map(|r| attrs(&r.0.attributes)).collect()),
            "received_time" => Col::Time(rows.iter().map(|r| Some(r.1.received_time_ns)).collect()),
            "collector_id" => Col::Str(vec![Some(collector_id.to_owned()); rows.len()]),
            "seq" => Col::UInt(rows.iter().map(|r| r.1.seq).collect()),
            _ => return None,
        })
    }
}

impl Row for ViolationRecord {
    const DATASET: Dataset = Dataset::Violations;
    const SORTED_BY: &'static [(&'static str, bool)] =
        &[("service_name", false), ("time", false), ("seq", false)];

    fn event_time(&self) -> i64 {
        self.time_ns
    }

    fn cmp_in_file(a: &(Self, Stamp), b: &(Self, Stamp)) -> Ordering {
        (&a.0.service_name, a.0.time_ns, a.1.seq).cmp(&(&b.0.service_name, b.0.time_ns, b.1.seq))
    }

    fn column(rows: &[(Self, Stamp)], name: &str, collector_id: &str) -> Option<Col> {
        Some(match name {
            "event_id" => strs(rows, |r| Some(r.event_id.as_str())),
            "time" => Col::Time(rows.iter().map(|r| Some(r.0.time_ns)).collect()),
            "detected_by" => strs(rows, |r| Some(r.detected_by.as_str())),
            "missing" => Col::List(rows.iter().map(|r| r.0.missing.clone()).collect()),
            "reason" => strs(rows, |r| Some(r.reason.as_str())),
            "span_target" => strs(rows, |r| r.span_target.as_deref()),
            "span_name" => strs(rows, |r| r.span_name.as_deref()),
            "code_file" => strs(rows, |r| r.code_file.as_deref()),
            "code_line" => Col::Int(rows.iter().map(|r| r.0.code_line).collect()),
            "action" => strs(rows, |r| r.action.as_deref()),
            "actor_kind" => strs(rows, |r| r.actor_kind.as_deref()),
            "agent_id" => strs(rows, |r| r.agent_id.as_deref()),
            "owner_id" => strs(rows, |r| r.owner_id.as_deref()),
            "service_name" => strs(rows, |r| Some(r.service_name.as_str())),
            "service_instance_id" => strs(rows, |r| r.service_instance_id.as_deref()),
            "trace_id" => strs(rows, |r| r.trace_id.as_deref()),
            "span_id" => strs(rows, |r| r.span_id.as_deref()),
            "attributes" => Col::Map(rows.iter().map(|r| attrs(&r.0.attributes)).collect()),
            "received_time" => Col::Time(rows.iter().map(|r| Some(r.1.received_time_ns)).collect()),
            "collector_id" => Col::Str(vec![Some(collector_id.to_owned()); rows.len()]),
            "seq" => Col::UInt(rows.iter().map(|r| r.1.seq).collect()),
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Arrays → rows

/// Typed access to the columns of one record batch, with errors naming the
/// file and column.
struct Cols<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
}

impl<'a> Cols<'a> {
    fn get<T: Array + 'static>(&self, name: &str) -> Result<&'a T, PartitionError> {
        let col = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| schema_err(self.path, format!("column {name} is missing")))?;
        col.as_any().downcast_ref::<T>().ok_or_else(|| {
            schema_err(
                self.path,
                format!("column {name} has type {}", col.data_type()),
            )
        })
    }

    fn str(&self, name: &'static str) -> Result<StrCol<'a>, PartitionError> {
        Ok(StrCol {
            arr: self.get::<StringArray>(name)?,
            name,
            path: self.path,
        })
    }

    fn time(&self, name: &'static str) -> Result<&'a TimestampNanosecondArray, PartitionError> {
        self.get(name)
    }

    fn list(&self, name: &'static str) -> Result<&'a ListArray, PartitionError> {
        self.get(name)
    }

    fn map(&self, name: &'static str) -> Result<&'a MapArray, PartitionError> {
        self.get(name)
    }
}

struct StrCol<'a> {
    arr: &'a StringArray,
    name: &'static str,
    path: &'a Path,
}

impl StrCol<'_> {
    fn opt(&self, i: usize) -> Option<String> {
        self.arr.is_valid(i).then(|| self.arr.value(i).to_owned())
    }

    fn req(&self, i: usize) -> Result<String, PartitionError> {
        self.opt(i).ok_or_else(|| null_err(self.path, self.name, i))
    }
}

fn null_err(path: &Path, name: &str, row: usize) -> PartitionError {
    schema_err(path, format!("column {name} is null in row {row}"))
}

fn req_i64(
    arr: &TimestampNanosecondArray,
    name: &str,
    i: usize,
    path: &Path,
) -> Result<i64, PartitionError> {
    if arr.is_valid(i) {
        Ok(arr.value(i))
    } else {
        Err(null_err(path, name, i))
    }
}

fn opt_i64(arr: &TimestampNanosecondArray, i: usize) -> Option<i64> {
    arr.is_valid(i).then(|| arr.value(i))
}

fn strings_of(arr: &dyn Array, what: &str, path: &Path) -> Result<Vec<String>, PartitionError> {
    let s = arr
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| schema_err(path, format!("{what} holds {}", arr.data_type())))?;
    (0..s.len())
        .map(|j| {
            s.is_valid(j)
                .then(|| s.value(j).to_owned())
                .ok_or_else(|| schema_err(path, format!("{what} holds a null")))
        })
        .collect()
}

fn list_at(
    arr: &ListArray,
    name: &str,
    i: usize,
    path: &Path,
) -> Result<Vec<String>, PartitionError> {
    if arr.is_null(i) {
        return Err(null_err(path, name, i));
    }
    strings_of(arr.value(i).as_ref(), &format!("column {name}"), path)
}

fn map_at(
    arr: &MapArray,
    name: &str,
    i: usize,
    path: &Path,
) -> Result<BTreeMap<String, String>, PartitionError> {
    if arr.is_null(i) {
        return Err(null_err(path, name, i));
    }
    let entries: StructArray = arr.value(i);
    if entries.num_columns() != 2 {
        return Err(schema_err(
            path,
            format!("column {name} is not a key/value map"),
        ));
    }
    let what = format!("column {name}");
    let keys = strings_of(entries.column(0).as_ref(), &what, path)?;
    let values = strings_of(entries.column(1).as_ref(), &what, path)?;
    Ok(keys.into_iter().zip(values).collect())
}

fn stamp_and_collector(c: &Cols<'_>, n: usize) -> Result<Vec<(Stamp, String)>, PartitionError> {
    let received = c.time("received_time")?;
    let collector = c.str("collector_id")?;
    let seq = c.get::<UInt64Array>("seq")?;
    (0..n)
        .map(|i| {
            if seq.is_null(i) {
                return Err(null_err(c.path, "seq", i));
            }
            Ok((
                Stamp {
                    received_time_ns: req_i64(received, "received_time", i, c.path)?,
                    seq: seq.value(i),
                },
                collector.req(i)?,
            ))
        })
        .collect()
}

fn audit_rows(c: &Cols<'_>) -> Result<Vec<(AuditRecord, Stamp, String)>, PartitionError> {
    let n = c.batch.num_rows();
    let p = c.path;
    let event_id = c.str("event_id")?;
    let start = c.time("start_time")?;
    let end = c.time("end_time")?;
    let actor_kind = c.str("actor_kind")?;
    let agent_id = c.str("agent_id")?;
    let agent_name = c.str("agent_name")?;
    let agent_credential_id = c.str("agent_credential_id")?;
    let owner_id = c.str("owner_id")?;
    let initiator_id = c.str("initiator_id")?;
    let task_id = c.str("task_id")?;
    let action = c.str("action")?;
    let target = c.str("target")?;
    let outcome = c.str("outcome")?;
    let scopes = c.list("scopes")?;
    let consent_id = c.str("consent_id")?;
    let inputs_sha256 = c.str("inputs_sha256")?;
    let service_name = c.str("service_name")?;
    let service_instance_id = c.str("service_instance_id")?;
    let trace_id = c.str("trace_id")?;
    let span_id = c.str("span_id")?;
    let attributes = c.map("attributes")?;
    let stamps = stamp_and_collector(c, n)?;
    stamps
        .into_iter()
        .enumerate()
        .map(|(i, (stamp, collector))| {
            let kind = actor_kind.req(i)?;
            let actor_kind = ActorKind::parse(&kind).ok_or_else(|| {
                schema_err(
                    p,
                    format!("actor_kind {kind:?} in row {i} is not agent/human"),
                )
            })?;
            let record = AuditRecord {
                event_id: event_id.req(i)?,
                start_time_ns: req_i64(start, "start_time", i, p)?,
                end_time_ns: opt_i64(end, i),
                actor_kind,
                agent_id: agent_id.opt(i),
                agent_name: agent_name.opt(i),
                agent_credential_id: agent_credential_id.opt(i),
                owner_id: owner_id.req(i)?,
                initiator_id: initiator_id.opt(i),
                task_id: task_id.opt(i),
                action: action.req(i)?,
                target: target.opt(i),
                outcome: outcome.req(i)?,
                scopes: list_at(scopes, "scopes", i, p)?,
                consent_id: consent_id.opt(i),
                inputs_sha256: inputs_sha256.opt(i),
                service_name: service_name.req(i)?,
                service_instance_id: service_instance_id.opt(i),
                trace_id: trace_id.opt(i),
                span_id: span_id.opt(i),
                attributes: map_at(attributes, "attributes", i, p)?,
            };
            Ok((record, stamp, collector))
        })
        .collect()
}

fn violation_rows(c: &Cols<'_>) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    let n = c.batch.num_rows();
    let p = c.path;
    let event_id = c.str("event_id")?;
    let time = c.time("time")?;
    let detected_by = c.str("detected_by")?;
    let missing = c.list("missing")?;
    let reason = c.str("reason")?;
    let span_target = c.str("span_target")?;
    let span_name = c.str("span_name")?;
    let code_file = c.str("code_file")?;
    let code_line = c.get::<Int64Array>("code_line")?;
    let action = c.str("action")?;
    let actor_kind = c.str("actor_kind")?;
    let agent_id = c.str("agent_id")?;
    let owner_id = c.str("owner_id")?;
    let service_name = c.str("service_name")?;
    let service_instance_id = c.str("service_instance_id")?;
    let trace_id = c.str("trace_id")?;
    let span_id = c.str("span_id")?;
    let attributes = c.map("attributes")?;
    let stamps = stamp_and_collector(c, n)?;
    stamps
        .into_iter()
        .enumerate()
        .map(|(i, (stamp, collector))| {
            let record = ViolationRecord {
                event_id: event_id.req(i)?,
                time_ns: req_i64(time, "time", i, p)?,
                detected_by: detected_by.req(i)?,
                missing: list_at(missing, "missing", i, p)?,
                reason: reason.req(i)?,
                span_target: span_target.opt(i),
                span_name: span_name.opt(i),
                code_file: code_file.opt(i),
                code_line: code_line.is_valid(i).then(|| code_line.value(i)),
                action: action.opt(i),
                actor_kind: actor_kind.opt(i),
                agent_id: agent_id.opt(i),
                owner_id: owner_id.opt(i),
                service_name: service_name.req(i)?,
                service_instance_id: service_instance_id.opt(i),
                trace_id: trace_id.opt(i),
                span_id: span_id.opt(i),
                attributes: map_at(attributes, "attributes", i, p)?,
            };
            Ok((record, stamp, collector))
        })
        .collect()
}

type Decode<T> = fn(&Cols<'_>) -> Result<Vec<T>, PartitionError>;

fn read_file<T>(path: &Path, decode: Decode<T>) -> Result<Vec<T>, PartitionError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq_err(path))?
        .build()
        .map_err(pq_err(path))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        out.extend(decode(&Cols {
            batch: &batch,
            path,
        })?);
    }
    Ok(out)
}

/// The `event_id` column of one file, read alone (recovery rebuilds its
/// deduplication window from recent files without decoding whole rows).
pub fn read_event_ids(path: &Path) -> Result<Vec<String>, PartitionError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq_err(path))?;
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["event_id"]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(pq_err(path))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow_err(path))?;
        let col = batch
            .column_by_name("event_id")
            .ok_or_else(|| schema_err(path, "no event_id column"))?;
        out.extend(strings_of(col.as_ref(), "event_id", path)?);
    }
    Ok(out)
}

/// Whether a file name is a sealed data file (`part-*.parquet`); temp files
/// (`.part-….parquet.tmp`) and anything else are not.
pub fn is_data_file_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// Every data file of `dataset` under `root`, sorted by path; a missing
/// dataset directory has none.
pub fn data_files(root: &Path, dataset: Dataset) -> Result<Vec<PathBuf>, PartitionError> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(dataset.dir_name())];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list directory", &dir))?;
            let path = entry.path();
            let ty = entry.file_type().map_err(io_err("stat", &path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ty.is_dir() && !name.starts_with('.') {
                stack.push(path);
            } else if ty.is_file() && is_data_file_name(&name) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_dataset<R>(
    root: &Path,
    dataset: Dataset,
    decode: Decode<(R, Stamp, String)>,
) -> Result<Vec<(R, Stamp, String)>, PartitionError> {
    let mut rows = Vec::new();
    for path in data_files(root, dataset)? {
        rows.extend(read_file(&path, decode)?);
    }
    rows.sort_by(|a, b| (&a.2, a.1.seq).cmp(&(&b.2, b.1.seq)));
    Ok(rows)
}

/// Every audit row under `root/audit`, with its stamp and collector id,
/// ordered by `(collector_id, seq)`. For tests, examples and small tools;
/// query engines read the files directly.
pub fn read_audit(root: &Path) -> Result<Vec<(AuditRecord, Stamp, String)>, PartitionError> {
    read_dataset(root, Dataset::Audit, audit_rows)
}

/// Every violation row under `root/violations`, ordered by
/// `(collector_id, seq)`.
pub fn read_violations(
    root: &Path,
) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    read_dataset(root, Dataset::Violations, violation_rows)
}

/// The rows of one audit file, in file order.
pub fn read_audit_file(path: &Path) -> Result<Vec<(AuditRecord, Stamp, String)>, PartitionError> {
    read_file(path, audit_rows)
}

/// The rows of one violations file, in file order.
pub fn read_violations_file(
    path: &Path,
) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    read_file(path, violation_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

    /// ns since the epoch of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_nano_opt(h, mi, s, ns))
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .expect("valid time")
    }

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            received_time_ns: 1_800_000_000_000_000_000 + seq as i64,
            seq,
        }
    }

    /// An agent action with every optional field set.
    fn full(seq: u64, agent: &str, owner: &str, start_ns: i64) -> (AuditRecord, Stamp) {
        let record = AuditRecord {
            event_id: format!("0190c0de-0000-7000-8000-{seq:012}"),
            start_time_ns: start_ns,
            end_time_ns: Some(start_ns + 1_500),
            actor_kind: ActorKind::Agent,
            agent_id: Some(agent.into()),
            agent_name: Some(format!("{agent} (billing bot)")),
            agent_credential_id: Some("cred_2026_11".into()),
            owner_id: owner.into(),
            initiator_id: Some("usr_bob".into()),
            task_id: Some("task-9".into()),
            action: "payments.transfer".into(),
            target: Some("acct:4411".into()),
            outcome: "ok".into(),
            scopes: vec!["payments:write".into(), "accounts:read".into()],
            consent_id: Some("consent-77".into()),
            inputs_sha256: Some("ab".repeat(32)),
            service_name: "billing".into(),
            service_instance_id: Some("billing-0".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            attributes: [("amount", "12.50"), ("currency", "EUR"), ("ünï", "")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        (record, stamp(seq))
    }

    /// A human action with every optional field absent.
    fn bare(seq: u64, owner: &str, start_ns: i64) -> (AuditRecord, Stamp) {
        let record = AuditRecord {
            event_id: format!("0190c0de-0000-7000-9000-{seq:012}"),
            start_time_ns: start_ns,
            end_time_ns: None,
            actor_kind: ActorKind::Human,
            agent_id: None,
            agent_name: None,
            agent_credential_id: None,
            owner_id: owner.into(),
            initiator_id: None,
            task_id: None,
            action: "db.drop_table".into(),
            target: None,
            outcome: "denied".into(),
            scopes: Vec::new(),
            consent_id: None,
            inputs_sha256: None,
            service_name: "ops".into(),
            service_instance_id: None,
            trace_id: None,
            span_id: None,
            attributes: BTreeMap::new(),
        };
        (record, stamp(seq))
    }

    fn violation(seq: u64, service: &str, time_ns: i64, full: bool) -> (ViolationRecord, Stamp) {
        let mut v = ViolationRecord {
            event_id: format!("0190c0de-0000-7000-a000-{seq:012}"),
            time_ns,
            detected_by: "collector".into(),
            missing: vec!["audit.owner.id".into()],
            reason: "no accountable owner".into(),
            service_name: service.into(),
            ..Default::default()
        };
        if full {
            v.missing.push("gen_ai.agent.id".into());
            v.span_target = Some("billing::pay".into());
            v.span_name = Some("transfer".into());
            v.code_file = Some("src/pay.rs".into());
            v.code_line = Some(42);
            v.action = Some("payments.transfer".into());
            v.actor_kind = Some("robot".into());
            v.agent_id = Some("agt_7f3".into());
            v.owner_id = Some("".into());
            v.service_instance_id = Some("billing-1".into());
            v.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
            v.span_id = Some("b7ad6b7169203331".into());
            v.attributes.insert("k".into(), "v".into());
        }
        (v, stamp(seq))
    }

    fn file_sha256(path: &Path) -> String {
        hex::encode(Sha256::digest(fs::read(path).unwrap()))
    }

    fn reader(path: &Path) -> SerializedFileReader<File> {
        let options = ReadOptionsBuilder::new()
            .with_reader_properties(
                ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        SerializedFileReader::new_with_options(File::open(path).unwrap(), options).unwrap()
    }

    const T0: (i32, u32, u32) = (2026, 11, 28);

    #[test]
    fn every_audit_column_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 3, 14, 15, 926_535_897);
        let rows = vec![
            full(10, "agt_7f3", "usr_alice", t),
            bare(11, "usr_carol", t + 1),
            full(12, "agt_00a", "usr_alice", t + 2),
        ];
        let w = PartitionWriter::new(dir.path(), "col-1");
        let sealed = w.seal_audit(rows.clone()).unwrap();
        assert_eq!(sealed.len(), 1);
        let f = &sealed[0];
        assert_eq!(f.dataset, Dataset::Audit);
        assert_eq!(
            f.path,
            Path::new("audit/date=2026-11-28/hour=03/part-col-1-00000000000000000010.parquet")
        );
        assert_eq!((f.rows, f.seq_min, f.seq_max), (3, 10, 12));
        assert_eq!((f.time_min_ns, f.time_max_ns), (t, t + 2));
        let full_path = dir.path().join(&f.path);
        assert_eq!(f.sha256, file_sha256(&full_path));
        assert_eq!(f.bytes, fs::metadata(&full_path).unwrap().len());

        let back = read_audit(dir.path()).unwrap();
        let expected: Vec<_> = rows
            .into_iter()
            .map(|(r, s)| (r, s, "col-1".to_owned()))
            .collect();
        assert_eq!(back, expected);

        // The file's schema is exactly the shared one: no date/hour inside.
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&full_path).unwrap()).unwrap();
        let want = columns::arrow_schema(columns::AUDIT);
        assert_eq!(builder.schema().fields(), want.fields());
    }

    #[test]
    fn every_violation_column_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 23, 59, 59, 999_999_999);
        let rows = vec![
            violation(5, "billing", t, true),
            violation(6, "billing", t, false),
        ];
        let sealed = PartitionWriter::new(dir.path(), "c")
            .seal_violations(rows.clone())
            .unwrap();
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].dataset, Dataset::Violations);
        assert_eq!(
            sealed[0].path,
            Path::new("violations/date=2026-11-28/hour=23/part-c-00000000000000000005.parquet")
        );
        let back = read_violations(dir.path()).unwrap();
        let expected: Vec<_> = rows.into_iter().map(|(r, s)| (r, s, "c".into())).collect();
        assert_eq!(back, expected);
        assert!(read_audit(dir.path()).unwrap().is_empty());
        let file = dir.path().join(&sealed[0].path);
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(file).unwrap()).unwrap();
        let want = columns::arrow_schema(columns::VIOLATIONS);
        assert_eq!(builder.schema().fields(), want.fields());
    }

    #[test]
    fn rows_of_two_hours_go_to_two_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let late = at(T0.0, T0.1, T0.2, 3, 59, 59, 999_999_999);
        let next = at(T0.0, T0.1, T0.2, 4, 0, 0, 0);
        let midnight = at(T0.0, T0.1, T0.2 + 1, 0, 0, 0, 1);
        // The later hour holds the smaller seq: files come back in seq order.
        let rows = vec![
            full(7, "agt_a", "usr_alice", next),
            full(8, "agt_a", "usr_alice", late),
            full(9, "agt_a", "usr_alice", midnight),
            full(10, "agt_b", "usr_alice", next),
        ];
        let sealed = PartitionWriter::new(dir.path(), "c1")
            .seal_audit(rows)
            .unwrap();
        let paths: Vec<_> = sealed.iter().map(|f| f.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "audit/date=2026-11-28/hour=04/part-c1-00000000000000000007.parquet",
                "audit/date=2026-11-28/hour=03/part-c1-00000000000000000008.parquet",
                "audit/date=2026-11-29/hour=00/part-c1-00000000000000000009.parquet",
            ]
        );
        let seqs: Vec<_> = sealed
            .iter()
            .map(|f| (f.rows, f.seq_min, f.seq_max))
            .collect();
        assert_eq!(seqs, [(2, 7, 10), (1, 8, 8), (1, 9, 9)]);
        assert_eq!((sealed[0].time_min_ns, sealed[0].time_max_ns), (next, next));
        for f in &sealed {
            let rows = read_audit_file(&dir.path().join(&f.path)).unwrap();
            assert_eq!(rows.len() as u64, f.rows);
            for (r, _, _) in rows {
                let (y, m, d, h) = hour_of(r.start_time_ns);
                let prefix = format!("audit/date={y:04}-{m:02}-{d:02}/hour={h:02}/");
                assert!(f.path.to_str().unwrap().starts_with(&prefix));
            }
        }
        assert_eq!(read_audit(dir.path()).unwrap().len(), 4);
    }

    #[test]
    fn before_1970_partitions_by_utc_too() {
        assert_eq!(hour_of(-1), (1969, 12, 31, 23));
        assert_eq!(hour_of(0), (1970, 1, 1, 0));
    }

    #[cfg(unix)]
    #[test]
    fn files_are_read_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
        let w = PartitionWriter::new(dir.path(), "c");
        let first = w.seal_audit(vec![full(1, "agt_a", "usr_a", t)]).unwrap();
        let path = dir.path().join(&first[0].path);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);

        let again = w.seal_audit(vec![full(1, "agt_other", "usr_b", t)]);
        match again {
            Err(PartitionError::AlreadyExists { path: p }) => {
                assert_eq!(p, path);
                let msg = PartitionError::AlreadyExists { path: p }.to_string();
                assert!(msg.contains("part-c-00000000000000000001.parquet"), "{msg}");
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        // A batch where only one file collides writes nothing at all.
        let mixed = w.seal_audit(vec![
            full(1, "agt_x", "usr_b", t),
            full(2, "agt_x", "usr_b", t + 3_600_000_000_000),
        ]);
        assert!(matches!(mixed, Err(PartitionError::AlreadyExists { .. })));
        assert_eq!(file_sha256(&path), first[0].sha256);
        let rows = read_audit(dir.path()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0.agent_id.as_deref(), Some("agt_a"));
        // Nothing else, temp files included, was left behind.
        let part_dir = path.parent().unwrap();
        assert_eq!(fs::read_dir(part_dir).unwrap().count(), 1);
        assert_eq!(fs::read_dir(dir.path().join("audit")).unwrap().count(), 1);
    }

    #[test]
    fn rows_inside_a_file_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 5, 0, 0, 0);
        let rows = vec![
            full(1, "agt_b", "usr_a", t + 5),
            full(2, "agt_a", "usr_b", t + 1),
            bare(3, "usr_z", t + 9),
            full(4, "agt_a", "usr_a", t + 7),
            full(5, "agt_a", "usr_a", t + 2),
            bare(6, "usr_a", t + 9),
            full(7, "agt_a", "usr_a", t + 2),
        ];
        let w = PartitionWriter::new(dir.path(), "c").with_row_group_size(3);
        let sealed = w.seal_audit(rows).unwrap();
        let path = dir.path().join(&sealed[0].path);
        let got: Vec<u64> = read_audit_file(&path)
            .unwrap()
            .iter()
            .map(|r| r.1.seq)
            .collect();
        // Humans (null agent) first, then by agent, owner, start time, seq.
        assert_eq!(got, [6, 3, 5, 7, 4, 2, 1]);
        let meta = reader(&path).metadata().clone();
        assert_eq!(meta.num_row_groups(), 3);
        let sorting = meta.row_group(0).sorting_columns().unwrap();
        let leaf = |i: i32| {
            meta.file_metadata()
                .schema_descr()
                .column(i as usize)
                .name()
                .to_owned()
        };
        let names: Vec<_> = sorting
            .iter()
            .map(|s| (leaf(s.column_idx), s.nulls_first))
            .collect();
        assert_eq!(
            names,
            [
                ("agent_id".to_owned(), true),
                ("owner_id".to_owned(), false),
                ("start_time".to_owned(), false),
                ("seq".to_owned(), false),
            ]
        );

        let t = at(T0.0, T0.1, T0.2, 6, 0, 0, 0);
        let vs = vec![
            violation(20, "zeta", t, false),
            violation(21, "alpha", t + 5, true),
            violation(22, "alpha", t + 1, false),
            violation(23, "alpha", t + 1, true),
        ];
        let sealed = w.seal_violations(vs).unwrap();
        let got: Vec<u64> = read_violations_file(&dir.path().join(&sealed[0].path))
            .unwrap()
            .iter()
            .map(|r| r.1.seq)
            .collect();
        assert_eq!(got, [22, 23, 21, 20]);
    }

    #[test]
    fn empty_input_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let w = PartitionWriter::new(&root, "c");
        assert!(w.seal_audit(Vec::new()).unwrap().is_empty());
        assert!(w.seal_violations(Vec::new()).unwrap().is_empty());
        assert!(!root.exists());
        assert!(read_audit(&root).unwrap().is_empty());
        assert!(read_violations(&root).unwrap().is_empty());
    }

    #[test]
    fn temp_files_left_behind_are_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
        let w = PartitionWriter::new(dir.path(), "c");
        let sealed = w.seal_audit(vec![full(1, "agt_a", "usr_a", t)]).unwrap();
        let part_dir = dir
            .path()
            .join(&sealed[0].path)
            .parent()
            .unwrap()
            .to_owned();
        // What a crash mid-seal leaves: a half-written temp file (garbage).
        fs::write(
            part_dir.join(".part-c-00000000000000000002.parquet.tmp"),
            b"PAR1 trunc",
        )
        .unwrap();
        fs::write(
            part_dir.join("part-c-00000000000000000003.parquet.tmp"),
            b"junk",
        )
        .unwrap();
        fs::write(part_dir.join("notes.txt"), b"junk").unwrap();
        assert_eq!(read_audit(dir.path()).unwrap().len(), 1);
        assert_eq!(data_files(dir.path(), Dataset::Audit).unwrap().len(), 1);
        // And a stale temp file with the next seq's name does not block its seal.
        let next = w.seal_audit(vec![full(2, "agt_a", "usr_a", t)]).unwrap();
        assert_eq!(next[0].seq_min, 2);
        assert_eq!(read_audit(dir.path()).unwrap().len(), 2);
        assert!(!part_dir
            .join(".part-c-00000000000000000002.parquet.tmp")
            .exists());
    }

    #[test]
    fn files_are_zstd_with_a_bloom_filter_on_event_id() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
        let rows: Vec<_> = (1..=5)
            .map(|s| full(s, "agt_a", "usr_a", t + s as i64))
            .collect();
        let ids: Vec<_> = rows.iter().map(|r| r.0.event_id.clone()).collect();
        let w = PartitionWriter::new(dir.path(), "c").with_row_group_size(2);
        let sealed = w.seal_audit(rows).unwrap();
        let file = reader(&dir.path().join(&sealed[0].path));
        let meta = file.metadata();
        assert_eq!(meta.num_row_groups(), 3);
        let schema = meta.file_metadata().schema_descr();
        let event_id = (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == "event_id")
            .unwrap();
        let owner_id = (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == "owner_id")
            .unwrap();
        for (g, rg) in meta.row_groups().iter().enumerate() {
            for c in rg.columns() {
                assert!(
                    matches!(c.compression(), Compression::ZSTD(_)),
                    "{} is {:?}",
                    c.column_path(),
                    c.compression()
                );
                assert!(
                    c.statistics().is_some(),
                    "{} has no statistics",
                    c.column_path()
                );
                assert!(
                    c.column_index_offset().is_some(),
                    "{} has no page index",
                    c.column_path()
                );
            }
            assert!(rg.column(event_id).bloom_filter_offset().is_some());
            assert!(rg.column(owner_id).bloom_filter_offset().is_none());
            let bloom = file
                .get_row_group(g)
                .unwrap()
                .get_column_bloom_filter(event_id)
                .cloned()
                .expect("bloom filter on event_id");
            let first = &ids[g * 2];
            assert!(bloom.check(first.as_str()));
        }
        assert!(meta.file_metadata().key_value_metadata().is_some());
    }

    #[test]
    fn bad_collector_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(T0.0, T0.1, T0.2, 3, 0, 0, 0);
        for id in ["", "../x", ".hidden", "a/b"] {
            let err = PartitionWriter::new(dir.path(), id)
                .seal_audit(vec![full(1, "a", "o", t)])
                .unwrap_err();
            assert!(
                matches!(err, PartitionError::InvalidCollectorId { .. }),
                "{id}: {err}"
            );
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit/date=2026-11-28/hour=03");
        fs::create_dir_all(&p).unwrap();
        fs::write(
            p.join("part-c-00000000000000000001.parquet"),
            b"not parquet",
        )
        .unwrap();
        let err = read_audit(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("part-c-00000000000000000001.parquet"),
            "{err}"
        );
    }
}
