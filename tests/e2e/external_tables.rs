//! docs/external-tables.md's DDL is the schema crate's columns: every
//! `CREATE TABLE` of every engine lists exactly the stored columns, in file
//! order, with the type the doc's mapping gives, then the partition columns.
//! A column added to `schema/src/record.rs` without the doc fails here.

use audit_schema::columns::{Column, ColumnType, AUDIT, VIOLATIONS};

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/external-tables.md"
    ))
    .expect("docs/external-tables.md")
}

/// An engine's section heading and its type names.
struct Engine {
    heading: &'static str,
    ty: fn(ColumnType) -> &'static str,
    date: &'static str,
    hour: &'static str,
}

const ENGINES: [Engine; 3] = [
    Engine {
        heading: "## Spark SQL",
        ty: |t| match t {
            ColumnType::Utf8 => "STRING",
            // No nanosecond timestamp in Spark: a BIGINT of ns (nanosAsLong).
            ColumnType::TimestampNs | ColumnType::Int64 => "BIGINT",
            // Spark's mapping of Parquet UINT_64.
            ColumnType::UInt64 => "DECIMAL(20,0)",
            ColumnType::ListUtf8 => "ARRAY<STRING>",
            ColumnType::MapUtf8 => "MAP<STRING,STRING>",
            ColumnType::Bool => "BOOLEAN",
        },
        date: "DATE",
        hour: "STRING",
    },
    Engine {
        heading: "## Trino (Hive connector)",
        ty: |t| match t {
            ColumnType::Utf8 => "varchar",
            ColumnType::TimestampNs => "timestamp(3)",
            ColumnType::Int64 | ColumnType::UInt64 => "bigint",
            ColumnType::ListUtf8 => "array(varchar)",
            ColumnType::MapUtf8 => "map(varchar, varchar)",
            ColumnType::Bool => "boolean",
        },
        date: "date",
        hour: "varchar",
    },
    Engine {
        heading: "## Amazon Athena (partition projection)",
        ty: |t| match t {
            ColumnType::Utf8 => "STRING",
            ColumnType::TimestampNs => "TIMESTAMP",
            ColumnType::Int64 | ColumnType::UInt64 => "BIGINT",
            ColumnType::ListUtf8 => "ARRAY<STRING>",
            ColumnType::MapUtf8 => "MAP<STRING,STRING>",
            ColumnType::Bool => "BOOLEAN",
        },
        date: "STRING",
        hour: "STRING",
    },
];

/// The text of one `## ` section, up to the next.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("docs/external-tables.md has no section {heading:?}"));
    let body = &doc[start + heading.len()..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// Each `CREATE … TABLE` of a section: the table's name (last dotted part)
/// and its `(name, type)` pairs, from the column list and from a typed
/// `PARTITIONED BY (…)`.
fn tables(section: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for block in section.split("```sql\n").skip(1) {
        let block = &block[..block.find("```").expect("closed code block")];
        let Some(create) = block.lines().find(|l| l.starts_with("CREATE")) else {
            continue;
        };
        let name = create
            .trim_end_matches('(')
            .split_whitespace()
            .last()
            .and_then(|n| n.rsplit('.').next())
            .expect("table name")
            .to_owned();
        let mut cols = Vec::new();
        let mut in_list = false;
        for line in block.lines() {
            let l = line.trim();
            if l.starts_with("CREATE") || l == "PARTITIONED BY (" {
                in_list = true;
            } else if l.starts_with(')') {
                in_list = false;
            } else if in_list {
                let l = l.trim_end_matches(',');
                let (col, ty) = l.split_once(' ').expect("`name TYPE` line");
                cols.push((col.trim_matches(['`', '"']).to_owned(), ty.to_owned()));
            }
        }
        out.push((name, cols));
    }
    out
}

fn expected(e: &Engine, cols: &[Column]) -> Vec<(String, String)> {
    cols.iter()
        .map(|c| (c.name.to_owned(), (e.ty)(c.ty).to_owned()))
        .chain([
            ("date".to_owned(), e.date.to_owned()),
            ("hour".to_owned(), e.hour.to_owned()),
        ])
        .collect()
}

#[test]
fn every_engines_ddl_lists_the_stored_columns_with_their_types() {
    let doc = doc();
    for e in &ENGINES {
        let tables = tables(section(&doc, e.heading));
        let names: Vec<_> = tables.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["audit", "violations"], "{}", e.heading);
        for ((name, got), cols) in tables.iter().zip([AUDIT, VIOLATIONS]) {
            assert_eq!(
                got,
                &expected(e, cols),
                "{} {name}: the DDL's columns differ from schema/src/record.rs",
                e.heading
            );
        }
    }
}

#[test]
fn the_parser_sees_a_column_left_out() {
    // Guards the test above against passing vacuously.
    let doc = doc().replacen("  agent_credential_id STRING,\n", "", 1);
    let tables = tables(section(&doc, ENGINES[0].heading));
    assert_ne!(tables[0].1, expected(&ENGINES[0], AUDIT));
}
