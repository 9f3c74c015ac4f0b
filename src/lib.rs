//! Umbrella package for the top-level examples and end-to-end tests.
