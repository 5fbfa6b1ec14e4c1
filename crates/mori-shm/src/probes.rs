//! Probes for benchmarks: the bare system calls behind an operation of this crate, for a bench
//! to time beside the operation in the same run, so that what the kernel costs and what this
//! crate adds can be told apart. Not part of the API (hidden from the docs).

use std::fs::File;
use std::io;

use crate::sys::{file, map};

/// A region mapped by [`bare_attach`]; unmapped when dropped.
#[derive(Debug)]
pub struct BareAttach(map::ProbeMap);

impl BareAttach {
    /// The first 8 bytes of the region (its magic and type code), read through the mapping.
    pub fn first(&self) -> u64 {
        self.0.first()
    }

    /// Bytes mapped: the whole file.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a probe maps at least 8 bytes.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// The system calls any attach of region `name` (`/mori_...`) needs, and nothing else: `open`
/// its file read-only, `fstat` it, `mmap` all of it read-only and shared, and read its first 8
/// bytes through the mapping (the first touch of the header page). None of this crate's checks
/// (owner, mode), parsing or validation, no allocation beyond the path.
///
/// ```
/// let shared = mori_shm::share_f64(&[1.0; 1000])?;
/// let bare = mori_shm::probes::bare_attach(shared.name())?;
/// let file_len = std::fs::metadata(format!("/dev/shm{}", shared.name()))?.len();
/// assert_eq!(bare.len() as u64, file_len);
/// assert_eq!(bare.first() as u32, 0x4D4F_5248, "the vector header's magic");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bare_attach(name: &str) -> io::Result<BareAttach> {
    let f = File::open(format!("{}{name}", file::SHM_DIR))?;
    let st = rustix::fs::fstat(&f)?;
    let len = usize::try_from(st.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "no size"))?;
    map::map_probe(&f, len).map(BareAttach)
}
