#![no_main]
// Decode arbitrary bytes as an owner record, a /proc stat line and a region file name.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mori_shm::fuzzing::system_records(data));
