//! What it takes for the audit trail's files to survive a power loss, in
//! one place, and the harness that checks it.
//!
//! [`fsio`] does every write, fsync, create, link, rename, unlink and
//! mkdir of the durable paths: the collector's WAL, manifest and Parquet
//! files, retention's deletions and the layer's spool. With the `record`
//! feature (tests only), [`powerloss`] records those operations and
//! rebuilds what a power loss at each point of a run would leave, so a
//! test can run recovery on every such state.
//!
//! [`reload`] watches the files a running process is configured from (TLS,
//! tokens, consent keys) and swaps in what they configure when they change;
//! the collector and the layer share it.

pub mod fsio;
#[cfg(feature = "record")]
pub mod powerloss;
pub mod reload;
