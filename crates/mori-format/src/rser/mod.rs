//! The subset of R's serialization (version 3, native binary) that attribute blobs and
//! fallback (type 0) elements use.
//!
//! R's mori stores a value's attributes as `serialize(attrs, NULL, xdr = FALSE, version = 3)`
//! and keeps list elements it cannot lay out (such as `NULL`) as a serialization of the
//! element. Reading and writing regions R can share therefore needs a small R serializer:
//! `NULL`, symbols with back-references, tagged pairlists, lists, and the atomic vector types
//! with their attributes. Everything else (closures, environments, language objects, ...)
//! is refused with [`RserError::UnsupportedType`], and callers keep such blobs as opaque bytes.
//!
//! # The two attribute forms
//! Which object the attribute blob holds depends on the R that mori was built for
//! ([`AttrForm`]): R <= 4.5 stores the raw attribute pairlist, R >= 4.6 the named list that
//! `attributes()` returns. [`decode_attributes`] reads both; [`encode_attributes`] writes the
//! form it is asked for, the named list exactly as R's `serialize(attributes(x))` does (`names`
//! first, then the others in order).
//!
//! # How `row.names` are represented
//! [`Attributes`] hold `row.names` as R keeps them internally: the compact
//! `c(NA_integer_, -n)` for automatic row names (what [`Value::data_frame`] builds), or an
//! explicit integer or character vector. The pairlist form stores exactly that. The named-list
//! form stores automatic row names expanded, as `attributes()` does (`1:n`, which R writes as a
//! `compact_intseq` for two or more rows), and reading it folds any `1:n` with `n >= 1` back to
//! `c(NA_integer_, -n)`. So compact row names read back identically from either form; an
//! explicit `1:n` or a `c(NA, +n)` read back from the named-list form as `c(NA_integer_, -n)`,
//! just as R itself would not tell them apart there.
//!
//! # Limits
//! Decoding never trusts a length: every claim is checked against the bytes that remain before
//! anything is allocated, and [`Limits`] bound the blob size, nesting depth, reference table
//! and the expansion of compact sequences. Every failure is an [`RserError`]; no input panics.

mod names;
mod reader;
mod sexp;
mod writer;

pub use names::{Names, decode_names};

use crate::value::{Attributes, Data, NA_INTEGER, RString, Value};
use reader::{Budget, Item, Reader, push_unique};
use writer::{OnError, Writer};

/// How an attribute blob encodes the attribute set; it depends on the R that will read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttrForm {
    /// R <= 4.5: the raw attribute pairlist, with compact `row.names`.
    #[default]
    Pairlist,
    /// R >= 4.6: a named list like `attributes()`, with expanded `row.names`.
    NamedList,
}

/// Options for writing serialized blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerializeOptions {
    /// The attribute form.
    pub form: AttrForm,
    /// The writer's R version recorded in the header, as R's `R_Version(maj, min, patch)`.
    pub r_version: u32,
}

impl Default for SerializeOptions {
    fn default() -> Self {
        Self {
            form: AttrForm::Pairlist,
            r_version: 0x0004_0500,
        }
    }
}

/// Bounds on what a decoder accepts, so a hostile blob cannot make it allocate or recurse
/// without limit.
///
/// ```
/// use mori_format::rser::{decode_value_with_limits, Limits, RserError};
/// let limits = Limits { max_blob: 10, ..Limits::default() };
/// let err = decode_value_with_limits(&[0; 64], &limits).unwrap_err();
/// assert!(matches!(err, RserError::TooLarge { size: 64, limit: 10 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest blob accepted, in bytes (default `i32::MAX`, the largest attribute size a
    /// region can record).
    pub max_blob: usize,
    /// Deepest nesting of items (lists in lists, attributes of attributes; default 128).
    pub max_depth: usize,
    /// Most distinct symbols in one blob (default 65 536).
    pub max_refs: usize,
    /// Most elements that compact integer sequences (ALTREP `compact_intseq`, a few bytes for
    /// any length) may expand to, in total per blob (default 2^20); compact `row.names` are
    /// never expanded.
    pub max_seq_len: usize,
}

impl Limits {
    /// The defaults, as a constant.
    const DEFAULT: Self = Self {
        max_blob: i32::MAX as usize,
        max_depth: 128,
        max_refs: 1 << 16,
        max_seq_len: 1 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a serialized blob could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RserError {
    /// The blob ends before an item does.
    #[error("truncated: {needed} more bytes needed at offset {at}")]
    Truncated {
        /// Where the read started.
        at: usize,
        /// How many bytes it needed.
        needed: usize,
    },
    /// The blob does not start with a valid serialization header.
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    /// An ASCII (`A`), XDR (`X`) or old binary (`b`) stream: only native binary is read.
    #[error("unsupported serialization format {:?}", char::from(*.0))]
    UnsupportedFormat(u8),
    /// A serialization version other than 2 or 3.
    #[error("unsupported serialization version {0}")]
    UnsupportedVersion(i32),
    /// An R type outside the supported subset (closure, environment, language, ...).
    #[error("unsupported R type {code}")]
    UnsupportedType {
        /// The SEXPTYPE or serialization pseudo-type.
        code: u8,
    },
    /// A back-reference to a table entry that does not exist.
    #[error("bad reference {index} (table has {table_len} entries)")]
    BadReference {
        /// The 1-based index the blob gave.
        index: usize,
        /// The table's size at that point.
        table_len: usize,
    },
    /// Items nest deeper than [`Limits::max_depth`].
    #[error("nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A length that is negative or larger than the bytes left could hold.
    #[error("bad length {length} at offset {at}")]
    BadLength {
        /// The claimed length.
        length: i64,
        /// Where it was read.
        at: usize,
    },
    /// The blob is larger than [`Limits::max_blob`].
    #[error("blob of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The blob's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More distinct symbols than [`Limits::max_refs`].
    #[error("more than {limit} symbols")]
    TooManyReferences {
        /// The limit.
        limit: usize,
    },
    /// Compact sequences would expand to more than [`Limits::max_seq_len`] elements in total.
    #[error("compact sequence of {len} elements exceeds the {limit} left to expand")]
    SequenceTooLong {
        /// Its length.
        len: usize,
        /// How many elements were left to expand.
        limit: usize,
    },
    /// A symbol name that is not valid UTF-8.
    #[error("symbol name at offset {at} is not utf-8")]
    InvalidName {
        /// Where the name starts.
        at: usize,
    },
    /// Items that are individually fine but do not fit together.
    #[error("malformed stream at offset {at}: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
        /// Where.
        at: usize,
    },
    /// The blob holds something other than an attribute pairlist or named list.
    #[error("invalid attribute blob: {0}")]
    InvalidAttributeForm(&'static str),
    /// Bytes follow the item.
    #[error("trailing bytes at offset {at} of {len}")]
    TrailingBytes {
        /// Where the item ended.
        at: usize,
        /// The blob's length.
        len: usize,
    },
    /// A value R could not read back (a NUL in a string, attributes on `NULL`, ...).
    #[error("cannot encode: {0}")]
    Unencodable(&'static str),
}

/// Decode an attribute blob in either form; an empty blob or a serialized `NULL` is the empty
/// set.
///
/// ```
/// use mori_format::rser::{decode_attributes, encode_attributes, AttrForm, SerializeOptions};
/// use mori_format::value::{Attributes, Value};
/// let mut attrs = Attributes::new();
/// attrs.set("names", Value::character(["a", "b"]));
/// for form in [AttrForm::Pairlist, AttrForm::NamedList] {
///     let mut blob = Vec::new();
///     encode_attributes(&attrs, SerializeOptions { form, ..Default::default() }, &mut blob);
///     assert_eq!(decode_attributes(&blob).unwrap(), attrs);
/// }
/// ```
pub fn decode_attributes(blob: &[u8]) -> Result<Attributes, RserError> {
    decode_attributes_with_limits(blob, &Limits::default())
}

/// [`decode_attributes`] with explicit [`Limits`].
///
/// ```
/// use mori_format::rser::{decode_attributes_with_limits, Limits, RserError};
/// let err = decode_attributes_with_limits(b"X\n", &Limits::default()).unwrap_err();
/// assert_eq!(err, RserError::UnsupportedFormat(b'X'));
/// ```
pub fn decode_attributes_with_limits(
    blob: &[u8],
    limits: &Limits,
) -> Result<Attributes, RserError> {
    if blob.is_empty() {
        return Ok(Attributes::new());
    }
    let (item, mut budget) = Reader::new(blob, limits)?.read_blob()?;
    match item {
        item @ (Item::Null | Item::Pairlist(_)) => {
            reader::pairlist_to_attributes(item, &mut budget)
        }
        Item::List(items, list_attrs) => named_list_to_attributes(items, list_attrs, &mut budget),
        _ => Err(RserError::InvalidAttributeForm(
            "neither a pairlist nor a named list",
        )),
    }
}

/// The attributes of the R >= 4.6 form: a list whose names are the attribute names.
fn named_list_to_attributes(
    items: Vec<Item>,
    list_attrs: Attributes,
    budget: &mut Budget,
) -> Result<Attributes, RserError> {
    let names: Vec<String> = match list_attrs.0.as_slice() {
        [] if items.is_empty() => Vec::new(),
        [
            (
                n,
                Value {
                    data: Data::Character(names),
                    attrs,
                },
            ),
        ] if n == "names" && attrs.is_empty() && names.len() == items.len() => names
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(RserError::InvalidAttributeForm("missing or non-utf-8 name"))?,
        _ => {
            return Err(RserError::InvalidAttributeForm(
                "list is not named by attributes",
            ));
        }
    };
    let mut attrs = Attributes::new();
    for (name, item) in names.into_iter().zip(items) {
        let value = if name == "row.names" {
            fold_row_names(item, budget)?
        } else {
            item.into_value(budget)?
        };
        push_unique(&mut attrs, name, value)?;
    }
    Ok(attrs)
}

/// Expanded automatic row names (`1:n`, `n >= 1`) back to the compact `c(NA_integer_, -n)`.
fn fold_row_names(item: Item, budget: &mut Budget) -> Result<Value, RserError> {
    let n = match &item {
        Item::IntSeq {
            len,
            start: 1,
            step: 1,
            attrs,
        } if *len >= 1 && attrs.is_empty() => i32::try_from(*len).ok(),
        Item::Value(Value {
            data: Data::Integer(x),
            attrs,
        }) if !x.is_empty() && attrs.is_empty() && x.iter().zip(1..).all(|(v, i)| *v == i) => {
            i32::try_from(x.len()).ok()
        }
        _ => None,
    };
    match n {
        Some(n) => Ok(Value::integer([NA_INTEGER, -n])),
        None => item.into_value(budget),
    }
}

/// Append the blob for `attrs` to `out` (nothing for an empty set).
///
/// An attribute value that cannot be encoded (see [`try_encode_attributes`]) is written as
/// `NULL`, and an attribute whose name contains a NUL byte is left out; use
/// [`try_encode_attributes`] to get the error instead.
///
/// ```
/// use mori_format::rser::{encode_attributes, SerializeOptions};
/// use mori_format::value::{Attributes, Value};
/// let mut blob = Vec::new();
/// encode_attributes(&Attributes::new(), SerializeOptions::default(), &mut blob);
/// assert!(blob.is_empty());
/// let mut attrs = Attributes::new();
/// attrs.set("class", Value::character(["Date"]));
/// encode_attributes(&attrs, SerializeOptions::default(), &mut blob);
/// assert_eq!(&blob[..2], b"B\n");
/// ```
pub fn encode_attributes(attrs: &Attributes, opts: SerializeOptions, out: &mut Vec<u8>) {
    // A name with a NUL byte cannot become an R symbol: such attributes are left out.
    let named: Attributes;
    let attrs = if attrs.0.iter().any(|(n, _)| n.contains('\0')) {
        named = Attributes(
            attrs
                .0
                .iter()
                .filter(|(n, _)| !n.contains('\0'))
                .cloned()
                .collect(),
        );
        &named
    } else {
        attrs
    };
    let start = out.len();
    if write_attributes(attrs, opts, out, OnError::WriteNull).is_err() {
        // Unreachable with the names checked above; never leave a partial blob behind.
        out.truncate(start);
    }
}

/// [`encode_attributes`], failing on the first part R could not read back: a NUL byte in a
/// string or name, a string over 2^31-1 bytes, attributes on `NULL`, or a nested
/// [`Data::Serialized`] blob outside the supported subset. On error `out` is left unchanged.
///
/// ```
/// use mori_format::rser::{try_encode_attributes, RserError, SerializeOptions};
/// use mori_format::value::{Attributes, Value};
/// let mut attrs = Attributes::new();
/// attrs.set("bad\0name", Value::integer([1]));
/// let mut out = Vec::new();
/// let err = try_encode_attributes(&attrs, SerializeOptions::default(), &mut out).unwrap_err();
/// assert!(matches!(err, RserError::Unencodable(_)));
/// assert!(out.is_empty());
/// ```
pub fn try_encode_attributes(
    attrs: &Attributes,
    opts: SerializeOptions,
    out: &mut Vec<u8>,
) -> Result<(), RserError> {
    let start = out.len();
    write_attributes(attrs, opts, out, OnError::Fail).inspect_err(|_| out.truncate(start))
}

fn write_attributes(
    attrs: &Attributes,
    opts: SerializeOptions,
    out: &mut Vec<u8>,
    on_error: OnError,
) -> Result<(), RserError> {
    if attrs.is_empty() {
        return Ok(());
    }
    let mut w = Writer::new(out, on_error);
    w.header(opts.r_version);
    match opts.form {
        AttrForm::Pairlist => w.attribute_pairlist(attrs),
        AttrForm::NamedList => write_named_list(&mut w, attrs),
    }
}

/// The R >= 4.6 form: `attributes(x)`, which puts `names` first and expands row names.
fn write_named_list(w: &mut Writer<'_>, attrs: &Attributes) -> Result<(), RserError> {
    let ordered: Vec<&(String, Value)> = attrs
        .0
        .iter()
        .filter(|(n, _)| n == "names")
        .chain(attrs.0.iter().filter(|(n, _)| n != "names"))
        .collect();
    w.named_list_header(ordered.len());
    for (name, value) in &ordered {
        match compact_row_count(name, value) {
            Some(0) => w.value(&Value::integer([]))?,
            Some(1) => w.value(&Value::integer([1]))?,
            Some(n) => w.compact_intseq(n, 1)?,
            None => w.element(value)?,
        }
    }
    let names = ordered.iter().map(|(n, _)| RString::new(n)).collect();
    let mut list_attrs = Attributes::new();
    list_attrs.set("names", Value::new(Data::Character(names)));
    w.attribute_pairlist(&list_attrs)
}

/// The row count of a compact `row.names` value `c(NA_integer_, +-n)`.
fn compact_row_count(name: &str, value: &Value) -> Option<usize> {
    match (&value.data, value.attrs.is_empty()) {
        (Data::Integer(x), true) if name == "row.names" && x.len() == 2 && x[0] == NA_INTEGER => {
            Some(x[1].unsigned_abs() as usize)
        }
        _ => None,
    }
}

/// Decode a serialized element (type 0) into a value, where it is one of the supported types.
///
/// ```
/// use mori_format::rser::{decode_value, encode_value, SerializeOptions};
/// use mori_format::value::{Data, Value};
/// let mut blob = Vec::new();
/// encode_value(&Value::new(Data::Null), SerializeOptions::default(), &mut blob);
/// assert_eq!(decode_value(&blob).unwrap(), Value::new(Data::Null));
/// ```
pub fn decode_value(blob: &[u8]) -> Result<Value, RserError> {
    decode_value_with_limits(blob, &Limits::default())
}

/// [`decode_value`] with explicit [`Limits`].
///
/// ```
/// use mori_format::rser::{decode_value_with_limits, Limits, RserError};
/// let err = decode_value_with_limits(b"B\n", &Limits::default()).unwrap_err();
/// assert!(matches!(err, RserError::BadHeader(_)));
/// ```
pub fn decode_value_with_limits(blob: &[u8], limits: &Limits) -> Result<Value, RserError> {
    let (item, mut budget) = Reader::new(blob, limits)?.read_blob()?;
    item.into_value(&mut budget)
}

/// Append the serialized form of `value` (used for `NULL` list elements) to `out`.
///
/// Attributes of the value and of everything in it are written as R's `serialize()` writes
/// them, as raw pairlists, whatever `opts.form` says. A top-level [`Data::Serialized`] value
/// is already a blob and is appended as is. A part that cannot be encoded (see
/// [`try_encode_value`]) is written as `NULL`.
///
/// ```
/// use mori_format::rser::{decode_value, encode_value, SerializeOptions};
/// use mori_format::value::Value;
/// let v = Value::named_list([("a", Value::double([1.5])), ("b", Value::character(["x"]))]);
/// let mut blob = Vec::new();
/// encode_value(&v, SerializeOptions::default(), &mut blob);
/// assert_eq!(decode_value(&blob).unwrap(), v);
/// ```
pub fn encode_value(value: &Value, opts: SerializeOptions, out: &mut Vec<u8>) {
    if let Data::Serialized(blob) = &value.data {
        out.extend_from_slice(blob);
        return;
    }
    let mut w = Writer::new(out, OnError::WriteNull);
    w.header(opts.r_version);
    // With `WriteNull`, `element` replaces whatever fails by NULL and reports no error; the
    // fallback below only guards that promise.
    if w.element(value).is_err() {
        w.null();
    }
}

/// [`encode_value`], failing instead of writing `NULL` for a part R could not read back (see
/// [`try_encode_attributes`]). On error `out` is left unchanged.
///
/// ```
/// use mori_format::rser::{try_encode_value, RserError, SerializeOptions};
/// use mori_format::value::{RString, Data, Value};
/// let bad = Value::new(Data::Character(vec![RString::new("a\0b")]));
/// let mut out = Vec::new();
/// let err = try_encode_value(&bad, SerializeOptions::default(), &mut out).unwrap_err();
/// assert!(matches!(err, RserError::Unencodable(_)));
/// ```
pub fn try_encode_value(
    value: &Value,
    opts: SerializeOptions,
    out: &mut Vec<u8>,
) -> Result<(), RserError> {
    if let Data::Serialized(blob) = &value.data {
        out.extend_from_slice(blob);
        return Ok(());
    }
    let start = out.len();
    let mut w = Writer::new(out, OnError::Fail);
    w.header(opts.r_version);
    let result = w.value(value);
    if result.is_err() {
        out.truncate(start);
    }
    result
}
