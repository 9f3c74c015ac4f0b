//! The DataFusion session over a data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_schema::columns;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::QueryError;

/// The Hive partition columns, as DuckDB types them with
/// `hive_partitioning = true`: `date` a DATE, `hour` the two-digit string
/// of the path (`'03'`). Same types here, so the same SQL runs in both.
fn partition_cols() -> Vec<(String, DataType)> {
    vec![
        ("date".to_owned(), DataType::Date32),
        ("hour".to_owned(), DataType::Utf8),
    ]
}

/// SQL over one data directory: tables `audit` and `violations`.
pub struct Engine {
    ctx: SessionContext,
    root: PathBuf,
}

impl Engine {
    /// Opens `root` (the collector's `--data-dir`). A dataset directory that
    /// does not exist yet (no violation ever recorded) is an empty table
    /// with the right columns, so queries over it answer "none".
    pub async fn open(root: &Path) -> Result<Engine, QueryError> {
        if !root.is_dir() {
            return Err(QueryError::MissingDataDir(root.to_owned()));
        }
        let root = root.canonicalize()?;
        let ctx = SessionContext::new_with_config(session_config());
        for (name, cols) in [
            ("audit", columns::AUDIT),
            ("violations", columns::VIOLATIONS),
        ] {
            let schema: SchemaRef = Arc::new(columns::arrow_schema(cols));
            let dir = root.join(name);
            if dir.is_dir() {
                ctx.register_table(name, Arc::new(listing_table(&dir, schema)?))?;
            } else {
                let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
                for (col, ty) in partition_cols() {
                    fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
                        col, ty, false,
                    )));
                }
                let full = Arc::new(Schema::new(fields));
                ctx.register_table(name, Arc::new(MemTable::try_new(full, vec![vec![]])?))?;
            }
        }
        Ok(Engine { ctx, root })
    }

    /// The data directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs one SQL statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.sql_with_schema(sql).await?.1)
    }

    /// Runs one SQL statement and returns the result's schema with it
    /// (an empty result still has columns to print).
    pub async fn sql_with_schema(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let df = self.ctx.sql_with_options(sql, read_only()).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        Ok((schema, df.collect().await?))
    }
}

/// Queries only read: no `CREATE`, `COPY … TO`, `INSERT` or `SET`, so an
/// analyst's SQL cannot write beside the sealed files.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Parquet's own means of skipping data, all on: row-group statistics and
/// the page index (rows are sorted by agent, owner, time, so "agent X
/// between T1 and T2" touches few row groups), the bloom filter on
/// `event_id` (a point lookup opens no row group that cannot hold it), and
/// filters evaluated during the scan (late materialization: only matching
/// rows decode the other columns).
fn session_config() -> SessionConfig {
    SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pruning", true)
        .set_bool("datafusion.execution.parquet.enable_page_index", true)
        .set_bool("datafusion.execution.parquet.bloom_filter_on_read", true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
        .set_bool("datafusion.execution.collect_statistics", true)
        // Timestamps print and compare in UTC whatever the machine's zone.
        .set_str("datafusion.execution.time_zone", "+00:00")
}

fn listing_table(dir: &Path, schema: SchemaRef) -> Result<ListingTable, QueryError> {
    let bad = |reason: String| QueryError::BadPath {
        path: dir.to_owned(),
        reason,
    };
    let s = dir.to_str().ok_or_else(|| bad("not valid UTF-8".into()))?;
    // A trailing slash makes it a directory (a prefix), not a single file.
    let url = ListingTableUrl::parse(format!("{s}/")).map_err(|e| bad(e.to_string()))?;
    // `.parquet` only: sealing's temporary files end in `.tmp` and are
    // never data.
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partition_cols());
    // The schema is the one definition in `audit-schema`, given rather than
    // inferred: no footer is read just to learn it.
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?)
}
