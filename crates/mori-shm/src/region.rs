//! Regions as mapped bytes: create one (write-once, then read-only), attach to one by name.
//!
//! This layer knows nothing of the value format: creation takes a closure that fills the
//! mapping, attaching returns the mapped bytes. The handles above it add the format.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;
use crate::name;
use crate::owner;
use crate::sys::map::{self, Mapping};
use crate::sys::{file, proc};

/// Ownership of a region's name: unlinks the file when dropped, unless the name was handed
/// over to another process. Mappings stay valid; new attaches fail with `NotFound`.
pub(crate) struct NameOwner {
    path: PathBuf,
    /// Set once the name was handed to another process, which unlinks it instead.
    handed_over: AtomicBool,
}

impl NameOwner {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            handed_over: AtomicBool::new(false),
        }
    }

    /// Give the name away: dropping this no longer unlinks it. Until the receiver takes the
    /// region over (and writes itself into the owner record), the record names this process's
    /// parent, so that this process may exit first: a task's result waits in its host, the
    /// pool's daemons are the host's children, and a daemon that retires before its result is
    /// taken leaves the region to its host, not to the next prune. A region whose parent and
    /// receiver both die is an orphan, as before.
    pub(crate) fn hand_over(&self) {
        if self.handed_over.swap(true, Ordering::Relaxed) {
            return;
        }
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
        let Ok(start) = proc::start_time(parent) else {
            return;
        };
        if let Ok(f) = file::open_trusted(&self.path) {
            let record = owner::encode_handed_record(start, parent);
            let _ = file::set_owner_record(f.file(), &record);
        }
    }
}

impl Drop for NameOwner {
    fn drop(&mut self) {
        if self.handed_over.load(Ordering::Relaxed) {
            return;
        }
        // Someone may have pruned it already; nothing useful to do about other failures in drop.
        let _ = file::unlink(&self.path);
    }
}

impl fmt::Debug for NameOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameOwner")
            .field("path", &self.path)
            .finish()
    }
}

/// Take ownership of the file at `path`: it is unlinked when the guard drops.
#[cfg(test)]
pub(crate) fn name_owner(path: PathBuf) -> NameOwner {
    NameOwner::new(path)
}

/// The region name (`/mori_...`) of a region file name (`mori_...`).
fn region_name(file_name: &str) -> String {
    format!("/{file_name}")
}

/// A new region while its creator writes it. There are two ways in, each the cheaper one for
/// some bytes, and between them every page of the region is allocated before the creator stores
/// to it through the mapping or hands out its name, so a full `/dev/shm` is
/// [`Error::OutOfSpace`], never a `SIGBUS`.
///
/// - [`write_at`](Self::write_at) is a positioned write into the file: the kernel allocates the
///   pages and copies the caller's bytes straight into them, with no page fault and no
///   page-table entry. For large vector data this is the fast way: faulting in and populating a
///   fresh shared mapping costs more per page than the copy itself (`docs/benchmarks.md`). A
///   full file system makes the write fail with `ENOSPC`.
/// - [`bytes_mut`](Self::bytes_mut) is the read-write mapping, for headers, tables and small
///   pieces written in place by the format writer. Its first call allocates (`fallocate`)
///   every page no positioned write has filled yet. It is mapped lazily: a range about to be
///   stored to in bulk should be [`populate`](Self::populate)d first, which batches its page
///   faults.
///
/// Both reach the same page cache, so bytes written either way are what every later mapping
/// of the file sees.
pub(crate) struct Filling<'a> {
    file: &'a File,
    map: &'a mut memmap2::MmapMut,
    name: &'a str,
    /// Byte ranges filled by `write_at`, whose pages exist.
    written: Vec<Range<usize>>,
    /// Every page of the region exists.
    allocated: bool,
}

impl Filling<'_> {
    /// Copy `bytes` into the region at `offset` with `pwrite`: the one copy of those bytes.
    pub(crate) fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let end = offset
            .checked_add(bytes.len())
            .filter(|&end| end <= self.map.len())
            .ok_or_else(|| Error::Io {
                name: self.name.to_owned(),
                op: "write",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "write past the end of the region",
                ),
            })?;
        self.file
            .write_all_at(bytes, offset as u64)
            .map_err(|source| {
                if file::is_no_space(&source) {
                    out_of_space(self.name, self.map.len())
                } else {
                    Error::Io {
                        name: self.name.to_owned(),
                        op: "write",
                        source,
                    }
                }
            })?;
        self.written.push(offset..end);
        Ok(())
    }

    /// Pre-fault the mapping's page tables over `range` (clamped to the region), so that
    /// stores to it do not fault page by page. Only a hint: kernels before 5.14 ignore it.
    /// Call it after [`allocate_rest`](Self::allocate_rest): it must not be what allocates.
    pub(crate) fn populate(&self, range: Range<usize>) {
        map::populate(self.map, range);
    }

    /// The region's bytes, through the writable mapping, every page allocated.
    pub(crate) fn bytes_mut(&mut self) -> Result<&mut [u8], Error> {
        self.allocate_rest()?;
        Ok(self.map)
    }

    /// Allocate the pages of every byte range no positioned write has filled (done by the
    /// first [`bytes_mut`](Self::bytes_mut) and before the region is sealed, if not before).
    pub(crate) fn allocate_rest(&mut self) -> Result<(), Error> {
        if self.allocated {
            return Ok(());
        }
        self.written.sort_by_key(|r| r.start);
        let mut at = 0;
        let mut gaps = Vec::new();
        for r in &self.written {
            if r.start > at {
                gaps.push(at..r.start);
            }
            at = at.max(r.end);
        }
        if self.map.len() > at {
            gaps.push(at..self.map.len());
        }
        for gap in gaps {
            // Pages only partly in a gap already exist (the write that filled the rest made
            // them); fallocate skips them.
            file::allocate(self.file, gap.start as u64, gap.len() as u64).map_err(|e| match e {
                file::ReserveError::NoSpace => out_of_space(self.name, self.map.len()),
                file::ReserveError::Io(source) => Error::Io {
                    name: self.name.to_owned(),
                    op: "reserve",
                    source,
                },
            })?;
        }
        self.allocated = true;
        Ok(())
    }
}

/// The error for a region of `len` bytes that `/dev/shm` cannot hold, with its free space now.
fn out_of_space(name: &str, len: usize) -> Error {
    Error::OutOfSpace {
        name: name.to_owned(),
        asked: len as u64,
        free: file::free_space(std::path::Path::new(file::SHM_DIR)).unwrap_or(0),
    }
}

/// How many fresh random names [`create`] tries before giving up with [`Error::NameInUse`].
/// Each name is 32 random bits, so only a `/dev/shm` flooded with names of this pid makes a
/// second try necessary; the bound keeps a flood from spinning us forever.
pub(crate) const CREATE_ATTEMPTS: usize = 16;

/// Create a new region of exactly `len` bytes under a fresh random name, let `fill` write all
/// of it, and seal it read-only. On any failure the file is unlinked before returning.
pub(crate) fn create(
    len: usize,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<(), Error>,
) -> Result<(Arc<Mapping>, NameOwner), Error> {
    create_trying(
        || {
            name::next_file_name().map_err(|source| Error::Io {
                name: format!("/{}", name::FILE_PREFIX),
                op: "name",
                source,
            })
        },
        len,
        fill,
    )
}

/// [`create`] with the names (`mori_<pid>_<counter>`) drawn from `next_name`: a name that
/// exists already (another region's, an orphan's, or a file someone put there first) is never
/// opened, truncated or unlinked; the next name is tried instead, [`CREATE_ATTEMPTS`] in all.
pub(crate) fn create_trying(
    mut next_name: impl FnMut() -> Result<String, Error>,
    len: usize,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<(), Error>,
) -> Result<(Arc<Mapping>, NameOwner), Error> {
    let mut last = None;
    for _ in 0..CREATE_ATTEMPTS {
        let file_name = next_name()?;
        match open_new(&file_name)? {
            Some(f) => return fill_new(&file_name, f, len, fill),
            None => last = Some(file_name),
        }
    }
    Err(Error::NameInUse {
        name: region_name(&last.unwrap_or_default()),
    })
}

/// [`create`] under a given file name (`mori_<pid>_<counter>`), with no retry.
#[cfg(test)]
pub(crate) fn create_named(
    file_name: &str,
    len: usize,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<(), Error>,
) -> Result<(Arc<Mapping>, NameOwner), Error> {
    match open_new(file_name)? {
        Some(f) => fill_new(file_name, f, len, fill),
        None => Err(Error::NameInUse {
            name: region_name(file_name),
        }),
    }
}

/// Create the file of region `file_name` exclusively, mode 0600; `None` if it exists.
fn open_new(file_name: &str) -> Result<Option<File>, Error> {
    match file::create_exclusive(&file::region_path(file_name)) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(source) => Err(Error::Io {
            name: region_name(file_name),
            op: "create",
            source,
        }),
    }
}

/// Size, fill and seal the region file `f` this process has just created as `file_name`.
fn fill_new(
    file_name: &str,
    f: File,
    len: usize,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<(), Error>,
) -> Result<(Arc<Mapping>, NameOwner), Error> {
    let name = region_name(file_name);
    let path = file::region_path(file_name);
    let io_err = |op: &'static str, source| Error::Io {
        name: name.clone(),
        op,
        source,
    };
    // From here on the name is ours: unlink it on every failure.
    let owner = NameOwner::new(path);
    if let Ok(start) = proc::own_start_time() {
        // Best effort (see `owner`): without a record, prune falls back to R's rule.
        let _ = file::set_owner_record(&f, &owner::encode_record(start));
    }
    size(&f, &name, len)?;
    let mut writable = map::map_new_region(&f, len).map_err(|e| io_err("map", e))?;
    let mut filling = Filling {
        file: &f,
        map: &mut writable,
        name: &name,
        written: Vec::new(),
        allocated: false,
    };
    fill(&mut filling)?;
    // No hole may remain once the name escapes: a consumer's first read of one would
    // allocate a page there, and fault with SIGBUS on a full /dev/shm.
    filling.allocate_rest()?;
    drop(f);
    let mapping = Mapping::seal(name.clone(), writable).map_err(|e| io_err("seal", e))?;
    Ok((Arc::new(mapping), owner))
}

/// Size the region's file, after checking that `/dev/shm` can hold it; its pages come later
/// (see [`Filling`]).
fn size(f: &File, name: &str, len: usize) -> Result<(), Error> {
    let asked = len as u64;
    // Fail before touching any page when the request cannot fit: writing or allocating would
    // otherwise fill /dev/shm (pushing other memory out) before giving up.
    if let Ok(free) = file::free_space(std::path::Path::new(file::SHM_DIR))
        && asked > free
    {
        return Err(Error::OutOfSpace {
            name: name.to_owned(),
            asked,
            free,
        });
    }
    match file::set_size(f, asked) {
        Ok(()) => Ok(()),
        Err(file::ReserveError::NoSpace) => Err(out_of_space(name, len)),
        Err(file::ReserveError::Io(source)) => Err(Error::Io {
            name: name.to_owned(),
            op: "reserve",
            source,
        }),
    }
}

/// Map region `name` (`/mori_<pid>_<counter>`) read-only and lazily, if its file is one we may
/// trust (`file::open_trusted`): else [`Error::Untrusted`] naming why.
pub(crate) fn attach(name: &str) -> Result<Arc<Mapping>, Error> {
    open_and_map(name).map(|(_, mapping)| mapping)
}

/// Attach to region `name` (`/mori_...`), handed over by its creator, and take its name over:
/// the owner record becomes this process's (best effort, as at creation), so `prune` keeps the
/// region while this process lives, and the returned owner unlinks it when dropped.
pub(crate) fn adopt(name: &str) -> Result<(Arc<Mapping>, NameOwner), Error> {
    let (f, mapping) = open_and_map(name)?;
    if let Ok(start) = proc::own_start_time() {
        let record = owner::encode_handed_record(start, std::process::id());
        let _ = file::set_owner_record(f.file(), &record);
    }
    let owner = NameOwner::new(file::region_path(&name[1..]));
    Ok((mapping, owner))
}

/// Open region `name` with the attach checks and map it read-only.
fn open_and_map(name: &str) -> Result<(file::TrustedFile, Arc<Mapping>), Error> {
    let file_name = name
        .strip_prefix('/')
        .filter(|f| name::creator_pid(f).is_some())
        .ok_or_else(|| Error::MalformedName {
            name: name.to_owned(),
        })?;
    let path = file::region_path(file_name);
    let io_err = |op: &'static str, source| Error::Io {
        name: name.to_owned(),
        op,
        source,
    };
    let f = match file::open_trusted(&path) {
        Ok(f) => f,
        Err(file::OpenError::NotFound) => {
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
        }
        Err(file::OpenError::Untrusted(reason)) => {
            return Err(Error::Untrusted {
                name: name.to_owned(),
                reason,
            });
        }
        Err(file::OpenError::Io(e)) => return Err(io_err("open", e)),
    };
    let len = usize::try_from(f.len()).map_err(|_| Error::Io {
        name: name.to_owned(),
        op: "map",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "region larger than memory"),
    })?;
    let mapping = Mapping::open(name.to_owned(), &f, len).map_err(|e| io_err("map", e))?;
    Ok((f, Arc::new(mapping)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_written_once_and_read_by_name_until_its_owner_drops() {
        let (mapping, owner) = create(100, |r| {
            r.bytes_mut()?.copy_from_slice(&[7u8; 100]);
            Ok(())
        })
        .unwrap();
        let other = attach(mapping.name()).unwrap();
        assert_eq!(other.bytes(), &[7u8; 100][..]);
        drop(owner);
        assert!(matches!(
            attach(mapping.name()),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(other.bytes()[99], 7, "mappings outlive the name");
    }

    #[test]
    fn bytes_written_through_the_file_and_the_mapping_meet_in_the_region() {
        let (mapping, _owner) = create(3 * 4096 + 10, |r| {
            r.write_at(100, &[2u8; 2 * 4096])?;
            r.allocate_rest()?;
            r.populate(0..4096);
            r.bytes_mut()?[..100].fill(1);
            r.bytes_mut()?[100 + 2 * 4096..].fill(3);
            Ok(())
        })
        .unwrap();
        let b = attach(mapping.name()).unwrap();
        assert!(b.bytes()[..100].iter().all(|&x| x == 1));
        assert!(b.bytes()[100..100 + 2 * 4096].iter().all(|&x| x == 2));
        assert!(b.bytes()[100 + 2 * 4096..].iter().all(|&x| x == 3));
        assert_eq!(
            mapping.bytes(),
            b.bytes(),
            "the creator sees the same bytes"
        );
    }

    #[test]
    fn a_write_past_the_end_is_an_error_and_unlinks_the_name() {
        let file_name = name::next_file_name().unwrap();
        let err = create_named(&file_name, 100, |r| r.write_at(90, &[0u8; 20])).unwrap_err();
        assert!(
            matches!(err, Error::Io { op: "write", ref name, .. } if *name == format!("/{file_name}")),
            "{err:?}"
        );
        let err = create_named(&file_name, 100, |r| r.write_at(usize::MAX, &[0u8; 2])).unwrap_err();
        assert!(matches!(err, Error::Io { op: "write", .. }), "{err:?}");
        assert!(!file::region_path(&file_name).exists());
    }

    #[test]
    fn a_failed_fill_unlinks_the_name() {
        let file_name = name::next_file_name().unwrap();
        let err = create_named(&file_name, 64, |_| {
            Err(Error::NotAList {
                name: "test".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::NotAList { .. }));
        assert!(!file::region_path(&file_name).exists());
    }

    #[test]
    fn an_existing_name_is_in_use() {
        let file_name = name::next_file_name().unwrap();
        let (_m, _owner) = create_named(&file_name, 64, |_| Ok(())).unwrap();
        let err = create_named(&file_name, 64, |_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::NameInUse { ref name } if name == &format!("/{file_name}")));
        assert!(
            file::region_path(&file_name).exists(),
            "the first owner keeps it"
        );
    }

    /// A file someone else put under the name about to be chosen (here: the first name the
    /// seam hands out) is left as it is, and the region gets the next name.
    #[test]
    fn a_squatted_name_is_skipped_not_opened_or_removed() {
        let squatted = name::next_file_name().unwrap();
        let path = file::region_path(&squatted);
        std::fs::write(&path, b"squatter").unwrap();
        let _squatter = NameOwner::new(path.clone());
        let fresh = name::next_file_name().unwrap();
        let mut names = vec![fresh.clone(), squatted.clone()];
        let (mapping, _owner) = create_trying(
            || Ok(names.pop().unwrap()),
            64,
            |r| {
                r.bytes_mut()?.fill(9);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(mapping.name(), format!("/{fresh}"));
        assert_eq!(std::fs::read(&path).unwrap(), b"squatter", "left untouched");
        assert_eq!(attach(mapping.name()).unwrap().bytes(), &[9u8; 64][..]);
    }

    /// A name source that only ever yields taken names ends in `NameInUse` after a bounded
    /// number of tries, with the taken file still in place.
    #[test]
    fn creation_gives_up_after_a_bounded_number_of_taken_names() {
        let squatted = name::next_file_name().unwrap();
        let path = file::region_path(&squatted);
        std::fs::write(&path, b"squatter").unwrap();
        let _squatter = NameOwner::new(path.clone());
        let mut tries = 0;
        let err = create_trying(
            || {
                tries += 1;
                Ok(squatted.clone())
            },
            64,
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::NameInUse { ref name } if *name == format!("/{squatted}")),
            "{err:?}"
        );
        assert_eq!(tries, CREATE_ATTEMPTS);
        assert_eq!(std::fs::read(&path).unwrap(), b"squatter");
    }

    /// Live regions never share a name, and each file is a private regular file of ours.
    #[test]
    fn many_regions_get_distinct_private_names() {
        use std::os::unix::fs::MetadataExt;
        let regions: Vec<_> = (0..500).map(|_| create(64, |_| Ok(())).unwrap()).collect();
        let names: std::collections::HashSet<_> =
            regions.iter().map(|(m, _)| m.name().to_owned()).collect();
        assert_eq!(names.len(), regions.len());
        for name in &names {
            let meta = std::fs::symlink_metadata(file::region_path(&name[1..])).unwrap();
            assert!(meta.file_type().is_file(), "{name}");
            assert_eq!(meta.mode() & 0o777, 0o600, "{name}");
            assert_eq!(meta.uid(), rustix::process::geteuid().as_raw(), "{name}");
        }
    }

    #[test]
    fn regions_carry_an_owner_record_with_our_start_time() {
        let (m, _owner) = create(64, |_| Ok(())).unwrap();
        let path = file::region_path(&m.name()[1..]);
        let record = file::owner_record(&path)
            .unwrap()
            .expect("tmpfs keeps user xattrs");
        assert_eq!(
            owner::decode_record(&record).map(|r| r.start_time),
            Some(proc::own_start_time().unwrap())
        );
    }

    #[test]
    fn bad_names_are_malformed_not_io_errors() {
        for bad in [
            "",
            "/",
            "mori_1_2",
            "/mori_1",
            "/../etc/passwd",
            "/mori_1_2/x",
        ] {
            assert!(
                matches!(attach(bad), Err(Error::MalformedName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn asking_for_more_than_dev_shm_has_is_out_of_space_with_both_sizes() {
        let free = file::free_space(std::path::Path::new(file::SHM_DIR)).unwrap();
        let asked = usize::try_from(free.saturating_mul(2)).unwrap_or(usize::MAX);
        let file_name = name::next_file_name().unwrap();
        let err = create_named(&file_name, asked, |_| Ok(())).unwrap_err();
        match err {
            Error::OutOfSpace {
                name,
                asked: a,
                free: f,
            } => {
                assert_eq!(name, format!("/{file_name}"));
                assert_eq!(a, asked as u64);
                assert!(f < a, "free {f} must be below asked {a}");
                let msg = Error::OutOfSpace {
                    name,
                    asked: a,
                    free: f,
                }
                .to_string();
                assert!(
                    msg.contains(&a.to_string()) && msg.contains(&f.to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected OutOfSpace, got {other:?}"),
        }
        assert!(!file::region_path(&file_name).exists());
    }

    #[test]
    fn fallocate_reports_a_full_file_system_as_no_space() {
        // Bypass the free-space pre-check: the kernel itself must refuse.
        let file_name = name::next_file_name().unwrap();
        let path = file::region_path(&file_name);
        let f = file::create_exclusive(&path).unwrap();
        let _owner = NameOwner::new(path.clone());
        let free = file::free_space(std::path::Path::new(file::SHM_DIR)).unwrap();
        file::set_size(&f, free.saturating_mul(2)).unwrap();
        assert!(matches!(
            file::allocate(&f, 0, free.saturating_mul(2)),
            Err(file::ReserveError::NoSpace)
        ));
    }

    /// Fill the file system of `/dev/shm` up to the last byte.
    fn fill_dev_shm() {
        use std::io::Write;
        let mut f =
            std::fs::File::create(std::path::Path::new(file::SHM_DIR).join("filler")).unwrap();
        let chunk = vec![1u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }

    /// The race the free-space check cannot close: `/dev/shm` fills up after it. Run in a
    /// private 1 MiB tmpfs by the test below.
    #[test]
    #[ignore = "run inside a private tmpfs by a_dev_shm_that_fills_up_while_writing_..."]
    fn tiny_dev_shm_child() {
        let free = file::free_space(std::path::Path::new(file::SHM_DIR)).unwrap();
        assert!(free <= 1 << 20, "not the private tmpfs: {free} bytes free");
        for through_the_file in [true, false] {
            let file_name = name::next_file_name().unwrap();
            let err = create_named(&file_name, 256 << 10, |r| {
                fill_dev_shm();
                if through_the_file {
                    r.write_at(0, &[5u8; 256 << 10])
                } else {
                    r.bytes_mut().map(drop)
                }
            })
            .unwrap_err();
            assert!(
                matches!(err, Error::OutOfSpace { asked, .. } if asked == 256 << 10),
                "{err:?}"
            );
            assert!(!file::region_path(&file_name).exists());
            std::fs::remove_file(std::path::Path::new(file::SHM_DIR).join("filler")).unwrap();
        }
        println!("@@ both refused");
    }

    #[test]
    fn a_dev_shm_that_fills_up_while_writing_is_out_of_space_not_sigbus() {
        let out = std::process::Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-c",
                "mount -t tmpfs -o size=1m mori-test /dev/shm && exec \"$@\"",
                "sh",
            ])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "region::tests::tiny_dev_shm_child",
                "--ignored",
                "--nocapture",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("@@ both refused"),
            "{}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs every other unit test in a child process, then checks by its pid that nothing of
    /// its own was left in /dev/shm, whatever the outcome of its tests. The prune tests are
    /// skipped there: a second prune at the same time would race their assertions.
    #[test]
    fn the_unit_tests_leave_no_regions_behind() {
        let this = "region::tests::the_unit_tests_leave_no_regions_behind";
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--skip", this, "--skip", "prune", "--test-threads=2", "-q"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = child.wait().unwrap();
        let prefix = format!("mori_{pid:x}_");
        let left: Vec<_> = std::fs::read_dir(file::SHM_DIR)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        for f in &left {
            let _ = std::fs::remove_file(f);
        }
        assert!(left.is_empty(), "unit tests left regions behind: {left:?}");
        assert!(status.success(), "unit tests failed in the child: {status}");
    }
}
