//! Typed errors of the writer, the reader and path resolution.
//!
//! Every way a value cannot be written, or bytes cannot be trusted, has its own variant carrying
//! the offending numbers, so a caller (or a test) can tell a truncated region from a hostile one.

use crate::rser::RserError;

/// Why a value cannot be written as a region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The root is `NULL` or a serialized blob: R shares only vectors and lists.
    #[error("{0} cannot be a region root")]
    NotShareable(&'static str),
    /// A list has more than `i32::MAX` elements.
    #[error("list of {len} elements exceeds i32::MAX")]
    ListTooLong {
        /// The list's length.
        len: usize,
    },
    /// A string holds a NUL byte, which R rejects.
    #[error("string {index} contains a nul byte")]
    NulInString {
        /// Index of the string in its vector.
        index: usize,
    },
    /// A string is longer than `i32::MAX` bytes.
    #[error("string {index} of {len} bytes exceeds i32::MAX")]
    StringTooLong {
        /// Index of the string in its vector.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// An attribute blob is larger than its `i32` size field allows.
    #[error("attribute blob of {size} bytes exceeds i32::MAX")]
    AttributesTooLarge {
        /// The blob's size.
        size: usize,
    },
    /// A `NULL` or serialized element carries attributes; they cannot be stored.
    #[error("a fallback element cannot carry attributes")]
    AttributesOnFallback,
    /// A data frame column's length differs from the first column's.
    #[error("data frame column {column} has {len} rows, expected {nrow}")]
    RaggedDataFrame {
        /// Index of the column.
        column: usize,
        /// Its length.
        len: usize,
        /// The length of the first column.
        nrow: usize,
    },
    /// Lists are nested deeper than [`MAX_DEPTH`](crate::layout::MAX_DEPTH).
    #[error("lists nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// An attribute set or `NULL` element R could not read back (a NUL in a name, ...).
    #[error("attributes: {0}")]
    Attributes(#[source] RserError),
    /// The region size does not fit in the address space.
    #[error("region size overflows")]
    SizeOverflow,
    /// The output buffer is smaller than [`encoded_len`](crate::write::encoded_len).
    #[error("buffer of {got} bytes, need {needed}")]
    BufferTooSmall {
        /// Bytes the value needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// Why bytes are not a valid region (or an attribute blob in it cannot be decoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The buffer does not start on an 8-byte boundary, so typed slices cannot be handed out.
    #[error("region buffer is not 8-byte aligned")]
    MisalignedBuffer,
    /// A payload offset inside a list is not a multiple of 64.
    #[error("element {index} at offset {offset} is not 64-byte aligned")]
    MisalignedElement {
        /// Index of the element in its list.
        index: usize,
        /// Its `data_offset`.
        offset: i64,
    },
    /// The first four bytes are not a known magic.
    #[error("bad magic {magic:#010x} at offset {offset}")]
    BadMagic {
        /// The magic found.
        magic: u32,
        /// Absolute offset of the header.
        offset: usize,
    },
    /// A header or table extends past the end of its region.
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Absolute offset where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes there are.
        available: usize,
    },
    /// A count or size field is negative or too large to be real.
    #[error("bad {what}: {value}")]
    BadCount {
        /// Which field.
        what: &'static str,
        /// Its stored value.
        value: i64,
    },
    /// An element's `[data_offset, data_offset + data_size)` leaves its list.
    #[error("element {index} at [{offset}, +{size}) is out of bounds of {bound} bytes")]
    ElementOutOfBounds {
        /// Index of the element.
        index: usize,
        /// Its `data_offset`.
        offset: i64,
        /// Its `data_size`.
        size: i64,
        /// Size of the list that holds it.
        bound: usize,
    },
    /// An element starts before the end of the directory or of the previous element.
    #[error("element {index} overlaps what precedes it")]
    ElementOverlap {
        /// Index of the element.
        index: usize,
    },
    /// A list's attribute blob lies outside the list or over its elements.
    #[error("list attributes at [{offset}, +{size}) are out of bounds")]
    AttributesOutOfBounds {
        /// The stored `attrs_offset`.
        offset: i64,
        /// The stored `attrs_size`.
        size: i64,
    },
    /// An element's `attrs_size` exceeds its `data_size`.
    #[error("element {index}: attrs_size {attrs_size} > data_size {data_size}")]
    AttributesLargerThanData {
        /// Index of the element.
        index: usize,
        /// Its `attrs_size`.
        attrs_size: i32,
        /// Its `data_size`.
        data_size: i64,
    },
    /// An element's `length` disagrees with its `data_size`.
    #[error("element {index}: length {length} does not fit data_size {data_size}")]
    LengthMismatch {
        /// Index of the element.
        index: usize,
        /// Its `length`.
        length: i64,
        /// Its `data_size`.
        data_size: i64,
    },
    /// A directory entry names a type no region holds.
    #[error("element {index}: unknown sexptype {code}")]
    UnknownSexpType {
        /// Index of the element.
        index: usize,
        /// The stored code.
        code: i32,
    },
    /// A string's bytes lie outside the string area.
    #[error("string {index} at [{offset}, +{len}) is out of bounds")]
    StringOutOfBounds {
        /// Index of the string.
        index: usize,
        /// Its stored offset.
        offset: i64,
        /// Its stored length.
        len: i32,
    },
    /// A string's encoding mark is not a `cetype_t` R writes.
    #[error("string {index}: unknown encoding {code}")]
    BadEncoding {
        /// Index of the string.
        index: usize,
        /// The stored mark.
        code: i32,
    },
    /// Lists are nested deeper than [`MAX_DEPTH`](crate::layout::MAX_DEPTH).
    #[error("lists nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// [`List::get`](crate::List::get) past the end of the list.
    #[error("index {index} out of bounds of a list of {len}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// An attribute blob did not decode.
    #[error("attributes: {0}")]
    Attributes(#[from] RserError),
}

/// Why an identifier's path does not lead to a value in a region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A path was given but the root is not a list.
    #[error("invalid nested list region")]
    NotAList,
    /// An intermediate index is past the end of its list.
    #[error("path index out of bounds")]
    PathIndexOutOfBounds {
        /// The 0-based index.
        index: u32,
        /// The list's length.
        len: usize,
    },
    /// An intermediate step is not a nested list.
    #[error("path step is not a nested list")]
    NotNestedList {
        /// The position in the path (0-based).
        step: usize,
    },
    /// The last index is past the end of its list.
    #[error("leaf index out of bounds")]
    LeafIndexOutOfBounds {
        /// The 0-based index.
        index: u32,
        /// The list's length.
        len: usize,
    },
    /// The region itself is invalid.
    #[error(transparent)]
    Invalid(#[from] ReadError),
}
