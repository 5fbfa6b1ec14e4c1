//! Tests of the JSON input of `mori share` (`share_json`), which is compiled into both the
//! library and the `mori` binary; its tests run once, here.

use mori_format::value::{Data, NA_INTEGER, NA_REAL, RString, Value};
use proptest::prelude::*;

use crate::share_json::{JsonInputError, MAX_DEPTH, MAX_INPUT, decode};

/// The length of a value as R counts it (`NULL` has length 0).
fn len(value: &Value) -> usize {
    match &value.data {
        Data::Null => 0,
        Data::Logical(v) | Data::Integer(v) => v.len(),
        Data::Double(v) => v.len(),
        Data::Complex(v) => v.len(),
        Data::Raw(v) | Data::Serialized(v) => v.len(),
        Data::Character(v) => v.len(),
        Data::List(v) => v.len(),
    }
}

#[test]
fn arrays_objects_and_scalars_map_to_r_values() {
    assert_eq!(
        decode(b"[1, 2.5, null]").unwrap(),
        Value::double([1.0, 2.5, NA_REAL])
    );
    assert_eq!(
        decode(br#"["a", null]"#).unwrap(),
        Value::new(Data::Character(vec![RString::from("a"), RString::NA]))
    );
    assert_eq!(
        decode(b"[true, null]").unwrap(),
        Value::new(Data::Logical(vec![1, NA_INTEGER]))
    );
    assert_eq!(
        decode(br#"{"x": [1], "y": "z"}"#).unwrap(),
        Value::named_list([("x", Value::double([1.0])), ("y", Value::character(["z"]))])
    );
    assert_eq!(
        decode(br#"[1, "a"]"#).unwrap(),
        Value::list(vec![Value::double([1.0]), Value::character(["a"])])
    );
    assert_eq!(decode(b"null").unwrap(), Value::new(Data::Null));
}

#[test]
fn object_members_keep_the_files_order_in_the_shared_region() {
    // What `mori share` does with a file: decode, then share the value.
    let value = decode(br#"{"b": 1, "a": 2, "c": {"z": "first", "y": "second"}}"#).unwrap();
    let shared = crate::share(&value).unwrap();
    let root = shared.view();
    let names = root.names().unwrap().expect("a named list");
    let names: Vec<&str> = names.iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names, ["b", "a", "c"]);
    let first = crate::map_shared(&format!("{}[1]", shared.name())).unwrap();
    assert_eq!(
        first.as_f64(),
        Some(&[1.0][..]),
        "[1] is the file's first key, b"
    );
    let second = crate::map_shared(&format!("{}[2]", shared.name())).unwrap();
    assert_eq!(second.as_f64(), Some(&[2.0][..]));
    let nested = crate::map_shared(&format!("{}[3,1]", shared.name())).unwrap();
    assert_eq!(
        nested.as_strings().unwrap().get(0).unwrap().as_str(),
        Some("first")
    );
}

#[test]
fn a_repeated_key_keeps_its_first_position_and_its_last_value() {
    assert_eq!(
        decode(br#"{"b": 1, "a": 2, "b": 3}"#).unwrap(),
        Value::named_list([("b", Value::double([3.0])), ("a", Value::double([2.0]))])
    );
}

#[test]
fn nesting_up_to_the_limit_decodes_and_deeper_is_refused_without_recursing() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    assert!(decode(nested(MAX_DEPTH).as_bytes()).is_ok());
    assert!(matches!(
        decode(nested(MAX_DEPTH + 1).as_bytes()),
        Err(JsonInputError::TooDeep)
    ));
    // Far past any stack: refused by the scan, before parsing.
    let deep = "[{\"a\":".repeat(500_000);
    assert!(matches!(
        decode(deep.as_bytes()),
        Err(JsonInputError::TooDeep)
    ));
}

#[test]
fn brackets_inside_strings_do_not_count_as_nesting() {
    let text = format!(r#"["{}", "\"[[", "\\"]"#, "[".repeat(10 * MAX_DEPTH));
    let value = decode(text.as_bytes()).unwrap();
    assert_eq!(len(&value), 3);
}

#[test]
fn input_past_the_limit_is_refused_before_parsing() {
    let mut text = vec![b' '; MAX_INPUT + 1];
    text[0] = b'1';
    assert!(matches!(decode(&text), Err(JsonInputError::TooLarge)));
}

#[test]
fn malformed_json_is_a_syntax_error() {
    for bad in [
        &b""[..],
        b"{not json",
        b"[1,",
        b"\"unterminated",
        b"]]]]",
        b"\xff",
    ] {
        assert!(
            matches!(decode(bad), Err(JsonInputError::Syntax(_))),
            "{bad:?}"
        );
    }
}

/// Any JSON tree, nested at most `depth` deep.
fn json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| serde_json::json!(x)),
        any::<i64>().prop_map(|x| serde_json::json!(x)),
        "[^\\x00]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[^\\x00]{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_with_a_typed_error(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&data);
        crate::fuzzing::share_json(&data);
    }

    #[test]
    fn any_bracket_soup_decodes_or_fails_with_a_typed_error(text in r#"[\[\]{}",:\\a1 ]{0,300}"#) {
        let _ = decode(text.as_bytes());
        crate::fuzzing::share_json(text.as_bytes());
    }

    #[test]
    fn any_json_tree_decodes_to_a_value_of_the_same_shape(tree in json(8)) {
        let text = serde_json::to_vec(&tree).unwrap();
        let value = decode(&text).unwrap();
        match &tree {
            serde_json::Value::Object(m) => prop_assert_eq!(len(&value), m.len()),
            serde_json::Value::Array(a) => prop_assert_eq!(len(&value), a.len()),
            serde_json::Value::Null => prop_assert_eq!(len(&value), 0),
            _ => prop_assert_eq!(len(&value), 1),
        }
        // Every decoded value but NULL can be written as a region (for strings without NUL:
        // R refuses those, and the writer with a typed error).
        let source = mori_format::Source::Value(&value);
        let plan = source.plan(&mori_format::WriteOptions::default());
        // A root NULL is the one thing R cannot share.
        prop_assert_eq!(plan.is_ok(), !tree.is_null(), "{:?}", plan.err());
    }
}
