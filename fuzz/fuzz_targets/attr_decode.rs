#![no_main]
// Decode arbitrary bytes as an R attribute blob (either form) and as a serialized element.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mori_format::rser::decode_attributes(data);
    let _ = mori_format::rser::decode_value(data);
});
