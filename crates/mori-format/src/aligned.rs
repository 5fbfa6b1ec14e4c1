//! An owned byte buffer that starts on an 8-byte boundary.
//!
//! The reader hands out `&[f64]` and `&[[f64; 2]]` straight from region bytes, which needs the
//! region to start 8-byte aligned. Shared-memory mappings always are; a `Vec<u8>` is not
//! guaranteed to be. This buffer is for regions held in ordinary memory: files read from disk,
//! fixtures, or a write done outside a mapping.

use std::ops::{Deref, DerefMut};

/// A zero-initialised, 8-byte-aligned byte buffer of a fixed length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    ///
    /// ```
    /// use mori_format::AlignedBuf;
    /// let b = AlignedBuf::zeroed(13);
    /// assert_eq!(b.len(), 13);
    /// assert_eq!(b.as_ptr() as usize % 8, 0);
    /// ```
    pub fn zeroed(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// An aligned copy of `bytes`.
    ///
    /// ```
    /// use mori_format::AlignedBuf;
    /// assert_eq!(&AlignedBuf::from_bytes(b"abc")[..], b"abc");
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.copy_from_slice(bytes);
        b
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish()
    }
}
