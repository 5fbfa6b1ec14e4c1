//! Identifiers of shared values: a region name plus an optional path of list indices.
//!
//! This is the string R's `shared_name()` returns and `map_shared()` accepts, e.g.
//! `/mori_4d1b_1` for a root or `/mori_4d1b_1[2,1]` for an element of a nested list. It crosses
//! languages, so its indices are 1-based on the wire and 0-based in [`Identifier::path`]. The
//! grammar and every limit follow R's parser exactly, so a string one side accepts the other
//! accepts too:
//!
//! ```text
//! identifier := prefix [ "[" idx ( "," idx )* "]" ]
//! prefix     := "/mori_" hex+ "_" hex+        ("Local\mori_" on Windows), under 30 bytes
//! hex        := [0-9a-f]
//! idx        := [1-9][0-9]*                  at most 64 of them, each <= i32::MAX
//! ```
//!
//! The hex runs are read as numbers: leading zeros are accepted as R accepts them, and
//! [`Display`](std::fmt::Display) writes R's own form, without them.

use std::fmt;

/// The literal that starts every region name on this platform.
#[cfg(not(windows))]
pub const NAME_LITERAL: &str = "/mori_";
/// The literal that starts every region name on this platform.
#[cfg(windows)]
pub const NAME_LITERAL: &str = "Local\\mori_";

/// The longest identifier accepted, in bytes (R's buffer of 1024 includes the NUL).
pub const MAX_IDENTIFIER: usize = 1023;
/// The region-name prefix (literal, hex, `_`, hex) must be shorter than this.
pub const MAX_NAME: usize = 30;
/// The most path indices an identifier holds.
pub const MAX_PATH: usize = 64;

/// Why a string is not an identifier. R's `map_shared()` returns `NULL` for all of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Longer than [`MAX_IDENTIFIER`] bytes.
    #[error("identifier of {len} bytes exceeds {MAX_IDENTIFIER}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Does not start with this platform's [`NAME_LITERAL`].
    #[error("identifier does not start with {NAME_LITERAL:?}")]
    BadPrefix,
    /// A hex run is empty or holds something other than `[0-9a-f]`.
    #[error("bad hex digits in the region name")]
    BadHex,
    /// The `_` between the two hex runs is missing.
    #[error("missing '_' between pid and counter")]
    MissingSeparator,
    /// A hex run does not fit in 32 bits.
    #[error("region name number exceeds 32 bits")]
    HexOverflow,
    /// The region name is [`MAX_NAME`] bytes or longer.
    #[error("region name of {len} bytes is not shorter than {MAX_NAME}")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// Something other than `[` follows the region name.
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected {
        /// The byte.
        byte: u8,
        /// Its position.
        at: usize,
    },
    /// `[]`: a path needs at least one index.
    #[error("empty path")]
    EmptyPath,
    /// An index is missing (`[1,]`) or starts with `0` (`[0]`, `[01]`).
    #[error("bad path index at {at}")]
    BadIndex {
        /// Position of the index.
        at: usize,
    },
    /// An index is larger than `i32::MAX`.
    #[error("path index exceeds i32::MAX")]
    IndexOverflow,
    /// More than [`MAX_PATH`] indices.
    #[error("path of more than {MAX_PATH} indices")]
    PathTooLong,
    /// The closing `]` is missing.
    #[error("unterminated path")]
    Unterminated,
    /// Bytes follow the closing `]`.
    #[error("trailing bytes after ']'")]
    Trailing,
}

/// A region's OS name: `/mori_<pid hex>_<counter hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionName {
    /// The creating process's id.
    pub pid: u32,
    /// The creator's per-process region counter.
    pub counter: u32,
}

impl fmt::Display for RegionName {
    /// R's form: lowercase hex, no zero padding.
    ///
    /// ```
    /// use mori_format::path::RegionName;
    /// assert_eq!(RegionName { pid: 0x4d1b, counter: 1 }.to_string(), "/mori_4d1b_1");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME_LITERAL}{:x}_{:x}", self.pid, self.counter)
    }
}

/// A shared value's identifier: its region and the 0-based path of list indices inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// The region.
    pub region: RegionName,
    /// 0-based indices from the root list down; empty for the root itself.
    pub path: Vec<u32>,
}

impl Identifier {
    /// Parse R's form.
    ///
    /// ```
    /// use mori_format::path::{Identifier, PathError};
    /// let id = Identifier::parse("/mori_4d1b_1[2,1]")?;
    /// assert_eq!((id.region.pid, id.region.counter), (0x4d1b, 1));
    /// assert_eq!(id.path, vec![1, 0]);
    /// assert_eq!(id.to_string(), "/mori_4d1b_1[2,1]");
    /// assert_eq!(Identifier::parse("/mori_4d1b_1[0]"), Err(PathError::BadIndex { at: 13 }));
    /// # Ok::<(), PathError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let b = s.as_bytes();
        if b.len() > MAX_IDENTIFIER {
            return Err(PathError::TooLong { len: b.len() });
        }
        let rest = b
            .strip_prefix(NAME_LITERAL.as_bytes())
            .ok_or(PathError::BadPrefix)?;
        let mut at = NAME_LITERAL.len();
        let (pid, used) = hex_run(rest)?;
        at += used;
        if b.get(at) != Some(&b'_') {
            return Err(PathError::MissingSeparator);
        }
        at += 1;
        let (counter, used) = hex_run(&b[at..])?;
        at += used;
        if at >= MAX_NAME {
            return Err(PathError::NameTooLong { len: at });
        }
        let (pid, counter) = (
            pid.ok_or(PathError::HexOverflow)?,
            counter.ok_or(PathError::HexOverflow)?,
        );
        let region = RegionName { pid, counter };
        let mut path = Vec::new();
        match b.get(at) {
            None => return Ok(Self { region, path }),
            Some(b'[') => at += 1,
            Some(&byte) => return Err(PathError::Unexpected { byte, at }),
        }
        if b.get(at) == Some(&b']') {
            return Err(PathError::EmptyPath);
        }
        loop {
            let start = at;
            if !matches!(b.get(at), Some(b'1'..=b'9')) {
                return Err(PathError::BadIndex { at });
            }
            let mut value: u64 = 0;
            while let Some(&d @ b'0'..=b'9') = b.get(at) {
                value = value * 10 + u64::from(d - b'0');
                if value > i32::MAX as u64 {
                    return Err(PathError::IndexOverflow);
                }
                at += 1;
            }
            debug_assert!(at > start);
            if path.len() == MAX_PATH {
                return Err(PathError::PathTooLong);
            }
            path.push(value as u32 - 1);
            match b.get(at) {
                Some(b',') => at += 1,
                Some(b']') => {
                    at += 1;
                    break;
                }
                None => return Err(PathError::Unterminated),
                Some(&byte) => return Err(PathError::Unexpected { byte, at }),
            }
        }
        if at != b.len() {
            return Err(PathError::Trailing);
        }
        Ok(Self { region, path })
    }

    /// The identifier of the root of `region`.
    pub fn root(region: RegionName) -> Self {
        Self {
            region,
            path: Vec::new(),
        }
    }

    /// The identifier of element `index` (0-based) of the list this identifier names, or
    /// `None` if that would exceed R's limits (64 indices, each at most `i32::MAX` 1-based).
    ///
    /// ```
    /// use mori_format::path::{Identifier, RegionName};
    /// let root = Identifier::root(RegionName { pid: 0x10, counter: 0xa });
    /// assert_eq!(root.child(1).unwrap().to_string(), "/mori_10_a[2]");
    /// ```
    pub fn child(&self, index: u32) -> Option<Self> {
        if self.path.len() >= MAX_PATH || index >= i32::MAX as u32 {
            return None;
        }
        let mut path = self.path.clone();
        path.push(index);
        Some(Self {
            region: self.region,
            path,
        })
    }
}

impl std::str::FromStr for Identifier {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, PathError> {
        Self::parse(s)
    }
}

impl fmt::Display for Identifier {
    /// R's form, indices 1-based.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.region)?;
        for (i, idx) in self.path.iter().enumerate() {
            let sep = if i == 0 { '[' } else { ',' };
            write!(f, "{sep}{}", u64::from(*idx) + 1)?;
        }
        if !self.path.is_empty() {
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// Read `[0-9a-f]+` at the start of `b`: its value (`None` past 32 bits) and its length.
/// Uppercase hex is R's most likely typo, so it is reported as bad hex.
fn hex_run(b: &[u8]) -> Result<(Option<u32>, usize), PathError> {
    let len = b
        .iter()
        .take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        .count();
    if len == 0 || matches!(b.get(len), Some(b'A'..=b'F')) {
        return Err(PathError::BadHex);
    }
    let mut value: Option<u32> = Some(0);
    for &c in &b[..len] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        };
        value = value
            .and_then(|v| v.checked_mul(16))
            .and_then(|v| v.checked_add(u32::from(d)));
    }
    Ok((value, len))
}
