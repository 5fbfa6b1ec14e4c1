//! Hostile and malformed blobs: every limit and every failure is a typed error, checked before
//! anything a blob merely claims is allocated.

use mori_format::rser::{
    AttrForm, Limits, RserError, SerializeOptions, decode_attributes,
    decode_attributes_with_limits, decode_value, decode_value_with_limits, encode_attributes,
    encode_value, try_encode_attributes, try_encode_value,
};
use mori_format::value::{Attributes, Data, NA_INTEGER, RString, Value};

/// A version 3 native binary header (R 4.5.0, UTF-8).
fn header() -> Vec<u8> {
    b"B\n\x03\0\0\0\0\x05\x04\0\0\x05\x03\0\x05\0\0\0UTF-8".to_vec()
}

/// A header followed by these words.
fn blob(words: &[i32]) -> Vec<u8> {
    let mut b = header();
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b
}

const NIL: i32 = 254;
const INTSXP: i32 = 13;
const STRSXP: i32 = 16;
const VECSXP: i32 = 19;
const SYMSXP: i32 = 1;
const TAGGED_CELL: i32 = 0x402;
const ASCII_CHAR: i32 = 0x0004_0009;

#[test]
fn length_claims_beyond_the_blob_are_rejected_before_allocating() {
    let err = decode_value(&blob(&[INTSXP, i32::MAX])).unwrap_err();
    assert!(matches!(err, RserError::BadLength { length, .. } if length == i64::from(i32::MAX)));
    // A long-vector length (-1, high, low) claiming 2^40 elements.
    let err = decode_value(&blob(&[INTSXP, -1, 256, 0])).unwrap_err();
    assert!(matches!(err, RserError::BadLength { length, .. } if length == 1 << 40));
    // A million strings claimed with no bytes behind them.
    let err = decode_value(&blob(&[STRSXP, 1_000_000])).unwrap_err();
    assert!(matches!(err, RserError::BadLength { .. }));
    let err = decode_value(&blob(&[VECSXP, -7])).unwrap_err();
    assert!(matches!(err, RserError::BadLength { length: -7, .. }));
    // A string claiming more bytes than are left.
    let err = decode_value(&blob(&[STRSXP, 1, ASCII_CHAR, 1000])).unwrap_err();
    assert!(matches!(err, RserError::Truncated { needed: 1000, .. }));
}

#[test]
fn a_long_length_that_fits_is_read() {
    let v = decode_value(&blob(&[INTSXP, -1, 0, 2, 7, 8])).unwrap();
    assert_eq!(v, Value::integer([7, 8]));
}

#[test]
fn nesting_deeper_than_the_limit_is_rejected() {
    let mut words = Vec::new();
    for _ in 0..200 {
        words.extend([VECSXP, 1]);
    }
    words.push(NIL);
    let b = blob(&words);
    assert_eq!(decode_value(&b), Err(RserError::TooDeep { limit: 128 }));
    let deep_enough = Limits {
        max_depth: 250,
        ..Limits::default()
    };
    assert!(decode_value_with_limits(&b, &deep_enough).is_ok());
}

#[test]
fn references_must_point_into_the_table() {
    // A tagged cell whose tag is reference 5 while the table is empty.
    let b = blob(&[TAGGED_CELL, (5 << 8) | 255, INTSXP, 0, NIL]);
    assert_eq!(
        decode_attributes(&b),
        Err(RserError::BadReference {
            index: 5,
            table_len: 0
        })
    );
    // An unpacked reference (index 0 in the flags word, then the index) of 0 is no entry.
    let b = blob(&[TAGGED_CELL, 255, 0, INTSXP, 0, NIL]);
    assert!(matches!(
        decode_attributes(&b),
        Err(RserError::BadReference { index: 0, .. })
    ));
}

#[test]
fn the_reference_table_is_bounded() {
    let mut a = Attributes::new();
    for name in ["a", "b", "c"] {
        a.set(name, Value::integer([1]));
    }
    let mut b = Vec::new();
    encode_attributes(&a, SerializeOptions::default(), &mut b);
    let limits = Limits {
        max_refs: 2,
        ..Limits::default()
    };
    assert_eq!(
        decode_attributes_with_limits(&b, &limits),
        Err(RserError::TooManyReferences { limit: 2 })
    );
    assert_eq!(decode_attributes(&b).unwrap(), a);
}

#[test]
fn blobs_over_the_size_limit_are_rejected() {
    let b = blob(&[NIL]);
    let limits = Limits {
        max_blob: b.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        decode_value_with_limits(&b, &limits),
        Err(RserError::TooLarge { .. })
    ));
}

#[test]
fn headers_other_than_native_binary_v2_or_v3_are_rejected() {
    assert_eq!(
        decode_value(b"X\n\0\0\0\x03"),
        Err(RserError::UnsupportedFormat(b'X'))
    );
    assert_eq!(
        decode_value(b"A\n3\n"),
        Err(RserError::UnsupportedFormat(b'A'))
    );
    assert!(matches!(
        decode_value(b"RDX3\n"),
        Err(RserError::BadHeader(_))
    ));
    assert!(matches!(decode_value(b"B"), Err(RserError::BadHeader(_))));
    let mut v4 = header();
    v4[2] = 4;
    assert_eq!(decode_value(&v4), Err(RserError::UnsupportedVersion(4)));
    // An encoding name longer than R allows.
    let mut long_name = header();
    long_name[14] = 200;
    assert!(matches!(
        decode_value(&long_name),
        Err(RserError::BadHeader(_))
    ));
    // Version 2 has no encoding name.
    let v2 = [
        b"B\n\x02\0\0\0\0\x05\x04\0\0\x03\x02\0".as_slice(),
        &NIL.to_le_bytes(),
    ]
    .concat();
    assert_eq!(decode_value(&v2).unwrap(), Value::new(Data::Null));
}

#[test]
fn bytes_after_the_item_are_rejected() {
    let b = blob(&[NIL, NIL]);
    assert!(matches!(
        decode_value(&b),
        Err(RserError::TrailingBytes { .. })
    ));
}

#[test]
fn compact_sequences_are_expanded_only_within_the_limit() {
    let mut a = Attributes::new();
    a.set("names", Value::character(["x"]));
    a.set("row.names", Value::integer([NA_INTEGER, -1_000_000_000]));
    let opts = SerializeOptions {
        form: AttrForm::NamedList,
        ..SerializeOptions::default()
    };
    let mut b = Vec::new();
    encode_attributes(&a, opts, &mut b);
    // As row names, a billion-row compact sequence folds back without being expanded.
    assert_eq!(decode_attributes(&b).unwrap(), a);
    // As a plain value it would have to be expanded.
    assert_eq!(
        decode_value(&b),
        Err(RserError::SequenceTooLong {
            len: 1_000_000_000,
            limit: 1 << 20
        })
    );
}

#[test]
fn blobs_that_are_not_attribute_sets_are_rejected() {
    let mut b = Vec::new();
    encode_value(&Value::integer([1, 2]), SerializeOptions::default(), &mut b);
    assert!(matches!(
        decode_attributes(&b),
        Err(RserError::InvalidAttributeForm(_))
    ));
    // A list without names.
    b.clear();
    encode_value(
        &Value::list([Value::integer([1])]),
        SerializeOptions::default(),
        &mut b,
    );
    assert!(matches!(
        decode_attributes(&b),
        Err(RserError::InvalidAttributeForm(_))
    ));
    // A pairlist cell without a tag.
    let untagged = blob(&[2, INTSXP, 0, NIL]);
    assert!(matches!(
        decode_attributes(&untagged),
        Err(RserError::InvalidAttributeForm(_))
    ));
    // The same name twice.
    let name = |b: &mut Vec<i32>| b.extend([SYMSXP, ASCII_CHAR, 1, i32::from(b'a')]);
    let mut words = vec![TAGGED_CELL];
    name(&mut words);
    words.extend([INTSXP, 0, TAGGED_CELL, (1 << 8) | 255, INTSXP, 0, NIL]);
    // The name's single byte sits in a whole word; rebuild it byte-exact.
    let mut dup = header();
    for w in &words {
        dup.extend_from_slice(&w.to_le_bytes());
    }
    let char_len_at = header().len() + 4 * 3;
    dup.splice(char_len_at + 4..char_len_at + 8, [b'a']);
    assert_eq!(
        decode_attributes(&dup),
        Err(RserError::InvalidAttributeForm("duplicate attribute name"))
    );
}

#[test]
fn what_r_could_not_read_back_is_an_error_or_null() {
    let nul = Value::new(Data::Character(vec![RString::new("a\0b")]));
    let list = Value::list([Value::integer([1]), nul.clone()]);
    let mut out = Vec::new();
    assert!(matches!(
        try_encode_value(&list, SerializeOptions::default(), &mut out),
        Err(RserError::Unencodable(_))
    ));
    assert!(out.is_empty());
    encode_value(&list, SerializeOptions::default(), &mut out);
    assert_eq!(
        decode_value(&out).unwrap(),
        Value::list([Value::integer([1]), Value::new(Data::Null)])
    );

    let mut a = Attributes::new();
    a.set("ok", Value::integer([1]));
    a.set("bad", nul);
    a.set("nul\0name", Value::integer([2]));
    assert!(try_encode_attributes(&a, SerializeOptions::default(), &mut Vec::new()).is_err());
    out.clear();
    encode_attributes(&a, SerializeOptions::default(), &mut out);
    let mut expected = Attributes::new();
    expected.set("ok", Value::integer([1]));
    expected.set("bad", Value::new(Data::Null));
    assert_eq!(decode_attributes(&out).unwrap(), expected);

    // NULL cannot carry attributes; an unsupported nested blob cannot be spliced.
    let mut null_with_attrs = Value::new(Data::Null);
    null_with_attrs.attrs.set("class", Value::character(["x"]));
    assert!(
        try_encode_value(
            &null_with_attrs,
            SerializeOptions::default(),
            &mut Vec::new()
        )
        .is_err()
    );
    let opaque = Value::list([Value::new(Data::Serialized(b"not a blob".to_vec()))]);
    assert!(try_encode_value(&opaque, SerializeOptions::default(), &mut Vec::new()).is_err());
    out.clear();
    encode_value(&opaque, SerializeOptions::default(), &mut out);
    assert_eq!(
        decode_value(&out).unwrap(),
        Value::list([Value::new(Data::Null)])
    );
}

#[test]
fn a_top_level_serialized_value_is_written_as_is() {
    let blob = b"B\n any bytes".to_vec();
    let mut out = Vec::new();
    encode_value(
        &Value::new(Data::Serialized(blob.clone())),
        SerializeOptions::default(),
        &mut out,
    );
    assert_eq!(out, blob);
}

/// R's ALTREP `compact_intseq` for `1:n`; `first` says whether its class symbols are new or
/// back-references 1 and 2.
fn compact_intseq(out: &mut Vec<u8>, n: f64, first: bool) {
    let word = |out: &mut Vec<u8>, w: i32| out.extend_from_slice(&w.to_le_bytes());
    word(out, 238);
    for (i, name) in [b"compact_intseq".as_slice(), b"base"].iter().enumerate() {
        word(out, 2);
        if first {
            for w in [SYMSXP, ASCII_CHAR, name.len() as i32] {
                word(out, w);
            }
            out.extend_from_slice(name);
        } else {
            word(out, ((i as i32 + 1) << 8) | 255);
        }
    }
    for w in [2, INTSXP, 1, 13, NIL, 14, 3] {
        word(out, w);
    }
    for x in [n, 1.0, 1.0] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    word(out, NIL);
}

#[test]
fn the_expansion_limit_covers_all_sequences_of_a_blob_together() {
    let mut b = blob(&[VECSXP, 2]);
    compact_intseq(&mut b, 600_000.0, true);
    compact_intseq(&mut b, 600_000.0, false);
    assert_eq!(
        decode_value(&b),
        Err(RserError::SequenceTooLong {
            len: 600_000,
            limit: (1 << 20) - 600_000
        })
    );
    let mut small = blob(&[VECSXP, 2]);
    compact_intseq(&mut small, 3.0, true);
    compact_intseq(&mut small, 2.0, false);
    assert_eq!(
        decode_value(&small).unwrap(),
        Value::list([Value::integer([1, 2, 3]), Value::integer([1, 2])])
    );
}
