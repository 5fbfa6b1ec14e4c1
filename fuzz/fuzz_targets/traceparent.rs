#![no_main]
// Parse arbitrary bytes as a task's W3C traceparent; it must not panic and must round trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirai::fuzzing::traceparent(data));
