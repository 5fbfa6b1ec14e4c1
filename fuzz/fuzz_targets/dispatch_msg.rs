#![no_main]
// Decode arbitrary bytes as dispatcher <-> daemon messages; what decodes must round-trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirai_dispatch::fuzzing::dispatch_msg(data));
