//! Constants of the region layout shared by the writer and the reader.
//!
//! One place names every magic, header size, SEXPTYPE code and element width of the MORH, MORS
//! and MORL layouts, so the writer and the reader cannot drift apart.

/// Magic of an atomic vector region: ASCII "MORH" read big-endian.
pub const MAGIC_MORH: u32 = 0x4D4F_5248;
/// Magic of a character vector region: ASCII "MORS" read big-endian.
pub const MAGIC_MORS: u32 = 0x4D4F_5253;
/// Magic of a list region (root or nested): ASCII "MORL" read big-endian.
pub const MAGIC_MORL: u32 = 0x4D4F_524C;

/// Size of the MORH header; the data follows at this offset.
pub const MORH_HEADER: usize = 64;
/// Size of the MORS header; the offset table follows at this offset.
pub const MORS_HEADER: usize = 24;
/// Size of the MORL header; the element directory follows at this offset.
pub const MORL_HEADER: usize = 24;
/// Size of one MORS offset-table entry.
pub const STRING_ENTRY: usize = 16;
/// Size of one MORL directory entry.
pub const DIR_ENTRY: usize = 32;
/// Alignment of every payload inside a MORL, relative to its base.
pub const ALIGN: usize = 64;

/// The deepest list nesting the writer produces and the reader accepts.
///
/// R's identifiers address at most 64 levels; the limit leaves room above that while keeping
/// the recursion of both sides bounded.
pub const MAX_DEPTH: usize = 128;

/// `align64(x) = (x + 63) & !63`, or `None` if that overflows.
///
/// ```
/// use mori_format::layout::align64;
/// assert_eq!(align64(0), Some(0));
/// assert_eq!(align64(88), Some(128));
/// assert_eq!(align64(usize::MAX), None);
/// ```
pub const fn align64(x: usize) -> Option<usize> {
    match x.checked_add(ALIGN - 1) {
        Some(v) => Some(v & !(ALIGN - 1)),
        None => None,
    }
}

/// The R vector types a region stores, with their SEXPTYPE codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum SexpType {
    /// A fallback element: an R `serialize()` blob (code 0).
    Serialized = 0,
    /// `LGLSXP`, 4-byte logicals.
    Logical = 10,
    /// `INTSXP`, 4-byte integers.
    Integer = 13,
    /// `REALSXP`, 8-byte doubles.
    Double = 14,
    /// `CPLXSXP`, 16-byte complex numbers.
    Complex = 15,
    /// `STRSXP`, stored in the MORS layout.
    Character = 16,
    /// `VECSXP`, stored in the MORL layout.
    List = 19,
    /// `RAWSXP`, bytes.
    Raw = 24,
}

impl SexpType {
    /// The type of a stored code, or `None` for codes a region never holds.
    ///
    /// ```
    /// use mori_format::layout::SexpType;
    /// assert_eq!(SexpType::from_code(14), Some(SexpType::Double));
    /// assert_eq!(SexpType::from_code(3), None);
    /// ```
    pub const fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Serialized,
            10 => Self::Logical,
            13 => Self::Integer,
            14 => Self::Double,
            15 => Self::Complex,
            16 => Self::Character,
            19 => Self::List,
            24 => Self::Raw,
            _ => return None,
        })
    }

    /// The stored code.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The name R's `typeof()` gives the type (`"serialized"` for a fallback element, which R
    /// stores as the serialized bytes of any other object), for messages.
    ///
    /// ```
    /// use mori_format::layout::SexpType;
    /// assert_eq!(SexpType::Double.r_name(), "double");
    /// assert_eq!(SexpType::Character.r_name(), "character");
    /// ```
    pub const fn r_name(self) -> &'static str {
        match self {
            Self::Serialized => "serialized",
            Self::Logical => "logical",
            Self::Integer => "integer",
            Self::Double => "double",
            Self::Complex => "complex",
            Self::Character => "character",
            Self::List => "list",
            Self::Raw => "raw",
        }
    }

    /// Bytes per element of an atomic type; `None` for character, list and fallback.
    ///
    /// ```
    /// use mori_format::layout::SexpType;
    /// assert_eq!(SexpType::Complex.width(), Some(16));
    /// assert_eq!(SexpType::List.width(), None);
    /// ```
    pub const fn width(self) -> Option<usize> {
        match self {
            Self::Logical | Self::Integer => Some(4),
            Self::Double => Some(8),
            Self::Complex => Some(16),
            Self::Raw => Some(1),
            Self::Serialized | Self::Character | Self::List => None,
        }
    }
}
