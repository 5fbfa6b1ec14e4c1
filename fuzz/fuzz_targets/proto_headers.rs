#![no_main]
// Classify arbitrary bodies by every protocol's header rules (backtrace, hop count, reply id).
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::proto_headers(data));
