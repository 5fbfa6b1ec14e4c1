//! How the facade turns a task's argument or result into a payload and back: postcard for the
//! value, and the large buffers it holds ([`Bytes`](crate::Bytes), [`Array`](crate::Array))
//! carried beside the encoded value instead of inside it.
//!
//! Why: postcard (like every serde format) writes a value by walking it, so a 200 MB buffer is
//! copied into the encoding on the host, and decoding copies it again out of the received frame
//! on the daemon, which then holds two copies. A buffer carried beside the value is not walked at
//! all: the payload's pieces are the encoded value and the buffers themselves (shared, not
//! copied), written to the socket in one vectored write; the receiver's values are slices of
//! the frame it read. One memcpy-equivalent per direction, done by the kernel.
//!
//! Layout of a payload:
//!
//! ```text
//! plain:         [0] [postcard value]
//! with buffers:  [1 or 2] [postcard value] [pad] [buffer 0] [pad] [buffer 1] ...
//!                [length of buffer 0..n-1: u64 LE each] [value length: u64 LE] [n: u32 LE]
//! ```
//!
//! Tag 1 means the buffers were written on a little-endian machine, 2 on a big-endian one (an
//! [`Array`](crate::Array) read on a machine of the other order is copied and swapped). Each
//! buffer starts at a multiple of 16 bytes from the start of the payload, which the dispatcher's
//! protocol places at a multiple of 16 in the receiver's message buffer: numbers are read in
//! place. Inside the encoded value a buffer is its index (a postcard `u32`); each index is used
//! once. The trailer comes last so the value is encoded straight into the payload's first piece.
//!
//! The buffers are found through a thread-local set while this module encodes or decodes, which
//! is how `Bytes` and `Array` know to go beside the value; anywhere else (JSON, plain postcard)
//! they serialize as ordinary bytes and sequences.

use std::cell::RefCell;

use bytes::Bytes;
use mirai_dispatch::Payload;
use serde::Serialize;
use serde::de::DeserializeOwned;

const PLAIN: u8 = 0;
const BUFFERS_LE: u8 = 1;
const BUFFERS_BE: u8 = 2;
/// Where each buffer starts, counted from the start of the payload.
pub(crate) const BUFFER_ALIGN: usize = mirai_dispatch::protocol::PAYLOAD_ALIGN;
const ZEROS: [u8; BUFFER_ALIGN] = [0; BUFFER_ALIGN];
/// The fixed part of the trailer: the value length and the buffer count.
const TRAILER_FIXED: usize = 8 + 4;

#[cfg(target_endian = "little")]
const NATIVE: u8 = BUFFERS_LE;
#[cfg(target_endian = "big")]
const NATIVE: u8 = BUFFERS_BE;

thread_local! {
    /// The buffers of the value being encoded on this thread.
    static OUTGOING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    /// The buffers of the payload being decoded on this thread.
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

struct Incoming {
    buffers: Vec<Option<Bytes>>,
    /// Written on a machine of the other byte order.
    swapped: bool,
}

/// Sets a thread-local for its lifetime and puts back what was there before, a panic included.
struct Scoped<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<T>,
}

impl<T> Scoped<T> {
    fn set(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let previous = key.with(|k| k.borrow_mut().replace(value));
        Self { key, previous }
    }

    fn take(mut self) -> Option<T> {
        let previous = self.previous.take();
        self.key
            .with(|k| std::mem::replace(&mut *k.borrow_mut(), previous))
    }
}

impl<T> Drop for Scoped<T> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        self.key.with(|k| *k.borrow_mut() = previous);
    }
}

/// Encodes `value` into a payload whose pieces are the encoded value and every buffer it holds.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Payload, postcard::Error> {
    let scope = Scoped::set(&OUTGOING, Vec::new());
    let head = postcard::to_extend(value, vec![PLAIN]);
    let buffers = scope.take().unwrap_or_default();
    let mut head = head?;
    if buffers.is_empty() {
        return Ok(Payload::from(head));
    }
    head[0] = NATIVE;
    let value_len = (head.len() - 1) as u64;
    let mut trailer = Vec::with_capacity(8 * buffers.len() + TRAILER_FIXED);
    let mut parts = Vec::with_capacity(2 * buffers.len() + 2);
    let mut offset = head.len();
    parts.push(Bytes::from(head));
    let count = buffers.len() as u32;
    for buffer in buffers {
        let pad = offset.next_multiple_of(BUFFER_ALIGN) - offset;
        parts.push(Bytes::from_static(&ZEROS[..pad]));
        offset += pad + buffer.len();
        trailer.extend_from_slice(&(buffer.len() as u64).to_le_bytes());
        parts.push(buffer);
    }
    trailer.extend_from_slice(&value_len.to_le_bytes());
    trailer.extend_from_slice(&count.to_le_bytes());
    parts.push(Bytes::from(trailer));
    Ok(Payload::from_parts(parts))
}

/// Decodes a payload made by [`encode`]; the buffers of the value are slices of `payload`.
///
/// Nothing here trusts the lengths it reads: each is checked against what the payload holds
/// before anything is sliced or allocated, and malformed framing is a bad-encoding error.
pub(crate) fn decode<T: DeserializeOwned>(payload: Bytes) -> Result<T, postcard::Error> {
    let bad = postcard::Error::DeserializeBadEncoding;
    let (&tag, _) = payload
        .split_first()
        .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
    let (value, incoming) = match tag {
        PLAIN => (payload.slice(1..), Vec::new()),
        BUFFERS_LE | BUFFERS_BE => split(&payload).ok_or(bad)?,
        _ => return Err(bad),
    };
    let _scope = Scoped::set(
        &INCOMING,
        Incoming {
            buffers: incoming.into_iter().map(Some).collect(),
            swapped: tag != PLAIN && tag != NATIVE,
        },
    );
    postcard::from_bytes(&value)
}

/// The encoded value and the buffers of a payload with buffers, or `None` if its framing does
/// not add up.
fn split(payload: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    let len = payload.len();
    let fixed = payload.get(len.checked_sub(TRAILER_FIXED)?..)?;
    let value_len = usize::try_from(u64::from_le_bytes(fixed[..8].try_into().ok()?)).ok()?;
    let count = u32::from_le_bytes(fixed[8..].try_into().ok()?) as usize;
    let table_len = count.checked_mul(8)?;
    let table_start = len.checked_sub(TRAILER_FIXED)?.checked_sub(table_len)?;
    let value_end = value_len.checked_add(1)?;
    if value_end > table_start {
        return None;
    }
    let mut buffers = Vec::with_capacity(count);
    let mut offset = value_end;
    for entry in payload[table_start..table_start + table_len].chunks_exact(8) {
        let buffer_len = usize::try_from(u64::from_le_bytes(entry.try_into().ok()?)).ok()?;
        let start = offset.next_multiple_of(BUFFER_ALIGN);
        let end = start.checked_add(buffer_len)?;
        if end > table_start || payload[offset..start].iter().any(|&b| b != 0) {
            return None;
        }
        buffers.push(payload.slice(start..end));
        offset = end;
    }
    (offset == table_start).then(|| (payload.slice(1..value_end), buffers))
}

/// While [`encode`] runs on this thread: adds `buffer` beside the value and returns its index.
pub(crate) fn push_outgoing(buffer: &Bytes) -> Option<u32> {
    OUTGOING.with(|out| {
        let mut out = out.borrow_mut();
        let out = out.as_mut()?;
        out.push(buffer.clone());
        Some((out.len() - 1) as u32)
    })
}

/// Whether [`decode`] runs on this thread (a buffer is then an index, not inline bytes).
pub(crate) fn decoding() -> bool {
    INCOMING.with(|i| i.borrow().is_some())
}

/// While [`decode`] runs on this thread: takes buffer `index` (once) and whether it was written
/// on a machine of the other byte order.
pub(crate) fn take_incoming(index: u32) -> Option<(Bytes, bool)> {
    INCOMING.with(|i| {
        let mut i = i.borrow_mut();
        let incoming = i.as_mut()?;
        let buffer = incoming.buffers.get_mut(index as usize)?.take()?;
        Some((buffer, incoming.swapped))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Array, Bytes as Buf};

    fn joined(p: &Payload) -> Bytes {
        // A received payload is one piece: the frame's tail.
        p.to_bytes()
    }

    #[test]
    fn a_value_without_buffers_is_one_tagged_piece() {
        let p = encode(&(1u8, "x")).unwrap();
        assert_eq!(p.parts().len(), 1);
        assert_eq!(&p[..], &[PLAIN, 1, 1, b'x']);
        assert_eq!(decode::<(u8, String)>(joined(&p)).unwrap(), (1, "x".into()));
    }

    #[test]
    fn buffers_go_beside_the_value_unshared_bytes_are_not_copied() {
        let big = Buf::from(vec![7u8; 100_000]);
        let numbers = Array::from(vec![1.5f64, -2.0, 3.25]);
        let p = encode(&(3u32, big.clone(), numbers.clone())).unwrap();
        // The buffers are pieces of the payload, the very same memory.
        assert!(p.parts().iter().any(|piece| piece.as_ptr() == big.as_ptr()));
        let flat = joined(&p);
        let (n, b, a): (u32, Buf, Array<f64>) = decode(flat.clone()).unwrap();
        assert_eq!((n, &b[..], &a[..]), (3, &big[..], &numbers[..]));
        // On the way back they are slices of the payload: no copy either.
        let inside = |ptr: *const u8| {
            let range = flat.as_ptr_range();
            range.contains(&ptr)
        };
        assert!(inside(b.as_ptr()) && inside(a.as_ptr().cast()));
        assert_eq!(
            (b.as_ptr() as usize - flat.as_ptr() as usize) % BUFFER_ALIGN,
            0
        );
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_panic() {
        let good = joined(&encode(&(Buf::from(vec![1u8; 40]), 5u8)).unwrap());
        for cut in 0..good.len() {
            let _ = decode::<(Buf, u8)>(good.slice(..cut));
        }
        let mut wrong_count = good.to_vec();
        let n = wrong_count.len();
        wrong_count[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<(Buf, u8)>(Bytes::from(wrong_count)).is_err());
        // A buffer index used twice is refused (no value may claim one buffer twice).
        let two = encode(&(Buf::from(vec![1u8; 40]), Buf::from(vec![2u8; 40]))).unwrap();
        let mut twice = joined(&two).to_vec();
        assert_eq!(&twice[..3], &[NATIVE, 0, 1]);
        twice[2] = 0;
        assert!(decode::<(Buf, Buf)>(joined(&two)).is_ok());
        assert!(decode::<(Buf, Buf)>(Bytes::from(twice)).is_err());
        assert!(decode::<(Buf, u8)>(Bytes::from_static(&[9, 0])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_safely_and_what_decodes_round_trips(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            crate::fuzzing::task_payload(&data);
        }

        #[test]
        fn a_corrupted_payload_is_an_error_or_a_value_never_a_panic(
            lens in proptest::collection::vec(0usize..40, 0..4),
            at in 0usize..512,
            byte in proptest::num::u8::ANY,
        ) {
            let value: (Vec<Buf>, Array<f64>, String) = (
                lens.iter().map(|&n| Buf::from(vec![n as u8; n])).collect(),
                Array::from(vec![0.5; lens.len()]),
                "s".into(),
            );
            let mut bytes = encode(&value).unwrap().to_bytes().to_vec();
            let back: (Vec<Buf>, Array<f64>, String) = decode(Bytes::from(bytes.clone())).unwrap();
            proptest::prop_assert!(back.0 == value.0 && back.1 == value.1 && back.2 == value.2);
            let at = at % bytes.len();
            bytes[at] = byte;
            crate::fuzzing::task_payload(&bytes);
        }
    }
}
