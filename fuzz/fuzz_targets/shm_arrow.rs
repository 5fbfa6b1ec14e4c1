#![no_main]
// Write arbitrary bytes into a region, attach it and convert it to Arrow arrays and a record batch.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mori_shm::fuzzing::region_to_arrow(data));
