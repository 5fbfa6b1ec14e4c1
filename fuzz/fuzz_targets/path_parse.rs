#![no_main]
// Parse arbitrary bytes as a mori identifier; what parses must print back to itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mori_format::fuzzing::path_parse(data));
