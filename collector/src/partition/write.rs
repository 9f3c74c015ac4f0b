//! Rows to immutable Parquet files.

use super::rows::{file_order, Row};
use super::unsealed::Unsealed;
use super::*;
use arrow_array::UInt32Array;
use arrow_select::take::take_record_batch;

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
        self.seal(buffered(rows))
    }

    /// Like [`PartitionWriter::seal_audit`] for violations, partitioned by
    /// each row's `time`.
    pub fn seal_violations(
        &self,
        rows: Vec<(ViolationRecord, Stamp)>,
    ) -> Result<Vec<SealedFile>, PartitionError> {
        self.seal(buffered(rows))
    }

    /// Like [`PartitionWriter::seal_audit`], from rows already in columns.
    pub fn seal<R: Row>(&self, rows: Unsealed<R>) -> Result<Vec<SealedFile>, PartitionError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        check_collector_id(&self.collector_id)?;
        let schema = rows.schema().clone();
        // Plan every file first, so a reused seq fails before anything is written.
        let mut plans = Vec::new();
        for ((y, m, d, h), part) in rows.into_parts() {
            let seq_min = part.stats.seq_min;
            let rel = format!(
                "{}/date={y:04}-{m:02}-{d:02}/hour={h:02}/part-{}-{seq_min:020}.parquet",
                R::DATASET.dir_name(),
                self.collector_id
            );
            let full = self.root.join(&rel);
            if fs::symlink_metadata(&full).is_ok() {
                return Err(PartitionError::AlreadyExists { path: full });
            }
            plans.push((rel, full, part));
        }
        let mut sealed = Vec::with_capacity(plans.len());
        // Parts go one at a time, each dropped once its file is written.
        for (rel, full, part) in plans {
            let stats = part.stats;
            let batch = part
                .finish(&self.collector_id, &schema)
                .map_err(arrow_err(&full))?;
            let order = file_order(&batch, R::SORTED_BY).map_err(|m| schema_err(&full, m))?;
            let props = self.properties(&schema, R::SORTED_BY, stats.rows, &full)?;
            let (sha256, bytes) = write_immutable(&self.root, &full, &batch, &order, props)?;
            sealed.push(SealedFile {
                dataset: R::DATASET,
                path: PathBuf::from(rel),
                rows: stats.rows as u64,
                seq_min: stats.seq_min,
                seq_max: stats.seq_max,
                time_min_ns: stats.time_min_ns,
                time_max_ns: stats.time_max_ns,
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
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(self.row_group_size))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_column_bloom_filter_enabled(event_id.clone(), true)
            .set_column_bloom_filter_max_ndv(event_id, rows.min(self.row_group_size) as u64)
            .set_sorting_columns(Some(sorting));
        for column in UNIQUE_PER_ROW {
            props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
        }
        Ok(props.build())
    }
}

/// Rows per data page, at most (the writer checks between its batches of
/// 1,024 rows). A reader that found its rows through the page index
/// decompresses each page that holds one of them whole: with the writer's
/// default of a megabyte per page, an `event_id` page held 26,000 rows,
/// and printing an agent's 50 rows of a file meant decompressing and
/// decoding a megabyte per printed column.
pub(super) const PAGE_ROWS: usize = 4096;

/// Columns whose values (nearly) never repeat. A dictionary saves nothing
/// on them, and costs every reader: a row's value sits in the column
/// chunk's dictionary page, which is read and decompressed whole (about a
/// megabyte before the writer falls back to plain pages) even to print one
/// row found through the page index. Plain pages are read only where the
/// rows are.
const UNIQUE_PER_ROW: &[&str] = &[
    "event_id",
    "start_time",
    "end_time",
    "time",
    "trace_id",
    "span_id",
    "seq",
    "consent_token",
];

/// Rows into the columnar buffer a seal takes.
fn buffered<R: Row>(rows: Vec<(R, Stamp)>) -> Unsealed<R> {
    let mut buf = Unsealed::default();
    for (record, stamp) in rows {
        buf.push(&record, stamp);
    }
    buf
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
pub(super) type HourKey = (i32, u32, u32, u32);

/// The partition of a time in ns since the epoch.
pub(super) fn hour_of(ns: i64) -> HourKey {
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

/// Rows copied into file order at a time while a file is written.
const SORTED_SLICE_ROWS: usize = 4_096;

/// Writes the rows of `batch` in `order` to `path` (under `root`) under a
/// temp name and publishes it without replacing anything; returns the hex
/// SHA-256 and size of the file.
fn write_immutable(
    root: &Path,
    path: &Path,
    batch: &RecordBatch,
    order: &[u32],
    props: WriterProperties,
) -> Result<(String, u64), PartitionError> {
    let dir = path
        .parent()
        .ok_or_else(|| schema_err(path, "file path has no directory"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| schema_err(path, "file path has no UTF-8 name"))?;
    // Every level, not only the new ones: a seal that failed may have left
    // a directory whose name never reached the disk.
    create_dir_durable(root, dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temp file left by an interrupted seal is garbage (and may be read-only).
    match fsio::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("remove stale temp file", &tmp)(e))
        }
        _ => {}
    }
    let result = write_temp(&tmp, batch, order, props).and_then(|digest| {
        publish(&tmp, path)?;
        sync_dir(dir)?;
        Ok(digest)
    });
    if result.is_err() {
        let _ = fsio::remove_file(&tmp);
    }
    result
}

fn write_temp(
    tmp: &Path,
    batch: &RecordBatch,
    order: &[u32],
    props: WriterProperties,
) -> Result<(String, u64), PartitionError> {
    let file = fsio::open(OpenOptions::new().write(true).create_new(true), tmp)
        .map_err(io_err("create temp file", tmp))?;
    let sink = Hashing {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut writer =
        ArrowWriter::try_new(sink, batch.schema(), Some(props)).map_err(pq_err(tmp))?;
    // The sorted copy is made a slice at a time: the writer encodes and
    // compresses each slice into its row group (flushed when full), so a
    // seal holds a slice of rows beside the buffer, not a copy of it.
    for group in order.chunks(SORTED_SLICE_ROWS) {
        let rows =
            take_record_batch(batch, &UInt32Array::from(group.to_vec())).map_err(arrow_err(tmp))?;
        writer.write(&rows).map_err(pq_err(tmp))?;
    }
    let sink = writer.into_inner().map_err(pq_err(tmp))?;
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| io_err("write", tmp)(e.into_error()))?;
    fsio::set_read_only(&file).map_err(io_err("make read-only", tmp))?;
    fsio::sync_filled(&file, tmp).map_err(io_err("fsync", tmp))?;
    Ok((hex::encode(sink.hasher.finalize()), sink.bytes))
}

/// Gives `tmp` the name `path` (never replacing a file), as a partition error.
fn publish(tmp: &Path, path: &Path) -> Result<(), PartitionError> {
    fsio::publish(tmp, path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => PartitionError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => io_err("publish temp file as", path)(e),
    })
}

fn sync_dir(dir: &Path) -> Result<(), PartitionError> {
    fsio::sync_dir(dir).map_err(io_err("fsync directory", dir))
}

fn create_dir_durable(root: &Path, dir: &Path) -> Result<(), PartitionError> {
    fsio::create_dir_durable(root, dir).map_err(io_err("create directory", dir))
}
