//! The README's tables are the schema crate's output, so docs and code
//! cannot drift apart.

use audit_schema::columns::{markdown_table, AUDIT, VIOLATIONS};
use audit_schema::wire::markdown_fields;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn readme_schema_tables_match_the_code() {
    let readme = readme();
    for (name, table) in [
        ("audit", markdown_table(AUDIT)),
        ("violations", markdown_table(VIOLATIONS)),
        ("span fields", markdown_fields()),
    ] {
        assert!(
            readme.contains(&table),
            "README's {name} table is stale; paste this:\n{table}"
        );
    }
}

#[test]
fn readme_duckdb_query_is_the_tested_one() {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/what-did-agent-do.sql"
    ))
    .expect("docs/what-did-agent-do.sql");
    assert!(
        readme().contains(sql.trim()),
        "README must show docs/what-did-agent-do.sql verbatim"
    );
}
