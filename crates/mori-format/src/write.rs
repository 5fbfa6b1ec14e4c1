//! The writer: sizes a value exactly, then lays it out in one pass into a caller's buffer.
//!
//! Two kinds of input share one layout core. An owned [`Value`] is what decoding gives back;
//! a [`Source`] borrows the caller's slices (`&[f64]`, `&[&str]`, ...) so that sharing a large
//! vector costs exactly one copy, from the caller's memory into the region. Both are walked
//! through the same private `Item` so the MORH, MORS and MORL layout logic exists once.
//!
//! Writing is two steps: [`Plan`] walks the input once to check it (string NULs, list lengths,
//! nesting depth, size overflow), encode the attribute blobs and record every node's size; then
//! [`Plan::write_into`] writes header, tables, payloads and blobs front to back, zeroing every
//! padding byte, because a fresh mapping is zero but a reused buffer need not be.
//!
//! A caller that can place large vector data more cheaply than a store through memory (a
//! `pwrite` into a shared-memory file copies into pages the kernel already holds, where stores
//! through a fresh mapping fault page by page) asks [`Plan::payloads`] where those data go and
//! writes the rest with [`Plan::write_into_except_payloads`]: still one copy of every byte.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::WriteError;
use crate::layout::{
    DIR_ENTRY, MAGIC_MORH, MAGIC_MORL, MAGIC_MORS, MAX_DEPTH, MORH_HEADER, MORL_HEADER,
    MORS_HEADER, STRING_ENTRY, SexpType, align64,
};
use crate::rser::{self, SerializeOptions};
use crate::value::{Attributes, Data, Encoding, NA_INTEGER, RString, Value};

/// Options of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// How attribute blobs and fallback elements are serialized; the default is the pairlist
    /// form of R 4.5.0, what R's mori 0.2 built for R <= 4.5 writes and reads.
    pub serialize: SerializeOptions,
}

/// A value to write that borrows its data from the caller, so the only copy is into the region.
///
/// ```
/// use mori_format::write::{Source, WriteOptions};
/// use mori_format::{read, View, AlignedBuf};
///
/// let x = vec![1.0, 2.5, 4.0];
/// let src = Source::Double(&x);
/// let opts = WriteOptions::default();
/// let mut buf = AlignedBuf::zeroed(src.encoded_len(&opts)?);
/// src.write(&mut buf, &opts)?;
/// let View::Double(v) = read(&buf)? else { panic!("not a double vector") };
/// assert_eq!(v.data(), &x[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A double vector.
    Double(&'a [f64]),
    /// An integer vector.
    Integer(&'a [i32]),
    /// A logical vector (1 TRUE, 0 FALSE, `i32::MIN` NA).
    Logical(&'a [i32]),
    /// A raw vector.
    Raw(&'a [u8]),
    /// A complex vector of `[re, im]` pairs.
    Complex(&'a [[f64; 2]]),
    /// A character vector without NA.
    Strings(&'a [&'a str]),
    /// A character vector; `None` is `NA_character_`.
    OptStrings(&'a [Option<&'a str>]),
    /// A list; it gets a `names` attribute if any element is named (unnamed ones get `""`).
    List(Vec<(Option<&'a str>, Self)>),
    /// A data frame: named, equal-length columns, with `class = "data.frame"` and compact
    /// `row.names`.
    DataFrame(Vec<(&'a str, Self)>),
    /// An owned value, attributes included.
    Value(&'a Value),
    /// Another source with attributes (say `dim` for a matrix, or `levels` and `class` for a
    /// factor column). On a list or data frame they are set over the generated `names`,
    /// `class` and `row.names`.
    ///
    /// ```
    /// use mori_format::value::{Attributes, Value};
    /// use mori_format::{read, AlignedBuf, Source, WriteOptions};
    /// let mut dim = Attributes::new();
    /// dim.set("dim", Value::integer([2, 2]));
    /// let data = [1.0, 2.0, 3.0, 4.0];
    /// let matrix = Source::Attributed(Box::new(Source::Double(&data)), &dim);
    /// let opts = WriteOptions::default();
    /// let mut buf = AlignedBuf::zeroed(matrix.encoded_len(&opts)?);
    /// matrix.write(&mut buf, &opts)?;
    /// assert_eq!(read(&buf)?.attributes()?, dim);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Attributed(Box<Self>, &'a Attributes),
}

impl Source<'_> {
    /// The exact size of the region this source writes.
    ///
    /// ```
    /// use mori_format::write::{Source, WriteOptions};
    /// assert_eq!(Source::Double(&[1.0, 2.0]).encoded_len(&WriteOptions::default())?, 64 + 16);
    /// # Ok::<(), mori_format::WriteError>(())
    /// ```
    pub fn encoded_len(&self, opts: &WriteOptions) -> Result<usize, WriteError> {
        Ok(Plan::new(Item::Source(self), opts)?.len())
    }

    /// Write the region into the start of `buf`; returns the bytes written.
    pub fn write(&self, buf: &mut [u8], opts: &WriteOptions) -> Result<usize, WriteError> {
        Plan::new(Item::Source(self), opts)?.write_into(buf)
    }

    /// Check the source and size it, so it can be written without repeating that work.
    pub fn plan(&self, opts: &WriteOptions) -> Result<Plan<'_>, WriteError> {
        Plan::new(Item::Source(self), opts)
    }
}

/// The exact size of the region that holds `value`.
///
/// ```
/// use mori_format::value::Value;
/// use mori_format::write::{encoded_len, WriteOptions};
/// // header, a directory of one entry (aligned to 64), then 8 bytes aligned to 64
/// assert_eq!(encoded_len(&Value::list([Value::double([1.0])]), &WriteOptions::default())?, 128);
/// # Ok::<(), mori_format::WriteError>(())
/// ```
pub fn encoded_len(value: &Value, opts: &WriteOptions) -> Result<usize, WriteError> {
    Ok(Plan::new(Item::Value(value), opts)?.len())
}

/// Write the region for `value` into the start of `buf`; returns the bytes written.
///
/// ```
/// use mori_format::value::Value;
/// use mori_format::write::{encoded_len, write, WriteOptions};
/// use mori_format::AlignedBuf;
/// let v = Value::character(["a", "b"]);
/// let opts = WriteOptions::default();
/// let mut buf = AlignedBuf::zeroed(encoded_len(&v, &opts)?);
/// assert_eq!(write(&v, &mut buf, &opts)?, buf.len());
/// assert_eq!(&buf[..4], b"SROM");
/// # Ok::<(), mori_format::WriteError>(())
/// ```
pub fn write(value: &Value, buf: &mut [u8], opts: &WriteOptions) -> Result<usize, WriteError> {
    Plan::new(Item::Value(value), opts)?.write_into(buf)
}

/// A checked, sized value ready to be written: the result of the writer's first pass.
///
/// ```
/// use mori_format::write::{Source, WriteOptions};
/// let names = ["a", "b"];
/// let src = Source::Strings(&names);
/// let plan = src.plan(&WriteOptions::default())?;
/// let mut buf = vec![0xAA; plan.len()];
/// plan.write_into(&mut buf)?;
/// # Ok::<(), mori_format::WriteError>(())
/// ```
#[derive(Debug)]
pub struct Plan<'s> {
    root: Item<'s>,
    /// Every node in pre-order: its size and where its blob sits in `blobs`.
    nodes: Vec<Planned>,
    /// Attribute blobs and serialized `NULL` elements, back to back.
    blobs: Vec<u8>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Planned {
    /// Size of the node's bytes as a list element (for a list: the whole nested MORL).
    size: usize,
    /// Its attribute blob in `Plan::blobs` (for a `NULL` element: its serialized form).
    blob: Range<usize>,
}

impl<'s> Plan<'s> {
    fn new(root: Item<'s>, opts: &WriteOptions) -> Result<Self, WriteError> {
        let mut plan = Self {
            root,
            nodes: Vec::new(),
            blobs: Vec::new(),
            len: 0,
        };
        let shape = root.shape()?;
        if let Shape::Fallback(_) = shape {
            return Err(WriteError::NotShareable(match root {
                Item::Value(Value {
                    data: Data::Null, ..
                }) => "NULL",
                _ => "a serialized blob",
            }));
        }
        plan.visit(root, opts.serialize, 0)?;
        let top = &plan.nodes[0];
        plan.len = match shape {
            Shape::Atomic { .. } => top.size.checked_add(MORH_HEADER),
            Shape::Strings(_) => top.size.checked_add(MORS_HEADER),
            Shape::List(_) | Shape::Fallback(_) => Some(top.size),
        }
        .ok_or(WriteError::SizeOverflow)?;
        Ok(plan)
    }

    /// The exact size of the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: every region has a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the region into the start of `buf`; returns [`len`](Self::len).
    ///
    /// Every byte of `buf[..len]` is written, padding included.
    pub fn write_into(&self, buf: &mut [u8]) -> Result<usize, WriteError> {
        self.write_parts(buf, NEVER)
    }

    /// Where the data of every atomic vector (double, integer, logical, complex, raw) of at
    /// least `min` bytes (and at least one byte) goes in the region, in region order.
    ///
    /// With [`write_into_except_payloads`](Self::write_into_except_payloads) these let a caller
    /// place the large data itself, for instance with `pwrite` into a file, and still copy every
    /// byte exactly once.
    ///
    /// ```
    /// use mori_format::write::{Payload, Source, WriteOptions};
    /// let x = [1.0f64, 2.0];
    /// let src = Source::Double(&x);
    /// let plan = src.plan(&WriteOptions::default())?;
    /// let payloads = plan.payloads(16)?;
    /// assert_eq!(payloads, vec![Payload { offset: 64, bytes: bytemuck::cast_slice(&x) }]);
    /// assert!(plan.payloads(17)?.is_empty());
    /// # Ok::<(), mori_format::WriteError>(())
    /// ```
    pub fn payloads(&self, min: usize) -> Result<Vec<Payload<'s>>, WriteError> {
        let min = min.max(1);
        let mut found = Vec::new();
        match self.root.shape()? {
            Shape::Atomic { bytes, .. } if bytes.len() >= min => found.push(Payload {
                offset: MORH_HEADER,
                bytes,
            }),
            Shape::List(children) => self.list_payloads(&children, 0, &mut 0, min, &mut found)?,
            _ => {}
        }
        Ok(found)
    }

    /// [`write_into`](Self::write_into), except for the bytes of the [`payloads`](Self::payloads)
    /// of at least `min` bytes, which are left as they are in `buf` for the caller to place.
    ///
    /// ```
    /// use mori_format::write::{Source, WriteOptions};
    /// let x = [7.0f64; 100];
    /// let src = Source::Double(&x);
    /// let plan = src.plan(&WriteOptions::default())?;
    /// let mut whole = vec![0u8; plan.len()];
    /// plan.write_into(&mut whole)?;
    /// let mut parts = vec![0u8; plan.len()];
    /// plan.write_into_except_payloads(&mut parts, 64)?;
    /// for p in plan.payloads(64)? {
    ///     parts[p.offset..p.offset + p.bytes.len()].copy_from_slice(p.bytes);
    /// }
    /// assert_eq!(parts, whole);
    /// # Ok::<(), mori_format::WriteError>(())
    /// ```
    pub fn write_into_except_payloads(
        &self,
        buf: &mut [u8],
        min: usize,
    ) -> Result<usize, WriteError> {
        self.write_parts(buf, min.max(1))
    }

    /// The payloads of at least `min` bytes in the MORL at `base`, as [`Self::write_list`]
    /// places them.
    fn list_payloads(
        &self,
        children: &Children<'s>,
        base: usize,
        next: &mut usize,
        min: usize,
        found: &mut Vec<Payload<'s>>,
    ) -> Result<(), WriteError> {
        *next += 1;
        let n = children.len();
        let mut cursor = align64(MORL_HEADER + n * DIR_ENTRY).ok_or(WriteError::SizeOverflow)?;
        for i in 0..n {
            let node = *next;
            let size = self.nodes[node].size;
            match children.get(i).shape()? {
                Shape::Atomic { bytes, .. } => {
                    *next += 1;
                    if bytes.len() >= min {
                        found.push(Payload {
                            offset: base + cursor,
                            bytes,
                        });
                    }
                }
                Shape::List(grand) => {
                    self.list_payloads(&grand, base + cursor, next, min, found)?
                }
                Shape::Strings(_) | Shape::Fallback(_) => *next += 1,
            }
            cursor += align64(size).ok_or(WriteError::SizeOverflow)?;
        }
        Ok(())
    }

    /// Write the region, leaving out atomic data of at least `skip` bytes.
    fn write_parts(&self, buf: &mut [u8], skip: usize) -> Result<usize, WriteError> {
        let Some(out) = buf.get_mut(..self.len) else {
            return Err(WriteError::BufferTooSmall {
                needed: self.len,
                got: buf.len(),
            });
        };
        let mut next = 0;
        match self.root.shape()? {
            Shape::Atomic { ty, bytes, len } => {
                let attrs = self.blob(0);
                let (head, body) = out.split_at_mut(MORH_HEADER);
                put_morh(head, ty, len, attrs.len());
                let (data, tail) = body.split_at_mut(bytes.len());
                if bytes.len() < skip {
                    data.copy_from_slice(bytes);
                }
                tail.copy_from_slice(attrs);
            }
            Shape::Strings(seq) => {
                let attrs = self.blob(0);
                let body_len = self.nodes[0].size - attrs.len();
                let (head, body) = out.split_at_mut(MORS_HEADER);
                put_u32(head, 0, MAGIC_MORS);
                put_i32(head, 4, attrs.len() as i32);
                put_i64(head, 8, seq.len() as i64);
                put_i64(head, 16, body_len as i64);
                let (strings, tail) = body.split_at_mut(body_len);
                write_strings(&seq, strings);
                tail.copy_from_slice(attrs);
            }
            Shape::List(children) => self.write_list(&children, out, &mut next, skip)?,
            // `Plan::new` rejects fallback roots; kept as an error rather than a panic.
            Shape::Fallback(_) => return Err(WriteError::NotShareable("a serialized blob")),
        }
        Ok(self.len)
    }

    fn blob(&self, node: usize) -> &[u8] {
        &self.blobs[self.nodes[node].blob.clone()]
    }

    /// First pass over one node: check it, encode its blob and record its element size.
    fn visit(
        &mut self,
        item: Item<'s>,
        opts: SerializeOptions,
        depth: usize,
    ) -> Result<usize, WriteError> {
        if depth > MAX_DEPTH {
            return Err(WriteError::TooDeep { limit: MAX_DEPTH });
        }
        let index = self.nodes.len();
        self.nodes.push(Planned {
            size: 0,
            blob: 0..0,
        });
        let start = self.blobs.len();
        let shape = item.shape()?;
        let attrs = item.attributes()?;
        match shape {
            Shape::Fallback(bytes) => {
                if !attrs.is_empty() {
                    return Err(WriteError::AttributesOnFallback);
                }
                if bytes.is_none() {
                    rser::try_encode_value(&Value::new(Data::Null), opts, &mut self.blobs)
                        .map_err(WriteError::Attributes)?;
                }
            }
            _ if attrs.is_empty() => {}
            _ => encode(&attrs, opts, &mut self.blobs)?,
        }
        let blob = start..self.blobs.len();
        let blob_len = blob.len();
        let size = match shape {
            Shape::Atomic { bytes, .. } => {
                i32::try_from(blob_len)
                    .map_err(|_| WriteError::AttributesTooLarge { size: blob_len })?;
                bytes.len().checked_add(blob_len)
            }
            Shape::Strings(seq) => {
                i32::try_from(blob_len)
                    .map_err(|_| WriteError::AttributesTooLarge { size: blob_len })?;
                strings_body_len(&seq)?.checked_add(blob_len)
            }
            Shape::Fallback(bytes) => Some(bytes.map_or(blob_len, <[u8]>::len)),
            Shape::List(children) => {
                let n = children.len();
                if i32::try_from(n).is_err() {
                    return Err(WriteError::ListTooLong { len: n });
                }
                let mut total = n
                    .checked_mul(DIR_ENTRY)
                    .and_then(|d| d.checked_add(MORL_HEADER))
                    .and_then(align64);
                for i in 0..n {
                    let child = self.visit(children.get(i), opts, depth + 1)?;
                    let child_size = align64(self.nodes[child].size);
                    total = total.zip(child_size).and_then(|(t, c)| t.checked_add(c));
                }
                total
                    .zip(align64(blob_len))
                    .and_then(|(t, a)| t.checked_add(a))
            }
        }
        .ok_or(WriteError::SizeOverflow)?;
        self.nodes[index] = Planned { size, blob };
        Ok(index)
    }

    /// Write a MORL (root or nested) into exactly its own bytes.
    fn write_list(
        &self,
        children: &Children<'s>,
        out: &mut [u8],
        next: &mut usize,
        skip: usize,
    ) -> Result<(), WriteError> {
        let me = *next;
        *next += 1;
        let n = children.len();
        let attrs = self.blob(me);
        let dir_end = MORL_HEADER + n * DIR_ENTRY;
        let mut cursor = align64(dir_end).ok_or(WriteError::SizeOverflow)?;
        out[dir_end..cursor].fill(0);
        for i in 0..n {
            let child = children.get(i);
            let node = *next;
            let size = self.nodes[node].size;
            let slot_end = cursor + align64(size).ok_or(WriteError::SizeOverflow)?;
            let slot = &mut out[cursor..slot_end];
            let (ty, attrs_size, length) = match child.shape()? {
                Shape::Atomic { ty, bytes, len } => {
                    *next += 1;
                    let a = self.blob(node);
                    if bytes.len() < skip {
                        slot[..bytes.len()].copy_from_slice(bytes);
                    }
                    slot[bytes.len()..size].copy_from_slice(a);
                    (ty, a.len(), len)
                }
                Shape::Strings(seq) => {
                    *next += 1;
                    let a = self.blob(node);
                    let body = size - a.len();
                    write_strings(&seq, &mut slot[..body]);
                    slot[body..size].copy_from_slice(a);
                    (SexpType::Character, a.len(), seq.len())
                }
                Shape::List(grand) => {
                    self.write_list(&grand, &mut slot[..size], next, skip)?;
                    (SexpType::List, 0, grand.len())
                }
                Shape::Fallback(bytes) => {
                    *next += 1;
                    slot[..size].copy_from_slice(bytes.unwrap_or_else(|| self.blob(node)));
                    (SexpType::Serialized, 0, 0)
                }
            };
            slot[size..].fill(0);
            let entry = &mut out[MORL_HEADER + i * DIR_ENTRY..][..DIR_ENTRY];
            put_i64(entry, 0, cursor as i64);
            put_i64(entry, 8, size as i64);
            put_i32(entry, 16, ty.code());
            put_i32(entry, 20, attrs_size as i32);
            put_i64(entry, 24, length as i64);
            cursor = slot_end;
        }
        put_u32(out, 0, MAGIC_MORL);
        put_i32(out, 4, n as i32);
        put_i64(out, 8, cursor as i64);
        put_i64(out, 16, attrs.len() as i64);
        out[cursor..cursor + attrs.len()].copy_from_slice(attrs);
        out[cursor + attrs.len()..].fill(0);
        Ok(())
    }
}

/// No payload is that large: [`Plan::write_parts`] then writes everything.
const NEVER: usize = usize::MAX;

/// The data of one atomic vector and where it goes in the region (see [`Plan::payloads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'s> {
    /// Byte offset of the data from the start of the region.
    pub offset: usize,
    /// The data, borrowed from the value or source being written.
    pub bytes: &'s [u8],
}

/// The header of a region whose root is an atomic vector of `len` elements of type `ty`,
/// without attributes, and the length of the whole region. The data follow the header
/// ([`MORH_HEADER`] bytes, so 64-byte aligned in a mapping): a writer that sizes the region,
/// writes this header and then the data in place produces the same bytes as
/// [`Source::plan`] would, without the data ever existing outside the region.
///
/// ```
/// use mori_format::layout::{MORH_HEADER, SexpType};
/// use mori_format::write::{Source, WriteOptions, vector_header};
/// let x = [1.5f64, 2.5];
/// let (head, len) = vector_header(SexpType::Double, x.len())?;
/// let mut region = head.to_vec();
/// region.extend(x.iter().flat_map(|v| v.to_ne_bytes()));
/// assert_eq!(len, region.len());
/// let source = Source::Double(&x);
/// let plan = source.plan(&WriteOptions::default())?;
/// let mut expected = vec![0; plan.len()];
/// plan.write_into(&mut expected)?;
/// assert_eq!(region, expected);
/// assert!(vector_header(SexpType::List, 1).is_err());
/// # Ok::<(), mori_format::WriteError>(())
/// ```
pub fn vector_header(ty: SexpType, len: usize) -> Result<([u8; MORH_HEADER], usize), WriteError> {
    let width = ty.width().ok_or(WriteError::NotShareable(
        "a vector header of a type that is not atomic",
    ))?;
    let total = len
        .checked_mul(width)
        .and_then(|data| data.checked_add(MORH_HEADER))
        .filter(|&total| i64::try_from(total).is_ok())
        .ok_or(WriteError::SizeOverflow)?;
    let mut head = [0; MORH_HEADER];
    put_morh(&mut head, ty, len, 0);
    Ok((head, total))
}

/// Fills `head` (the [`MORH_HEADER`] bytes before an atomic root's data).
fn put_morh(head: &mut [u8], ty: SexpType, len: usize, attrs_len: usize) {
    head.fill(0);
    put_u32(head, 0, MAGIC_MORH);
    put_i32(head, 4, ty.code());
    put_i64(head, 8, len as i64);
    put_i64(head, 16, attrs_len as i64);
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_i32(out: &mut [u8], at: usize, v: i32) {
    out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_i64(out: &mut [u8], at: usize, v: i64) {
    out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One node of either input kind.
#[derive(Debug, Clone, Copy)]
enum Item<'s> {
    Value(&'s Value),
    Source(&'s Source<'s>),
}

/// What the layout needs to know about a node.
enum Shape<'s> {
    Atomic {
        ty: SexpType,
        bytes: &'s [u8],
        len: usize,
    },
    Strings(StrSeq<'s>),
    List(Children<'s>),
    /// A type-0 element: the given bytes, or (`None`) a serialized `NULL` from the blob arena.
    Fallback(Option<&'s [u8]>),
}

/// The strings of a character vector, whatever form the caller holds them in.
#[derive(Clone, Copy)]
enum StrSeq<'s> {
    Owned(&'s [RString]),
    Strs(&'s [&'s str]),
    Opt(&'s [Option<&'s str>]),
}

impl<'s> StrSeq<'s> {
    fn len(&self) -> usize {
        match self {
            Self::Owned(s) => s.len(),
            Self::Strs(s) => s.len(),
            Self::Opt(s) => s.len(),
        }
    }

    fn get(&self, i: usize) -> (Option<&'s [u8]>, Encoding) {
        match self {
            Self::Owned(s) => (s[i].bytes.as_deref(), s[i].encoding),
            Self::Strs(s) => (Some(s[i].as_bytes()), Encoding::for_utf8(s[i])),
            Self::Opt(s) => match s[i] {
                Some(x) => (Some(x.as_bytes()), Encoding::for_utf8(x)),
                None => (None, Encoding::Native),
            },
        }
    }
}

/// The elements of a list, whatever form the caller holds them in.
#[derive(Clone, Copy)]
enum Children<'s> {
    Values(&'s [Value]),
    Named(&'s [(Option<&'s str>, Source<'s>)]),
    Columns(&'s [(&'s str, Source<'s>)]),
}

impl<'s> Children<'s> {
    fn len(&self) -> usize {
        match self {
            Self::Values(v) => v.len(),
            Self::Named(v) => v.len(),
            Self::Columns(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Item<'s> {
        match self {
            Self::Values(v) => Item::Value(&v[i]),
            Self::Named(v) => Item::Source(&v[i].1),
            Self::Columns(v) => Item::Source(&v[i].1),
        }
    }
}

fn atomic<'s, T: bytemuck::NoUninit>(ty: SexpType, x: &'s [T]) -> Shape<'s> {
    Shape::Atomic {
        ty,
        bytes: bytemuck::cast_slice(x),
        len: x.len(),
    }
}

impl<'s> Item<'s> {
    fn shape(self) -> Result<Shape<'s>, WriteError> {
        Ok(match self {
            Self::Value(v) => match &v.data {
                Data::Null => Shape::Fallback(None),
                Data::Serialized(b) => Shape::Fallback(Some(b)),
                Data::Logical(x) => atomic(SexpType::Logical, x),
                Data::Integer(x) => atomic(SexpType::Integer, x),
                Data::Double(x) => atomic(SexpType::Double, x),
                Data::Complex(x) => atomic(SexpType::Complex, x),
                Data::Raw(x) => atomic(SexpType::Raw, x),
                Data::Character(s) => Shape::Strings(StrSeq::Owned(s)),
                Data::List(items) => Shape::List(Children::Values(items)),
            },
            Self::Source(s) => match s {
                Source::Double(x) => atomic(SexpType::Double, x),
                Source::Integer(x) => atomic(SexpType::Integer, x),
                Source::Logical(x) => atomic(SexpType::Logical, x),
                Source::Raw(x) => atomic(SexpType::Raw, x),
                Source::Complex(x) => atomic(SexpType::Complex, x),
                Source::Strings(x) => Shape::Strings(StrSeq::Strs(x)),
                Source::OptStrings(x) => Shape::Strings(StrSeq::Opt(x)),
                Source::List(items) => Shape::List(Children::Named(items)),
                Source::DataFrame(cols) => Shape::List(Children::Columns(cols)),
                Source::Value(v) => return Item::Value(v).shape(),
                Source::Attributed(inner, _) => return Item::Source(inner).shape(),
            },
        })
    }

    /// This node's attributes: its own for a value, generated ones for named lists and data
    /// frames, merged ones for [`Source::Attributed`].
    fn attributes(self) -> Result<Cow<'s, Attributes>, WriteError> {
        Ok(match self {
            Self::Value(v) | Self::Source(&Source::Value(v)) => Cow::Borrowed(&v.attrs),
            Self::Source(Source::List(items)) => {
                let mut attrs = Attributes::new();
                if items.iter().any(|(n, _)| n.is_some()) {
                    let names = items
                        .iter()
                        .map(|(n, _)| RString::new(n.unwrap_or("")))
                        .collect();
                    attrs.set("names", Value::new(Data::Character(names)));
                }
                Cow::Owned(attrs)
            }
            Self::Source(Source::DataFrame(cols)) => {
                let nrow = cols.first().map_or(Ok(0), |(_, c)| source_len(c))?;
                for (column, (_, c)) in cols.iter().enumerate() {
                    let len = source_len(c)?;
                    if len != nrow {
                        return Err(WriteError::RaggedDataFrame { column, len, nrow });
                    }
                }
                let rows =
                    i32::try_from(nrow).map_err(|_| WriteError::ListTooLong { len: nrow })?;
                let mut attrs = Attributes::new();
                let names = cols.iter().map(|(n, _)| RString::new(n)).collect();
                attrs.set("names", Value::new(Data::Character(names)));
                attrs.set("class", Value::character(["data.frame"]));
                attrs.set("row.names", Value::integer([NA_INTEGER, -rows]));
                Cow::Owned(attrs)
            }
            Self::Source(Source::Attributed(inner, extra)) => {
                let mut attrs = Item::Source(inner).attributes()?.into_owned();
                for (name, value) in &extra.0 {
                    attrs.set(name, value.clone());
                }
                Cow::Owned(attrs)
            }
            Self::Source(_) => Cow::Owned(Attributes::new()),
        })
    }
}

/// Append the blob of a non-empty attribute set, or the reason R could not read it.
fn encode(attrs: &Attributes, opts: SerializeOptions, out: &mut Vec<u8>) -> Result<(), WriteError> {
    rser::try_encode_attributes(attrs, opts, out).map_err(WriteError::Attributes)
}

/// Number of rows a data frame column contributes.
fn source_len(s: &Source<'_>) -> Result<usize, WriteError> {
    Ok(match Item::Source(s).shape()? {
        Shape::Atomic { len, .. } => len,
        Shape::Strings(seq) => seq.len(),
        Shape::List(c) => c.len(),
        Shape::Fallback(_) => 1,
    })
}

/// `align64(16 n) + Σ len` after checking every string.
fn strings_body_len(seq: &StrSeq<'_>) -> Result<usize, WriteError> {
    let n = seq.len();
    let mut total = n
        .checked_mul(STRING_ENTRY)
        .and_then(align64)
        .ok_or(WriteError::SizeOverflow)?;
    for index in 0..n {
        if let (Some(b), _) = seq.get(index) {
            if i32::try_from(b.len()).is_err() {
                return Err(WriteError::StringTooLong {
                    index,
                    len: b.len(),
                });
            }
            if b.contains(&0) {
                return Err(WriteError::NulInString { index });
            }
            total = total.checked_add(b.len()).ok_or(WriteError::SizeOverflow)?;
        }
    }
    Ok(total)
}

/// Write a MORS body (offset table, zero pad, packed bytes) into exactly `out`.
fn write_strings(seq: &StrSeq<'_>, out: &mut [u8]) {
    let n = seq.len();
    let table_end = align64(n * STRING_ENTRY).unwrap_or(out.len());
    let (table, area) = out.split_at_mut(table_end);
    table.fill(0);
    let mut offset = 0usize;
    for i in 0..n {
        let entry = &mut table[i * STRING_ENTRY..][..STRING_ENTRY];
        match seq.get(i) {
            (Some(b), enc) => {
                put_i64(entry, 0, offset as i64);
                put_i32(entry, 8, b.len() as i32);
                put_i32(entry, 12, enc as i32);
                area[offset..offset + b.len()].copy_from_slice(b);
                offset += b.len();
            }
            (None, _) => put_i32(entry, 8, -1),
        }
    }
    debug_assert_eq!(offset, area.len());
}
