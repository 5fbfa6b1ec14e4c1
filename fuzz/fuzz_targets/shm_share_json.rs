#![no_main]
// Decode arbitrary bytes as the JSON input of `mori share`, then plan and write the value in memory.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mori_shm::fuzzing::share_json(data));
