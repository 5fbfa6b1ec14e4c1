//! Memory mappings of region files, and views anchored in them: the crate's only `unsafe` code.
//!
//! Two things need it. Mapping a file (below), and [`Anchored`]: a zero-copy view of a region
//! stored next to the `Arc` that keeps the mapping alive, so that views of elements can be passed
//! around and outlive the handle they came from, as R's views keep their mapping alive.
//! (A third, [`map_probe`], reads the first bytes of a raw mapping for the benches' probe of
//! the bare system calls of an attach.)
//!
//! `memmap2` marks mapping a file `unsafe` because another process may change or truncate the
//! file while it is mapped, which would make the Rust references into it lie (changed bytes) or
//! fault (`SIGBUS` on pages past a truncated end). Regions keep that from happening by protocol:
//!
//! - A region is write-once. Its creator writes the whole value into its own mapping before the
//!   name is returned, so no other process can know the name while it is being written.
//! - Files are created with mode `0600`, so only processes of the same user can open them.
//! - Attaching maps only such files: `file::open_trusted` opens with `O_NOFOLLOW` and checks
//!   on the opened descriptor that the file is regular, owned by our effective uid and has no
//!   permission bits for group or others. A file another user planted under a region's name
//!   (which that user could truncate or rewrite under our references) is refused before it
//!   is mapped.
//! - Every page of a new region is allocated (by `pwrite` or `fallocate`, see
//!   `region::Filling`) before anything is stored through its mapping, so a full `/dev/shm` is
//!   an error at creation, never a `SIGBUS` on a later store.
//! - Consumers open the file read-only and map it read-only; nothing in this crate ever writes a
//!   region after it has been shared, and nothing truncates one.
//!
//! The residual risk is a hostile or buggy process of the same user that writes to or truncates
//! a region file behind our back (`truncate /dev/shm/mori_...`). Writes can only change the
//! values seen (every view is re-validated against the bytes it reads, so no out-of-bounds read
//! follows); a truncation makes later reads of the lost pages fault with `SIGBUS`. That is the
//! same trust model as R's mori and every POSIX shared-memory library: same-uid processes are
//! trusted.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io;
use std::sync::Arc;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions, MmapRaw};

use super::file::TrustedFile;
use mori_format::View;

/// Regions at least this large ask for transparent huge pages, as R's mori does.
const HUGE_PAGE_THRESHOLD: usize = 2 << 20;

/// Map a freshly created and sized region file read-write, lazily: the creator
/// [`populate`]s the ranges it stores to in bulk and writes large data through the file
/// instead (see `region::Filling`).
///
/// The file must be the creator's own new file, already `len` bytes long; the creator allocates
/// its pages before storing through the mapping.
pub(crate) fn map_new_region(file: &File, len: usize) -> io::Result<MmapMut> {
    // SAFETY: `file` was just created by this process with O_EXCL and mode 0600 and its name
    // has not been handed out yet, so no other process writes or truncates it while mapped
    // except a same-user process guessing the name (the documented residual risk above). Its
    // length is exactly `len`, so every byte of the mapping is inside the file, and the creator
    // allocates every page before storing to it (`region::Filling`), so no store faults.
    let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
    if len >= HUGE_PAGE_THRESHOLD {
        // Only a hint; tmpfs may be mounted without huge pages.
        let _ = map.advise(Advice::HugePage);
    }
    Ok(map)
}

/// Pre-fault the page tables of `range` of a new region's writable mapping (after its
/// huge-page advice, as `MAP_POPULATE` would, but without fixing the page size first), so
/// stores to it do not fault one page at a time. Kernels before 5.14 lack
/// `MADV_POPULATE_WRITE`; stores then fault lazily.
pub(crate) fn populate(map: &MmapMut, range: std::ops::Range<usize>) {
    let end = range.end.min(map.len());
    if range.start < end {
        // memmap2 aligns the start down to a page boundary and keeps the end.
        let _ = map.advise_range(Advice::PopulateWrite, range.start, end - range.start);
    }
}

/// Map an existing region file read-only and lazily: one `mmap`, no pre-faulting and no advice,
/// so attaching does the same work for any size and only the pages a consumer reads are
/// faulted in.
///
/// No `MADV_HUGEPAGE` here (the creator gives it, as R's mori does): a region's pages already
/// exist when it is attached, and whether they are huge pages was settled when they were
/// allocated. The kernel maps huge pages that exist into any suitably aligned mapping without
/// the advice, so for a consumer it would only cost a system call (1.5 µs in a fresh process,
/// the most expensive single step of an attach after `open`).
fn map_existing_region(file: &TrustedFile, len: usize) -> io::Result<Mmap> {
    // SAFETY: regions are write-once: their creator finished writing before the name escaped,
    // and no one truncates them (the residual same-user risk is documented above). A
    // `TrustedFile` is a regular file of our own uid with no access for other users, so no
    // other user can write or truncate it. It was opened read-only and the mapping is
    // read-only, so this process cannot change it either. `len` is the file's size from fstat,
    // so the whole mapping is backed by the file.
    let map = unsafe { MmapOptions::new().len(len).map(file.file())? };
    Ok(map)
}

/// A read-only mapping of a whole region, shared (through `Arc`) by every view into it.
///
/// Invariant relied on by [`Anchored`]: the `Mmap` is set once at construction and never
/// replaced, remapped or written, so its bytes stay at the same address, unchanged, until the
/// `Mapping` is dropped.
pub(crate) struct Mapping {
    /// The region name, `/mori_<pid>_<counter>`.
    name: String,
    map: Mmap,
}

impl Mapping {
    /// Seal a region its creator has finished writing: from now on it is read-only.
    pub(crate) fn seal(name: String, written: MmapMut) -> io::Result<Self> {
        Ok(Self {
            name,
            map: written.make_read_only()?,
        })
    }

    /// Map the existing region file `file` of `len` bytes (its size from fstat).
    pub(crate) fn open(name: String, file: &TrustedFile, len: usize) -> io::Result<Self> {
        Ok(Self {
            name,
            map: map_existing_region(file, len)?,
        })
    }

    /// The region name, `/mori_<pid>_<counter>`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The region's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("name", &self.name)
            .field("len", &self.map.len())
            .finish()
    }
}

/// A view into a mapping, kept together with the mapping it borrows from.
///
/// The view is stored with a `'static` lifetime that is a lie told only inside this type: it is
/// never handed out as `'static`, only shortened to the lifetime of `&self` (views are covariant),
/// and the `Arc` stored beside it keeps the bytes it points to alive and unchanged (see
/// [`Mapping`]'s invariant) for at least as long as `self`. Views are made only by closures that
/// are generic over the lifetime (`for<'a>`), so they can only derive the view from the bytes
/// (or the view) they are given, never smuggle in or out a borrow of anything else.
#[derive(Clone)]
pub(crate) struct Anchored {
    view: View<'static>,
    mapping: Arc<Mapping>,
}

impl Anchored {
    /// Make a view of `mapping`'s bytes with `make`.
    pub(crate) fn new<E>(
        mapping: Arc<Mapping>,
        make: impl for<'a> FnOnce(&'a [u8]) -> Result<View<'a>, E>,
    ) -> Result<Self, E> {
        let bytes = mapping.bytes();
        // SAFETY: the slice covers exactly the mapping's bytes, which stay valid and unchanged
        // for as long as the `Arc<Mapping>` stored in `Self` beside the view (the `Mapping`
        // invariant). The extended lifetime never escapes: `make` is generic over it, and
        // `view()` returns the view shortened to the borrow of `self`.
        let forever: &'static [u8] =
            unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        let view = make(forever)?;
        Ok(Self { view, mapping })
    }

    /// Derive another view of the same mapping from this one (an element, a sub-list).
    pub(crate) fn project<E>(
        &self,
        f: impl for<'a> FnOnce(View<'a>) -> Result<View<'a>, E>,
    ) -> Result<Self, E> {
        Ok(Self {
            view: f(self.view)?,
            mapping: Arc::clone(&self.mapping),
        })
    }

    /// The view, borrowed for as long as `self` lives.
    pub(crate) fn view(&self) -> View<'_> {
        self.view
    }

    /// The mapping the view borrows from.
    pub(crate) fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }
}

impl fmt::Debug for Anchored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anchored")
            .field("region", &self.mapping.name)
            .field("sexptype", &self.view.sexptype())
            .field("len", &self.view.len())
            .finish()
    }
}

/// The kernel's part of an attach alone, for the benches' probe (`crate::probes`): a read-only
/// shared mapping of a whole file, made without any check, of which only the first 8 bytes are
/// ever read, once, by [`map_probe`]. It holds only a raw mapping ([`MmapRaw`]): no Rust
/// reference into the file is ever made, so another process changing the file is no concern.
#[derive(Debug)]
pub(crate) struct ProbeMap {
    map: MmapRaw,
    first: u64,
}

impl ProbeMap {
    /// The first 8 bytes of the file (for a region, its magic and type code), as read when it
    /// was mapped.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// `mmap` all `len` bytes of `file` read-only and shared, then read its first 8 bytes through
/// the mapping (the first touch of the first page): what any attach asks of the kernel after
/// `open` and `fstat`, and nothing more. `len` is the file's size from `fstat`.
pub(crate) fn map_probe(file: &File, len: usize) -> io::Result<ProbeMap> {
    if len < 8 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a probe maps at least 8 bytes",
        ));
    }
    let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
    let ptr = map.as_ptr().cast::<u64>();
    // SAFETY: `ptr` is the start of a live read-only mapping of at least 8 bytes of the file
    // (`len` is its size), page-aligned and so aligned for u64. The read goes through the raw
    // pointer, with no reference made, so a concurrent change by another process is not
    // undefined behaviour; only a truncation to under 8 bytes could fault it (`SIGBUS`), the
    // residual risk documented above. Volatile, so this first touch of the page happens.
    let first = unsafe { ptr.read_volatile() };
    Ok(ProbeMap { map, first })
}

#[cfg(test)]
mod tests {
    use crate::region;

    /// The `VmFlags` of the mapping of this process that holds address `at`.
    fn vm_flags(at: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&at);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_owned).collect();
            }
        }
        panic!("no mapping holds {at:#x}");
    }

    #[test]
    fn only_the_creator_advises_huge_pages_a_consumer_maps_with_no_advice() {
        let (created, _owner) = region::create(4 << 20, |r| r.allocate_rest()).unwrap();
        let attached = region::attach(created.name()).unwrap();
        let hg = |bytes: &[u8]| vm_flags(bytes.as_ptr() as usize).contains(&"hg".to_owned());
        assert!(hg(created.bytes()), "the creator asks for huge pages");
        assert!(!hg(attached.bytes()), "an attach gives no advice");
        let bare = crate::probes::bare_attach(created.name()).unwrap();
        assert_eq!(bare.len(), attached.bytes().len(), "the probe maps it all");
    }
}
