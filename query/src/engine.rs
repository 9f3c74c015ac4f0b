//! The DataFusion session over a dataset, local or in a bucket.

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
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::QueryError;
use audit_collector::store::object_store;
use audit_collector::store::Location;
use futures::TryStreamExt;

/// The Hive partition columns, as DuckDB types them with
/// `hive_partitioning = true`: `date` a DATE, `hour` the two-digit string
/// of the path (`'03'`). Same types here, so the same SQL runs in both.
fn partition_cols() -> Vec<(String, DataType)> {
    vec![
        ("date".to_owned(), DataType::Date32),
        ("hour".to_owned(), DataType::Utf8),
    ]
}

/// SQL over one dataset: tables `audit` and `violations`.
pub struct Engine {
    ctx: SessionContext,
    location: Location,
}

impl Engine {
    /// Opens the dataset at `location`: the collector's data directory, or
    /// the bucket prefix it uploads sealed files to. Both are read the same
    /// way, as listing tables over `audit/` and `violations/` with the Hive
    /// partition columns; a bucket's store is registered with DataFusion
    /// under `s3://<bucket>`, a directory is read by DataFusion's own
    /// local store. A dataset with nothing under one of the two yet (no
    /// violation ever recorded) is an empty table with the right columns,
    /// so queries over it answer "none".
    pub async fn open(location: Location) -> Result<Engine, QueryError> {
        // A mistyped bucket prefix would otherwise answer "nothing
        // happened". A directory is checked for existence before this; an
        // empty one is a collector that has sealed nothing yet.
        if location.is_remote() && !has_any(&location, "").await? {
            return Err(QueryError::EmptyLocation(location.url.clone()));
        }
        let ctx = SessionContext::new_with_config(session_config());
        if let Some(bucket) = location.bucket() {
            let url = bucket_url(bucket, &location)?;
            ctx.register_object_store(url.as_ref(), Arc::clone(&location.store));
        }
        for (name, cols, added) in [
            ("audit", columns::AUDIT, audit_schema::record::AUDIT_ADDED),
            (
                "violations",
                columns::VIOLATIONS,
                audit_schema::record::VIOLATIONS_ADDED,
            ),
        ] {
            let schema: SchemaRef = Arc::new(table_schema(cols, added));
            if has_any(&location, name).await? {
                let table = listing_table(table_url(&location, name)?, schema)?;
                ctx.register_table(name, Arc::new(table))?;
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
        Ok(Engine { ctx, location })
    }

    /// Where the dataset is.
    pub fn location(&self) -> &Location {
        &self.location
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

/// The `audit` table's columns (the partition columns aside), as SQL over
/// it returns them.
pub(crate) fn audit_table_schema() -> Schema {
    table_schema(columns::AUDIT, audit_schema::record::AUDIT_ADDED)
}

/// The columns as a table over every file ever sealed: a column added
/// after the first files (`added`) is nullable whatever the writer
/// declares, since files sealed before it have no such column and read as
/// null there (a non-nullable declaration would fail every query that
/// touches such a file).
fn table_schema(cols: &[columns::Column], added: &[&str]) -> Schema {
    let schema = columns::arrow_schema(cols);
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if added.contains(&f.name().as_str()) {
                    Arc::new(f.as_ref().clone().with_nullable(true))
                } else {
                    Arc::clone(f)
                }
            })
            .collect::<Vec<_>>(),
    )
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

fn bad_location(location: &str, reason: impl ToString) -> QueryError {
    QueryError::BadLocation {
        location: location.to_owned(),
        reason: reason.to_string(),
    }
}

fn bucket_url(bucket: &str, location: &Location) -> Result<ObjectStoreUrl, QueryError> {
    ObjectStoreUrl::parse(format!("s3://{bucket}")).map_err(|e| bad_location(&location.url, e))
}

/// Whether anything lies under `dir` (a prefix with nothing under it, or a
/// directory that does not exist, has nothing).
async fn has_any(location: &Location, dir: &str) -> Result<bool, QueryError> {
    match location
        .store
        .list(Some(&location.path(dir)))
        .try_next()
        .await
    {
        Ok(first) => Ok(first.is_some()),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(bad_location(&format!("{}/{dir}", location.url), e)),
    }
}

/// The URL DataFusion lists a table under: `s3://bucket/prefix/audit/`, or
/// the directory's absolute path. The trailing slash makes it a directory
/// (a prefix), not a single file.
fn table_url(location: &Location, dir: &str) -> Result<ListingTableUrl, QueryError> {
    let url = match (location.bucket(), location.local_dir()) {
        (Some(bucket), _) => format!("s3://{bucket}/{}/", location.path(dir)),
        (None, Some(root)) => {
            let path = root.canonicalize()?.join(dir);
            let s = path
                .to_str()
                .ok_or_else(|| bad_location(&location.url, "not valid UTF-8"))?;
            format!("{s}/")
        }
        (None, None) => {
            return Err(bad_location(
                &location.url,
                "neither a bucket nor a directory",
            ))
        }
    };
    ListingTableUrl::parse(&url).map_err(|e| bad_location(&url, e))
}

fn listing_table(url: ListingTableUrl, schema: SchemaRef) -> Result<ListingTable, QueryError> {
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
