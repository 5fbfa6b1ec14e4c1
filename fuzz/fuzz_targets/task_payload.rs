#![no_main]
// Decode arbitrary bytes as a facade task payload (a value with buffers beside it); it must not
// panic, and what decodes must round trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirai::fuzzing::task_payload(data));
