//! Arbitrary bytes as a WAL segment left by a crash, recovered at start.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = audit_collector::fuzzing::wal_recovery(data);
});
