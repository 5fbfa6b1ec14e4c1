//! The JSON input of `mori share`: bytes to the value the command shares.
//!
//! Arrays of numbers become double vectors, arrays of strings character vectors, arrays of
//! booleans logical vectors (`null` inside any of them is `NA`), objects named lists (members in
//! the file's order, so the path-form name `[1]` is the first member; a key given twice keeps
//! its first position and its last value), any other array an unnamed list; a lone number,
//! string or boolean a vector of length 1 and `null` R's `NULL`.
//!
//! The input is a file the user names, but it may come from anywhere, so decoding is bounded:
//! at most [`MAX_INPUT`] bytes and [`MAX_DEPTH`] levels of nested arrays and objects (checked by
//! a scan of the bytes before anything is parsed, so deep nesting never recurses), and every
//! failure is a [`JsonInputError`], never a panic. Memory is proportional to the input, which
//! claims no sizes.
//!
//! This file is part of the library (for its fuzz entry point) and of the `mori` binary, both
//! with the `cli` feature only.

use mori_format::value::{Data, NA_INTEGER, NA_REAL, RString, Value};
use serde_json::Value as Json;

/// The most bytes of JSON `mori share` reads. Parsed JSON takes several times its text in
/// memory; larger data belong in a program that shares them through the library.
pub(crate) const MAX_INPUT: usize = 64 << 20;

/// The deepest nesting of arrays and objects accepted (R's identifiers name 64 levels).
pub(crate) const MAX_DEPTH: usize = 64;

/// Why JSON input cannot be shared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonInputError {
    /// More than [`MAX_INPUT`] bytes.
    #[error("more than {MAX_INPUT} bytes of JSON (larger data: share them from a program)")]
    TooLarge,
    /// Arrays and objects nested more than [`MAX_DEPTH`] deep.
    #[error("arrays and objects nested more than {MAX_DEPTH} deep")]
    TooDeep,
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
}

/// Decode `text` as the JSON input of `mori share`.
pub(crate) fn decode(text: &[u8]) -> Result<Value, JsonInputError> {
    if text.len() > MAX_INPUT {
        return Err(JsonInputError::TooLarge);
    }
    check_depth(text)?;
    let parsed: Json = serde_json::from_slice(text)?;
    Ok(value_from_json(&parsed))
}

/// Refuse nesting deeper than [`MAX_DEPTH`] before parsing: brackets outside strings, counted.
/// Malformed text that passes is left to the parser to refuse.
fn check_depth(text: &[u8]) -> Result<(), JsonInputError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonInputError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Convert parsed JSON (nested at most [`MAX_DEPTH`] deep) to the value `mori share` writes.
fn value_from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::new(Data::Null),
        Json::Bool(b) => Value::new(Data::Logical(vec![i32::from(*b)])),
        Json::Number(n) => Value::double([n.as_f64().unwrap_or(NA_REAL)]),
        Json::String(s) => Value::character([s]),
        Json::Object(map) => {
            Value::named_list(map.iter().map(|(k, v)| (k.as_str(), value_from_json(v))))
        }
        Json::Array(items) => array_from_json(items),
    }
}

fn array_from_json(items: &[Json]) -> Value {
    let all = |f: fn(&Json) -> bool| {
        items.iter().all(|x| x.is_null() || f(x)) && items.iter().any(|x| !x.is_null())
    };
    if all(Json::is_number) {
        Value::double(
            items
                .iter()
                .map(|x| x.as_f64().unwrap_or(NA_REAL))
                .collect::<Vec<_>>(),
        )
    } else if all(Json::is_string) {
        Value::new(Data::Character(
            items.iter().map(|x| RString::from(x.as_str())).collect(),
        ))
    } else if all(Json::is_boolean) {
        Value::new(Data::Logical(
            items
                .iter()
                .map(|x| x.as_bool().map_or(NA_INTEGER, i32::from))
                .collect(),
        ))
    } else {
        Value::list(items.iter().map(value_from_json).collect::<Vec<_>>())
    }
}
