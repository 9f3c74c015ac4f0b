//! The stored columns of the `audit` and `violations` datasets: names,
//! types and meanings, from which the Arrow/Parquet schema and the docs'
//! table are both derived.

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
        }
    }
}

/// One stored column.
#[derive(Debug)]
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

const fn col(name: &'static str, ty: ColumnType, nullable: bool, wire: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable,
        wire,
    }
}

use ColumnType::*;

/// Columns of the `audit` dataset (schema v1), in file order.
pub const AUDIT: &[Column] = &[
    col("event_id", Utf8, false, "attribute `audit.event.id`"),
    col(
        "start_time",
        TimestampNs,
        false,
        "`LogRecord.time_unix_nano`",
    ),
    col(
        "end_time",
        TimestampNs,
        true,
        "attribute `audit.end_time_unix_nano`",
    ),
    col("actor_kind", Utf8, false, "attribute `audit.actor.kind`"),
    col(
        "agent_id",
        Utf8,
        true,
        "attribute `gen_ai.agent.id`; null iff human",
    ),
    col("agent_name", Utf8, true, "attribute `gen_ai.agent.name`"),
    col(
        "agent_credential_id",
        Utf8,
        true,
        "attribute `audit.agent.credential.id`",
    ),
    col("owner_id", Utf8, false, "attribute `audit.owner.id`"),
    col("initiator_id", Utf8, true, "attribute `audit.initiator.id`"),
    col("task_id", Utf8, true, "attribute `audit.task.id`"),
    col("action", Utf8, false, "attribute `audit.action`"),
    col("target", Utf8, true, "attribute `audit.target`"),
    col(
        "outcome",
        Utf8,
        false,
        "attribute `audit.outcome` (`ok` when absent)",
    ),
    col(
        "scopes",
        ListUtf8,
        false,
        "attribute `audit.scopes` (string array)",
    ),
    col("consent_id", Utf8, true, "attribute `audit.consent.id`"),
    col(
        "inputs_sha256",
        Utf8,
        true,
        "attribute `audit.inputs.sha256`",
    ),
    col("service_name", Utf8, false, "resource `service.name`"),
    col(
        "service_instance_id",
        Utf8,
        true,
        "resource `service.instance.id`",
    ),
    col("trace_id", Utf8, true, "`LogRecord.trace_id` (hex)"),
    col("span_id", Utf8, true, "`LogRecord.span_id` (hex)"),
    col(
        "attributes",
        MapUtf8,
        false,
        "every other attribute, stringified",
    ),
    col("received_time", TimestampNs, false, "set by the collector"),
    col("collector_id", Utf8, false, "set by the collector"),
    col(
        "seq",
        UInt64,
        false,
        "set by the collector: increasing, gap-free",
    ),
];

/// Columns of the `violations` dataset, in file order.
pub const VIOLATIONS: &[Column] = &[
    col("event_id", Utf8, false, "attribute `audit.event.id`"),
    col(
        "time",
        TimestampNs,
        false,
        "`LogRecord.time_unix_nano` (span close)",
    ),
    col(
        "detected_by",
        Utf8,
        false,
        "attribute `audit.violation.detected_by` (`layer`/`collector`)",
    ),
    col(
        "missing",
        ListUtf8,
        false,
        "attribute `audit.violation.missing` (wire names)",
    ),
    col("reason", Utf8, false, "attribute `audit.violation.reason`"),
    col(
        "span_target",
        Utf8,
        true,
        "attribute `audit.violation.span.target`",
    ),
    col(
        "span_name",
        Utf8,
        true,
        "attribute `audit.violation.span.name`",
    ),
    col("code_file", Utf8, true, "attribute `code.file.path`"),
    col("code_line", Int64, true, "attribute `code.line.number`"),
    col("action", Utf8, true, "attribute `audit.action`"),
    col(
        "actor_kind",
        Utf8,
        true,
        "attribute `audit.actor.kind`, as given",
    ),
    col(
        "agent_id",
        Utf8,
        true,
        "attribute `gen_ai.agent.id`, as given",
    ),
    col(
        "owner_id",
        Utf8,
        true,
        "attribute `audit.owner.id`, as given",
    ),
    col("service_name", Utf8, false, "resource `service.name`"),
    col(
        "service_instance_id",
        Utf8,
        true,
        "resource `service.instance.id`",
    ),
    col("trace_id", Utf8, true, "`LogRecord.trace_id` (hex)"),
    col("span_id", Utf8, true, "`LogRecord.span_id` (hex)"),
    col(
        "attributes",
        MapUtf8,
        false,
        "every other attribute, stringified",
    ),
    col("received_time", TimestampNs, false, "set by the collector"),
    col("collector_id", Utf8, false, "set by the collector"),
    col(
        "seq",
        UInt64,
        false,
        "set by the collector: increasing, gap-free",
    ),
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique() {
        for cols in [AUDIT, VIOLATIONS] {
            let mut names: Vec<_> = cols.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cols.len());
        }
    }

    #[test]
    fn markdown_lists_every_column() {
        let t = markdown_table(AUDIT);
        assert_eq!(t.lines().count(), AUDIT.len() + 2);
        assert!(t.contains("| `seq` | uint64 | no |"));
    }
}
