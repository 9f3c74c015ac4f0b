//! Rows waiting for a seal, held column by column.
//!
//! A decoded record is a struct of a few dozen `String`s and options: a
//! typical row is about 1.4 KB resident once each string's own allocation
//! is counted, and the unsealed buffer holds up to `seal_rows` of them, by
//! far the largest thing the collector keeps. Here a row is appended to
//! one Arrow builder per column as soon as it is committed (its bytes, an
//! offset per string, a validity bit), and the record is dropped: the same
//! row costs a few hundred bytes. The buffer is split by the hour partition
//! of each row's event time, so a seal turns each part into one file
//! without regrouping.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int64Builder, ListBuilder, MapBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use audit_schema::columns::{self, Cell, ColumnType};
use audit_schema::Stamp;

use super::rows::{map_builder, Row};
use super::write::{hour_of, HourKey};

/// The unsealed rows of one dataset, by hour partition.
pub struct Unsealed<R> {
    schema: SchemaRef,
    parts: BTreeMap<HourKey, Part>,
    rows: usize,
    _rows: PhantomData<fn(R)>,
}

impl<R: Row> Default for Unsealed<R> {
    fn default() -> Self {
        Unsealed {
            schema: Arc::new(columns::arrow_schema(R::DATASET.columns())),
            parts: BTreeMap::new(),
            rows: 0,
            _rows: PhantomData,
        }
    }
}

impl<R: Row> Unsealed<R> {
    /// Copies a record's values into the buffer; the record itself can go.
    pub fn push(&mut self, record: &R, stamp: Stamp) {
        let time = record.event_time();
        let schema = &self.schema;
        let part = self
            .parts
            .entry(hour_of(time))
            .or_insert_with(|| Part::new(schema, R::COLUMNS.len() - columns::STAMP.len()));
        let mut next = part.cols.iter_mut();
        record.cells(&mut |cell| {
            if let Some(col) = next.next() {
                col.push(cell);
            }
        });
        part.received.append_value(stamp.received_time_ns);
        part.seq.append_value(stamp.seq);
        part.stats.add(stamp.seq, time);
        self.rows += 1;
    }
}

impl<R> Unsealed<R> {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The dataset's schema, which every part's batch has.
    pub(super) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The parts, in partition order.
    pub(super) fn into_parts(self) -> BTreeMap<HourKey, Part> {
        self.parts
    }
}

impl<R> std::fmt::Debug for Unsealed<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed")
            .field("rows", &self.rows)
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// What a file's manifest entry says about its rows, kept as they come.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stats {
    pub(super) rows: usize,
    pub(super) seq_min: u64,
    pub(super) seq_max: u64,
    pub(super) time_min_ns: i64,
    pub(super) time_max_ns: i64,
}

impl Stats {
    fn add(&mut self, seq: u64, time: i64) {
        if self.rows == 0 {
            *self = Stats {
                rows: 0,
                seq_min: seq,
                seq_max: seq,
                time_min_ns: time,
                time_max_ns: time,
            };
        }
        self.rows += 1;
        self.seq_min = self.seq_min.min(seq);
        self.seq_max = self.seq_max.max(seq);
        self.time_min_ns = self.time_min_ns.min(time);
        self.time_max_ns = self.time_max_ns.max(time);
    }
}

/// The rows of one hour partition.
pub(super) struct Part {
    /// The record's own columns, in schema order.
    cols: Vec<Builder>,
    received: TimestampNanosecondBuilder,
    seq: UInt64Builder,
    pub(super) stats: Stats,
}

impl Part {
    fn new(schema: &SchemaRef, own: usize) -> Part {
        let received_ty = schema
            .fields()
            .get(own)
            .map_or(columns::data_type(ColumnType::TimestampNs), |f| {
                f.data_type().clone()
            });
        Part {
            cols: schema
                .fields()
                .iter()
                .take(own)
                .map(|f| Builder::new(f.data_type()))
                .collect(),
            received: TimestampNanosecondBuilder::new().with_data_type(received_ty),
            seq: UInt64Builder::new(),
            stats: Stats {
                rows: 0,
                seq_min: 0,
                seq_max: 0,
                time_min_ns: 0,
                time_max_ns: 0,
            },
        }
    }

    /// The part as one batch of `schema`, the stamp columns last.
    pub(super) fn finish(
        self,
        collector_id: &str,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let rows = self.stats.rows;
        let mut arrays: Vec<ArrayRef> = self.cols.into_iter().map(Builder::finish).collect();
        let mut received = self.received;
        let mut seq = self.seq;
        arrays.push(Arc::new(received.finish()));
        arrays.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(collector_id, rows),
        )));
        arrays.push(Arc::new(seq.finish()));
        if arrays.len() != schema.fields().len() {
            return Err(ArrowError::SchemaError(format!(
                "{} columns written for a schema of {}",
                arrays.len(),
                schema.fields().len()
            )));
        }
        RecordBatch::try_new(schema.clone(), arrays)
    }
}

/// One column's values so far. Cells and columns come from the same table,
/// so their types agree; a cell that did not would be left out and
/// `RecordBatch::try_new` would refuse the short column.
enum Builder {
    Str(StringBuilder),
    Time(TimestampNanosecondBuilder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    List(ListBuilder<StringBuilder>),
    Map(MapBuilder<StringBuilder, StringBuilder>),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(ty: &DataType) -> Builder {
        match ty {
            DataType::Timestamp(..) => {
                Builder::Time(TimestampNanosecondBuilder::new().with_data_type(ty.clone()))
            }
            DataType::Int64 => Builder::Int(Int64Builder::new()),
            DataType::UInt64 => Builder::UInt(UInt64Builder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::List(item) => {
                Builder::List(ListBuilder::new(StringBuilder::new()).with_field(item.clone()))
            }
            DataType::Map(..) => Builder::Map(map_builder(ty)),
            _ => Builder::Str(StringBuilder::new()),
        }
    }

    fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Builder::Str(b), Cell::Str(s)) => b.append_option(s),
            (Builder::Time(b), Cell::Time(t)) => b.append_option(t),
            (Builder::Int(b), Cell::Int(i)) => b.append_option(i),
            (Builder::List(b), Cell::List(items)) => {
                for s in items {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (Builder::Map(b), Cell::Map(m)) => {
                for (k, v) in m {
                    b.keys().append_value(k);
                    b.values().append_value(v);
                }
                // Cannot fail: keys and values were appended in pairs.
                let _ = b.append(true);
            }
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            _ => {}
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::Time(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::UInt(mut b) => Arc::new(b.finish()),
            Builder::List(mut b) => Arc::new(b.finish()),
            Builder::Map(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}
