//! OTLP/protobuf request bytes read straight into records and through
//! prost's generated types: both readers must agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = audit_collector::fuzzing::otlp_protobuf(data);
});
