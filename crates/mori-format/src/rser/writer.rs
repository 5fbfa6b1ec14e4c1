//! The encoder: writes values, attribute pairlists and compact sequences exactly as R's
//! `serialize(x, NULL, xdr = FALSE, version = 3)` does, including symbol back-references.
//!
//! R adds each symbol to a reference table the first time it writes it and writes later uses
//! as a REFSXP index into that table; matching this is what makes our bytes equal R's.

use super::reader::Reader;
use super::sexp::{
    ALTREP_SXP, ASCII_MASK, BYTES_MASK, CHARSXP, CPLXSXP, Flags, INTSXP, LATIN1_MASK, LGLSXP,
    LISTSXP, MAX_PACKED_INDEX, MIN_READER_VERSION, NILVALUE_SXP, RAWSXP, REALSXP, REFSXP, STRSXP,
    SYMSXP, UTF8_MASK, VECSXP,
};
use super::{Limits, RserError};
use crate::value::{Attributes, Data, Encoding, RString, Value};

/// The native encoding every blob we write declares.
const NATIVE_ENCODING: &[u8] = b"UTF-8";

/// How the writer treats a part it cannot encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnError {
    /// Stop with the error.
    Fail,
    /// Write `NULL` in place of the innermost element that failed.
    WriteNull,
}

/// An output stream with its reference table.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Symbols already written, in order: a later use of `symbols[i]` is reference `i + 1`.
    /// Searched linearly: attribute blobs name a handful of symbols.
    symbols: Vec<String>,
    on_error: OnError,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub(super) fn new(out: &'a mut Vec<u8>, on_error: OnError) -> Self {
        Self {
            out,
            symbols: Vec::new(),
            on_error,
        }
    }

    /// The version 3 header naming `r_version` as the writer.
    pub(super) fn header(&mut self, r_version: u32) {
        self.out.extend_from_slice(b"B\n");
        self.int(3);
        self.int(r_version as i32);
        self.int(MIN_READER_VERSION);
        self.int(NATIVE_ENCODING.len() as i32);
        self.out.extend_from_slice(NATIVE_ENCODING);
    }

    fn int(&mut self, x: i32) {
        self.out.extend_from_slice(&x.to_le_bytes());
    }

    fn flags(&mut self, flags: Flags) {
        self.int(flags.pack());
    }

    /// `NULL`.
    pub(super) fn null(&mut self) {
        self.flags(Flags::plain(NILVALUE_SXP));
    }

    /// A vector length; long vectors as `-1` and two words, as R writes them.
    fn length(&mut self, n: usize) {
        match i32::try_from(n) {
            Ok(n) => self.int(n),
            Err(_) => {
                let n = n as u64;
                self.int(-1);
                self.int((n >> 32) as i32);
                self.int(n as u32 as i32);
            }
        }
    }

    /// The start of a list that carries attributes (the named-list attribute form).
    pub(super) fn named_list_header(&mut self, len: usize) {
        self.flags(Flags {
            attr: true,
            ..Flags::plain(VECSXP)
        });
        self.length(len);
    }

    /// A symbol: its print name the first time, a back-reference after that.
    pub(super) fn symbol(&mut self, name: &str) -> Result<(), RserError> {
        if let Some(i) = self.symbols.iter().position(|s| s == name) {
            let index = i + 1;
            if index > MAX_PACKED_INDEX {
                self.flags(Flags::plain(REFSXP));
                self.int(index as i32);
            } else {
                self.int(((index as u32) << 8 | u32::from(REFSXP)) as i32);
            }
            return Ok(());
        }
        if name.contains('\0') {
            return Err(RserError::Unencodable("name contains a NUL byte"));
        }
        self.flags(Flags::plain(SYMSXP));
        // R marks a non-ASCII symbol name as UTF-8 (it is in a UTF-8 session).
        let encoding = if name.is_ascii() {
            Encoding::Native
        } else {
            Encoding::Utf8
        };
        self.charsxp(&RString {
            bytes: Some(name.as_bytes().to_vec()),
            encoding,
        })?;
        self.symbols.push(name.to_owned());
        Ok(())
    }

    fn charsxp(&mut self, s: &RString) -> Result<(), RserError> {
        self.flags(Flags {
            levels: char_levels(s),
            ..Flags::plain(CHARSXP)
        });
        match &s.bytes {
            None => self.int(-1),
            Some(b) => {
                if b.contains(&0) {
                    return Err(RserError::Unencodable("string contains a NUL byte"));
                }
                let n = i32::try_from(b.len())
                    .map_err(|_| RserError::Unencodable("string longer than 2^31-1 bytes"))?;
                self.int(n);
                self.out.extend_from_slice(b);
            }
        }
        Ok(())
    }

    /// One element (of a list or attribute set); on failure either the error or `NULL`.
    pub(super) fn element(&mut self, v: &Value) -> Result<(), RserError> {
        let mark = (self.out.len(), self.symbols.len());
        match self.value(v) {
            Ok(()) => Ok(()),
            Err(e) if self.on_error == OnError::Fail => Err(e),
            Err(_) => {
                self.out.truncate(mark.0);
                self.symbols.truncate(mark.1);
                self.null();
                Ok(())
            }
        }
    }

    /// A whole value with its attributes (the raw pairlist form, as `serialize()` writes).
    pub(super) fn value(&mut self, v: &Value) -> Result<(), RserError> {
        let (ty, len) = match &v.data {
            Data::Null => {
                if !v.attrs.is_empty() {
                    return Err(RserError::Unencodable("NULL cannot have attributes"));
                }
                self.null();
                return Ok(());
            }
            Data::Serialized(blob) => return self.spliced(blob),
            Data::Logical(x) => (LGLSXP, x.len()),
            Data::Integer(x) => (INTSXP, x.len()),
            Data::Double(x) => (REALSXP, x.len()),
            Data::Complex(x) => (CPLXSXP, x.len()),
            Data::Raw(x) => (RAWSXP, x.len()),
            Data::Character(x) => (STRSXP, x.len()),
            Data::List(x) => (VECSXP, x.len()),
        };
        self.flags(Flags {
            object: v.attrs.get("class").is_some(),
            attr: !v.attrs.is_empty(),
            ..Flags::plain(ty)
        });
        self.length(len);
        match &v.data {
            Data::Logical(x) | Data::Integer(x) => {
                self.out.reserve(x.len() * 4);
                x.iter().for_each(|i| self.int(*i));
            }
            Data::Double(x) => {
                self.out.reserve(x.len() * 8);
                for d in x {
                    self.out.extend_from_slice(&d.to_le_bytes());
                }
            }
            Data::Complex(x) => {
                self.out.reserve(x.len() * 16);
                for [re, im] in x {
                    self.out.extend_from_slice(&re.to_le_bytes());
                    self.out.extend_from_slice(&im.to_le_bytes());
                }
            }
            Data::Raw(x) => self.out.extend_from_slice(x),
            Data::Character(x) => {
                for s in x {
                    self.charsxp(s)?;
                }
            }
            Data::List(x) => {
                for item in x {
                    self.element(item)?;
                }
            }
            Data::Null | Data::Serialized(_) => unreachable!("handled above"),
        }
        if !v.attrs.is_empty() {
            self.attribute_pairlist(&v.attrs)?;
        }
        Ok(())
    }

    /// A nested opaque blob: re-encoded through the decoder, so its symbols join our table.
    fn spliced(&mut self, blob: &[u8]) -> Result<(), RserError> {
        let limits = Limits::default();
        let (item, mut budget) = Reader::new(blob, &limits)?.read_blob()?;
        self.value(&item.into_value(&mut budget)?)
    }

    /// The attribute pairlist: one tagged cell per attribute, then `NULL`.
    pub(super) fn attribute_pairlist(&mut self, attrs: &Attributes) -> Result<(), RserError> {
        for (name, value) in &attrs.0 {
            self.flags(Flags {
                tag: true,
                ..Flags::plain(LISTSXP)
            });
            self.symbol(name)?;
            self.element(value)?;
        }
        self.null();
        Ok(())
    }

    /// `start:(start + len - 1)` as R's ALTREP `compact_intseq` (what `attributes()` gives for
    /// expanded `row.names` of two or more rows).
    pub(super) fn compact_intseq(&mut self, len: usize, start: i32) -> Result<(), RserError> {
        self.flags(Flags::plain(ALTREP_SXP));
        // Class info: pairlist(class symbol, package symbol, base type).
        self.flags(Flags::plain(LISTSXP));
        self.symbol("compact_intseq")?;
        self.flags(Flags::plain(LISTSXP));
        self.symbol("base")?;
        self.flags(Flags::plain(LISTSXP));
        self.value(&Value::integer([i32::from(INTSXP)]))?;
        self.null();
        // State: c(length, first, step) as doubles.
        self.value(&Value::double([len as f64, f64::from(start), 1.0]))?;
        // Attributes: none.
        self.null();
        Ok(())
    }
}

/// R's CHARSXP level bits for a string: its encoding mark, plus ASCII when every byte is.
fn char_levels(s: &RString) -> u32 {
    let Some(bytes) = &s.bytes else {
        return 0;
    };
    let mark = match s.encoding {
        Encoding::Native => 0,
        Encoding::Utf8 => UTF8_MASK,
        Encoding::Latin1 => LATIN1_MASK,
        Encoding::Bytes => BYTES_MASK,
    };
    if bytes.is_ascii() {
        mark | ASCII_MASK
    } else {
        mark
    }
}
