//! # audit-collector
//!
//! The sidecar that receives audit records over OTLP, re-checks the dual
//! key with the same rules as `audit-layer`, acknowledges only what is
//! durable, and writes immutable, hash-chained Parquet partitions.
//!
//! Components, in the order a record meets them:
//! - [`receive`]: OTLP/gRPC and OTLP/HTTP receivers, `partial_success`.
//! - [`ingest`]: the single writer: WAL group commit, sealing, recovery.
//! - [`wal`]: the write-ahead log's segments and frames.
//! - [`partition`]: Parquet files in Hive-style partitions.
//! - [`manifest`]: the hash-chained list of sealed files.
//! - [`store`]: where sealed files and manifests live (a directory or a bucket).
//!
//! Who may write: [`auth`] (bearer tokens) and [`tls`] (TLS, mutual TLS),
//! both reloaded from their files by [`reload`] (interval and SIGHUP).
//! Consent tokens of dangerous actions: [`consent`] (keys reloaded alike).
//!
//! Answering questions (`query`, `who`, `activity`, `prove-human`) is the
//! `audit-query` crate's, with DataFusion; this library has no SQL engine.
//! The `audit-collector` binary composes both; built with
//! `--no-default-features` it is the lean sidecar (serve, verify,
//! checkpoint, keygen, retention) without DataFusion.
//!
//! Settings: [`config`] (every default in [`config::Config::default`],
//! then the TOML file, the `AUDIT_COLLECTOR_*` variables, the flags) and
//! [`dataset`], the `--data-dir | --store-url | --config` flags of every
//! command that reads a dataset.
//!
//! Running one in-process (the binary does the same from flags):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use audit_collector::{config::Config, server::Server};
//! let server = Server::start(Config::default()).await?;
//! println!("OTLP/gRPC on {:?}", server.grpc_addr);
//! server.shutdown().await?; // seals everything acknowledged
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod consent;
pub mod coverage;
pub mod dataset;
pub mod dedup;
pub use audit_durable::fsio;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod ingest;
pub mod manifest;
pub mod metrics;
pub mod partition;
pub mod policy_chain;
#[cfg(test)]
mod powerloss;
pub mod receive;
pub mod reload;
pub mod retention;
pub mod self_log;
pub mod server;
pub mod store;
#[cfg(test)]
mod test_records;
pub mod tls;
pub mod verify;
pub mod wal;
pub mod witness;

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
