//! OTLP request bytes (protobuf or JSON) decoded and checked into records.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = audit_collector::fuzzing::otlp_request(data);
});
