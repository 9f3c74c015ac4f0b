//! Results as a readable table, JSON (an array of objects, nulls explicit)
//! or CSV (nested columns rendered as text, since CSV has no lists).

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;

/// How a command prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// A JSON array of objects, one per row, nulls explicit.
    Json,
    /// CSV with a header line.
    Csv,
}

fn io(e: std::io::Error) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}

/// Writes rows in `format`.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), ArrowError> {
    match format {
        Format::Table => {
            writeln!(
                out,
                "{}",
                pretty_format_batches_with_schema(schema.clone(), batches)?
            )
            .map_err(io)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" }).map_err(io)?;
        }
        Format::Json => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                // The writer prints nothing for no rows; scripts want `[]`.
                writeln!(out, "[]").map_err(io)?;
                return Ok(());
            }
            let mut w = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out).map_err(io)?;
        }
        Format::Csv => {
            let flat = flatten_schema(schema);
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(flat.clone()))?;
            }
            for b in batches {
                w.write(&flatten(b, &flat)?)?;
            }
        }
    }
    Ok(())
}

/// A table for a terminal, at most `width` characters wide: `columns`
/// (name, header) in order of importance, each kept only while the table
/// still fits (the first always), times to the millisecond. A closing line
/// names the columns left out; `--format json` or `csv` has all of them.
pub fn write_fitted(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    columns: &[(&str, &str)],
    width: usize,
) -> Result<(), ArrowError> {
    let opts = FormatOptions::default()
        .with_null("-")
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"));
    // Each column's cells, over all batches.
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
    for b in batches {
        for (c, (name, _)) in columns.iter().enumerate() {
            let Some(col) = b.column_by_name(name) else {
                continue;
            };
            let fmt = ArrayFormatter::try_new(col.as_ref(), &opts)?;
            cells[c].extend((0..b.num_rows()).map(|i| fmt.value(i).to_string()));
        }
    }
    let rows = cells.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = columns
        .iter()
        .zip(&cells)
        .map(|((_, h), cs)| {
            cs.iter()
                .map(|c| c.chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let (mut shown, mut left_out, mut total) = (Vec::new(), Vec::new(), 1);
    for (c, ((name, _), w)) in columns.iter().zip(&widths).enumerate() {
        if shown.is_empty() || total + w + 3 <= width {
            shown.push(c);
            total += w + 3;
        } else {
            left_out.push(*name);
        }
    }
    let rule: String = shown
        .iter()
        .map(|&c| format!("+{}", "-".repeat(widths[c] + 2)))
        .collect::<String>()
        + "+";
    let line = |f: &dyn Fn(usize) -> String| -> String {
        shown
            .iter()
            .map(|&c| format!("| {:<w$} ", f(c), w = widths[c]))
            .collect::<String>()
            + "|"
    };
    writeln!(out, "{rule}").map_err(io)?;
    writeln!(out, "{}", line(&|c| columns[c].1.to_owned())).map_err(io)?;
    writeln!(out, "{rule}").map_err(io)?;
    for r in 0..rows {
        writeln!(
            out,
            "{}",
            line(&|c| cells[c].get(r).cloned().unwrap_or_default())
        )
        .map_err(io)?;
    }
    writeln!(out, "{rule}").map_err(io)?;
    writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" }).map_err(io)?;
    if !left_out.is_empty() {
        writeln!(out, "{}", left_out_note(&left_out, width)).map_err(io)?;
    }
    Ok(())
}

/// `(+N columns: a, b, …; --format json|csv has them)`, within `width`.
fn left_out_note(names: &[&str], width: usize) -> String {
    let n = names.len();
    for keep in (0..=n).rev() {
        let mut list = names[..keep].join(", ");
        if keep < n {
            list.push_str(if keep == 0 { "…" } else { ", …" });
        }
        let note = format!("(+{n} columns: {list}; --format json|csv has them)");
        if note.chars().count() <= width || keep == 0 {
            return note;
        }
    }
    String::new()
}

/// Prints one record per block, `column: value` per line: a single row with
/// two dozen columns reads better down than across.
pub fn write_vertical(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    extra: &[(&str, String)],
) -> Result<(), ArrowError> {
    let opts = FormatOptions::default().with_null("-");
    for b in batches {
        let schema = b.schema();
        let width = schema
            .fields()
            .iter()
            .map(|f| f.name().len())
            .chain(extra.iter().map(|(k, _)| k.len()))
            .max()
            .unwrap_or(0);
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..b.num_rows() {
            for (f, fmt) in schema.fields().iter().zip(&fmts) {
                writeln!(out, "{:<width$}  {}", f.name(), fmt.value(row)).map_err(io)?;
            }
            for (k, v) in extra {
                writeln!(out, "{k:<width$}  {v}").map_err(io)?;
            }
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}

fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::Map(_, _) | DataType::Struct(_)
    )
}

fn flatten_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_nested(f.data_type()) {
                    Arc::new(Field::new(f.name(), DataType::Utf8, true))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

fn flatten(b: &RecordBatch, flat: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let opts = FormatOptions::default();
    let cols = b
        .columns()
        .iter()
        .map(|c| -> Result<ArrayRef, ArrowError> {
            if !is_nested(c.data_type()) {
                return Ok(c.clone());
            }
            let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
            let s: StringArray = (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            Ok(Arc::new(s))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(flat.clone(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn a_fitted_table_keeps_the_first_columns_that_fit_and_names_the_rest() {
        let long = "x".repeat(50);
        let b = RecordBatch::try_from_iter([
            ("id", Arc::new(StringArray::from(vec!["id-1"])) as ArrayRef),
            (
                "wide",
                Arc::new(StringArray::from(vec![long.as_str()])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let cols = [("id", "id"), ("wide", "wide"), ("name", "who")];
        write_fitted(&mut out, &[b], &cols, 50).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().all(|l| l.chars().count() <= 50), "{text}");
        assert!(text.contains("| id-1 | -   |"), "{text}");
        assert!(
            text.contains("(1 row)") && text.contains("(+1 columns: wide;"),
            "{text}"
        );
        let names = ["alpha", "beta", "gamma"];
        assert_eq!(
            left_out_note(&names, 60),
            "(+3 columns: alpha, beta, gamma; --format json|csv has them)"
        );
        assert_eq!(
            left_out_note(&names, 52),
            "(+3 columns: alpha, …; --format json|csv has them)"
        );
    }
}
