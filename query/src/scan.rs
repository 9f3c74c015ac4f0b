//! The direct reader: `who` and `activity` over a local dataset read with
//! the parquet crate alone, without planning SQL. It answers exactly what
//! [`crate::who::sql`] and [`crate::activity::sql`] answer (the
//! differential tests in `scan_tests.rs` run both on the same files), for
//! a fraction of the time: only the hour directories the question needs
//! are listed, a row group is skipped when its statistics (or, for an
//! event id, its bloom filter) rule the question out, the question's own
//! columns are decoded first and the printed ones only for matching rows.
//!
//! The SQL stays what the commands show with `--show-sql`, what the
//! console and `prove-human` run, and what answers over a bucket.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::{cast, concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::arrow::compute::{SortColumn, SortOptions};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimestampNanosecondType};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter, RowSelection,
};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, RowGroupMetaData};
use datafusion::parquet::file::statistics::Statistics;

use super::activity::{Range, Subject};
use super::pages;
use super::QueryError;

/// What a row must satisfy: the `WHERE` of `who`'s or `activity`'s SQL.
#[derive(Clone, Debug)]
pub enum Question {
    /// `event_id = id`.
    EventId(String),
    /// The subject's rows with `from <= start_time < to`.
    Activity {
        /// Whose.
        subject: Subject,
        /// Inclusive, ns.
        from: i64,
        /// Exclusive, ns.
        to: i64,
    },
}

impl Question {
    /// `activity`'s question over `range`.
    pub fn activity(subject: &Subject, range: Range) -> Question {
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt();
        Question::Activity {
            subject: subject.clone(),
            from: ns(range.from).unwrap_or(i64::MIN),
            to: ns(range.to).unwrap_or(i64::MAX),
        }
    }

    /// The columns the question is decided on.
    fn columns(&self) -> &'static [&'static str] {
        match self {
            Question::EventId(_) => &["event_id"],
            Question::Activity { subject, .. } => match subject {
                Subject::Agent(_) => &["agent_id", "action", "target", "start_time"],
                Subject::Owner(_) => &["owner_id", "start_time"],
                Subject::Origin(_) => &["origin_id", "delegation", "owner_id", "start_time"],
            },
        }
    }

    /// Which rows of `b` (holding [`Question::columns`], those the file
    /// has) match. SQL's `NULL` is "not a match" here: the predicates use
    /// no `NOT`, so a comparison with a null leaf never turns a row in.
    fn matches(&self, b: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let n = b.num_rows();
        let col = |name| strings(b, name);
        let out: Vec<bool> = match self {
            Question::EventId(id) => {
                let ids = col("event_id")?;
                (0..n).map(|i| ids.is(i, id)).collect()
            }
            Question::Activity { subject, from, to } => {
                let times = times(b, "start_time")?;
                let in_range = |i: usize| times.get(i).is_some_and(|t| *from <= t && t < *to);
                match subject {
                    Subject::Agent(id) => {
                        let (agent, action, target) =
                            (col("agent_id")?, col("action")?, col("target")?);
                        (0..n)
                            .map(|i| {
                                in_range(i)
                                    && (agent.is(i, id)
                                        || (action
                                            .get(i)
                                            .is_some_and(|a| a.starts_with("identity."))
                                            && target.is(i, id)))
                            })
                            .collect()
                    }
                    Subject::Owner(id) => {
                        let owner = col("owner_id")?;
                        (0..n).map(|i| in_range(i) && owner.is(i, id)).collect()
                    }
                    Subject::Origin(id) => {
                        let (origin, chain, owner) =
                            (col("origin_id")?, col("delegation")?, col("owner_id")?);
                        (0..n)
                            .map(|i| {
                                in_range(i)
                                    && (origin.is(i, id)
                                        || (origin.get(i).is_none()
                                            && chain.get(i).is_none()
                                            && owner.is(i, id)))
                            })
                            .collect()
                    }
                }
            }
        };
        Ok(BooleanArray::from(out))
    }

    /// Which rows of row group `g` lie in pages whose statistics allow a
    /// match (by the page index); `None` for all of them.
    fn page_rows(&self, meta: &ParquetMetaData, g: usize, root: &[String]) -> Option<Vec<bool>> {
        let rg = meta.row_group(g);
        let leaf = |name: &str| {
            root.iter()
                .position(|c| c == name)
                .and_then(|i| leaf_index(rg, i))
        };
        let rows = usize::try_from(rg.num_rows()).ok()?;
        let equal = |name: &str, v: &str| match root.iter().any(|c| c == name) {
            false => Some(vec![false; rows]),
            true => leaf(name).and_then(|l| {
                pages::rows_where(meta, g, l, |ix, i| pages::may_equal(ix, i, v.as_bytes()))
            }),
        };
        let Question::Activity { subject, from, to } = self else {
            return None;
        };
        let time = leaf("start_time").and_then(|l| {
            pages::rows_where(meta, g, l, |ix, i| pages::may_overlap(ix, i, *from, *to))
        });
        let key = match subject {
            Subject::Agent(id) => pages::or(equal("agent_id", id), equal("target", id)),
            Subject::Owner(id) => equal("owner_id", id),
            Subject::Origin(_) => None,
        };
        pages::and(key, time)
    }

    /// Whether row group `rg` may hold a matching row, by its statistics:
    /// `false` only when they prove it cannot.
    fn may_match(&self, rg: &RowGroupMetaData, root: &[String]) -> bool {
        let stats = |name: &str| {
            root.iter()
                .position(|c| c == name)
                .and_then(|i| leaf_index(rg, i))
                .map(|i| rg.column(i))
                .and_then(|c| c.statistics())
        };
        // A column the file lacks is null in every row: nothing equals it.
        let may_equal = |name: &str, v: &str| match root.iter().any(|c| c == name) {
            false => false,
            true => stats(name).is_none_or(|s| bytes_may_hold(s, v.as_bytes())),
        };
        match self {
            Question::EventId(id) => may_equal("event_id", id),
            Question::Activity { subject, from, to } => {
                let in_time = match stats("start_time") {
                    Some(Statistics::Int64(s)) => {
                        s.max_opt().is_none_or(|max| max >= from)
                            && s.min_opt().is_none_or(|min| min < to)
                    }
                    _ => true,
                };
                in_time
                    && match subject {
                        Subject::Agent(id) => {
                            may_equal("agent_id", id)
                                || (stats("action")
                                    .is_none_or(|s| bytes_may_start(s, b"identity."))
                                    && may_equal("target", id))
                        }
                        Subject::Owner(id) => may_equal("owner_id", id),
                        // Its second branch matches on the owner of a row
                        // without a chain: no statistic rules a row group out.
                        Subject::Origin(_) => true,
                    }
            }
        }
    }
}

/// Whether a byte-array column's `[min, max]` may hold `v` (parquet's
/// truncated bounds stay bounds).
fn bytes_may_hold(s: &Statistics, v: &[u8]) -> bool {
    s.min_bytes_opt().is_none_or(|min| min <= v) && s.max_bytes_opt().is_none_or(|max| v <= max)
}

/// Whether a byte-array column's `[min, max]` may hold a value starting
/// with `prefix`.
fn bytes_may_start(s: &Statistics, prefix: &[u8]) -> bool {
    let below_max = s.max_bytes_opt().is_none_or(|max| prefix <= max);
    let above_min = s
        .min_bytes_opt()
        .is_none_or(|min| min.starts_with(prefix) || min <= prefix);
    below_max && above_min
}

/// A string column of a batch, `None` in every row when the file lacks it.
struct Strings(Option<ArrayRef>);

impl Strings {
    fn get(&self, i: usize) -> Option<&str> {
        let a = self.0.as_ref()?.as_string::<i32>();
        (!a.is_null(i)).then(|| a.value(i))
    }

    fn is(&self, i: usize, v: &str) -> bool {
        self.get(i) == Some(v)
    }
}

fn strings(b: &RecordBatch, name: &str) -> Result<Strings, ArrowError> {
    match b.column_by_name(name) {
        None => Ok(Strings(None)),
        Some(c) if c.data_type() == &DataType::Utf8 => Ok(Strings(Some(Arc::clone(c)))),
        Some(c) => Ok(Strings(Some(cast(c, &DataType::Utf8)?))),
    }
}

/// A time column of a batch as ns since the epoch.
struct Times(Option<ArrayRef>);

impl Times {
    fn get(&self, i: usize) -> Option<i64> {
        let a = self.0.as_ref()?.as_primitive::<TimestampNanosecondType>();
        (!a.is_null(i)).then(|| a.value(i))
    }
}

fn times(b: &RecordBatch, name: &str) -> Result<Times, ArrowError> {
    let ty = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None);
    Ok(Times(match b.column_by_name(name) {
        None => None,
        Some(c) => Some(cast(c, &ty)?),
    }))
}

/// The rows of `files` matching `q`, with the columns of `schema` (the
/// SQL result's), in file order. A column a file lacks (written before it
/// was added) is null, as the SQL's table reads it.
pub fn read(
    files: &[PathBuf],
    q: &Question,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, QueryError> {
    // The files are read on every core: most of the time goes to
    // decompressing pages, file by file independent.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len())
        .max(1);
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<RecordBatch>, QueryError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || read_files(part, q, schema)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(std::io::Error::other("a reader thread panicked").into())
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn read_files(
    files: &[PathBuf],
    q: &Question,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, QueryError> {
    let mut out = Vec::new();
    for path in files {
        read_file(path, q, schema, &mut out).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    Ok(out)
}

fn read_file(
    path: &Path,
    q: &Question,
    schema: &SchemaRef,
    out: &mut Vec<RecordBatch>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let meta = Arc::clone(builder.metadata());
    let descr = builder.parquet_schema();
    let root: Vec<String> = descr
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let event_id = root.iter().position(|c| c == "event_id");
    let mut groups = Vec::new();
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if !q.may_match(rg, &root) {
            continue;
        }
        if let (Question::EventId(id), Some(col)) = (q, event_id.and_then(|i| leaf_index(rg, i))) {
            if let Some(bloom) = builder.get_row_group_column_bloom_filter(g, col)? {
                if !bloom.check(id.as_str()) {
                    continue;
                }
            }
        }
        groups.push(g);
    }
    if groups.is_empty() {
        return Ok(());
    }
    // The page index (read only now, for a file that may hold rows) lets
    // the printed columns be decoded from the pages of the matching rows
    // alone; without it every page of every printed column is decoded
    // just to be skipped.
    let with_index = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(path)?, with_index)?;
    let descr = builder.parquet_schema();
    let meta = Arc::clone(builder.metadata());
    let (mut ranges, mut total) = (Vec::new(), 0);
    for &g in &groups {
        let rows = usize::try_from(meta.row_group(g).num_rows())?;
        match q.page_rows(&meta, g, &root) {
            Some(mask) => {
                let mut i = 0;
                while i < mask.len() {
                    let start = i;
                    while i < mask.len() && mask[i] == mask[start] {
                        i += 1;
                    }
                    if mask[start] {
                        ranges.push(total + start..total + i);
                    }
                }
            }
            None => ranges.push(total..total + rows),
        }
        total += rows;
    }
    if ranges.is_empty() {
        return Ok(());
    }
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
    let asked = ProjectionMask::columns(descr, q.columns().iter().copied());
    let shown = ProjectionMask::columns(descr, schema.fields().iter().map(|f| f.name().as_str()));
    let question = q.clone();
    let filter = RowFilter::new(vec![Box::new(ArrowPredicateFn::new(asked, move |b| {
        question.matches(&b)
    }))]);
    let reader = builder
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_projection(shown)
        .with_row_filter(filter)
        .build()?;
    for b in reader {
        let b = b?;
        if b.num_rows() > 0 {
            out.push(conform(&b, schema)?);
        }
    }
    Ok(())
}

/// The leaf index of top-level column `root` when that column is a single
/// leaf (a string or a time, never a list or a map).
fn leaf_index(rg: &RowGroupMetaData, root: usize) -> Option<usize> {
    let schema = rg.schema_descr();
    let mut leaves = (0..schema.num_columns()).filter(|&i| schema.get_column_root_idx(i) == root);
    match (leaves.next(), leaves.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// `b` with exactly `schema`'s columns and types: absent ones null,
/// others cast where the file's type differs (as the SQL's table does).
fn conform(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            None => Ok(new_null_array(f.data_type(), b.num_rows())),
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => cast(c, f.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), cols)
}

/// `batches` as one, sorted by `keys` ascending (nulls last, as the SQL's
/// `ORDER BY` puts them).
pub fn sorted(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    keys: &[&str],
) -> Result<Vec<RecordBatch>, QueryError> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let all = concat_batches(schema, batches)?;
    let sort: Vec<SortColumn> = keys
        .iter()
        .map(|k| {
            let values = all
                .column_by_name(k)
                .cloned()
                .ok_or_else(|| ArrowError::SchemaError(format!("no column {k}")))?;
            Ok(SortColumn {
                values,
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            })
        })
        .collect::<Result<_, ArrowError>>()?;
    let order = lexsort_to_indices(&sort, None)?;
    Ok(vec![take_record_batch(&all, &order)?])
}

/// The SQL result's schema of `columns` (comma-separated, as in the
/// commands' `SELECT`) over the `audit` table.
pub fn result_schema(table: &Schema, columns: &str) -> Result<SchemaRef, QueryError> {
    let fields = columns
        .split(',')
        .map(|c| table.field_with_name(c.trim()).map(|f| Arc::new(f.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
