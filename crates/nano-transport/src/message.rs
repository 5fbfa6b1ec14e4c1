//! A received message: the body the peer sent, minus its protocol header, and the pipe it came on.

use std::fmt;
use std::ops::Deref;

use crate::PipeId;

/// One received message. Derefs to the payload (protocol headers already stripped).
///
/// The payload shares the single allocation made when the frame arrived: stripping the header
/// moves an offset, it does not copy.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    buf: Vec<u8>,
    start: usize,
    pipe: PipeId,
}

impl Message {
    pub(crate) fn new(buf: Vec<u8>, header_len: usize, pipe: PipeId) -> Self {
        debug_assert!(header_len <= buf.len());
        Self {
            buf,
            start: header_len,
            pipe,
        }
    }

    /// The pipe (connection) the message arrived on; reply to it with
    /// [`Socket::send_to`](crate::Socket::send_to) in PAIR1 poly mode.
    pub fn pipe(&self) -> PipeId {
        self.pipe
    }

    /// The size of the whole body as it came off the wire (header included).
    pub(crate) fn wire_len(&self) -> usize {
        self.buf.len()
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The protocol header that preceded the payload on the wire (e.g. the REP backtrace).
    pub fn header(&self) -> &[u8] {
        &self.buf[..self.start]
    }

    /// The payload as an owned vector (moves the payload down over the header, if any).
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }
}

impl Deref for Message {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.body()
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.body()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("pipe", &self.pipe)
            .field("len", &self.body().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_stripped_without_losing_bytes() {
        let m = Message::new(vec![0x80, 0, 0, 1, b'h', b'i'], 4, PipeId(2));
        assert_eq!(&*m, b"hi");
        assert_eq!(m.header(), &[0x80, 0, 0, 1]);
        assert_eq!(m.pipe(), PipeId(2));
        assert_eq!(m.into_vec(), b"hi");
    }
}
