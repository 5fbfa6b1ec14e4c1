//! The reader: validates a region's bytes once, then hands out zero-copy views of them.
//!
//! [`Region::new`] walks the whole region before anything is handed out: every magic, count,
//! offset, size and alignment, every list directory entry and every string table entry. Nothing
//! is allocated on the strength of a header field, and the work grows with the number of
//! elements and strings, never with the number of payload bytes. Elements of a list must lie in
//! order without overlapping (as R writes them), which keeps the walk linear even for hostile
//! input that points many entries at the same nested list.
//!
//! Views then borrow the region: [`Vector::data`] is a `&[f64]` (or `&[i32]`, `&[u8]`,
//! `&[[f64; 2]]`) over the region's bytes, strings are byte slices with their NA and encoding
//! marks, and attributes stay as blobs until [`View::attributes`] decodes them.

use crate::error::{ReadError, ResolveError};
use crate::layout::{
    ALIGN, DIR_ENTRY, MAGIC_MORH, MAGIC_MORL, MAGIC_MORS, MAX_DEPTH, MORH_HEADER, MORL_HEADER,
    MORS_HEADER, STRING_ENTRY, SexpType, align64,
};
use crate::rser;
use crate::value::{Attributes, Data, Encoding, RString, Value};

/// Validate `bytes` as a region and view its root.
///
/// ```
/// use mori_format::value::Value;
/// use mori_format::write::{encoded_len, write, WriteOptions};
/// use mori_format::{read, AlignedBuf, View};
///
/// let v = Value::list([Value::integer([1, 2]), Value::character(["a"])]);
/// let opts = WriteOptions::default();
/// let mut buf = AlignedBuf::zeroed(encoded_len(&v, &opts)?);
/// write(&v, &mut buf, &opts)?;
/// let View::List(list) = read(&buf)? else { panic!("not a list") };
/// let View::Integer(x) = list.get(0)? else { panic!("not integer") };
/// assert_eq!(x.data(), &[1, 2]);
/// assert_eq!(list.to_value()?, v);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read(bytes: &[u8]) -> Result<View<'_>, ReadError> {
    Ok(Region::new(bytes)?.root())
}

/// A validated region: bytes whose every header, table and offset has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    bytes: &'a [u8],
    root: View<'a>,
}

impl<'a> Region<'a> {
    /// Validate the whole region.
    ///
    /// `bytes` may be longer than the region (a page-rounded mapping); it must start 8-byte
    /// aligned, as every mapping does (use [`AlignedBuf`](crate::AlignedBuf) for heap copies).
    ///
    /// ```
    /// use mori_format::{Region, ReadError, AlignedBuf};
    /// let junk = AlignedBuf::from_bytes(b"not a region at all, no magic here");
    /// assert!(matches!(Region::new(&junk), Err(ReadError::BadMagic { .. })));
    /// ```
    pub fn new(bytes: &'a [u8]) -> Result<Self, ReadError> {
        if bytes.as_ptr().align_offset(8) != 0 {
            return Err(ReadError::MisalignedBuffer);
        }
        let magic = u32_at(bytes, 0, "region magic")?;
        let root = match magic {
            MAGIC_MORH => parse_morh(bytes)?,
            MAGIC_MORS => parse_mors(bytes)?,
            MAGIC_MORL => {
                let list = List::parse(bytes, 0, 0)?;
                list.validate()?;
                View::List(list)
            }
            _ => return Err(ReadError::BadMagic { magic, offset: 0 }),
        };
        Ok(Self { bytes, root })
    }

    /// The root value.
    pub fn root(&self) -> View<'a> {
        self.root
    }

    /// The bytes the region was read from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The value a 0-based path of list indices leads to (the empty path is the root).
    ///
    /// Every step but the last must be a nested list; the errors are those R's `map_shared()`
    /// raises for the same cases.
    ///
    /// ```
    /// use mori_format::value::Value;
    /// use mori_format::write::{encoded_len, write, WriteOptions};
    /// use mori_format::{AlignedBuf, Region, ResolveError, View};
    ///
    /// let v = Value::list([Value::double([1.0]), Value::list([Value::integer([7])])]);
    /// let opts = WriteOptions::default();
    /// let mut buf = AlignedBuf::zeroed(encoded_len(&v, &opts)?);
    /// write(&v, &mut buf, &opts)?;
    /// let region = Region::new(&buf)?;
    /// let View::Integer(x) = region.resolve(&[1, 0])? else { panic!() };
    /// assert_eq!(x.data(), &[7]);
    /// assert!(matches!(region.resolve(&[0, 0]), Err(ResolveError::NotNestedList { step: 0 })));
    /// assert!(matches!(region.resolve(&[2]), Err(ResolveError::LeafIndexOutOfBounds { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve(&self, path: &[u32]) -> Result<View<'a>, ResolveError> {
        let Some((&leaf, steps)) = path.split_last() else {
            return Ok(self.root);
        };
        let View::List(mut list) = self.root else {
            return Err(ResolveError::NotAList);
        };
        for (step, &index) in steps.iter().enumerate() {
            if index as usize >= list.len() {
                return Err(ResolveError::PathIndexOutOfBounds {
                    index,
                    len: list.len(),
                });
            }
            list = match list.get(index as usize)? {
                View::List(l) => l,
                _ => return Err(ResolveError::NotNestedList { step }),
            };
        }
        if leaf as usize >= list.len() {
            return Err(ResolveError::LeafIndexOutOfBounds {
                index: leaf,
                len: list.len(),
            });
        }
        Ok(list.get(leaf as usize)?)
    }
}

/// A zero-copy view of one value in a region.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// A logical vector (1 TRUE, 0 FALSE, `i32::MIN` NA).
    Logical(Vector<'a, i32>),
    /// An integer vector.
    Integer(Vector<'a, i32>),
    /// A double vector.
    Double(Vector<'a, f64>),
    /// A complex vector.
    Complex(Vector<'a, [f64; 2]>),
    /// A raw vector.
    Raw(Vector<'a, u8>),
    /// A character vector.
    Character(Strings<'a>),
    /// A list (or data frame).
    List(List<'a>),
    /// A fallback element: R `serialize()` bytes, not shared by R either.
    Serialized(&'a [u8]),
}

impl<'a> View<'a> {
    /// The SEXPTYPE of the value.
    pub fn sexptype(&self) -> SexpType {
        match self {
            Self::Logical(_) => SexpType::Logical,
            Self::Integer(_) => SexpType::Integer,
            Self::Double(_) => SexpType::Double,
            Self::Complex(_) => SexpType::Complex,
            Self::Raw(_) => SexpType::Raw,
            Self::Character(_) => SexpType::Character,
            Self::List(_) => SexpType::List,
            Self::Serialized(_) => SexpType::Serialized,
        }
    }

    /// Number of elements (0 for a fallback element, as its directory entry says).
    pub fn len(&self) -> usize {
        match self {
            Self::Logical(v) | Self::Integer(v) => v.len(),
            Self::Double(v) => v.len(),
            Self::Complex(v) => v.len(),
            Self::Raw(v) => v.len(),
            Self::Character(s) => s.len(),
            Self::List(l) => l.len(),
            Self::Serialized(_) => 0,
        }
    }

    /// True if [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The undecoded attribute blob (empty when there are none, and for fallback elements,
    /// whose attributes live inside their serialized bytes).
    pub fn attributes_blob(&self) -> &'a [u8] {
        match self {
            Self::Logical(v) | Self::Integer(v) => v.attrs,
            Self::Double(v) => v.attrs,
            Self::Complex(v) => v.attrs,
            Self::Raw(v) => v.attrs,
            Self::Character(s) => s.attrs,
            Self::List(l) => l.attrs,
            Self::Serialized(_) => &[],
        }
    }

    /// Decode the attributes (names, class, dim, ...); empty when there are none.
    pub fn attributes(&self) -> Result<Attributes, ReadError> {
        decode_attrs(self.attributes_blob())
    }

    /// Copy the value out of the region.
    ///
    /// A fallback element holding R's serialized `NULL` becomes [`Data::Null`]; any other
    /// fallback element stays [`Data::Serialized`] bytes.
    pub fn to_value(&self) -> Result<Value, ReadError> {
        let data = match self {
            Self::Logical(v) => Data::Logical(v.data.to_vec()),
            Self::Integer(v) => Data::Integer(v.data.to_vec()),
            Self::Double(v) => Data::Double(v.data.to_vec()),
            Self::Complex(v) => Data::Complex(v.data.to_vec()),
            Self::Raw(v) => Data::Raw(v.data.to_vec()),
            Self::Character(s) => Data::Character(s.iter().map(|s| s.to_owned()).collect()),
            Self::List(l) => return l.to_value(),
            Self::Serialized(b) if is_serialized_null(b) => Data::Null,
            Self::Serialized(b) => Data::Serialized(b.to_vec()),
        };
        Ok(Value {
            data,
            attrs: self.attributes()?,
        })
    }
}

fn decode_attrs(blob: &[u8]) -> Result<Attributes, ReadError> {
    if blob.is_empty() {
        Ok(Attributes::new())
    } else {
        Ok(rser::decode_attributes(blob)?)
    }
}

/// True if `blob` is R's serialization (v3, native binary) of `NULL`: the header, then 254.
///
/// ```
/// use mori_format::read::is_serialized_null;
/// let mut b = b"B\n".to_vec();
/// for x in [3i32, 0x040500, 0x030500, 5] { b.extend(x.to_ne_bytes()); }
/// b.extend(b"UTF-8");
/// b.extend(254i32.to_ne_bytes());
/// assert!(is_serialized_null(&b));
/// assert!(!is_serialized_null(&b[..b.len() - 1]));
/// ```
pub fn is_serialized_null(blob: &[u8]) -> bool {
    let field = |at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let (Some(version), Some(nelen)) = (field(2), field(14)) else {
        return false;
    };
    let Ok(nelen) = usize::try_from(nelen) else {
        return false;
    };
    blob.starts_with(b"B\n")
        && version == 3
        && nelen < 64
        && blob.len() == 18 + nelen + 4
        && field(18 + nelen) == Some(254)
}

/// An atomic vector in a region: its data as a typed slice and its attribute blob.
#[derive(Debug, Clone, Copy)]
pub struct Vector<'a, T> {
    data: &'a [T],
    attrs: &'a [u8],
}

impl<'a, T> Vector<'a, T> {
    /// The elements, borrowed from the region.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The undecoded attribute blob.
    pub fn attributes_blob(&self) -> &'a [u8] {
        self.attrs
    }

    /// Decode the attributes.
    pub fn attributes(&self) -> Result<Attributes, ReadError> {
        decode_attrs(self.attrs)
    }
}

/// One string of a character vector in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str<'a> {
    /// The bytes; `None` is `NA_character_`.
    pub bytes: Option<&'a [u8]>,
    /// The stored encoding mark.
    pub encoding: Encoding,
}

impl<'a> Str<'a> {
    /// True for `NA_character_`.
    pub fn is_na(&self) -> bool {
        self.bytes.is_none()
    }

    /// The string as UTF-8, if it is not NA and is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes?).ok()
    }

    /// An owned copy.
    pub fn to_owned(&self) -> RString {
        RString {
            bytes: self.bytes.map(<[u8]>::to_vec),
            encoding: self.encoding,
        }
    }
}

/// A character vector in a region: a validated offset table over packed string bytes.
#[derive(Debug, Clone, Copy)]
pub struct Strings<'a> {
    table: &'a [u8],
    area: &'a [u8],
    attrs: &'a [u8],
}

impl<'a> Strings<'a> {
    /// Validate a MORS body (offset table, pad, packed bytes) of `n` strings; with
    /// `Check::Entries` every table entry too, otherwise only the table's bounds (for regions
    /// already validated, so that reaching an element costs O(1)).
    fn parse(
        body: &'a [u8],
        n: i64,
        at: usize,
        attrs: &'a [u8],
        check: Check,
    ) -> Result<Self, ReadError> {
        let count = usize::try_from(n).map_err(|_| ReadError::BadCount {
            what: "string count",
            value: n,
        })?;
        let table_end = count
            .checked_mul(STRING_ENTRY)
            .and_then(align64)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| ReadError::Truncated {
                what: "string table",
                offset: at,
                needed: (n as u64).saturating_mul(STRING_ENTRY as u64),
                available: body.len(),
            })?;
        let (table, area) = body.split_at(table_end);
        let strings = Self {
            table: &table[..count * STRING_ENTRY],
            area,
            attrs,
        };
        if check == Check::Entries {
            for index in 0..count {
                strings.entry(index)?;
            }
        }
        Ok(strings)
    }

    /// Decode and check entry `index` (which must be below `len`).
    fn entry(&self, index: usize) -> Result<Str<'a>, ReadError> {
        let e = &self.table[index * STRING_ENTRY..][..STRING_ENTRY];
        let offset = i64_at(e, 0, "string entry")?;
        let len = i32_at(e, 8, "string entry")?;
        if len < 0 {
            return Ok(Str {
                bytes: None,
                encoding: Encoding::Native,
            });
        }
        let code = i32_at(e, 12, "string entry")?;
        let encoding = Encoding::from_code(code).ok_or(ReadError::BadEncoding { index, code })?;
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|o| self.area.get(o..o.checked_add(len as usize)?))
            .ok_or(ReadError::StringOutOfBounds { index, offset, len })?;
        Ok(Str {
            bytes: Some(bytes),
            encoding,
        })
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.table.len() / STRING_ENTRY
    }

    /// True if there are no strings.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// String `index`, or `None` past the end.
    ///
    /// ```
    /// use mori_format::value::{Data, RString, Value};
    /// use mori_format::write::{encoded_len, write, WriteOptions};
    /// use mori_format::{read, AlignedBuf, View};
    /// let v = Value::new(Data::Character(vec![RString::new("h\u{e9}"), RString::NA]));
    /// let mut buf = AlignedBuf::zeroed(encoded_len(&v, &WriteOptions::default())?);
    /// write(&v, &mut buf, &WriteOptions::default())?;
    /// let View::Character(s) = read(&buf)? else { panic!() };
    /// assert_eq!(s.get(0).unwrap().as_str(), Some("h\u{e9}"));
    /// assert!(s.get(1).unwrap().is_na());
    /// assert!(s.get(2).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<Str<'a>> {
        if index < self.len() {
            // Every entry was checked when the view was made, so this cannot fail.
            self.entry(index).ok()
        } else {
            None
        }
    }

    /// The strings in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Str<'a>> + '_ {
        (0..self.len()).map(|i| {
            self.entry(i).unwrap_or(Str {
                bytes: None,
                encoding: Encoding::Native,
            })
        })
    }

    /// The undecoded attribute blob.
    pub fn attributes_blob(&self) -> &'a [u8] {
        self.attrs
    }

    /// Decode the attributes.
    pub fn attributes(&self) -> Result<Attributes, ReadError> {
        decode_attrs(self.attrs)
    }
}

/// How much of a string table to check when making its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every entry: done once, by `Region::new`.
    Entries,
    /// The table's bounds only; entries are still bounds-checked when read.
    Bounds,
}

/// One directory entry of a MORL, as stored.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    size: i64,
    sexptype: i32,
    attrs_size: i32,
    length: i64,
}

/// A list in a region (root or nested): a validated directory over its elements.
#[derive(Debug, Clone, Copy)]
pub struct List<'a> {
    /// This MORL's bytes, from its header to the end of its slot.
    base: &'a [u8],
    /// Absolute offset of `base` in the region, for error messages.
    at: usize,
    n: usize,
    attrs: &'a [u8],
    depth: usize,
}

impl<'a> List<'a> {
    /// Check the header and directory bounds of the MORL at the start of `base`.
    fn parse(base: &'a [u8], at: usize, depth: usize) -> Result<Self, ReadError> {
        if depth > MAX_DEPTH {
            return Err(ReadError::TooDeep { limit: MAX_DEPTH });
        }
        let magic = u32_at(base, 0, "list header")?;
        if magic != MAGIC_MORL {
            return Err(ReadError::BadMagic { magic, offset: at });
        }
        let n = i32_at(base, 4, "list header")?;
        let attrs_offset = i64_at(base, 8, "list header")?;
        let attrs_size = i64_at(base, 16, "list header")?;
        let count = usize::try_from(n).map_err(|_| ReadError::BadCount {
            what: "list length",
            value: n.into(),
        })?;
        let dir_end = MORL_HEADER + count * DIR_ENTRY;
        if dir_end > base.len() {
            return Err(ReadError::Truncated {
                what: "list directory",
                offset: at,
                needed: dir_end as u64,
                available: base.len(),
            });
        }
        let attrs = usize::try_from(attrs_offset)
            .ok()
            .zip(usize::try_from(attrs_size).ok())
            .filter(|&(o, _)| o >= dir_end)
            .and_then(|(o, s)| base.get(o..o.checked_add(s)?))
            .ok_or(ReadError::AttributesOutOfBounds {
                offset: attrs_offset,
                size: attrs_size,
            })?;
        Ok(Self {
            base,
            at,
            n: count,
            attrs,
            depth,
        })
    }

    fn entry(&self, index: usize) -> Result<Entry, ReadError> {
        let e = &self.base[MORL_HEADER + index * DIR_ENTRY..][..DIR_ENTRY];
        Ok(Entry {
            offset: i64_at(e, 0, "list entry")?,
            size: i64_at(e, 8, "list entry")?,
            sexptype: i32_at(e, 16, "list entry")?,
            attrs_size: i32_at(e, 20, "list entry")?,
            length: i64_at(e, 24, "list entry")?,
        })
    }

    /// Check element `index`'s entry and make its view (a nested list's own elements are not
    /// walked here). Returns the view and the end offset of its bytes.
    fn element(&self, index: usize, check: Check) -> Result<(View<'a>, usize), ReadError> {
        let e = self.entry(index)?;
        let out_of_bounds = ReadError::ElementOutOfBounds {
            index,
            offset: e.offset,
            size: e.size,
            bound: self.base.len(),
        };
        let (Ok(offset), Ok(size)) = (usize::try_from(e.offset), usize::try_from(e.size)) else {
            return Err(out_of_bounds);
        };
        let end = offset
            .checked_add(size)
            .ok_or_else(|| out_of_bounds.clone())?;
        let bytes = self.base.get(offset..end).ok_or(out_of_bounds)?;
        if offset % ALIGN != 0 {
            return Err(ReadError::MisalignedElement {
                index,
                offset: e.offset,
            });
        }
        let too_big = ReadError::AttributesLargerThanData {
            index,
            attrs_size: e.attrs_size,
            data_size: e.size,
        };
        let attrs_size = usize::try_from(e.attrs_size).map_err(|_| too_big.clone())?;
        let Some(data_len) = size.checked_sub(attrs_size) else {
            return Err(too_big);
        };
        let mismatch = ReadError::LengthMismatch {
            index,
            length: e.length,
            data_size: e.size,
        };
        let ty = SexpType::from_code(e.sexptype).ok_or(ReadError::UnknownSexpType {
            index,
            code: e.sexptype,
        })?;
        let (data, attrs) = bytes.split_at(data_len);
        let at = self.at + offset;
        let view = match ty {
            SexpType::Serialized => View::Serialized(bytes),
            SexpType::Character => View::Character(
                Strings::parse(data, e.length, at, attrs, check).map_err(|err| match err {
                    ReadError::Truncated { .. } => mismatch,
                    other => other,
                })?,
            ),
            SexpType::List => {
                let list = Self::parse(bytes, at, self.depth + 1)?;
                if i64::try_from(list.n) != Ok(e.length) {
                    return Err(mismatch);
                }
                View::List(list)
            }
            _ => atomic_view(ty, data, e.length, attrs).ok_or(mismatch)??,
        };
        Ok((view, end))
    }

    /// Walk every element, recursively, checking order and bounds.
    fn validate(&self) -> Result<(), ReadError> {
        let mut prev_end = MORL_HEADER + self.n * DIR_ENTRY;
        for index in 0..self.n {
            let (view, end) = self.element(index, Check::Entries)?;
            let start = end - self.entry(index)?.size as usize;
            if start < prev_end {
                return Err(ReadError::ElementOverlap { index });
            }
            prev_end = end;
            if let View::List(child) = view {
                child.validate()?;
            }
        }
        let attrs_start = self.attrs.as_ptr() as usize - self.base.as_ptr() as usize;
        if !self.attrs.is_empty() && attrs_start < prev_end {
            return Err(ReadError::AttributesOutOfBounds {
                offset: attrs_start as i64,
                size: self.attrs.len() as i64,
            });
        }
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True if the list is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Element `index`.
    ///
    /// ```
    /// use mori_format::value::Value;
    /// use mori_format::{encoded_len, read, write, AlignedBuf, ReadError, View, WriteOptions};
    /// let v = Value::list([Value::double([1.0])]);
    /// let mut buf = AlignedBuf::zeroed(encoded_len(&v, &WriteOptions::default())?);
    /// write(&v, &mut buf, &WriteOptions::default())?;
    /// let View::List(l) = read(&buf)? else { panic!() };
    /// assert!(matches!(l.get(0)?, View::Double(_)));
    /// assert_eq!(l.get(1).unwrap_err(), ReadError::IndexOutOfBounds { index: 1, len: 1 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<View<'a>, ReadError> {
        if index >= self.n {
            return Err(ReadError::IndexOutOfBounds { index, len: self.n });
        }
        // The region was validated whole by `Region::new`; only the bounds are checked again.
        Ok(self.element(index, Check::Bounds)?.0)
    }

    /// The elements in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Result<View<'a>, ReadError>> + '_ {
        (0..self.n).map(|i| self.get(i))
    }

    /// The `names` attribute, decoded; `None` if the list has no names.
    pub fn names(&self) -> Result<Option<Vec<RString>>, ReadError> {
        // Taken out of the decoded attributes, not cloned: a wide frame's names are many.
        let attrs = self.attributes()?;
        Ok(attrs.0.into_iter().find_map(|(name, value)| match value {
            Value {
                data: Data::Character(s),
                ..
            } if name == "names" => Some(s),
            _ => None,
        }))
    }

    /// The `names` attribute read in place, only as far as the names (see
    /// [`rser::decode_names`]); `None` if the list has no names.
    ///
    /// ```
    /// use mori_format::{AlignedBuf, Source, View, WriteOptions, read};
    /// let df = Source::DataFrame(vec![("x", Source::Double(&[1.0])), ("y", Source::Integer(&[2]))]);
    /// let opts = WriteOptions::default();
    /// let mut buf = AlignedBuf::zeroed(df.encoded_len(&opts)?);
    /// df.write(&mut buf, &opts)?;
    /// let View::List(list) = read(&buf)? else { unreachable!() };
    /// assert_eq!(list.names_in_place()?.unwrap().position("y"), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn names_in_place(&self) -> Result<Option<crate::rser::Names<'a>>, ReadError> {
        crate::rser::decode_names(self.attrs).map_err(ReadError::Attributes)
    }

    /// The undecoded attribute blob of the list itself.
    pub fn attributes_blob(&self) -> &'a [u8] {
        self.attrs
    }

    /// Decode the list's attributes.
    pub fn attributes(&self) -> Result<Attributes, ReadError> {
        decode_attrs(self.attrs)
    }

    /// Copy the list, recursively, out of the region.
    pub fn to_value(&self) -> Result<Value, ReadError> {
        let items = self
            .iter()
            .map(|v| v?.to_value())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value {
            data: Data::List(items),
            attrs: self.attributes()?,
        })
    }
}

/// A typed view of `length` elements filling `data` exactly; `None` if the sizes disagree.
fn atomic_view<'a>(
    ty: SexpType,
    data: &'a [u8],
    length: i64,
    attrs: &'a [u8],
) -> Option<Result<View<'a>, ReadError>> {
    let width = ty.width()?;
    let len = usize::try_from(length).ok()?;
    if len.checked_mul(width)? != data.len() {
        return None;
    }
    fn cast<'a, T: bytemuck::AnyBitPattern>(
        data: &'a [u8],
        attrs: &'a [u8],
    ) -> Result<Vector<'a, T>, ReadError> {
        let data = bytemuck::try_cast_slice(data).map_err(|_| ReadError::MisalignedBuffer)?;
        Ok(Vector { data, attrs })
    }
    Some(match ty {
        SexpType::Logical => cast(data, attrs).map(View::Logical),
        SexpType::Integer => cast(data, attrs).map(View::Integer),
        SexpType::Double => cast(data, attrs).map(View::Double),
        SexpType::Complex => cast(data, attrs).map(View::Complex),
        _ => Ok(View::Raw(Vector { data, attrs })),
    })
}

fn parse_morh(bytes: &[u8]) -> Result<View<'_>, ReadError> {
    let code = i32_at(bytes, 4, "vector header")?;
    let length = i64_at(bytes, 8, "vector header")?;
    let attrs_size = i64_at(bytes, 16, "vector header")?;
    if bytes.len() < MORH_HEADER {
        return Err(ReadError::Truncated {
            what: "vector header",
            offset: 0,
            needed: MORH_HEADER as u64,
            available: bytes.len(),
        });
    }
    let ty = SexpType::from_code(code)
        .filter(|t| t.width().is_some())
        .ok_or(ReadError::UnknownSexpType { index: 0, code })?;
    let width = ty.width().unwrap_or(1);
    let len = usize::try_from(length).map_err(|_| ReadError::BadCount {
        what: "vector length",
        value: length,
    })?;
    let attrs = usize::try_from(attrs_size).map_err(|_| ReadError::BadCount {
        what: "attrs_size",
        value: attrs_size,
    })?;
    let body = &bytes[MORH_HEADER..];
    let data_len = len.checked_mul(width);
    let total = data_len.and_then(|d| d.checked_add(attrs));
    let Some((data_len, total)) = data_len.zip(total).filter(|&(_, t)| t <= body.len()) else {
        return Err(ReadError::Truncated {
            what: "vector data",
            offset: MORH_HEADER,
            needed: (len as u64)
                .saturating_mul(width as u64)
                .saturating_add(attrs as u64),
            available: body.len(),
        });
    };
    let (data, rest) = body[..total].split_at(data_len);
    atomic_view(ty, data, length, rest).unwrap_or(Err(ReadError::MisalignedBuffer))
}

fn parse_mors(bytes: &[u8]) -> Result<View<'_>, ReadError> {
    let attrs_size = i32_at(bytes, 4, "string header")?;
    let n = i64_at(bytes, 8, "string header")?;
    let data_size = i64_at(bytes, 16, "string header")?;
    let attrs = usize::try_from(attrs_size).map_err(|_| ReadError::BadCount {
        what: "attrs_size",
        value: attrs_size.into(),
    })?;
    let size = usize::try_from(data_size).map_err(|_| ReadError::BadCount {
        what: "str_data_size",
        value: data_size,
    })?;
    let body = &bytes[MORS_HEADER..];
    let Some(total) = size.checked_add(attrs).filter(|&t| t <= body.len()) else {
        return Err(ReadError::Truncated {
            what: "string data",
            offset: MORS_HEADER,
            needed: (size as u64).saturating_add(attrs as u64),
            available: body.len(),
        });
    };
    let (data, attrs) = body[..total].split_at(size);
    Strings::parse(data, n, MORS_HEADER, attrs, Check::Entries).map(View::Character)
}

fn field<const N: usize>(
    bytes: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], ReadError> {
    bytes
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ReadError::Truncated {
            what,
            offset: at,
            needed: N as u64,
            available: bytes.len().saturating_sub(at),
        })
}

fn u32_at(bytes: &[u8], at: usize, what: &'static str) -> Result<u32, ReadError> {
    field(bytes, at, what).map(u32::from_ne_bytes)
}

fn i32_at(bytes: &[u8], at: usize, what: &'static str) -> Result<i32, ReadError> {
    field(bytes, at, what).map(i32::from_ne_bytes)
}

fn i64_at(bytes: &[u8], at: usize, what: &'static str) -> Result<i64, ReadError> {
    field(bytes, at, what).map(i64::from_ne_bytes)
}
