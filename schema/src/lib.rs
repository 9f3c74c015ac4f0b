//! # audit-schema
//!
//! One definition of the audit trail's record: schema v2, the OTLP wire
//! names, and the dual-key rules. `audit-layer` uses it to check spans,
//! the collector uses it to re-check every record it receives, and the
//! README's tables are printed from it.
//!
//! ```
//! use audit_schema::{ActorKind, Draft, Field, Rules};
//!
//! let mut draft = Draft::default();
//! draft.start_time_ns = Some(1_764_000_000_000_000_000);
//! draft.set(Field::from_span_field("agent.id").unwrap(), "agt_7f3".into());
//! draft.set(Field::from_wire("audit.owner.id").unwrap(), "usr_alice".into());
//! draft.set(Field::Action, "payments.transfer".into());
//!
//! let record = Rules::default().check(draft).expect("both keys present");
//! assert_eq!(record.actor_kind, ActorKind::Agent);
//! assert_eq!(record.owner_id, "usr_alice");
//! ```
//!
//! ## Modules, in dependency order
//!
//! Each module uses only the ones before it (the macros of `declare`
//! expand in `record`, where the tables are):
//!
//! 1. `column`: what a stored column is (type, docs, Arrow type, cells);
//!    public as [`columns`] with the two column lists.
//! 2. [`record`]: **the field tables**. One row per field declares the
//!    record structs, [`Draft`], [`Field`], the column lists and the code
//!    that fills, checks, encodes, writes and reads each field.
//! 3. [`wire`]: the other names of the OTLP wire contract (event names,
//!    resource and violation keys), with [`Field`]'s table re-exported.
//! 4. `problem`: [`Problem`] and [`Rejection`], what is wrong with a record.
//! 5. [`limits`]: [`Limits`], bounds on a record's size, shape and time.
//! 6. [`rules`]: [`Rules`], the dual-key rules (limits included).
//! 7. [`otlp`] (feature `otlp`): records to and from OTLP log records.
//! 8. `consent` (feature `consent`): signed consent tokens, verified
//!    against the record by the layer and the collector alike.
#![warn(missing_docs)]

#[macro_use]
mod declare;

mod column;
#[cfg(feature = "consent")]
pub mod consent;
pub mod delegation;
pub mod limits;
#[cfg(feature = "otlp")]
pub mod otlp;
mod problem;
pub mod record;
pub mod rules;
pub mod wire;

/// The stored columns of the `audit` and `violations` datasets: names,
/// types and meanings, from which the Arrow/Parquet schema and the docs'
/// tables are both derived.
pub mod columns {
    #[cfg(feature = "arrow")]
    pub use crate::column::{arrow_schema, data_type};
    pub use crate::column::{markdown_table, Cell, Column, ColumnType, ReadCells, Stored, STAMP};
    pub use crate::record::{AUDIT, VIOLATIONS};
}

pub use delegation::Hop;
pub use limits::Limits;
pub use problem::{Problem, Rejection};
pub use record::{ActorKind, AuditRecord, Draft, Field, Stamp, ViolationRecord, FIELDS};
pub use rules::Rules;
