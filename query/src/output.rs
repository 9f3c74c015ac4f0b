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
