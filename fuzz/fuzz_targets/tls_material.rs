#![no_main]
// Parse arbitrary bytes as PEM certificate chains, PEM keys and certificate fingerprints.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::tls_material(data));
