//! Rows to immutable Parquet files.

use super::*;

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
        for ((y, m, d, h), rows) in parts {
            let rows = sorted(rows);
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

/// `rows` in file order. Sorts a permutation and moves each row once: a
/// row is a few hundred bytes, and sorting the rows themselves moved each
/// of them log n times (a fifth of the writer thread at seal, in the
/// ingest profile).
fn sorted<R: Row>(rows: Vec<(R, Stamp)>) -> Vec<(R, Stamp)> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // Keys end with the unique seq, so an unstable sort is deterministic.
    order.sort_unstable_by(|&a, &b| R::cmp_in_file(&rows[a], &rows[b]));
    let mut slots: Vec<Option<(R, Stamp)>> = rows.into_iter().map(Some).collect();
    order.iter().filter_map(|&i| slots[i].take()).collect()
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
    match fsio::remove_file(&tmp) {
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
        let _ = fsio::remove_file(&tmp);
    }
    result
}

fn write_temp(
    tmp: &Path,
    batch: &RecordBatch,
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
    writer.write(batch).map_err(pq_err(tmp))?;
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

fn create_dir_synced(dir: &Path) -> Result<(), PartitionError> {
    fsio::create_dir_synced(dir).map_err(io_err("create directory", dir))
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
