//! # audit-schema
//!
//! One definition of the audit trail's record: schema v1, the OTLP wire
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
#![warn(missing_docs)]

pub mod columns;
pub mod limits;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod record;
pub mod rules;
pub mod wire;

pub use limits::Limits;
pub use record::{ActorKind, AuditRecord, Draft, Stamp, ViolationRecord};
pub use rules::{Problem, Rejection, Rules};
pub use wire::{Field, FIELDS};
