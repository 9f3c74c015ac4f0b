//! Parquet files back to rows.

use super::*;
use arrow_array::BooleanArray;
use audit_schema::columns::{ReadCells, Stored};
use bytes::Bytes;
use parquet::file::reader::ChunkReader;

// ---------------------------------------------------------------------------
// Arrays → rows

/// Typed access to the columns of one record batch, with errors naming the
/// file and column.
struct Cols<'a> {
    batch: &'a RecordBatch,
    path: &'a Path,
}

impl<'a> Cols<'a> {
    fn column(&self, name: &str) -> Result<&'a dyn Array, PartitionError> {
        self.batch
            .column_by_name(name)
            .map(|col| col.as_ref())
            .ok_or_else(|| schema_err(self.path, format!("column {name} is missing")))
    }

    fn get<T: Array + 'static>(&self, name: &str) -> Result<&'a T, PartitionError> {
        let col = self.column(name)?;
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

/// One row's cells, read in the dataset's column order: the reader side of
/// [`Stored::from_cells`], over the arrays of one record batch.
struct RowCells<'a> {
    /// The record's columns (the stamp's are read apart), with their arrays.
    /// `None`: a column of [`Stored::ADDED`] the file predates.
    arrays: &'a [(&'static str, Option<&'a dyn Array>)],
    /// The column read next.
    next: usize,
    row: usize,
    path: &'a Path,
}

impl<'a> RowCells<'a> {
    /// The array of `column`, which must be the next one: a record reads its
    /// columns in the order they are declared and stored.
    fn next<T: Array + 'static>(&mut self, column: &'static str) -> Result<&'a T, PartitionError> {
        self.next_added(column)?
            .ok_or_else(|| schema_err(self.path, format!("column {column} is missing")))
    }

    /// [`RowCells::next`], or `None` for a column the file predates.
    fn next_added<T: Array + 'static>(
        &mut self,
        column: &'static str,
    ) -> Result<Option<&'a T>, PartitionError> {
        let (name, arr) = self
            .arrays
            .get(self.next)
            .filter(|(name, _)| *name == column)
            .ok_or_else(|| schema_err(self.path, format!("column {column} read out of order")))?;
        self.next += 1;
        let Some(arr) = arr else {
            return Ok(None);
        };
        arr.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| {
            schema_err(
                self.path,
                format!("column {name} has type {}", arr.data_type()),
            )
        })
    }
}

impl ReadCells for RowCells<'_> {
    type Error = PartitionError;

    fn text(&mut self, column: &'static str) -> Result<Option<String>, PartitionError> {
        let arr = self.next_added::<StringArray>(column)?;
        Ok(arr.and_then(|arr| {
            arr.is_valid(self.row)
                .then(|| arr.value(self.row).to_owned())
        }))
    }

    fn time(&mut self, column: &'static str) -> Result<Option<i64>, PartitionError> {
        let arr = self.next::<TimestampNanosecondArray>(column)?;
        Ok(opt_i64(arr, self.row))
    }

    fn int(&mut self, column: &'static str) -> Result<Option<i64>, PartitionError> {
        let arr = self.next::<Int64Array>(column)?;
        Ok(arr.is_valid(self.row).then(|| arr.value(self.row)))
    }

    fn list(&mut self, column: &'static str) -> Result<Vec<String>, PartitionError> {
        let arr = self.next::<ListArray>(column)?;
        list_at(arr, column, self.row, self.path)
    }

    fn map(&mut self, column: &'static str) -> Result<BTreeMap<String, String>, PartitionError> {
        let arr = self.next::<MapArray>(column)?;
        map_at(arr, column, self.row, self.path)
    }

    fn boolean(&mut self, column: &'static str) -> Result<Option<bool>, PartitionError> {
        // Rows written before the column existed were never verified.
        let Some(arr) = self.next_added::<BooleanArray>(column)? else {
            return Ok(Some(false));
        };
        Ok(arr.is_valid(self.row).then(|| arr.value(self.row)))
    }

    fn null(&self, column: &'static str) -> PartitionError {
        null_err(self.path, column, self.row)
    }

    fn invalid(&self, column: &'static str, value: &str, expected: &str) -> PartitionError {
        schema_err(
            self.path,
            format!("{column} {value:?} in row {} is not {expected}", self.row),
        )
    }
}

/// The rows of one record batch, each with its stamp and collector id.
fn rows<R: Stored>(c: &Cols<'_>) -> Result<Vec<(R, Stamp, String)>, PartitionError> {
    let n = c.batch.num_rows();
    let own = &R::COLUMNS[..R::COLUMNS.len() - columns::STAMP.len()];
    let arrays = own
        .iter()
        .map(|col| match c.column(col.name) {
            Ok(a) => Ok((col.name, Some(a))),
            Err(_) if R::ADDED.contains(&col.name) => Ok((col.name, None)),
            Err(e) => Err(e),
        })
        .collect::<Result<Vec<_>, PartitionError>>()?;
    let stamps = stamp_and_collector(c, n)?;
    stamps
        .into_iter()
        .enumerate()
        .map(|(row, (stamp, collector))| {
            let mut cells = RowCells {
                arrays: &arrays,
                next: 0,
                row,
                path: c.path,
            };
            Ok((R::from_cells(&mut cells)?, stamp, collector))
        })
        .collect()
}

type Decode<T> = fn(&Cols<'_>) -> Result<Vec<T>, PartitionError>;

fn read_file<T>(path: &Path, decode: Decode<T>) -> Result<Vec<T>, PartitionError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    read_from(file, path, decode)
}

/// Decodes a whole file from any source (a local file, or the bytes of an
/// object); `path` names it in errors.
fn read_from<T, S: ChunkReader + 'static>(
    source: S,
    path: &Path,
    decode: Decode<T>,
) -> Result<Vec<T>, PartitionError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(source)
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

/// Options of a file reader that loads the bloom filters too (the one on
/// `event_id` says whether an id may be in a row group without its pages).
pub fn bloom_read_options() -> parquet::file::serialized_reader::ReadOptions {
    parquet::file::serialized_reader::ReadOptionsBuilder::new()
        .with_reader_properties(
            parquet::file::properties::ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build()
}

/// The `event_id` column of one file, read alone (recovery rebuilds its
/// deduplication window from recent files without decoding whole rows).
pub fn read_event_ids(path: &Path) -> Result<Vec<String>, PartitionError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    event_ids_from(file, path)
}

/// [`read_event_ids`] of a file's bytes (an object fetched from a store);
/// `name` names it in errors.
pub fn read_event_ids_bytes(bytes: Bytes, name: &Path) -> Result<Vec<String>, PartitionError> {
    event_ids_from(bytes, name)
}

fn event_ids_from<S: ChunkReader + 'static>(
    source: S,
    path: &Path,
) -> Result<Vec<String>, PartitionError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(source).map_err(pq_err(path))?;
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
    read_dataset(root, Dataset::Audit, rows)
}

/// Every violation row under `root/violations`, ordered by
/// `(collector_id, seq)`.
pub fn read_violations(
    root: &Path,
) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    read_dataset(root, Dataset::Violations, rows)
}

/// The rows of one audit file, in file order.
pub fn read_audit_file(path: &Path) -> Result<Vec<(AuditRecord, Stamp, String)>, PartitionError> {
    read_file(path, rows)
}

/// The rows of one violations file, in file order.
pub fn read_violations_file(
    path: &Path,
) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    read_file(path, rows)
}

/// [`read_audit_file`] of a file's bytes (an object fetched from a store);
/// `name` names it in errors.
pub fn read_audit_bytes(
    bytes: Bytes,
    name: &Path,
) -> Result<Vec<(AuditRecord, Stamp, String)>, PartitionError> {
    read_from(bytes, name, rows)
}

/// [`read_violations_file`] of a file's bytes.
pub fn read_violations_bytes(
    bytes: Bytes,
    name: &Path,
) -> Result<Vec<(ViolationRecord, Stamp, String)>, PartitionError> {
    read_from(bytes, name, rows)
}
