#![no_main]
// Drive the SURVEY protocol state (surveyor and respondent) with arbitrary step sequences.
libfuzzer_sys::fuzz_target!(|data: &[u8]| nano_transport::fuzzing::survey_state(data));
