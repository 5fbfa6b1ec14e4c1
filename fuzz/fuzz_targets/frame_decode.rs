#![no_main]
// Feed arbitrary stream bytes to the tcp and ipc frame decoders (limit checked before allocating).
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::frame_decode(data));
