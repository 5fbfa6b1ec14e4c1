//! R's serialization vocabulary: SEXPTYPE codes, pseudo-types and the packed flags word.
//!
//! Every item in a stream starts with one `i32` flags word; this module is the single place that
//! knows how its bits are laid out, so reader and writer cannot disagree.

/// `NILSXP`: R never writes it (NULL is [`NILVALUE_SXP`]) but a reader may meet it.
pub(super) const NILSXP: u8 = 0;
/// `SYMSXP`: a symbol, followed by its print name (a CHARSXP).
pub(super) const SYMSXP: u8 = 1;
/// `LISTSXP`: a pairlist cell (attributes, tag, car, then the cdr).
pub(super) const LISTSXP: u8 = 2;
/// `CHARSXP`: one string; only inside a STRSXP or a symbol.
pub(super) const CHARSXP: u8 = 9;
/// `LGLSXP`: logical vector (4-byte ints).
pub(super) const LGLSXP: u8 = 10;
/// `INTSXP`: integer vector.
pub(super) const INTSXP: u8 = 13;
/// `REALSXP`: double vector.
pub(super) const REALSXP: u8 = 14;
/// `CPLXSXP`: complex vector (pairs of doubles).
pub(super) const CPLXSXP: u8 = 15;
/// `STRSXP`: character vector, one CHARSXP per element.
pub(super) const STRSXP: u8 = 16;
/// `VECSXP`: generic vector (list).
pub(super) const VECSXP: u8 = 19;
/// `RAWSXP`: raw bytes.
pub(super) const RAWSXP: u8 = 24;
/// `ALTREP_SXP`: an ALTREP object written as (class info, state, attributes).
pub(super) const ALTREP_SXP: u8 = 238;
/// `NILVALUE_SXP`: R's `NULL`, and the end of every pairlist.
pub(super) const NILVALUE_SXP: u8 = 254;
/// `REFSXP`: a back-reference to an earlier entry of the reference table.
pub(super) const REFSXP: u8 = 255;

/// CHARSXP level bit: raw bytes.
pub(super) const BYTES_MASK: u32 = 1 << 1;
/// CHARSXP level bit: Latin-1.
pub(super) const LATIN1_MASK: u32 = 1 << 2;
/// CHARSXP level bit: UTF-8.
pub(super) const UTF8_MASK: u32 = 1 << 3;
/// CHARSXP level bit: pure ASCII.
pub(super) const ASCII_MASK: u32 = 1 << 6;

/// The largest reference index that fits in the flags word; larger ones follow as an `i32`.
pub(super) const MAX_PACKED_INDEX: usize = (i32::MAX >> 8) as usize;

/// R's `R_Version(3, 5, 0)`: the oldest R that reads version 3 streams.
pub(super) const MIN_READER_VERSION: i32 = 0x0003_0500;

/// The unpacked flags word of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flags {
    /// The SEXPTYPE or pseudo-type (low 8 bits).
    pub(super) ty: u8,
    /// The `LEVELS` bits (bits 12..); for CHARSXP the encoding marks.
    pub(super) levels: u32,
    /// The object bit (a `class` attribute is set).
    pub(super) object: bool,
    /// Attributes follow.
    pub(super) attr: bool,
    /// A tag follows (pairlist cells).
    pub(super) tag: bool,
}

impl Flags {
    /// Flags for `ty` with no levels and no bits set.
    pub(super) const fn plain(ty: u8) -> Self {
        Self {
            ty,
            levels: 0,
            object: false,
            attr: false,
            tag: false,
        }
    }

    /// Split a flags word as R's `UnpackFlags` does.
    pub(super) fn unpack(word: i32) -> Self {
        let w = word as u32;
        Self {
            ty: (w & 0xFF) as u8,
            levels: w >> 12,
            object: w & (1 << 8) != 0,
            attr: w & (1 << 9) != 0,
            tag: w & (1 << 10) != 0,
        }
    }

    /// Build the flags word as R's `PackFlags` does.
    pub(super) fn pack(self) -> i32 {
        let w = u32::from(self.ty)
            | (self.levels << 12)
            | (u32::from(self.object) << 8)
            | (u32::from(self.attr) << 9)
            | (u32::from(self.tag) << 10);
        w as i32
    }

    /// The reference index packed into a REFSXP word (0: the index follows as an `i32`).
    pub(super) fn packed_ref_index(word: i32) -> usize {
        (word as u32 >> 8) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_the_word() {
        let f = Flags {
            ty: STRSXP,
            levels: UTF8_MASK | ASCII_MASK,
            object: true,
            attr: true,
            tag: true,
        };
        assert_eq!(Flags::unpack(f.pack()), f);
        // A tagged pairlist cell, as R writes attribute pairlists.
        let cell = Flags {
            tag: true,
            ..Flags::plain(LISTSXP)
        };
        assert_eq!(cell.pack(), 0x0402);
        // An ASCII CHARSXP.
        let ascii = Flags {
            levels: ASCII_MASK,
            ..Flags::plain(CHARSXP)
        };
        assert_eq!(ascii.pack(), 0x0004_0009);
        assert_eq!(Flags::packed_ref_index(0x01FF), 1);
    }
}
