//! Result batches as text cells, the way the CLI's table shows them.

use std::collections::BTreeMap;

use audit_query::arrow::array::{Array, AsArray, RecordBatch};
use audit_query::arrow::compute::cast;
use audit_query::arrow::datatypes::DataType;
use audit_query::arrow::error::ArrowError;
use audit_query::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Rows of named text cells (`None` for null).
pub struct Cells {
    /// Column names, in order.
    pub names: Vec<String>,
    /// One vector per row, a cell per column.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Cells {
    /// Formats every cell of `batches`.
    pub fn of(batches: &[RecordBatch]) -> Result<Cells, ArrowError> {
        let opts = FormatOptions::default();
        let mut names = Vec::new();
        let mut rows = Vec::new();
        for b in batches {
            if names.is_empty() {
                names = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
            }
            let fmts = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .zip(&fmts)
                        .map(|(c, f)| (!c.is_null(i)).then(|| f.value(i).to_string()))
                        .collect(),
                );
            }
        }
        Ok(Cells { names, rows })
    }

    /// The cell of `row` in column `name` (`None` when null or absent).
    pub fn get<'a>(&'a self, row: &'a [Option<String>], name: &str) -> Option<&'a str> {
        let i = self.names.iter().position(|n| n == name)?;
        row.get(i)?.as_deref()
    }

    /// An integer count in the first row's first column (0 when absent).
    pub fn count(&self) -> u64 {
        self.rows
            .first()
            .and_then(|r| r.first())
            .and_then(|c| c.as_deref())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// The entries of a map column (`attributes`), one map per row, in order;
/// an empty map for a null or a missing column.
pub fn maps(
    batches: &[RecordBatch],
    column: &str,
) -> Result<Vec<BTreeMap<String, String>>, ArrowError> {
    let mut out = Vec::new();
    for b in batches {
        let Some(col) = b.column_by_name(column) else {
            out.extend((0..b.num_rows()).map(|_| BTreeMap::new()));
            continue;
        };
        let Some(map) = col.as_map_opt() else {
            return Err(ArrowError::CastError(format!("{column} is not a map")));
        };
        for i in 0..b.num_rows() {
            let mut m = BTreeMap::new();
            if !map.is_null(i) {
                let entries = map.value(i);
                let keys = cast(entries.column(0), &DataType::Utf8)?;
                let values = cast(entries.column(1), &DataType::Utf8)?;
                let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
                for j in 0..keys.len() {
                    if !values.is_null(j) {
                        m.insert(keys.value(j).to_owned(), values.value(j).to_owned());
                    }
                }
            }
            out.push(m);
        }
    }
    Ok(out)
}
