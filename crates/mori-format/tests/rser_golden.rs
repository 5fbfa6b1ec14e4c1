//! Golden tests against blobs real R wrote: `tests/fixtures/rser/` (R 4.2.2, from
//! `make_rser_fixtures.R`) and the attribute blobs inside the regions R's mori 0.2.0 wrote
//! under R 4.5.0 (`tests/fixtures/r-mori-0.2.0/`). Each blob must decode to the value R
//! described, and encoding that value with the same form and R version must give R's bytes.

use mori_format::rser::{
    AttrForm, RserError, SerializeOptions, decode_attributes, decode_value, encode_attributes,
    encode_value,
};
use mori_format::value::{Attributes, Data, Encoding, NA_INTEGER, NA_REAL, RString, Value};
use std::path::PathBuf;

/// The version R 4.2.2 writes in the header.
const R_4_2_2: u32 = 0x0004_0202;
/// The version R 4.5.0 writes in the header.
const R_4_5_0: u32 = 0x0004_0500;

fn fixture_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn rser_fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir("rser").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    let mut a = Attributes::new();
    for (n, v) in pairs {
        a.set(n, v);
    }
    a
}

fn with_attrs(data: Data, a: Attributes) -> Value {
    Value { data, attrs: a }
}

fn chr(items: &[Option<&str>]) -> Value {
    Value::new(Data::Character(
        items.iter().map(|s| RString::from(*s)).collect(),
    ))
}

/// Decode `NAME.pairlist.bin` / `NAME.list.bin`, compare with `expected`, and re-encode.
fn check_attr_case(name: &str, expected: &Attributes) {
    for (suffix, form) in [
        ("pairlist", AttrForm::Pairlist),
        ("list", AttrForm::NamedList),
    ] {
        let file = format!("attr_{name}.{suffix}.bin");
        let blob = rser_fixture(&file);
        let got = decode_attributes(&blob).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(&got, expected, "{file} decoded");
        let mut out = Vec::new();
        let opts = SerializeOptions {
            form,
            r_version: R_4_2_2,
        };
        encode_attributes(expected, opts, &mut out);
        assert_eq!(out, blob, "{file} re-encoded");
    }
}

fn compact_rows(n: i32) -> Value {
    Value::integer([NA_INTEGER, -n])
}

#[test]
fn names_class_factor_date_posixct_attributes_match_r() {
    check_attr_case("names", &attrs([("names", Value::character(["a", "b"]))]));
    check_attr_case("class", &attrs([("class", Value::character(["myclass"]))]));
    check_attr_case(
        "factor",
        &attrs([
            ("levels", Value::character(["lo", "hi"])),
            ("class", Value::character(["factor"])),
        ]),
    );
    check_attr_case("date", &attrs([("class", Value::character(["Date"]))]));
    check_attr_case(
        "posixct",
        &attrs([
            ("class", Value::character(["POSIXct", "POSIXt"])),
            ("tzone", Value::character(["UTC"])),
        ]),
    );
    check_attr_case(
        "utf8_names",
        &attrs([("names", Value::character(["h\u{e9}", "\u{65e5}", "na"]))]),
    );
}

#[test]
fn matrix_attributes_match_r_including_symbol_back_references() {
    check_attr_case(
        "matrix",
        &attrs([
            ("dim", Value::integer([2, 3])),
            (
                "dimnames",
                Value::list([
                    Value::character(["r1", "r2"]),
                    Value::character(["a", "b", "c"]),
                ]),
            ),
        ]),
    );
    // `names` appears in the dimnames list and (named-list form) on the outer list: the
    // second use is a REFSXP in R's bytes and must be in ours.
    check_attr_case(
        "matrix_named_dimnames",
        &attrs([
            ("dim", Value::integer([2, 2])),
            (
                "dimnames",
                Value::named_list([
                    ("rows", Value::character(["p", "q"])),
                    ("cols", Value::character(["x", "y"])),
                ]),
            ),
        ]),
    );
    check_attr_case(
        "nested_same_tag",
        &attrs([(
            "foo",
            with_attrs(
                Data::Integer(vec![2]),
                attrs([("foo", Value::character(["inner"]))]),
            ),
        )]),
    );
}

#[test]
fn data_frame_attributes_match_r_with_compact_and_expanded_row_names() {
    let df = |cols: &[&str], rows: Value| {
        attrs([
            ("names", Value::character(cols)),
            ("class", Value::character(["data.frame"])),
            ("row.names", rows),
        ])
    };
    // Pairlist form: c(NA, -3); named-list form: R's compact_intseq 1:3 (ALTREP).
    check_attr_case("data_frame", &df(&["a", "b"], compact_rows(3)));
    // One row: attributes() gives a plain 1L.
    check_attr_case("data_frame_1row", &df(&["a"], compact_rows(1)));
    // No rows: integer(0) in both forms.
    check_attr_case("data_frame_0row", &df(&["a"], Value::integer([])));
    check_attr_case(
        "data_frame_chr_rownames",
        &df(&["v"], Value::character(["first", "second"])),
    );
    // The pairlist and named-list forms of a data frame differ, and both are R's sizes.
    assert_eq!(rser_fixture("attr_data_frame.list.bin").len(), 269);
}

#[test]
fn no_attributes_is_serialized_null_and_encodes_to_nothing() {
    for file in ["attr_none.pairlist.bin", "attr_none.list.bin"] {
        let blob = rser_fixture(file);
        assert_eq!(decode_attributes(&blob).unwrap(), Attributes::new());
        let mut out = Vec::new();
        let opts = SerializeOptions {
            r_version: R_4_2_2,
            ..Default::default()
        };
        encode_attributes(&Attributes::new(), opts, &mut out);
        assert!(out.is_empty());
        encode_value(&Value::new(Data::Null), opts, &mut out);
        assert_eq!(out, blob);
    }
    assert_eq!(decode_attributes(&[]).unwrap(), Attributes::new());
}

/// Decode `value_NAME.bin`, compare with `expected`, and re-encode.
fn check_value_case(name: &str, expected: &Value) {
    let file = format!("value_{name}.bin");
    let blob = rser_fixture(&file);
    let got = decode_value(&blob).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(&got, expected, "{file} decoded");
    let mut out = Vec::new();
    let opts = SerializeOptions {
        r_version: R_4_2_2,
        ..Default::default()
    };
    encode_value(expected, opts, &mut out);
    assert_eq!(out, blob, "{file} re-encoded");
}

#[test]
fn atomic_values_with_na_patterns_match_r() {
    check_value_case("null", &Value::new(Data::Null));
    let double = decode_value(&rser_fixture("value_double.bin")).unwrap();
    let Data::Double(d) = &double.data else {
        panic!("not a double vector: {double:?}")
    };
    // R's NaN is whatever 0/0 gives on the writer; it must stay distinct from NA.
    assert!(d[2].is_nan() && d[2].to_bits() != NA_REAL.to_bits());
    check_value_case(
        "double",
        &Value::double([1.5, NA_REAL, d[2], f64::NEG_INFINITY, -0.0, 1e300]),
    );
    check_value_case(
        "integer",
        &Value::integer([1, NA_INTEGER, -2_147_483_647, 0]),
    );
    check_value_case(
        "logical",
        &Value::new(Data::Logical(vec![1, 0, NA_INTEGER])),
    );
    check_value_case(
        "complex",
        &Value::new(Data::Complex(vec![[1.0, -2.0], [NA_REAL, NA_REAL]])),
    );
    check_value_case("raw", &Value::new(Data::Raw(vec![0, 255, 16])));
}

#[test]
fn strings_keep_na_and_encoding_marks_like_r() {
    let marked = |bytes: &[u8], encoding| RString {
        bytes: Some(bytes.to_vec()),
        encoding,
    };
    check_value_case(
        "character",
        &Value::new(Data::Character(vec![
            RString::new("a"),
            RString::NA,
            RString::new(""),
            marked("h\u{e9}llo".as_bytes(), Encoding::Utf8),
            marked("\u{65e5}\u{672c}".as_bytes(), Encoding::Utf8),
            marked(b"caf\xe9", Encoding::Latin1),
            marked(b"ab\xc3\xbf", Encoding::Bytes),
        ])),
    );
    check_value_case("empty_chr", &Value::new(Data::Character(vec![])));
}

#[test]
fn lists_and_objects_match_r() {
    check_value_case("empty_list", &Value::list([]));
    check_value_case(
        "list",
        &Value::named_list([
            ("a", Value::integer([1])),
            ("b", Value::new(Data::Null)),
            (
                "c",
                Value::named_list([
                    ("d", Value::character(["deep"])),
                    ("e", Value::new(Data::Logical(vec![1, NA_INTEGER]))),
                ]),
            ),
        ]),
    );
    check_value_case(
        "named",
        &with_attrs(
            Data::Double(vec![1.0, 2.0]),
            attrs([("names", Value::character(["x", "y"]))]),
        ),
    );
    check_value_case(
        "factor",
        &with_attrs(
            Data::Integer(vec![1, 2, 1]),
            attrs([
                ("levels", Value::character(["u", "v"])),
                ("class", Value::character(["factor"])),
            ]),
        ),
    );
    check_value_case(
        "data_frame",
        &Value::data_frame(
            [
                ("a", Value::double([1.5, 2.5, NA_REAL])),
                ("b", chr(&[Some("x"), None, Some("z")])),
            ],
            3,
        ),
    );
    check_value_case(
        "matrix",
        &with_attrs(
            Data::Double(vec![1.5, 2.5, 3.5, 4.5]),
            attrs([
                ("dim", Value::integer([2, 2])),
                (
                    "dimnames",
                    Value::named_list([
                        ("rows", Value::character(["p", "q"])),
                        ("", Value::new(Data::Null)),
                    ]),
                ),
            ]),
        ),
    );
}

#[test]
fn closures_language_and_environments_are_unsupported() {
    for (name, code) in [("closure", 3), ("language", 6), ("globalenv", 253)] {
        let blob = rser_fixture(&format!("value_{name}.bin"));
        assert_eq!(
            decode_value(&blob),
            Err(RserError::UnsupportedType { code }),
            "{name}"
        );
        assert!(decode_attributes(&blob).is_err(), "{name}");
    }
}

/// Every complete R serialization embedded in `region`: `(offset, blob)` for each header at
/// which some end makes a blob that decodes as a value or an attribute set.
fn embedded_blobs(region: &[u8]) -> Vec<(usize, &[u8])> {
    let header = b"B\n\x03\x00\x00\x00";
    (0..region.len().saturating_sub(header.len()))
        .filter(|&o| region[o..].starts_with(header))
        .filter_map(|o| {
            (o + 23..=region.len())
                .map(|end| &region[o..end])
                .find(|b| decode_value(b).is_ok() || decode_attributes(b).is_ok())
                .map(|b| (o, b))
        })
        .collect()
}

fn mori_region(name: &str) -> Vec<u8> {
    let path = fixture_dir("r-mori-0.2.0").join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn attribute_blobs_in_r_mori_regions_decode_and_re_encode_byte_identically() {
    // (region, number of attribute blobs or serialized elements it holds)
    let regions = [
        ("data_frame", 2),
        ("factor", 1),
        ("matrix", 1),
        ("named_double", 1),
        ("list_nested", 2),
        ("list_fallback", 2),
        ("double", 0),
        ("character", 0),
        ("list_unnamed", 0),
    ];
    let opts = SerializeOptions {
        form: AttrForm::Pairlist,
        r_version: R_4_5_0,
    };
    for (name, count) in regions {
        let region = mori_region(name);
        let blobs = embedded_blobs(&region);
        assert_eq!(
            blobs.len(),
            count,
            "{name}: blobs at {:?}",
            blobs.iter().map(|b| b.0).collect::<Vec<_>>()
        );
        for (offset, blob) in blobs {
            assert_eq!(
                &blob[6..10],
                &[0, 5, 4, 0],
                "{name}@{offset:#x}: R 4.5.0 header"
            );
            let attrs =
                decode_attributes(blob).unwrap_or_else(|e| panic!("{name}@{offset:#x}: {e}"));
            let mut out = Vec::new();
            if attrs.is_empty() {
                // A serialized NULL element.
                encode_value(&Value::new(Data::Null), opts, &mut out);
            } else {
                encode_attributes(&attrs, opts, &mut out);
            }
            assert_eq!(out, blob, "{name}@{offset:#x} re-encoded");
        }
    }
}

#[test]
fn r_mori_data_frame_and_factor_attributes_are_what_r_set() {
    let region = mori_region("data_frame");
    // The list's own attributes sit at 0x280 in this region (see the layout).
    let blobs = embedded_blobs(&region);
    let root = blobs
        .iter()
        .find(|(o, _)| *o == 0x280)
        .expect("blob at 0x280");
    assert_eq!(
        decode_attributes(root.1).unwrap(),
        attrs([
            ("names", Value::character(["a", "b", "f", "l"])),
            ("class", Value::character(["data.frame"])),
            ("row.names", compact_rows(3)),
        ])
    );
    let factor = mori_region("factor");
    let blobs = embedded_blobs(&factor);
    assert_eq!(
        decode_attributes(blobs[0].1).unwrap(),
        attrs([
            ("levels", Value::character(["lo", "hi"])),
            ("class", Value::character(["factor"])),
        ])
    );
    // The language element of list_fallback is kept opaque by callers: it is unsupported.
    let fallback = mori_region("list_fallback");
    let header = b"B\n\x03\x00\x00\x00";
    let starts: Vec<usize> = (0..fallback.len() - header.len())
        .filter(|&o| fallback[o..].starts_with(header))
        .collect();
    assert_eq!(starts.len(), 3, "names, NULL and the language object");
    let unsupported = starts
        .iter()
        .filter(|&&o| {
            matches!(
                decode_value(&fallback[o..]),
                Err(RserError::UnsupportedType { code: 6 })
            )
        })
        .count();
    assert_eq!(unsupported, 1);
}
