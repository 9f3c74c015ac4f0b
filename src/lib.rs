//! Umbrella package for the top-level examples and end-to-end tests, and
//! what both need.

pub mod raw_grpc;
