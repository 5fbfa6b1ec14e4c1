//! JSON out (`mori cat`); the input side (`mori share`) is `share_json`.
//!
//! The reverse of the input mapping, streamed from the mapping without an intermediate copy; `NA` prints as `null`, non-finite doubles as the strings `"NaN"`, `"Inf"`
//! and `"-Inf"`, complex numbers as `[re, im]` pairs, and lists with unique, non-empty names as
//! objects.

use mori_format::value::{NA_INTEGER, RString, is_na_real};
use mori_shm::View;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

/// A view that serializes as JSON (see the module docs), straight from the mapping.
pub(crate) struct JsonView<'a>(pub(crate) View<'a>);

struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if is_na_real(x) {
            s.serialize_none()
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x.is_infinite() {
            s.serialize_str(if x > 0.0 { "Inf" } else { "-Inf" })
        } else {
            s.serialize_f64(x)
        }
    }
}

fn seq<S: Serializer, T>(s: S, items: &[T], one: impl Fn(&T) -> Json) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_seq(Some(items.len()))?;
    for x in items {
        out.serialize_element(&one(x))?;
    }
    out.end()
}

impl Serialize for JsonView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            View::Double(v) => {
                let mut out = s.serialize_seq(Some(v.len()))?;
                for &x in v.data() {
                    out.serialize_element(&Double(x))?;
                }
                out.end()
            }
            View::Complex(v) => {
                let mut out = s.serialize_seq(Some(v.len()))?;
                for &[re, im] in v.data() {
                    out.serialize_element(&[Double(re), Double(im)])?;
                }
                out.end()
            }
            View::Integer(v) => seq(s, v.data(), |&x| {
                if x == NA_INTEGER {
                    Json::Null
                } else {
                    x.into()
                }
            }),
            View::Logical(v) => seq(s, v.data(), |&x| {
                if x == NA_INTEGER {
                    Json::Null
                } else {
                    (x != 0).into()
                }
            }),
            View::Raw(v) => seq(s, v.data(), |&x| x.into()),
            View::Character(strings) => {
                let mut out = s.serialize_seq(Some(strings.len()))?;
                for x in strings.iter() {
                    match x.bytes {
                        None => out.serialize_element(&None::<&str>)?,
                        Some(b) => out.serialize_element(&String::from_utf8_lossy(b))?,
                    }
                }
                out.end()
            }
            View::List(list) => {
                let names = list.names().map_err(S::Error::custom)?;
                let keys = names.and_then(|names| {
                    let keys: Vec<&str> = names.iter().filter_map(RString::as_str).collect();
                    let unique = keys.iter().collect::<std::collections::HashSet<_>>().len();
                    (keys.len() == names.len()
                        && unique == keys.len()
                        && keys.iter().all(|k| !k.is_empty()))
                    .then(|| keys.into_iter().map(str::to_owned).collect::<Vec<_>>())
                });
                match keys {
                    Some(keys) => {
                        let mut out = s.serialize_map(Some(list.len()))?;
                        for (key, item) in keys.iter().zip(list.iter()) {
                            out.serialize_entry(key, &JsonView(item.map_err(S::Error::custom)?))?;
                        }
                        out.end()
                    }
                    None => {
                        let mut out = s.serialize_seq(Some(list.len()))?;
                        for item in list.iter() {
                            out.serialize_element(&JsonView(item.map_err(S::Error::custom)?))?;
                        }
                        out.end()
                    }
                }
            }
            View::Serialized(blob) if mori_format::read::is_serialized_null(blob) => {
                s.serialize_none()
            }
            View::Serialized(blob) => {
                let mut out = s.serialize_map(Some(1))?;
                out.serialize_entry("serialized_bytes", &blob.len())?;
                out.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use mori_format::value::NA_REAL;

    fn round_trip(json: &str) -> String {
        let value = crate::share_json::decode(json.as_bytes()).unwrap();
        let shared = mori_shm::share(&value).unwrap();
        serde_json::to_string(&JsonView(shared.view().view())).unwrap()
    }

    #[test]
    fn vectors_keep_their_type_and_na() {
        assert_eq!(round_trip("[1, 2.5, null]"), "[1.0,2.5,null]");
        assert_eq!(round_trip(r#"["a", null, "é"]"#), r#"["a",null,"é"]"#);
        assert_eq!(round_trip("[true, false, null]"), "[true,false,null]");
    }

    #[test]
    fn objects_are_named_lists_and_mixed_arrays_lists() {
        assert_eq!(
            round_trip(r#"{"x": [1, 2], "y": ["a"], "z": {"w": [true]}}"#),
            r#"{"x":[1.0,2.0],"y":["a"],"z":{"w":[true]}}"#
        );
        assert_eq!(round_trip(r#"[1, "a", null]"#), r#"[[1.0],["a"],null]"#);
        assert_eq!(round_trip("[]"), "[]");
    }

    #[test]
    fn non_finite_doubles_print_as_strings() {
        let shared =
            mori_shm::share_f64(&[f64::NAN, f64::INFINITY, -f64::INFINITY, NA_REAL]).unwrap();
        let json = serde_json::to_string(&JsonView(shared.view().view())).unwrap();
        assert_eq!(json, r#"["NaN","Inf","-Inf",null]"#);
    }
}
