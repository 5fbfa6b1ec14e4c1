#![no_main]
// Check arbitrary 8-byte SP connection headers against every protocol.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::handshake(data));
