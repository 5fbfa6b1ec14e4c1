#![no_main]
// Parse arbitrary text as an endpoint URL (numeric hosts only); accepted URLs round-trip.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::url_parse(data));
