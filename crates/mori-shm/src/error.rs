//! The one error type of the crate: every variant names the region it is about.

use std::io;

/// Why a region could not be created, attached or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No region of that name exists (never created, unlinked by its owner, or pruned).
    #[error("shared memory region not found: '{name}'")]
    NotFound {
        /// The region name or identifier asked for.
        name: String,
    },
    /// The region's bytes are not a valid value.
    #[error("invalid or corrupted shared memory region '{name}'")]
    Corrupt {
        /// The region name or identifier.
        name: String,
        /// What the format reader found wrong.
        #[source]
        source: mori_format::ReadError,
    },
    /// The value cannot be written as a region (a `NULL` root, a NUL inside a string, a ragged
    /// data frame, ...).
    #[error("cannot share value: {source}")]
    Unshareable {
        /// What the writer refused.
        #[source]
        source: mori_format::WriteError,
    },
    /// `/dev/shm` has less free space than the region needs.
    #[error("cannot create region '{name}': out of space (asked {asked} bytes, {free} free)")]
    OutOfSpace {
        /// The region name that was being created.
        name: String,
        /// The region size asked for, in bytes.
        asked: u64,
        /// The free space in `/dev/shm` when creation failed, in bytes.
        free: u64,
    },
    /// Every name tried for a new region already existed. Each try draws a fresh random name
    /// (16 in all), so this means `/dev/shm` is
    /// flooded with files named like this process's regions (by another user, or as orphans of
    /// a crashed process whose pid this process now has, which `prune` clears).
    #[error("cannot create region '{name}': the name is already in use (prune clears orphans)")]
    NameInUse {
        /// The last region name tried.
        name: String,
    },
    /// The file of a region exists but is not one this process may trust, so it was not
    /// mapped: a region must be a regular file owned by our effective uid that no other user
    /// can read or write. Another user's file could be truncated or rewritten under a live
    /// `&[f64]` into it.
    ///
    /// ```no_run
    /// use mori_shm::{Error, Untrusted};
    /// // Say another user put a file of that name in /dev/shm.
    /// match mori_shm::map_shared("/mori_4d1b_1") {
    ///     Err(Error::Untrusted { reason: Untrusted::OtherOwner { uid }, .. }) => {
    ///         eprintln!("region made by uid {uid}, not attached");
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// ```
    #[error("refusing to attach region '{name}': {reason}")]
    Untrusted {
        /// The region name.
        name: String,
        /// What the file is that a region of ours would not be.
        reason: Untrusted,
    },
    /// The text is not a region name or identifier (`/mori_<hex>_<hex>[i,j,...]`).
    #[error("malformed region name '{name}'")]
    MalformedName {
        /// The text given.
        name: String,
    },
    /// A list index past the end.
    #[error("index {index} (0-based) out of range for length {len} in '{name}'")]
    IndexOutOfRange {
        /// The identifier of the list indexed.
        name: String,
        /// The 0-based index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A value is not of the type a typed view expects (a [`FromShared`](crate::FromShared)
    /// check, e.g. a derived view attached to another struct's region).
    ///
    /// ```
    /// let shared = mori_shm::share_f64(&[1.0])?;
    /// let err = mori_shm::map_typed::<mori_shm::StringColumn>(&shared.view().identifier().unwrap())
    ///     .unwrap_err();
    /// assert!(matches!(err, mori_shm::Error::WrongType { .. }));
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    #[error("'{name}' holds {found}, not {expected}")]
    WrongType {
        /// The identifier of the value.
        name: String,
        /// What the view expects.
        expected: String,
        /// What the region holds.
        found: String,
    },
    /// A list operation on something that is not a list.
    #[error("'{name}' is not a list")]
    NotAList {
        /// The identifier of the value.
        name: String,
    },
    /// A column of an Arrow record batch has a type that has no R vector here
    /// (`share_record_batch`, feature `arrow`): only `Float64`, `Int32`, `Boolean`, `Utf8`,
    /// `LargeUtf8` and `Utf8View` columns, and dictionaries of strings (as factors), are shared.
    /// No region was created.
    ///
    /// ```
    /// let err = mori_shm::Error::UnsupportedArrowType {
    ///     column: "day".into(),
    ///     data_type: "Date32".into(),
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "cannot share Arrow column 'day' of type Date32: no R vector type for it \
    ///      (Float64, Int32, Boolean, strings and dictionaries of strings are)"
    /// );
    /// ```
    #[error(
        "cannot share Arrow column '{column}' of type {data_type}: no R vector type for it \
         (Float64, Int32, Boolean, strings and dictionaries of strings are)"
    )]
    UnsupportedArrowType {
        /// The column's field name.
        column: String,
        /// The column's Arrow data type, as Arrow displays it.
        data_type: String,
    },
    /// A shared value cannot be converted to Arrow (feature `arrow`): a raw, complex or list
    /// vector, a string that is not text, columns of unequal length.
    ///
    /// ```
    /// let err = mori_shm::Error::NotArrowConvertible {
    ///     name: "/mori_4d1b_1[2]".into(),
    ///     what: "R type raw has no Arrow array here".into(),
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "cannot convert '/mori_4d1b_1[2]' to Arrow: R type raw has no Arrow array here"
    /// );
    /// ```
    #[error("cannot convert '{name}' to Arrow: {what}")]
    NotArrowConvertible {
        /// The identifier of the value.
        name: String,
        /// What stands in the way.
        what: String,
    },
    /// The operating system refused.
    #[error("{op} '{name}': {source}")]
    Io {
        /// The region name.
        name: String,
        /// What was being done (`create`, `open`, `map`, ...).
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// Why a region file was not trusted ([`Error::Untrusted`]).
///
/// ```
/// use mori_shm::Untrusted;
/// assert_eq!(
///     Untrusted::Mode { mode: 0o644 }.to_string(),
///     "its mode 0644 gives group or other users access"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Untrusted {
    /// The name is a symbolic link (regions are never links; a link could lead anywhere).
    #[error("it is a symbolic link")]
    Symlink,
    /// The file is not a regular file (a FIFO, a directory, a device, ...).
    #[error("it is not a regular file")]
    NotRegular,
    /// The file belongs to another user, who can truncate or rewrite it while it is mapped.
    #[error("it belongs to uid {uid}, not to us")]
    OtherOwner {
        /// The file's owner.
        uid: u32,
    },
    /// The file's permission bits give its group or other users some access
    /// (`mode & 0o077 != 0`); regions are created with mode 0600.
    #[error("its mode {mode:04o} gives group or other users access")]
    Mode {
        /// The file's permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
