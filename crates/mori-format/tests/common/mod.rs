//! Fixtures written by R's mori 0.2.0 and the values R says they hold (from each `.dput.txt`).
#![allow(dead_code)]

use mori_format::AlignedBuf;
use mori_format::value::{Attributes, Data, Encoding, NA_INTEGER, NA_REAL, RString, Value};

/// Every fixture, by name.
pub(crate) const FIXTURES: &[&str] = &[
    "double",
    "integer",
    "logical",
    "raw",
    "complex",
    "character",
    "empty_double",
    "empty_chr",
    "named_double",
    "matrix",
    "factor",
    "empty_list",
    "list_unnamed",
    "list_nested",
    "list_fallback",
    "data_frame",
];

/// The fixtures whose values carry no attributes anywhere.
pub(crate) const WITHOUT_ATTRIBUTES: &[&str] = &[
    "double",
    "integer",
    "logical",
    "raw",
    "complex",
    "character",
    "empty_double",
    "empty_chr",
    "empty_list",
    "list_unnamed",
];

/// The bytes of fixture `name`, in an 8-byte-aligned buffer as a mapping would be.
pub(crate) fn fixture(name: &str) -> AlignedBuf {
    let path = format!(
        "{}/tests/fixtures/r-mori-0.2.0/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    AlignedBuf::from_bytes(&bytes)
}

/// R's `NaN` (not NA): the default quiet NaN.
pub(crate) const R_NAN: f64 = f64::from_bits(0x7FF8_0000_0000_0000);

fn with(data: Data, attrs: &[(&str, Value)]) -> Value {
    Value {
        data,
        attrs: Attributes(
            attrs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
        ),
    }
}

fn chr(items: &[Option<&str>]) -> Value {
    Value::new(Data::Character(
        items.iter().map(|s| RString::from(*s)).collect(),
    ))
}

fn names(items: &[&str]) -> (&'static str, Value) {
    ("names", Value::character(items))
}

/// The value R deparsed for fixture `name`, written out by hand.
pub(crate) fn expected(name: &str) -> Value {
    match name {
        "double" => Value::double([1.5, NA_REAL, f64::NEG_INFINITY, 3.0, R_NAN]),
        "integer" => Value::integer([1, NA_INTEGER, 3, -2_147_483_647]),
        "logical" => Value::new(Data::Logical(vec![1, 0, NA_INTEGER])),
        "raw" => Value::new(Data::Raw(vec![0x00, 0xff, 0x10])),
        "complex" => Value::new(Data::Complex(vec![[1.0, -1.0], [2.0, 0.5]])),
        "character" => {
            let v = chr(&[
                Some("a"),
                None,
                Some("h\u{e9}llo"),
                Some(""),
                Some("\u{65e5}\u{672c}"),
            ]);
            if let Data::Character(s) = &v.data {
                assert_eq!(s[2].encoding, Encoding::Utf8);
                assert_eq!(s[4].encoding, Encoding::Utf8);
            }
            v
        }
        "empty_double" => Value::double([]),
        "empty_chr" => chr(&[]),
        "named_double" => with(
            Data::Double(vec![1.0, 2.0, 3.0]),
            &[names(&["x", "y", "z"])],
        ),
        "matrix" => with(
            Data::Integer(vec![1, 2, 3, 4, 5, 6]),
            &[
                ("dim", Value::integer([2, 3])),
                (
                    "dimnames",
                    Value::list([
                        Value::character(["r1", "r2"]),
                        Value::character(["a", "b", "c"]),
                    ]),
                ),
            ],
        ),
        "factor" => factor(&[1, 2, 1], &["lo", "hi"]),
        "empty_list" => Value::list([]),
        "list_unnamed" => Value::list([
            Value::double([1.0]),
            Value::character(["a"]),
            Value::new(Data::Logical(vec![1])),
        ]),
        "list_nested" => Value::named_list([
            ("p", Value::integer([1, 2, 3])),
            (
                "q",
                Value::named_list([
                    ("r", Value::character(["deep"])),
                    ("s", Value::double([2.5, NA_REAL])),
                ]),
            ),
        ]),
        "list_fallback" => Value::named_list([
            ("a", Value::double([1.0])),
            ("f", Value::new(Data::Null)),
            ("g", Value::new(Data::Serialized(quote_x_plus_y()))),
        ]),
        "data_frame" => Value::data_frame(
            [
                ("a", Value::double([1.5, 2.5, NA_REAL])),
                ("b", chr(&[Some("x"), None, Some("z")])),
                ("f", factor(&[1, 2, 1], &["u", "v"])),
                ("l", Value::new(Data::Logical(vec![1, NA_INTEGER, 0]))),
            ],
            3,
        ),
        other => panic!("no fixture {other}"),
    }
}

fn factor(codes: &[i32], levels: &[&str]) -> Value {
    with(
        Data::Integer(codes.to_vec()),
        &[
            ("levels", Value::character(levels)),
            ("class", Value::character(["factor"])),
        ],
    )
}

/// R 4.5.0's `serialize(quote(x + y), NULL, xdr = FALSE, version = 3)`: the header, then a
/// LANGSXP of the symbol `+` with two tagless cells holding the symbols `x` and `y`.
pub(crate) fn quote_x_plus_y() -> Vec<u8> {
    let mut b = b"B\n".to_vec();
    for x in [3i32, 0x0004_0500, 0x0003_0500, 5] {
        b.extend(x.to_le_bytes());
    }
    b.extend(b"UTF-8");
    let sym = |b: &mut Vec<u8>, s: &str| {
        b.extend(1i32.to_le_bytes()); // SYMSXP
        b.extend(0x0004_0009i32.to_le_bytes()); // CHARSXP, ASCII
        b.extend((s.len() as i32).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(6i32.to_le_bytes()); // LANGSXP
    sym(&mut b, "+");
    b.extend(2i32.to_le_bytes()); // LISTSXP
    sym(&mut b, "x");
    b.extend(2i32.to_le_bytes());
    sym(&mut b, "y");
    b.extend(254i32.to_le_bytes()); // NILVALUE_SXP
    b
}

/// `v` with every attribute removed, recursively.
pub(crate) fn strip_attributes(v: &Value) -> Value {
    let data = match &v.data {
        Data::List(items) => Data::List(items.iter().map(strip_attributes).collect()),
        other => other.clone(),
    };
    Value::new(data)
}
