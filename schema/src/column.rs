//! What a stored column is: its type, its docs, its Arrow type, and the
//! [`Cell`]s a record is written as and read back from. The column lists
//! themselves ([`crate::columns::AUDIT`], [`crate::columns::VIOLATIONS`])
//! are declared with the records, in [`crate::record`].

use std::collections::BTreeMap;

/// Logical type of a stored column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 string.
    Utf8,
    /// Timestamp, nanoseconds, UTC.
    TimestampNs,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit unsigned integer.
    UInt64,
    /// List of strings.
    ListUtf8,
    /// Map from string to string.
    MapUtf8,
    /// Boolean.
    Bool,
}

impl ColumnType {
    /// How the docs name the type.
    pub fn doc_name(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "string",
            ColumnType::TimestampNs => "timestamp ns UTC",
            ColumnType::Int64 => "int64",
            ColumnType::UInt64 => "uint64",
            ColumnType::ListUtf8 => "list<string>",
            ColumnType::MapUtf8 => "map<string,string>",
            ColumnType::Bool => "bool",
        }
    }
}

/// One stored column.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Column name in Parquet and SQL.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may be null.
    pub nullable: bool,
    /// Where it comes from on the wire.
    pub wire: &'static str,
}

/// The columns the collector appends to every stored row, after the
/// record's own: when it accepted the row, which collector, and the row's
/// place in that collector's gap-free sequence.
pub const STAMP: [Column; 3] = [
    Column {
        name: "received_time",
        ty: ColumnType::TimestampNs,
        nullable: false,
        wire: "set by the collector",
    },
    Column {
        name: "collector_id",
        ty: ColumnType::Utf8,
        nullable: false,
        wire: "set by the collector",
    },
    Column {
        name: "seq",
        ty: ColumnType::UInt64,
        nullable: false,
        wire: "set by the collector: increasing, gap-free",
    },
];

/// One value of a stored row, borrowed from the record, in the shape of its
/// column's [`ColumnType`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// A [`ColumnType::Utf8`] value.
    Str(Option<&'a str>),
    /// A [`ColumnType::TimestampNs`] value, ns since the epoch.
    Time(Option<i64>),
    /// A [`ColumnType::Int64`] value.
    Int(Option<i64>),
    /// A [`ColumnType::ListUtf8`] value.
    List(&'a [String]),
    /// A [`ColumnType::MapUtf8`] value.
    Map(&'a BTreeMap<String, String>),
    /// A [`ColumnType::Bool`] value.
    Bool(bool),
}

/// The values of one stored row, read back column by column in file order
/// (a Parquet reader implements it over a record batch). Each call names
/// the column it reads.
pub trait ReadCells {
    /// What a failed read is.
    type Error;
    /// A string column.
    fn text(&mut self, column: &'static str) -> Result<Option<String>, Self::Error>;
    /// A timestamp column, ns since the epoch.
    fn time(&mut self, column: &'static str) -> Result<Option<i64>, Self::Error>;
    /// An int64 column.
    fn int(&mut self, column: &'static str) -> Result<Option<i64>, Self::Error>;
    /// A list-of-strings column (never null).
    fn list(&mut self, column: &'static str) -> Result<Vec<String>, Self::Error>;
    /// A string-to-string map column (never null).
    fn map(&mut self, column: &'static str) -> Result<BTreeMap<String, String>, Self::Error>;
    /// A boolean column.
    fn boolean(&mut self, column: &'static str) -> Result<Option<bool>, Self::Error>;
    /// The error for a null in a column that may not hold one.
    fn null(&self, column: &'static str) -> Self::Error;
    /// The error for a value the column may not hold (`expected` says
    /// what it may, e.g. `agent/human`).
    fn invalid(&self, column: &'static str, value: &str, expected: &str) -> Self::Error;
}

/// A record stored as one row of a dataset (the collector's stamp aside).
pub trait Stored: Sized {
    /// The dataset's columns in file order: the record's, then [`STAMP`].
    const COLUMNS: &'static [Column];
    /// Columns added after the first files were written: a file without
    /// one reads it as null (false for a boolean), what rows written
    /// before it existed meant. Any other column missing is an error.
    const ADDED: &'static [&'static str] = &[];
    /// The record's cells, in column order (the stamp columns are not the
    /// record's to give).
    fn cells(&self, f: &mut dyn FnMut(Cell<'_>));
    /// A record from its cells, read in column order.
    fn from_cells<R: ReadCells>(cells: &mut R) -> Result<Self, R::Error>;
}

/// A Markdown table of `cols` (the README's schema table is this output).
pub fn markdown_table(cols: &[Column]) -> String {
    let mut s = String::from("| column | type | null | on the wire |\n|---|---|---|---|\n");
    for c in cols {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.name,
            c.ty.doc_name(),
            if c.nullable { "yes" } else { "no" },
            c.wire
        ));
    }
    s
}

#[cfg(feature = "arrow")]
mod arrow_schema_impl {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

    use super::{Column, ColumnType};

    /// The Arrow type of a column type.
    pub fn data_type(ty: ColumnType) -> DataType {
        match ty {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::TimestampNs => {
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            }
            ColumnType::Int64 => DataType::Int64,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::ListUtf8 => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
            ColumnType::MapUtf8 => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Utf8, true),
                    ])),
                    false,
                )),
                false,
            ),
        }
    }

    /// The Arrow schema of a dataset's files.
    pub fn arrow_schema(cols: &[Column]) -> Schema {
        Schema::new(
            cols.iter()
                .map(|c| Field::new(c.name, data_type(c.ty), c.nullable))
                .collect::<Vec<_>>(),
        )
    }
}

#[cfg(feature = "arrow")]
pub use arrow_schema_impl::{arrow_schema, data_type};
