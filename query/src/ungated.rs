//! Side doors: privileged effects that ran outside any gate whose action
//! matches them (`audit_layer::require_gate`), stored as violations of
//! kind `ungated`. `prove-human` reports their count beside its violations
//! check; the console's trail-health view shows them per service.

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};

use super::{partition_range, ts_literal, Engine, QueryError};
use audit_schema::wire::violation_kind::UNGATED;

/// Ungated effects per service in `[from, to]` (also in `docs/analysts.md`).
pub fn by_service_sql(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "SELECT service_name, count(*) AS ungated\nFROM violations\nWHERE kind = '{UNGATED}'\n  AND time >= {}\n  AND time <= {}\n  AND {}\nGROUP BY service_name\nORDER BY service_name",
        ts_literal(from),
        ts_literal(to),
        partition_range(from, to)
    )
}

/// Ungated effects per service in `[from, to]`, by service name.
pub async fn by_service(
    engine: &Engine,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, QueryError> {
    let mut out = Vec::new();
    for b in engine.sql(&by_service_sql(from, to)).await? {
        let names = cast(b.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let counts = cast(b.column(1), &DataType::Int64)?;
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if !names.is_null(i) {
                out.push((names.value(i).to_owned(), counts.value(i)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prove::violations_sql;

    /// The SQL block `name` of `docs/analysts.md`.
    fn doc_block(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/analysts.md");
        let doc = std::fs::read_to_string(path).expect("docs/analysts.md");
        let start = doc
            .find(&format!("<!-- sql:{name} -->\n```sql\n"))
            .unwrap_or_else(|| panic!("no block {name}"));
        let body = &doc[start..];
        let body = &body[body.find("```sql\n").expect("fence") + 7..];
        body[..body.find("```").expect("closing fence")]
            .trim_end()
            .to_owned()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn the_docs_show_the_sql_that_runs() {
        assert_eq!(
            doc_block("ungated"),
            by_service_sql(t("2026-11-28T00:00:00Z"), t("2026-11-29T00:00:00Z"))
        );
        assert_eq!(
            doc_block("prove-violations"),
            violations_sql(
                "hr-portal",
                t("2026-11-28T02:55:00Z"),
                t("2026-11-28T03:05:00Z")
            )
        );
    }
}
