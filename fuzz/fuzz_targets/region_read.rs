#![no_main]
// Validate arbitrary bytes as a mori region, then walk and copy out every view.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mori_format::fuzzing::region_read(data));
