#![no_main]
// Decode arbitrary bytes as an R attribute blob (either form) and as a serialized element; where
// the whole blob decodes, its names read in place must be the decoded names.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoded = mori_format::rser::decode_attributes(data);
    let in_place = mori_format::rser::decode_names(data);
    if let Ok(attrs) = decoded {
        let names = attrs.0.into_iter().find_map(|(name, value)| match value.data {
            mori_format::value::Data::Character(s) if name == "names" => Some(s),
            _ => None,
        });
        assert_eq!(in_place.expect("the blob decoded whole").map(|n| n.to_vec()), names);
    }
    let _ = mori_format::rser::decode_value(data);
});
