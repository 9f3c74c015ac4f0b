//! What the writer needs to know about a dataset's rows beyond their
//! columns and cells: the partitioning time and the order inside a file.

use std::cmp::Ordering;

use arrow_array::builder::{MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, FieldRef};
use audit_schema::columns::Stored;
use audit_schema::{AuditRecord, ViolationRecord};

use super::Dataset;

/// A dataset's record type, as the writer sees it.
pub trait Row: Stored {
    /// Its dataset.
    const DATASET: Dataset;
    /// `(column, nulls_first)` the rows of a file are sorted by.
    const SORTED_BY: &'static [(&'static str, bool)];
    /// The partitioning time.
    fn event_time(&self) -> i64;
}

/// A map builder whose entry, key and value fields are those of `ty`.
pub(super) fn map_builder(ty: &DataType) -> MapBuilder<StringBuilder, StringBuilder> {
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

/// The row indices of `batch` in file order: by the `sorted_by` columns,
/// each ascending with its nulls first or last. `Err` names a sort column
/// the batch lacks or cannot order.
pub(super) fn file_order(
    batch: &RecordBatch,
    sorted_by: &[(&str, bool)],
) -> Result<Vec<u32>, String> {
    let keys = sorted_by
        .iter()
        .map(|&(name, nulls_first)| {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| format!("sort column {name} is missing"))?;
            Key::new(col.as_ref(), nulls_first)
                .ok_or_else(|| format!("sort column {name} has no order here"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = u32::try_from(batch.num_rows()).map_err(|_| "too many rows for one file")?;
    let mut order: Vec<u32> = (0..rows).collect();
    // Every key list ends with the unique seq, so an unstable sort is
    // deterministic.
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        keys.iter()
            .map(|k| k.cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    Ok(order)
}

/// One sort column.
struct Key<'a> {
    array: &'a dyn Array,
    nulls_first: bool,
    values: Values<'a>,
}

enum Values<'a> {
    Str(&'a StringArray),
    Int(&'a [i64]),
    UInt(&'a [u64]),
}

impl<'a> Key<'a> {
    fn new(array: &'a dyn Array, nulls_first: bool) -> Option<Key<'a>> {
        let values = match array.data_type() {
            DataType::Utf8 => Values::Str(array.as_string_opt::<i32>()?),
            DataType::Timestamp(..) => Values::Int(
                array
                    .as_primitive_opt::<TimestampNanosecondType>()?
                    .values(),
            ),
            DataType::Int64 => Values::Int(array.as_primitive_opt::<Int64Type>()?.values()),
            DataType::UInt64 => Values::UInt(array.as_primitive_opt::<UInt64Type>()?.values()),
            _ => return None,
        };
        Some(Key {
            array,
            nulls_first,
            values,
        })
    }

    fn cmp(&self, a: usize, b: usize) -> Ordering {
        let null_side = if self.nulls_first {
            Ordering::Less
        } else {
            Ordering::Greater
        };
        match (self.array.is_null(a), self.array.is_null(b)) {
            (true, true) => Ordering::Equal,
            (true, false) => null_side,
            (false, true) => null_side.reverse(),
            (false, false) => match &self.values {
                Values::Str(s) => s.value(a).cmp(s.value(b)),
                Values::Int(v) => v[a].cmp(&v[b]),
                Values::UInt(v) => v[a].cmp(&v[b]),
            },
        }
    }
}

impl Row for AuditRecord {
    const DATASET: Dataset = Dataset::Audit;
    // Humans (null agent_id) first.
    const SORTED_BY: &'static [(&'static str, bool)] = &[
        ("agent_id", true),
        ("owner_id", false),
        ("start_time", false),
        ("seq", false),
    ];

    fn event_time(&self) -> i64 {
        self.start_time_ns
    }
}

impl Row for ViolationRecord {
    const DATASET: Dataset = Dataset::Violations;
    const SORTED_BY: &'static [(&'static str, bool)] =
        &[("service_name", false), ("time", false), ("seq", false)];

    fn event_time(&self) -> i64 {
        self.time_ns
    }
}
