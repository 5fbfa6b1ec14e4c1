//! [`Payload`]: a task's argument or a result's value, as shared bytes in one or more pieces.
//!
//! A payload is written once by whoever produced it and then only shared: the queue, a retry,
//! an `everywhere` fan-out and the connection's send queue all hold references, never copies.
//! On the sending side it may be several pieces (an encoded envelope of the value and the large
//! buffers the value points to, each still owned by the caller's data), which go out in one
//! vectored write. On the receiving side it is one piece: the tail of the frame it was read into.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// Shared, immutable task or result bytes, in one or more pieces.
///
/// Cloning shares the buffers: a payload is produced once on the host and then moves through
/// the queue, a retry and an `everywhere` fan-out without its bytes ever being copied. A payload
/// may also be a tail of a received frame ([`Payload::from_frame`]), so a result is handed to the
/// host in the buffer it was read into, and slices of it ([`Payload::to_bytes`] then
/// [`Bytes::slice`]) keep that buffer alive without copying it.
///
/// A payload of several pieces ([`Payload::from_parts`]) is what the byte budget counts and what
/// goes on the wire as one message; the shells write it with [`Payload::parts`]. Reading it as one
/// slice (`Deref`, [`as_slice`](Payload::as_slice)) joins the pieces into one buffer the first
/// time, a copy the send path never makes: it is there for tests and local calls.
///
/// ```
/// use bytes::Bytes;
/// use mirai_dispatch::Payload;
/// let p = Payload::from(vec![1, 2, 3]);
/// let q = p.clone(); // shares, does not copy
/// assert_eq!(&*q, &[1, 2, 3]);
/// let tail = Payload::from_frame(vec![9, 9, 4, 5], 2).unwrap();
/// assert_eq!(&*tail, &[4, 5]);
///
/// let pieces = Payload::from_parts([Bytes::from_static(b"head"), Bytes::from(vec![7u8; 3])]);
/// assert_eq!(pieces.len(), 7);
/// assert_eq!(pieces.parts().len(), 2);
/// assert_eq!(pieces, Payload::from(b"head\x07\x07\x07".to_vec()));
/// ```
#[derive(Clone)]
pub struct Payload {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    One(Bytes),
    Many(Arc<Pieces>),
}

struct Pieces {
    parts: Box<[Bytes]>,
    len: usize,
    /// The pieces joined, made on the first read as one slice.
    joined: OnceLock<Bytes>,
}

impl Payload {
    /// Wraps `bytes` without copying them.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self::from_bytes(Bytes::from(bytes))
    }

    /// Wraps shared `bytes` without copying them.
    ///
    /// ```
    /// let p = mirai_dispatch::Payload::from_bytes(bytes::Bytes::from_static(b"abc"));
    /// assert_eq!(p.len(), 3);
    /// ```
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            repr: Repr::One(bytes),
        }
    }

    /// One payload made of `parts`, in order, none of them copied (empty parts are dropped).
    ///
    /// ```
    /// use bytes::Bytes;
    /// let p = mirai_dispatch::Payload::from_parts([Bytes::from_static(b"ab"), Bytes::new()]);
    /// assert_eq!(p.parts().len(), 1);
    /// assert_eq!(&*p, b"ab");
    /// ```
    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let mut parts: Vec<Bytes> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        match parts.len() {
            0 => Self::from_bytes(Bytes::new()),
            1 => Self::from_bytes(parts.pop().expect("one part")),
            _ => Self {
                repr: Repr::Many(Arc::new(Pieces {
                    len: parts.iter().map(Bytes::len).sum(),
                    parts: parts.into_boxed_slice(),
                    joined: OnceLock::new(),
                })),
            },
        }
    }

    /// The bytes of `frame` from `start` on, without copying; `None` if `start` is past the end.
    pub fn from_frame(frame: Vec<u8>, start: usize) -> Option<Self> {
        (start <= frame.len()).then(|| Self::from_bytes(Bytes::from(frame).slice(start..)))
    }

    /// The pieces, in order, as the shells write them (one piece for a received payload).
    pub fn parts(&self) -> &[Bytes] {
        match &self.repr {
            Repr::One(b) => std::slice::from_ref(b),
            Repr::Many(p) => &p.parts,
        }
    }

    /// The payload as one shared buffer: free for a payload of one piece (a received one
    /// always is), a copy of the pieces joined otherwise (made once, then shared).
    ///
    /// ```
    /// let p = mirai_dispatch::Payload::from_frame(vec![0, 1, 2, 3], 1).unwrap();
    /// let b = p.to_bytes();
    /// assert_eq!(&b[..], &[1, 2, 3]);
    /// assert_eq!(&b.slice(1..2)[..], &[2]); // still the frame's buffer
    /// ```
    pub fn to_bytes(&self) -> Bytes {
        match &self.repr {
            Repr::One(b) => b.clone(),
            Repr::Many(p) => p.joined().clone(),
        }
    }

    /// The payload bytes (see the type's docs for a payload of several pieces).
    pub fn as_slice(&self) -> &[u8] {
        match &self.repr {
            Repr::One(b) => b,
            Repr::Many(p) => p.joined(),
        }
    }

    /// The payload length in bytes: what the byte budget counts.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::One(b) => b.len(),
            Repr::Many(p) => p.len,
        }
    }

    /// Whether the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes as an owned vector: free when this is the only handle to a one-piece payload
    /// that owns its whole buffer, a copy otherwise.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::One(b) => Vec::from(b),
            Repr::Many(p) => p.joined().to_vec(),
        }
    }
}

impl Pieces {
    fn joined(&self) -> &Bytes {
        self.joined.get_or_init(|| {
            let mut all = Vec::with_capacity(self.len);
            for p in &self.parts {
                all.extend_from_slice(p);
            }
            Bytes::from(all)
        })
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Self::from_bytes(bytes)
    }
}

impl PartialEq for Payload {
    /// Equal bytes, however they are split into pieces (compared without joining them).
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::One(a), Repr::One(b)) => a == b,
            _ => {
                let mine = self.parts().iter().flat_map(|b| b.iter());
                let theirs = other.parts().iter().flat_map(|b| b.iter());
                self.len() == other.len() && mine.eq(theirs)
            }
        }
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_count_and_compare_as_their_concatenation() {
        let a = Payload::from_parts([Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]);
        let b = Payload::from_parts([Bytes::from_static(b"a"), Bytes::from_static(b"bcde")]);
        assert_eq!(a.len(), 5);
        assert_eq!(a, b);
        assert_ne!(a, Payload::from(b"abcdf".to_vec()));
        assert_eq!(a.as_slice(), b"abcde");
        assert_eq!(a.clone().into_vec(), b"abcde");
    }

    #[test]
    fn a_frame_tail_shares_the_frame() {
        let frame = vec![1u8, 2, 3, 4, 5];
        let ptr = frame.as_ptr();
        let p = Payload::from_frame(frame, 2).unwrap();
        assert_eq!(p.to_bytes().as_ptr(), ptr.wrapping_add(2));
        assert!(Payload::from_frame(vec![1], 2).is_none());
    }
}
