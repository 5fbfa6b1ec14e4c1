#![no_main]
// Parse arbitrary bytes as a daemon's exit-rules text (MIRAI_DAEMON_RULES); it must not panic
// and must round trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mirai::fuzzing::daemon_rules(data));
