//! # audit-console
//!
//! The auditor's console: a read-only web view over the audit trail for
//! the people who ask "human or AI, who is accountable, what did this agent
//! do" and will not write SQL. `audit-collector console` serves it.
//!
//! Every answer comes from `audit-query` (the code behind `who`,
//! `activity` and `prove-human`), so the page and the command can never
//! disagree; the console adds only paging, filters and a histogram, each a
//! wrapper around [`audit_query::activity::sql`]. Nothing from the browser
//! becomes SQL text except through [`audit_query::quote`] and
//! [`audit_query::ts_literal`], after [`params`] validated it (event ids
//! are UUIDs, times RFC 3339 or dates).
//!
//! Modules, in dependency order: [`params`] (what a request may ask),
//! `table` (result batches as text cells), `chart` (the histogram),
//! `page` (the layout, the stylesheet, the security headers), `auth` (who
//! is looking), `access` (the access rows: who looked), `checkpoints`
//! (the latest signed checkpoint of each collector), the views (`find`,
//! `timeline`, `violations`, `health` with `verified` (verify in the
//! background), `looked`), `app` (the routes and the
//! checks every question goes through), and [`args`] (the command's flags
//! and its server).
//!
//! Every question is recorded before it is answered: an access row with
//! the viewer, the question, its parameters and the rows returned, made
//! durable through the collector's own writer in a dataset of its own
//! (`--access-dir`, shared with the CLI's answer commands), which `verify`
//! checks like any other.
//!
//! Pages are server-rendered HTML with no JavaScript: the find view, the
//! forms and the exports work in any browser, and the Content-Security-Policy
//! can forbid scripts altogether.
#![warn(missing_docs)]

mod access;
mod app;
pub mod args;
mod auth;
mod chart;
mod checkpoints;
mod find;
mod health;
mod looked;
mod page;
pub mod params;
mod table;
mod timeline;
mod verified;
mod violations;

pub use args::ConsoleArgs;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The dataset could not be located.
    #[error(transparent)]
    Query(#[from] audit_query::QueryError),
    /// The viewers' tokens file is unusable.
    #[error(transparent)]
    Tokens(#[from] audit_collector::auth::TokensError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `--proxy-header` is not a header name.
    #[error("--proxy-header {0:?} is not a valid header name")]
    BadHeader(String),
    /// No randomness for a one-time token.
    #[error("cannot make a sign-in token: {0}")]
    Random(getrandom::Error),
    /// The access dataset could not be opened or closed.
    #[error("access dataset: {0}")]
    Access(String),
    /// The witness location is unusable.
    #[error("witness: {0}")]
    Witness(#[from] audit_collector::store::StoreError),
    /// Writing the listening line failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
