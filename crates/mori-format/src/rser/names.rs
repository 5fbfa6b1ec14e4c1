//! A list's `names`, read in place: the one attribute every lookup by name needs, without
//! decoding the rest of the blob or copying each string.
//!
//! Why: finding the columns of a 100-column data frame by name decoded its whole attribute
//! blob into owned values first, a hundred small allocations and most of the time it took to
//! check a typed view of the frame in a fresh process.

use super::reader::{NamesScan, Reader};
use super::{Limits, RserError, decode_attributes_with_limits};
use crate::read::Str;
use crate::value::{Data, RString, Value};

/// The `names` of an attribute blob: borrowed from the blob when it is in the pairlist form
/// (R <= 4.5's, and what this crate writes by default), decoded otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Names<'a>(Repr<'a>);

#[derive(Debug, Clone, PartialEq)]
enum Repr<'a> {
    Borrowed(Vec<Str<'a>>),
    Decoded(Vec<RString>),
}

impl<'a> Names<'a> {
    /// Number of names.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Borrowed(v) => v.len(),
            Repr::Decoded(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Name `index` as UTF-8 (`None` past the end, for `NA`, or for bytes that are not UTF-8),
    /// as [`RString::as_str`] gives it.
    pub fn get(&self, index: usize) -> Option<&str> {
        match &self.0 {
            Repr::Borrowed(v) => v.get(index)?.as_str(),
            Repr::Decoded(v) => v.get(index)?.as_str(),
        }
    }

    /// The index of the first name equal to `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i) == Some(name))
    }

    /// Owned copies, as [`decode_attributes`](super::decode_attributes) gives them.
    pub fn to_vec(&self) -> Vec<RString> {
        match &self.0 {
            Repr::Borrowed(v) => v.iter().map(Str::to_owned).collect(),
            Repr::Decoded(v) => v.clone(),
        }
    }
}

/// The `names` attribute of an attribute blob (`None` if it has none), read only as far as
/// needed when the blob is a pairlist, else decoded whole with [`decode_attributes`]; the
/// same limits apply. A blob whose names are followed by damage reads as its names here,
/// while [`decode_attributes`] refuses it.
///
/// [`decode_attributes`]: super::decode_attributes
///
/// ```
/// use mori_format::rser::{decode_names, encode_attributes, SerializeOptions};
/// use mori_format::value::{Attributes, Value};
/// let mut attrs = Attributes::new();
/// attrs.set("names", Value::character(["x", "y"]));
/// attrs.set("class", Value::character(["data.frame"]));
/// let mut blob = Vec::new();
/// encode_attributes(&attrs, SerializeOptions::default(), &mut blob);
/// let names = decode_names(&blob)?.unwrap();
/// assert_eq!((names.len(), names.get(1), names.position("y")), (2, Some("y"), Some(1)));
/// assert!(decode_names(&[])?.is_none());
/// # Ok::<(), mori_format::rser::RserError>(())
/// ```
pub fn decode_names(blob: &[u8]) -> Result<Option<Names<'_>>, RserError> {
    if blob.is_empty() {
        return Ok(None);
    }
    let limits = &Limits::DEFAULT;
    match Reader::new(blob, limits)?.pairlist_names()? {
        NamesScan::Found(names) => Ok(Some(Names(Repr::Borrowed(names)))),
        NamesScan::Absent => Ok(None),
        NamesScan::Other => {
            let attrs = decode_attributes_with_limits(blob, limits)?;
            Ok(attrs.0.into_iter().find_map(|(name, value)| match value {
                Value {
                    data: Data::Character(s),
                    ..
                } if name == "names" => Some(Names(Repr::Decoded(s))),
                _ => None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rser::{AttrForm, SerializeOptions, decode_attributes, encode_attributes};
    use crate::value::{Attributes, Encoding};
    use proptest::prelude::*;

    fn blob(attrs: &Attributes, form: AttrForm) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = SerializeOptions {
            form,
            ..SerializeOptions::default()
        };
        encode_attributes(attrs, opts, &mut out);
        out
    }

    fn names_by_decoding(blob: &[u8]) -> Option<Vec<RString>> {
        decode_attributes(blob)
            .unwrap()
            .0
            .into_iter()
            .find_map(|(name, value)| match value.data {
                Data::Character(s) if name == "names" => Some(s),
                _ => None,
            })
    }

    #[test]
    fn a_pairlist_is_read_in_place_and_a_named_list_is_decoded() {
        let mut attrs = Attributes::new();
        attrs.set("class", Value::character(["data.frame"]));
        attrs.set("names", Value::character(["a", "b"]));
        attrs.set("row.names", Value::integer([NA_INT, -2]));
        let pairlist = blob(&attrs, AttrForm::Pairlist);
        let found = decode_names(&pairlist).unwrap().unwrap();
        assert!(matches!(found.0, Repr::Borrowed(_)));
        assert_eq!(found.to_vec(), names_by_decoding(&pairlist).unwrap());
        let listed = blob(&attrs, AttrForm::NamedList);
        let found = decode_names(&listed).unwrap().unwrap();
        assert!(matches!(found.0, Repr::Decoded(_)));
        assert_eq!(found.to_vec(), names_by_decoding(&listed).unwrap());
    }

    const NA_INT: i32 = crate::value::NA_INTEGER;

    #[test]
    fn no_names_and_damaged_blobs_are_none_or_errors_not_panics() {
        let mut attrs = Attributes::new();
        attrs.set("class", Value::character(["x"]));
        assert!(
            decode_names(&blob(&attrs, AttrForm::Pairlist))
                .unwrap()
                .is_none()
        );
        attrs.set("names", Value::character(["n"]));
        let whole = blob(&attrs, AttrForm::Pairlist);
        for cut in 0..whole.len() {
            let _ = decode_names(&whole[..cut]);
        }
        assert!(decode_names(b"B\n").is_err());
    }

    fn rstring() -> impl Strategy<Value = RString> {
        prop_oneof![
            Just(RString::NA),
            "[a-z.é]{0,6}".prop_map(|s| RString::new(&s)),
            "[a-z]{0,4}".prop_map(|s| RString {
                bytes: Some(s.into_bytes()),
                encoding: Encoding::Latin1,
            }),
        ]
    }

    proptest! {
        /// Wherever both read a blob, the names read in place are the decoder's names.
        #[test]
        fn names_read_in_place_equal_the_decoded_names(
            names in proptest::option::of(proptest::collection::vec(rstring(), 0..12)),
            class_first in any::<bool>(),
            named_list in any::<bool>(),
        ) {
            let mut attrs = Attributes::new();
            if class_first {
                attrs.set("class", Value::character(["c1", "c2"]));
            }
            if let Some(names) = &names {
                attrs.set("names", Value { data: Data::Character(names.clone()), attrs: Attributes::new() });
            }
            attrs.set("dim", Value::integer([1, 2]));
            let form = if named_list { AttrForm::NamedList } else { AttrForm::Pairlist };
            let blob = blob(&attrs, form);
            let read = decode_names(&blob).unwrap().map(|n| n.to_vec());
            prop_assert_eq!(read, names_by_decoding(&blob));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_names(&bytes);
        }
    }
}
