//! End-to-end tests: the real `audit-collector` binary (built by cargo for
//! this test target, `CARGO_BIN_EXE_audit-collector`) on ephemeral loopback
//! ports, the real layer, real TLS, a real S3-compatible server. One test
//! binary, one module per concern, so CI links one executable instead of
//! one per file.

mod common;

#[path = "../../examples/answer_dataset.rs"]
mod answer_dataset;

mod access;
mod answerability;
mod auth;
mod collector_otlp;
mod consent;
mod console;
mod delegation;
mod delegation_services;
mod delivery;
mod deploy;
mod docs;
mod durability;
mod external_tables;
mod first_screen;
mod fuzz_corpus;
mod gate_e2e;
mod hostile;
mod layer_e2e;
mod limits;
mod ops;
mod overload;
mod prove_related;
mod request_size;
mod s3;
mod s3_query;
mod tls;
mod tls_reload;
mod tls_revocation;
mod token_reload;
mod trust;
