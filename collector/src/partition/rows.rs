//! Rows to Arrow record batches: a dataset's records, through their
//! [`Stored`] cells, become one array per column, the collector's stamp
//! columns last.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow_schema::{ArrowError, DataType, FieldRef, SchemaRef};
use audit_schema::columns::{self, Cell, ColumnType, Stored};
use audit_schema::{AuditRecord, Stamp, ViolationRecord};

use super::Dataset;

/// What the generic writer needs to know about a dataset's rows, beyond
/// their columns and cells.
pub(super) trait Row: Stored {
    const DATASET: Dataset;
    /// `(column, nulls_first)` the rows of a file are sorted by.
    const SORTED_BY: &'static [(&'static str, bool)];
    /// The partitioning time.
    fn event_time(&self) -> i64;
    /// Order of rows inside a file.
    fn cmp_in_file(a: &(Self, Stamp), b: &(Self, Stamp)) -> Ordering;

    /// A batch with the schema's columns, in the schema's order: the
    /// record's cells, then the stamp.
    fn batch(
        rows: &[(Self, Stamp)],
        collector_id: &str,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let own = &Self::COLUMNS[..Self::COLUMNS.len() - columns::STAMP.len()];
        let mut cols: Vec<Col> = own.iter().map(|c| Col::new(c.ty, rows.len())).collect();
        for (record, _) in rows {
            let mut next = cols.iter_mut();
            record.cells(&mut |cell| {
                if let Some(col) = next.next() {
                    col.push(cell);
                }
            });
        }
        cols.push(Col::Time(
            rows.iter().map(|r| Some(r.1.received_time_ns)).collect(),
        ));
        cols.push(Col::Str(vec![Some(collector_id.to_owned()); rows.len()]));
        cols.push(Col::UInt(rows.iter().map(|r| r.1.seq).collect()));
        if cols.len() != schema.fields().len() {
            return Err(ArrowError::SchemaError(format!(
                "{} columns written for a schema of {}",
                cols.len(),
                schema.fields().len()
            )));
        }
        let arrays = cols
            .into_iter()
            .zip(schema.fields().iter())
            .map(|(col, f)| col.into_array(f.data_type()))
            .collect();
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
    Bool(Vec<bool>),
}

impl Col {
    fn new(ty: ColumnType, rows: usize) -> Col {
        match ty {
            ColumnType::Utf8 => Col::Str(Vec::with_capacity(rows)),
            ColumnType::TimestampNs => Col::Time(Vec::with_capacity(rows)),
            ColumnType::Int64 => Col::Int(Vec::with_capacity(rows)),
            ColumnType::UInt64 => Col::UInt(Vec::with_capacity(rows)),
            ColumnType::ListUtf8 => Col::List(Vec::with_capacity(rows)),
            ColumnType::MapUtf8 => Col::Map(Vec::with_capacity(rows)),
            ColumnType::Bool => Col::Bool(Vec::with_capacity(rows)),
        }
    }

    /// Appends one record's cell. Cells and columns come from the same
    /// table, so their types agree; a cell that did not would be left out
    /// and `RecordBatch::try_new` would refuse the short column.
    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Col::Str(v), Cell::Str(s)) => v.push(s.map(str::to_owned)),
            (Col::Time(v), Cell::Time(t)) => v.push(t),
            (Col::Int(v), Cell::Int(i)) => v.push(i),
            (Col::List(v), Cell::List(items)) => v.push(items.to_vec()),
            (Col::Map(v), Cell::Map(m)) => v.push(attrs(m)),
            (Col::Bool(v), Cell::Bool(b)) => v.push(b),
            _ => {}
        }
    }

    fn into_array(self, ty: &DataType) -> ArrayRef {
        match self {
            Col::Str(v) => Arc::new(StringArray::from(v)),
            Col::Time(v) => Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")),
            Col::Int(v) => Arc::new(Int64Array::from(v)),
            Col::UInt(v) => Arc::new(UInt64Array::from(v)),
            Col::Bool(v) => Arc::new(BooleanArray::from(v)),
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
}
