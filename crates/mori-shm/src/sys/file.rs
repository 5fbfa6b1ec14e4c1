//! Region files under `/dev/shm`: exclusive creation, space reservation, owner records, unlink.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FallocateFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use crate::error::Untrusted;

/// The tmpfs directory that holds POSIX shared memory on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The extended attribute that holds a region's owner record (see `crate::owner`).
const OWNER_XATTR: &str = "user.mori.owner";

/// Longest owner record we read back; anything longer is not ours.
const OWNER_RECORD_MAX: usize = 64;

/// The file of region `file_name` (`mori_<pid>_<counter>`, without the leading `/`).
pub(crate) fn region_path(file_name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(file_name)
}

/// Create `path` exclusively (`O_CREAT|O_EXCL|O_RDWR|O_CLOEXEC`, mode 0600).
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A region file opened by [`open_trusted`]: only such files are mapped by attaching
/// (`map::Mapping::open` takes this type, not a `File`).
#[derive(Debug)]
pub(crate) struct TrustedFile {
    file: File,
    /// The size `fstat` gave when the file was checked.
    len: u64,
}

impl TrustedFile {
    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The file's size, from the `fstat` of the checks (attaching asks the kernel once).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Why an existing region file was not opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// No file of that name.
    NotFound,
    /// The file is not one of our regions (see [`open_trusted`]).
    Untrusted(Untrusted),
    /// Any other failure.
    Io(io::Error),
}

/// Open an existing region file read-only, if it is one this process may map: not a symbolic
/// link (`O_NOFOLLOW`), and, checked with `fstat` on the opened descriptor (so the file checked
/// is the file mapped), a regular file owned by our effective uid with no permission bits for
/// group or others.
///
/// Another user's file could be truncated or rewritten by that user while we read it through
/// a mapping; a link or a file readable by others is not a region this crate made.
/// `O_NONBLOCK` keeps a FIFO planted under a region's name from blocking the open; it has no
/// effect on regular files.
pub(crate) fn open_trusted(path: &Path) -> Result<TrustedFile, OpenError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(OpenError::NotFound),
        // O_NOFOLLOW on a symbolic link.
        Err(Errno::LOOP) => return Err(OpenError::Untrusted(Untrusted::Symlink)),
        Err(e) => return Err(OpenError::Io(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| OpenError::Io(e.into()))?;
    check_trusted(
        FileType::from_raw_mode(st.st_mode),
        st.st_uid,
        st.st_mode,
        rustix::process::geteuid().as_raw(),
    )
    .map_err(OpenError::Untrusted)?;
    // A regular file's size is never negative.
    let len = u64::try_from(st.st_size).unwrap_or(0);
    Ok(TrustedFile {
        file: File::from(fd),
        len,
    })
}

/// The checks of [`open_trusted`] on a file's type, owner and mode, for effective uid `euid`.
fn check_trusted(kind: FileType, uid: u32, mode: u32, euid: u32) -> Result<(), Untrusted> {
    if kind == FileType::Symlink {
        Err(Untrusted::Symlink)
    } else if kind != FileType::RegularFile {
        Err(Untrusted::NotRegular)
    } else if uid != euid {
        Err(Untrusted::OtherOwner { uid })
    } else if mode & 0o077 != 0 {
        Err(Untrusted::Mode {
            mode: mode & 0o7777,
        })
    } else {
        Ok(())
    }
}

/// Bytes an unprivileged writer can still allocate in the file system holding `dir`.
pub(crate) fn free_space(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Why space for a region could not be reserved.
#[derive(Debug)]
pub(crate) enum ReserveError {
    /// The file system is full.
    NoSpace,
    /// Any other failure.
    Io(io::Error),
}

fn classify(e: rustix::io::Errno) -> ReserveError {
    if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::FBIG {
        ReserveError::NoSpace
    } else {
        ReserveError::Io(e.into())
    }
}

/// Whether a failed write into a region file means the file system is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || code == Some(rustix::io::Errno::FBIG.raw_os_error())
}

/// Set the size of `file` to `len` bytes. On tmpfs this allocates no page: the pages come from
/// writes into the file or from [`allocate`].
pub(crate) fn set_size(file: &File, len: u64) -> Result<(), ReserveError> {
    rustix::fs::ftruncate(file, len).map_err(classify)
}

/// Allocate the pages that hold bytes `offset..offset + len` of `file`, so that a full file
/// system fails here with `ENOSPC` instead of with `SIGBUS` on a later store through a mapping.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> Result<(), ReserveError> {
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), offset, len) {
        Ok(()) => Ok(()),
        // A file system without fallocate (not tmpfs): the size is set; pages stay lazy.
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}

/// Attach an owner record to a region file. Best effort: file systems without user extended
/// attributes (tmpfs before Linux 6.6) keep regions without records, which `prune` treats the way
/// R's mori does.
pub(crate) fn set_owner_record(file: &File, record: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(file, OWNER_XATTR, record, XattrFlags::empty())?;
    Ok(())
}

/// The owner record of the region file at `path`, if it has one. A symbolic link is not
/// followed (and has no record).
pub(crate) fn owner_record(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; OWNER_RECORD_MAX];
    match rustix::fs::lgetxattr(path, OWNER_XATTR, &mut buf[..]) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(None),
        // Longer than any record we write: not ours, treat as absent.
        Err(rustix::io::Errno::RANGE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Remove a region file; a file that is already gone is not an error.
pub(crate) fn unlink(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_private_regular_files_are_trusted() {
        let reg = FileType::RegularFile;
        assert_eq!(check_trusted(reg, 1000, 0o100600, 1000), Ok(()));
        assert_eq!(check_trusted(reg, 1000, 0o100400, 1000), Ok(()));
        assert_eq!(
            check_trusted(reg, 1001, 0o100600, 1000),
            Err(Untrusted::OtherOwner { uid: 1001 })
        );
        for mode in [0o644, 0o640, 0o604, 0o610, 0o601, 0o666] {
            assert_eq!(
                check_trusted(reg, 1000, 0o100000 | mode, 1000),
                Err(Untrusted::Mode { mode })
            );
        }
        assert_eq!(
            check_trusted(FileType::Fifo, 1000, 0o010600, 1000),
            Err(Untrusted::NotRegular)
        );
        assert_eq!(
            check_trusted(FileType::Directory, 1000, 0o040700, 1000),
            Err(Untrusted::NotRegular)
        );
        assert_eq!(
            check_trusted(FileType::Symlink, 1000, 0o120777, 1000),
            Err(Untrusted::Symlink)
        );
    }
}
