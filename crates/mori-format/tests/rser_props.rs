//! Property tests: whatever attribute sets and values we encode decode back unchanged in both
//! attribute forms, and no input bytes (random, truncated or corrupted blobs) make a decoder
//! panic.

use mori_format::rser::{
    AttrForm, SerializeOptions, decode_attributes, decode_value, encode_attributes, encode_value,
    try_encode_attributes, try_encode_value,
};
use mori_format::value::{Attributes, Data, Encoding, NA_INTEGER, RString, Value};
use proptest::collection::vec;
use proptest::prelude::*;

fn rstring() -> impl Strategy<Value = RString> {
    prop_oneof![
        1 => Just(RString::NA),
        4 => "[a-z]{0,6}".prop_map(|s| RString::new(&s)),
        2 => "[a-z\u{e9}\u{65e5}\u{1F600}]{0,6}".prop_map(|s| RString::new(&s)),
        1 => (vec(1u8..=255, 0..6), 0..4i32).prop_map(|(bytes, code)| RString {
            bytes: Some(bytes),
            encoding: Encoding::from_code(code).unwrap_or_default(),
        }),
    ]
}

fn atomic() -> impl Strategy<Value = Data> {
    prop_oneof![
        vec(prop_oneof![Just(0), Just(1), Just(NA_INTEGER)], 0..5).prop_map(Data::Logical),
        vec(any::<i32>(), 0..5).prop_map(Data::Integer),
        vec(any::<u64>().prop_map(f64::from_bits), 0..5).prop_map(Data::Double),
        vec(
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| [f64::from_bits(a), f64::from_bits(b)]),
            0..4
        )
        .prop_map(Data::Complex),
        vec(any::<u8>(), 0..6).prop_map(Data::Raw),
        vec(rstring(), 0..5).prop_map(Data::Character),
    ]
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("names".to_owned()),
        Just("class".to_owned()),
        Just("dim".to_owned()),
        "[a-z.]{1,6}",
        "[a-z\u{e9}]{1,4}",
    ]
}

/// A value nested up to `depth` lists deep, with attributes on anything but `NULL`.
fn value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        1 => Just(Value::new(Data::Null)),
        6 => (atomic(), attributes_of(Just(Value::character(["x"])).boxed()))
            .prop_map(|(data, attrs)| Value { data, attrs }),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        (vec(inner.clone(), 0..4), attributes_of(inner)).prop_map(|(items, attrs)| Value {
            data: Data::List(items),
            attrs,
        })
    })
    .boxed()
}

/// A set of up to three attributes with unique names whose values come from `values`.
fn attributes_of(values: BoxedStrategy<Value>) -> impl Strategy<Value = Attributes> {
    vec(
        (
            attr_name(),
            values.prop_filter("NULL is no attribute", |v| !matches!(v.data, Data::Null)),
        ),
        0..3,
    )
    .prop_map(|pairs| {
        let mut a = Attributes::new();
        for (n, v) in pairs {
            a.set(&n, v);
        }
        a
    })
}

/// `row.names` as R keeps them: compact automatic, explicit character or integer, or none.
fn row_names() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        (1..100_000i32).prop_map(|n| Some(Value::integer([NA_INTEGER, -n]))),
        vec("[a-z]{1,4}", 0..4).prop_map(|s| Some(Value::character(s))),
        Just(Some(Value::integer([]))),
        vec(-5..5i32, 1..4)
            .prop_filter("not 1:n", |x| x.iter().zip(1..).any(|(v, i)| *v != i))
            .prop_map(|x| Some(Value::integer(x))),
    ]
}

fn attribute_set() -> impl Strategy<Value = Attributes> {
    (attributes_of(value(2)), row_names()).prop_map(|(mut a, rows)| {
        if let Some(rows) = rows {
            a.set("row.names", rows);
        }
        a
    })
}

/// What `attributes()` order makes of a set: `names` first, the rest as they were.
fn names_first(a: &Attributes) -> Attributes {
    let (names, rest): (Vec<_>, Vec<_>) = a.0.iter().cloned().partition(|(n, _)| n == "names");
    Attributes(names.into_iter().chain(rest).collect())
}

const R_4_5_0: u32 = 0x0004_0500;

proptest! {
    #[test]
    fn attributes_round_trip_in_the_pairlist_form(attrs in attribute_set()) {
        let opts = SerializeOptions { form: AttrForm::Pairlist, r_version: R_4_5_0 };
        let mut blob = Vec::new();
        try_encode_attributes(&attrs, opts, &mut blob).unwrap();
        prop_assert_eq!(blob.is_empty(), attrs.is_empty());
        prop_assert_eq!(decode_attributes(&blob).unwrap(), attrs);
    }

    #[test]
    fn attributes_round_trip_in_the_named_list_form(attrs in attribute_set()) {
        let opts = SerializeOptions { form: AttrForm::NamedList, r_version: 0x0004_0600 };
        let mut blob = Vec::new();
        try_encode_attributes(&attrs, opts, &mut blob).unwrap();
        prop_assert_eq!(decode_attributes(&blob).unwrap(), names_first(&attrs));
        // The lenient encoder writes the same bytes when nothing is wrong.
        let mut lenient = Vec::new();
        encode_attributes(&attrs, opts, &mut lenient);
        prop_assert_eq!(lenient, blob);
    }

    #[test]
    fn values_round_trip(v in value(3)) {
        let mut blob = Vec::new();
        try_encode_value(&v, SerializeOptions::default(), &mut blob).unwrap();
        prop_assert_eq!(decode_value(&blob).unwrap(), v.clone());
        // A value nested as an opaque blob is spliced into its parent's stream.
        let mut outer = Vec::new();
        let wrapped = Value::list([Value::new(Data::Serialized(blob)), v.clone()]);
        try_encode_value(&wrapped, SerializeOptions::default(), &mut outer).unwrap();
        prop_assert_eq!(decode_value(&outer).unwrap(), Value::list([v.clone(), v]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode_value(&bytes);
        let _ = decode_attributes(&bytes);
        // With a valid header the body is parsed, not rejected at the door.
        let mut blob = b"B\n\x03\0\0\0\0\x05\x04\0\0\x05\x03\0\x05\0\0\0UTF-8".to_vec();
        blob.extend_from_slice(&bytes);
        let _ = decode_value(&blob);
        let _ = decode_attributes(&blob);
    }

    #[test]
    fn corrupted_and_truncated_blobs_never_panic(
        v in value(3),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut blob = Vec::new();
        encode_value(&v, SerializeOptions::default(), &mut blob);
        let truncated = &blob[..cut.index(blob.len())];
        prop_assert!(decode_value(truncated).is_err());
        let _ = decode_attributes(truncated);
        for (at, byte) in flips {
            let i = at.index(blob.len());
            blob[i] = byte;
        }
        let _ = decode_value(&blob);
        let _ = decode_attributes(&blob);
    }
}
