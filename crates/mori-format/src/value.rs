//! The owned value model: the R vector types a region can hold, with their attributes.
//!
//! A [`Value`] is what a region decodes to when copied out, and what the generic writer accepts.
//! Zero-copy readers hand out borrowed views instead; this model is the reference they are
//! compared against in tests, and the shape attribute blobs decode into.

/// R's `NA_real_`: the NaN whose low word is 1954 (`0x7FF00000000007A2`).
pub const NA_REAL_BITS: u64 = 0x7FF0_0000_0000_07A2;

/// R's `NA_real_` as an `f64`. Compare with [`is_na_real`], not `==`.
pub const NA_REAL: f64 = f64::from_bits(NA_REAL_BITS);

/// R's `NA_integer_` and logical `NA`: `i32::MIN`.
pub const NA_INTEGER: i32 = i32::MIN;

/// True if `x` has exactly the bit pattern of R's `NA_real_` (other NaNs are not NA).
///
/// ```
/// use mori_format::value::{is_na_real, NA_REAL};
/// assert!(is_na_real(NA_REAL));
/// assert!(!is_na_real(f64::NAN));
/// ```
pub fn is_na_real(x: f64) -> bool {
    x.to_bits() == NA_REAL_BITS
}

/// The encoding mark of an R string (`cetype_t`), stored beside each string in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum Encoding {
    /// Native encoding; R marks ASCII strings this way.
    #[default]
    Native = 0,
    /// UTF-8; R marks non-ASCII UTF-8 strings this way.
    Utf8 = 1,
    /// Latin-1.
    Latin1 = 2,
    /// Raw bytes, no encoding.
    Bytes = 3,
}

impl Encoding {
    /// The mark R gives a UTF-8 string: native for pure ASCII, UTF-8 otherwise.
    ///
    /// ```
    /// use mori_format::value::Encoding;
    /// assert_eq!(Encoding::for_utf8("abc"), Encoding::Native);
    /// assert_eq!(Encoding::for_utf8("h\u{e9}"), Encoding::Utf8);
    /// ```
    pub fn for_utf8(s: &str) -> Self {
        if s.is_ascii() {
            Self::Native
        } else {
            Self::Utf8
        }
    }

    /// Decode the stored `cetype_t`; `None` for values R never writes.
    ///
    /// ```
    /// use mori_format::value::Encoding;
    /// assert_eq!(Encoding::from_code(1), Some(Encoding::Utf8));
    /// assert_eq!(Encoding::from_code(9), None);
    /// ```
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Native,
            1 => Self::Utf8,
            2 => Self::Latin1,
            3 => Self::Bytes,
            _ => return None,
        })
    }
}

/// One element of a character vector: its bytes (no NUL inside) or `NA_character_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RString {
    /// The string's bytes; `None` is `NA_character_`.
    pub bytes: Option<Vec<u8>>,
    /// The encoding mark stored with it.
    pub encoding: Encoding,
}

impl RString {
    /// `NA_character_`.
    pub const NA: Self = Self {
        bytes: None,
        encoding: Encoding::Native,
    };

    /// A UTF-8 string marked the way R marks it (see [`Encoding::for_utf8`]).
    ///
    /// ```
    /// use mori_format::value::RString;
    /// assert_eq!(RString::new("x").as_str(), Some("x"));
    /// assert!(RString::NA.is_na());
    /// ```
    pub fn new(s: &str) -> Self {
        Self {
            bytes: Some(s.as_bytes().to_vec()),
            encoding: Encoding::for_utf8(s),
        }
    }

    /// True for `NA_character_`.
    pub fn is_na(&self) -> bool {
        self.bytes.is_none()
    }

    /// The string as UTF-8, if it is not NA and is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.bytes
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

impl From<&str> for RString {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<Option<&str>> for RString {
    fn from(s: Option<&str>) -> Self {
        s.map_or(Self::NA, Self::new)
    }
}

/// The payload of a value: one variant per R vector type a region can hold.
#[derive(Debug, Clone)]
pub enum Data {
    /// R's `NULL`. Inside a list it is stored as a serialized (type 0) element, as R does.
    Null,
    /// Logical vector: 1 TRUE, 0 FALSE, [`NA_INTEGER`] NA.
    Logical(Vec<i32>),
    /// Integer vector; [`NA_INTEGER`] is NA.
    Integer(Vec<i32>),
    /// Double vector; [`NA_REAL`] is NA.
    Double(Vec<f64>),
    /// Complex vector as `[re, im]` pairs.
    Complex(Vec<[f64; 2]>),
    /// Raw bytes.
    Raw(Vec<u8>),
    /// Character vector.
    Character(Vec<RString>),
    /// Generic vector (list), nested to any depth; names live in the `names` attribute.
    List(Vec<Value>),
    /// An element R could only store as a `serialize()` blob (type 0): kept as opaque bytes.
    Serialized(Vec<u8>),
}

/// Attributes in order, as R keeps them: `(name, value)` pairs with unique names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(pub Vec<(String, Value)>);

impl Attributes {
    /// No attributes.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of attribute `name`, if set.
    ///
    /// ```
    /// use mori_format::value::{Attributes, Value};
    /// let mut a = Attributes::new();
    /// a.set("class", Value::character(["factor"]));
    /// assert!(a.get("class").is_some());
    /// assert!(a.get("names").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Set attribute `name`, replacing an existing one in place or appending a new one.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

/// An R value: its data and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The vector itself.
    pub data: Data,
    /// `names`, `class`, `dim`, `row.names`, ...; empty when there are none.
    pub attrs: Attributes,
}

impl Value {
    /// A value without attributes.
    pub fn new(data: Data) -> Self {
        Self {
            data,
            attrs: Attributes::new(),
        }
    }

    /// A double vector without attributes.
    ///
    /// ```
    /// use mori_format::value::{Data, Value};
    /// let v = Value::double([1.5, 2.0]);
    /// assert!(matches!(v.data, Data::Double(ref x) if x.len() == 2));
    /// ```
    pub fn double(x: impl Into<Vec<f64>>) -> Self {
        Self::new(Data::Double(x.into()))
    }

    /// An integer vector without attributes.
    pub fn integer(x: impl Into<Vec<i32>>) -> Self {
        Self::new(Data::Integer(x.into()))
    }

    /// A character vector of UTF-8 strings (no NA) without attributes.
    pub fn character<S: AsRef<str>>(x: impl IntoIterator<Item = S>) -> Self {
        Self::new(Data::Character(
            x.into_iter().map(|s| RString::new(s.as_ref())).collect(),
        ))
    }

    /// An unnamed list.
    pub fn list(items: impl Into<Vec<Self>>) -> Self {
        Self::new(Data::List(items.into()))
    }

    /// A named list (`names` attribute set from `items`' keys).
    ///
    /// ```
    /// use mori_format::value::Value;
    /// let l = Value::named_list([("a", Value::double([1.0])), ("b", Value::integer([2]))]);
    /// assert_eq!(l.names().unwrap(), vec![Some("a"), Some("b")]);
    /// ```
    pub fn named_list<S: AsRef<str>>(items: impl IntoIterator<Item = (S, Self)>) -> Self {
        let (names, values): (Vec<RString>, Vec<Self>) = items
            .into_iter()
            .map(|(n, v)| (RString::new(n.as_ref()), v))
            .unzip();
        let mut v = Self::list(values);
        v.attrs.set("names", Self::new(Data::Character(names)));
        v
    }

    /// A data frame: a named list of equal-length columns with `class = "data.frame"` and
    /// compact `row.names = c(NA, -nrow)`, the form R itself stores.
    ///
    /// ```
    /// use mori_format::value::Value;
    /// let df = Value::data_frame([("a", Value::double([1.0, 2.0]))], 2);
    /// assert!(df.attrs.get("row.names").is_some());
    /// ```
    pub fn data_frame<S: AsRef<str>>(
        columns: impl IntoIterator<Item = (S, Self)>,
        nrow: usize,
    ) -> Self {
        let mut v = Self::named_list(columns);
        v.attrs.set("class", Self::character(["data.frame"]));
        let nrow = i32::try_from(nrow).unwrap_or(i32::MAX);
        v.attrs.set("row.names", Self::integer([NA_INTEGER, -nrow]));
        v
    }

    /// The `names` attribute as UTF-8 strings (`None` for NA), if it is a character vector.
    pub fn names(&self) -> Option<Vec<Option<&str>>> {
        match &self.attrs.get("names")?.data {
            Data::Character(s) => Some(s.iter().map(RString::as_str).collect()),
            _ => None,
        }
    }
}

/// Bitwise equality for doubles, so NA, NaN payloads and -0.0 compare as R stores them.
fn same_f64(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Logical(a), Self::Logical(b)) | (Self::Integer(a), Self::Integer(b)) => a == b,
            (Self::Double(a), Self::Double(b)) => same_f64(a, b),
            (Self::Complex(a), Self::Complex(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_f64(x, y))
            }
            (Self::Raw(a), Self::Raw(b)) | (Self::Serialized(a), Self::Serialized(b)) => a == b,
            (Self::Character(a), Self::Character(b)) => a == b,
            (Self::List(a), Self::List(b)) => a == b,
            _ => false,
        }
    }
}
