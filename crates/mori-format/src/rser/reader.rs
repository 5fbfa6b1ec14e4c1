//! The decoder: a bounds-checked cursor over a native-binary version 2/3 stream that builds an
//! [`Item`] tree, rejecting anything outside the supported subset with a typed error.
//!
//! Every length a stream claims is checked against the bytes that remain before anything is
//! allocated, recursion is bounded by [`Limits::max_depth`], and pairlists are read in a loop
//! (not by recursing on the cdr) so a long attribute list cannot exhaust the stack.

use super::sexp::{
    ALTREP_SXP, BYTES_MASK, CHARSXP, CPLXSXP, Flags, INTSXP, LATIN1_MASK, LGLSXP, LISTSXP, NILSXP,
    NILVALUE_SXP, RAWSXP, REALSXP, REFSXP, STRSXP, SYMSXP, UTF8_MASK, VECSXP,
};
use super::{Limits, RserError};
use crate::read::Str;
use crate::value::{Attributes, Data, Encoding, RString, Value};

/// R's longest encoding name in a version 3 header (`R_CODESET_MAX`).
const MAX_ENCODING_NAME: usize = 63;

/// One decoded item, before it is turned into a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    /// `NULL`.
    Null,
    /// A symbol, by print name.
    Symbol(String),
    /// A pairlist: `(tag, value)` cells in order.
    Pairlist(Vec<(Option<String>, Self)>),
    /// A list whose elements are kept as items (so callers can treat `row.names` specially).
    List(Vec<Self>, Attributes),
    /// An atomic vector.
    Value(Value),
    /// ALTREP `compact_intseq`: `start, start + step, ...` of length `len`, not yet expanded.
    IntSeq {
        /// Number of elements.
        len: usize,
        /// First element.
        start: i32,
        /// +1 or -1.
        step: i32,
        /// Its own attributes.
        attrs: Attributes,
    },
}

/// What [`Reader::pairlist_names`] found.
pub(super) enum NamesScan<'a> {
    /// The names, borrowed.
    Found(Vec<Str<'a>>),
    /// A pairlist without a `names` cell.
    Absent,
    /// Something the full decoder must judge.
    Other,
}

/// How many elements compact sequences may still expand to: the one place where a few bytes of
/// a blob legitimately stand for many, so the total per blob is capped by
/// [`Limits::max_seq_len`].
#[derive(Debug)]
pub(super) struct Budget {
    left: usize,
}

impl Budget {
    /// The budget `limits` allow one blob.
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            left: limits.max_seq_len,
        }
    }

    /// Spend `len` elements, or fail without spending.
    fn spend(&mut self, len: usize) -> Result<(), RserError> {
        if len > self.left {
            return Err(RserError::SequenceTooLong {
                len,
                limit: self.left,
            });
        }
        self.left -= len;
        Ok(())
    }
}

impl Item {
    /// Turn the item into a value, expanding compact sequences within `budget`.
    pub(super) fn into_value(self, budget: &mut Budget) -> Result<Value, RserError> {
        match self {
            Self::Null => Ok(Value::new(Data::Null)),
            Self::Value(v) => Ok(v),
            Self::List(items, attrs) => {
                let items = items
                    .into_iter()
                    .map(|i| i.into_value(budget))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value {
                    data: Data::List(items),
                    attrs,
                })
            }
            Self::IntSeq {
                len,
                start,
                step,
                attrs,
            } => {
                budget.spend(len)?;
                let data = (0..len)
                    .map(|i| {
                        // In range: checked when the sequence was read.
                        (i64::from(start) + i64::from(step) * i as i64) as i32
                    })
                    .collect();
                Ok(Value {
                    data: Data::Integer(data),
                    attrs,
                })
            }
            Self::Symbol(_) => Err(RserError::UnsupportedType { code: SYMSXP }),
            Self::Pairlist(_) => Err(RserError::UnsupportedType { code: LISTSXP }),
        }
    }
}

/// A cursor over one serialized blob.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The reference table: symbols in order of first appearance (REFSXP index 1 is `refs[0]`).
    refs: Vec<String>,
    limits: &'a Limits,
    budget: Budget,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, which must not exceed `limits.max_blob`.
    pub(super) fn new(buf: &'a [u8], limits: &'a Limits) -> Result<Self, RserError> {
        if buf.len() > limits.max_blob {
            return Err(RserError::TooLarge {
                size: buf.len(),
                limit: limits.max_blob,
            });
        }
        Ok(Self {
            buf,
            pos: 0,
            refs: Vec::new(),
            limits,
            budget: Budget::new(limits),
        })
    }

    /// Read the whole blob: header, one item, and nothing after it. The budget that is left
    /// is for the caller's conversion of the item.
    pub(super) fn read_blob(mut self) -> Result<(Item, Budget), RserError> {
        self.header()?;
        let item = self.item(0)?;
        if self.pos != self.buf.len() {
            return Err(RserError::TrailingBytes {
                at: self.pos,
                len: self.buf.len(),
            });
        }
        Ok((item, self.budget))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RserError> {
        if n > self.remaining() {
            return Err(RserError::Truncated {
                at: self.pos,
                needed: n,
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn int(&mut self) -> Result<i32, RserError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The header: format, version 2 or 3, writer and reader versions, and (v3) encoding name.
    fn header(&mut self) -> Result<(), RserError> {
        let magic = self
            .take(2)
            .map_err(|_| RserError::BadHeader("too short"))?;
        match magic {
            b"B\n" => {}
            [f @ (b'A' | b'X' | b'b'), b'\n'] => return Err(RserError::UnsupportedFormat(*f)),
            _ => return Err(RserError::BadHeader("not an R serialization")),
        }
        let version = self.int().map_err(|_| RserError::BadHeader("too short"))?;
        if version != 2 && version != 3 {
            return Err(RserError::UnsupportedVersion(version));
        }
        self.take(8)
            .map_err(|_| RserError::BadHeader("too short"))?;
        if version == 3 {
            let nelen = self.int().map_err(|_| RserError::BadHeader("too short"))?;
            let nelen = usize::try_from(nelen)
                .ok()
                .filter(|&n| n <= MAX_ENCODING_NAME)
                .ok_or(RserError::BadHeader("bad encoding name length"))?;
            self.take(nelen)
                .map_err(|_| RserError::BadHeader("too short"))?;
        }
        Ok(())
    }

    /// A vector length (`-1` then two words for long vectors), checked against the bytes left
    /// at `min_bytes_each` per element before anyone allocates for it.
    fn length(&mut self, min_bytes_each: usize) -> Result<usize, RserError> {
        let at = self.pos;
        let len = match self.int()? {
            -1 => {
                let hi = self.int()?;
                let lo = self.int()?;
                (i64::from(hi) << 32) | i64::from(lo as u32)
            }
            n => i64::from(n),
        };
        let bad = RserError::BadLength { length: len, at };
        let n = usize::try_from(len).map_err(|_| bad.clone())?;
        match n.checked_mul(min_bytes_each) {
            Some(bytes) if bytes <= self.remaining() => Ok(n),
            _ => Err(bad),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item, RserError> {
        if depth > self.limits.max_depth {
            return Err(RserError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        let word = self.int()?;
        let flags = Flags::unpack(word);
        match flags.ty {
            NILVALUE_SXP | NILSXP => Ok(Item::Null),
            REFSXP => self.reference(word),
            SYMSXP => self.symbol(),
            LISTSXP => self.pairlist(flags, depth),
            ALTREP_SXP => self.altrep(depth),
            LGLSXP | INTSXP => {
                let n = self.length(4)?;
                let ints = self.take(n * 4)?.chunks_exact(4);
                let v: Vec<i32> = ints
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let data = if flags.ty == LGLSXP {
                    Data::Logical(v)
                } else {
                    Data::Integer(v)
                };
                self.vector(data, flags, depth)
            }
            REALSXP => {
                let n = self.length(8)?;
                let v = self.take(n * 8)?.chunks_exact(8).map(f64_le).collect();
                self.vector(Data::Double(v), flags, depth)
            }
            CPLXSXP => {
                let n = self.length(16)?;
                let v = self
                    .take(n * 16)?
                    .chunks_exact(16)
                    .map(|c| [f64_le(&c[..8]), f64_le(&c[8..])])
                    .collect();
                self.vector(Data::Complex(v), flags, depth)
            }
            RAWSXP => {
                let n = self.length(1)?;
                let v = self.take(n)?.to_vec();
                self.vector(Data::Raw(v), flags, depth)
            }
            STRSXP => {
                // Each element is at least a flags word and a length.
                let n = self.length(8)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.charsxp()?);
                }
                self.vector(Data::Character(v), flags, depth)
            }
            VECSXP => {
                // Each element is at least a flags word.
                let n = self.length(4)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                let attrs = self.trailing_attributes(flags, depth)?;
                Ok(Item::List(items, attrs))
            }
            code => Err(RserError::UnsupportedType { code }),
        }
    }

    /// An atomic vector's attributes (they follow its data) and the finished item.
    fn vector(&mut self, data: Data, flags: Flags, depth: usize) -> Result<Item, RserError> {
        let attrs = self.trailing_attributes(flags, depth)?;
        Ok(Item::Value(Value { data, attrs }))
    }

    fn trailing_attributes(&mut self, flags: Flags, depth: usize) -> Result<Attributes, RserError> {
        if flags.attr {
            let item = self.item(depth + 1)?;
            pairlist_to_attributes(item, &mut self.budget)
        } else {
            Ok(Attributes::new())
        }
    }

    fn reference(&mut self, word: i32) -> Result<Item, RserError> {
        let index = match Flags::packed_ref_index(word) {
            0 => usize::try_from(self.int()?).unwrap_or(0),
            i => i,
        };
        index
            .checked_sub(1)
            .and_then(|i| self.refs.get(i))
            .map(|name| Item::Symbol(name.clone()))
            .ok_or(RserError::BadReference {
                index,
                table_len: self.refs.len(),
            })
    }

    fn symbol(&mut self) -> Result<Item, RserError> {
        let at = self.pos;
        let word = self.int()?;
        if Flags::unpack(word).ty != CHARSXP {
            return Err(RserError::Malformed {
                what: "symbol name is not a string",
                at,
            });
        }
        let name = self.char_bytes()?.ok_or(RserError::Malformed {
            what: "symbol name is NA",
            at,
        })?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| RserError::InvalidName { at })?;
        if self.refs.len() >= self.limits.max_refs {
            return Err(RserError::TooManyReferences {
                limit: self.limits.max_refs,
            });
        }
        self.refs.push(name.clone());
        Ok(Item::Symbol(name))
    }

    /// A pairlist, read cell by cell: `[attr] [tag] car`, then the next cell's flags (the cdr).
    fn pairlist(&mut self, first: Flags, depth: usize) -> Result<Item, RserError> {
        let mut cells = Vec::new();
        let mut flags = first;
        loop {
            if flags.attr {
                // Attributes on the cells themselves never occur in attribute pairlists.
                return Err(RserError::UnsupportedType { code: LISTSXP });
            }
            let tag = if flags.tag {
                let at = self.pos;
                match self.item(depth + 1)? {
                    Item::Symbol(s) => Some(s),
                    _ => {
                        return Err(RserError::Malformed {
                            what: "pairlist tag is not a symbol",
                            at,
                        });
                    }
                }
            } else {
                None
            };
            cells.push((tag, self.item(depth + 1)?));
            let at = self.pos;
            flags = Flags::unpack(self.int()?);
            match flags.ty {
                NILVALUE_SXP => return Ok(Item::Pairlist(cells)),
                LISTSXP => {}
                _ => {
                    return Err(RserError::Malformed {
                        what: "pairlist does not end in NULL",
                        at,
                    });
                }
            }
        }
    }

    /// An ALTREP object: class info pairlist, state, attributes. Only `compact_intseq` is known.
    fn altrep(&mut self, depth: usize) -> Result<Item, RserError> {
        let info = self.item(depth + 1)?;
        let state = self.item(depth + 1)?;
        let attr = self.item(depth + 1)?;
        let is_intseq = matches!(&info, Item::Pairlist(cells)
            if matches!(cells.as_slice(), [(None, Item::Symbol(class)), (None, Item::Symbol(pkg)), _]
                if class == "compact_intseq" && pkg == "base"));
        if !is_intseq {
            return Err(RserError::UnsupportedType { code: ALTREP_SXP });
        }
        let bad = || RserError::Malformed {
            what: "bad compact_intseq state",
            at: self.pos,
        };
        let (len, start, step) = match state {
            Item::Value(Value {
                data: Data::Double(s),
                ..
            }) if s.len() == 3 => (s[0], s[1], s[2]),
            Item::Value(Value {
                data: Data::Integer(s),
                ..
            }) if s.len() == 3 => (f64::from(s[0]), f64::from(s[1]), f64::from(s[2])),
            _ => return Err(bad()),
        };
        let whole = |x: f64| x.is_finite() && x.fract() == 0.0;
        if !(whole(len) && whole(start) && len >= 0.0 && (step == 1.0 || step == -1.0)) {
            return Err(bad());
        }
        let last = start + step * (len - 1.0).max(0.0);
        let in_int = |x: f64| x > f64::from(i32::MIN) && x <= f64::from(i32::MAX);
        if !(in_int(start) && in_int(last)) {
            return Err(bad());
        }
        Ok(Item::IntSeq {
            len: len as usize,
            start: start as i32,
            step: step as i32,
            attrs: pairlist_to_attributes(attr, &mut self.budget)?,
        })
    }

    /// One CHARSXP element of a character vector.
    fn charsxp(&mut self) -> Result<RString, RserError> {
        Ok(self.str()?.to_owned())
    }

    /// One CHARSXP element of a character vector, borrowed from the blob.
    fn str(&mut self) -> Result<Str<'a>, RserError> {
        let at = self.pos;
        let flags = Flags::unpack(self.int()?);
        if flags.ty != CHARSXP {
            return Err(RserError::Malformed {
                what: "character element is not a string",
                at,
            });
        }
        let bytes = self.char_bytes()?;
        let encoding = if flags.levels & UTF8_MASK != 0 {
            Encoding::Utf8
        } else if flags.levels & LATIN1_MASK != 0 {
            Encoding::Latin1
        } else if flags.levels & BYTES_MASK != 0 {
            Encoding::Bytes
        } else {
            Encoding::Native
        };
        Ok(Str {
            bytes,
            encoding: if bytes.is_some() {
                encoding
            } else {
                RString::NA.encoding
            },
        })
    }

    /// The strings of the `names` cell of an attribute pairlist, borrowed, reading the blob
    /// only as far as them. [`NamesScan::Other`] when the blob is not a plain tagged pairlist
    /// or its names are not a character vector: the caller then decodes it whole.
    pub(super) fn pairlist_names(mut self) -> Result<NamesScan<'a>, RserError> {
        self.header()?;
        let mut flags = Flags::unpack(self.int()?);
        match flags.ty {
            NILVALUE_SXP | NILSXP => return Ok(NamesScan::Absent),
            LISTSXP => {}
            _ => return Ok(NamesScan::Other),
        }
        loop {
            if flags.attr || !flags.tag {
                return Ok(NamesScan::Other);
            }
            let Item::Symbol(tag) = self.item(1)? else {
                return Ok(NamesScan::Other);
            };
            if tag == "names" {
                if Flags::unpack(self.int()?).ty != STRSXP {
                    return Ok(NamesScan::Other);
                }
                let n = self.length(8)?;
                let mut names = Vec::with_capacity(n);
                for _ in 0..n {
                    names.push(self.str()?);
                }
                return Ok(NamesScan::Found(names));
            }
            self.item(1)?;
            flags = Flags::unpack(self.int()?);
            match flags.ty {
                NILVALUE_SXP => return Ok(NamesScan::Absent),
                LISTSXP => {}
                _ => return Ok(NamesScan::Other),
            }
        }
    }

    /// A CHARSXP body: length (-1 for `NA_character_`) and bytes.
    fn char_bytes(&mut self) -> Result<Option<&'a [u8]>, RserError> {
        let at = self.pos;
        match self.int()? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n).map_err(|_| RserError::BadLength {
                    length: i64::from(n),
                    at,
                })?;
                self.take(n).map(Some)
            }
        }
    }
}

fn f64_le(c: &[u8]) -> f64 {
    let mut b = [0; 8];
    b.copy_from_slice(c);
    f64::from_le_bytes(b)
}

/// The attributes a pairlist holds; `NULL` is the empty set.
pub(super) fn pairlist_to_attributes(
    item: Item,
    budget: &mut Budget,
) -> Result<Attributes, RserError> {
    let cells = match item {
        Item::Null => return Ok(Attributes::new()),
        Item::Pairlist(cells) => cells,
        _ => {
            return Err(RserError::InvalidAttributeForm(
                "attributes are not a pairlist",
            ));
        }
    };
    let mut attrs = Attributes::new();
    for (tag, value) in cells {
        let name = tag.ok_or(RserError::InvalidAttributeForm("attribute without a name"))?;
        push_unique(&mut attrs, name, value.into_value(budget)?)?;
    }
    Ok(attrs)
}

/// Append `(name, value)`, refusing a name that is already set.
pub(super) fn push_unique(
    attrs: &mut Attributes,
    name: String,
    value: Value,
) -> Result<(), RserError> {
    if attrs.get(&name).is_some() {
        return Err(RserError::InvalidAttributeForm("duplicate attribute name"));
    }
    attrs.0.push((name, value));
    Ok(())
}
