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
    /// A region of that name already exists: an orphan of a crashed process whose pid this
    /// process now has. `prune` clears such orphans.
    #[error("cannot create region '{name}': the name is already in use (prune clears orphans)")]
    NameInUse {
        /// The region name.
        name: String,
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
    /// A list operation on something that is not a list.
    #[error("'{name}' is not a list")]
    NotAList {
        /// The identifier of the value.
        name: String,
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

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
