//! Message framing on byte streams: a u64 big-endian length (tcp), or the in-band type byte
//! `0x01` followed by that length (ipc and abstract sockets).
//!
//! [`FrameDecoder`] is incremental: it accepts the stream in pieces of any size. The length is
//! checked against the receive limit *before* anything is allocated, and an oversize frame is a
//! protocol error that closes the pipe (it is not skipped), as NNG does. When no limit is set
//! (the default, like NNG 1.x, because mirai payloads can be hundreds of MiB), memory still follows
//! the bytes that actually arrive: up to [`EAGER_ALLOC`] is allocated at once, and larger bodies
//! grow geometrically as data comes in, so a peer that merely *claims* 2^59 bytes costs us at most
//! that first allocation.

/// The largest length the wire allows: the top 4 bits of the 64-bit length are reserved.
pub const MAX_FRAME_LEN: u64 = (1 << 60) - 1;

/// Bodies up to this size are allocated in one piece as soon as their length is known.
const EAGER_ALLOC: usize = 1 << 20;

/// Which stream transport the frames travel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// `tcp://` (and TLS): u64 BE length.
    Tcp,
    /// `ipc://` and `abstract://`: type byte `0x01`, then u64 BE length.
    Ipc,
}

impl Framing {
    /// The length of a frame header.
    pub const fn header_len(self) -> usize {
        match self {
            Self::Tcp => 8,
            Self::Ipc => 9,
        }
    }
}

/// Why a frame was refused; each of these closes the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An ipc frame did not start with the in-band type byte 0x01.
    #[error("bad ipc frame type byte {0:#04x}")]
    BadType(u8),
    /// The announced length exceeds the receive limit (or the wire maximum).
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        size: u64,
        /// Limit in force.
        limit: u64,
    },
    /// Memory for the body could not be obtained.
    #[error("cannot allocate {0} bytes for a frame")]
    Alloc(usize),
}

/// The encoded header of one outgoing frame; send it, then the body, in one vectored write.
///
/// ```
/// use nano_transport::proto::{FrameHeader, Framing};
/// assert_eq!(FrameHeader::new(Framing::Tcp, 5).as_bytes(), &[0, 0, 0, 0, 0, 0, 0, 5]);
/// assert_eq!(FrameHeader::new(Framing::Ipc, 5).as_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0, 5]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    bytes: [u8; 9],
    len: u8,
}

impl FrameHeader {
    /// The header for a body of `body_len` bytes.
    pub fn new(framing: Framing, body_len: u64) -> Self {
        let mut bytes = [0u8; 9];
        let len = match framing {
            Framing::Tcp => {
                bytes[..8].copy_from_slice(&body_len.to_be_bytes());
                8
            }
            Framing::Ipc => {
                bytes[0] = 1;
                bytes[1..].copy_from_slice(&body_len.to_be_bytes());
                9
            }
        };
        Self { bytes, len }
    }

    /// The header bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Incremental frame decoder with a receive limit.
///
/// ```
/// use nano_transport::proto::{FrameDecoder, Framing};
/// let mut dec = FrameDecoder::new(Framing::Tcp, 0);
/// let wire = [0, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'];
/// let (used, first) = dec.push(&wire[..3]).unwrap();
/// assert_eq!((used, first), (3, None));
/// let (used, msg) = dec.push(&wire[3..]).unwrap();
/// assert_eq!((used, msg.as_deref()), (7, Some(&b"hi"[..])));
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    framing: Framing,
    limit: u64,
    header: [u8; 9],
    header_filled: usize,
    /// `Some` while a body is being received: `len()` is what has arrived, `capacity()` what is
    /// allocated so far.
    body: Option<Vec<u8>>,
    body_total: usize,
}

impl FrameDecoder {
    /// A decoder; `limit` is the largest accepted body in bytes, 0 for no limit but the wire's.
    pub fn new(framing: Framing, limit: u64) -> Self {
        Self {
            framing,
            limit,
            header: [0; 9],
            header_filled: 0,
            body: None,
            body_total: 0,
        }
    }

    /// Changes the receive limit for frames whose header has not been read yet.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Whether the decoder sits exactly between two frames.
    pub fn is_idle(&self) -> bool {
        self.header_filled == 0 && self.body.is_none()
    }

    /// Feeds stream bytes; returns how many were consumed and a complete body, if one ended.
    ///
    /// At most one frame is completed per call; call again with the rest of `input`.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let mut used = 0;
        if self.body.is_none() {
            let want = self.framing.header_len() - self.header_filled;
            let take = want.min(input.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&input[..take]);
            self.header_filled += take;
            used += take;
            if self.header_filled < self.framing.header_len() {
                return Ok((used, None));
            }
            self.start_body()?;
            if self.body_total == 0 {
                return Ok((used, self.finish()));
            }
        }
        let rest = &input[used..];
        if rest.is_empty() {
            return Ok((used, None));
        }
        let total = self.body_total;
        let (body, room) = self.body_buffer().ok_or(FrameError::Alloc(total))?;
        let take = room.min(rest.len());
        // The bytes were already read into the caller's buffer (small frames share one read);
        // this is their one copy, into the message's own allocation.
        body.extend_from_slice(&rest[..take]);
        used += take;
        Ok((used, self.body_appended()))
    }

    /// While a body is in progress: the message's buffer (its length is what has arrived so far,
    /// its spare capacity is allocated but unfilled) and how many more bytes may be appended
    /// now, so the caller can read from the stream straight into the message's spare capacity,
    /// without zero-filling it first and without an intermediate copy. Append at most that
    /// many bytes, then call [`body_appended`](Self::body_appended).
    ///
    /// Grows the allocation when it is full (geometrically, never beyond the announced size);
    /// `None` between frames or when memory cannot be had.
    ///
    /// ```
    /// use nano_transport::proto::{FrameDecoder, Framing};
    /// let mut dec = FrameDecoder::new(Framing::Tcp, 0);
    /// assert_eq!(dec.push(&[0, 0, 0, 0, 0, 0, 0, 3]).unwrap(), (8, None));
    /// let (body, room) = dec.body_buffer().unwrap();
    /// assert_eq!((body.len(), room), (0, 3));
    /// body.extend_from_slice(b"abc");
    /// assert_eq!(dec.body_appended().as_deref(), Some(&b"abc"[..]));
    /// ```
    pub fn body_buffer(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        let total = self.body_total;
        let body = self.body.as_mut()?;
        if body.len() == body.capacity() && body.len() < total {
            let grown = (body.len().saturating_mul(2)).clamp(EAGER_ALLOC, total);
            body.try_reserve_exact(grown - body.len()).ok()?;
        }
        let room = (body.capacity() - body.len()).min(total - body.len());
        Some((body, room))
    }

    /// Records bytes appended to [`body_buffer`](Self::body_buffer); returns the body when it
    /// is complete.
    pub fn body_appended(&mut self) -> Option<Vec<u8>> {
        let filled = self.body.as_ref().map_or(0, Vec::len);
        debug_assert!(filled <= self.body_total, "appended beyond the frame");
        if self.body.is_some() && filled >= self.body_total {
            self.finish()
        } else {
            None
        }
    }

    fn start_body(&mut self) -> Result<(), FrameError> {
        let len_bytes = match self.framing {
            Framing::Tcp => &self.header[..8],
            Framing::Ipc => {
                if self.header[0] != 1 {
                    return Err(FrameError::BadType(self.header[0]));
                }
                &self.header[1..9]
            }
        };
        let size = u64::from_be_bytes(len_bytes.try_into().expect("8 bytes"));
        let limit = if self.limit == 0 {
            MAX_FRAME_LEN
        } else {
            self.limit.min(MAX_FRAME_LEN)
        };
        let too_large = FrameError::TooLarge { size, limit };
        if size > limit {
            return Err(too_large);
        }
        let total = usize::try_from(size).map_err(|_| too_large)?;
        if total > isize::MAX as usize {
            return Err(too_large);
        }
        // One allocation at the announced size (up to EAGER_ALLOC when there is no limit), and
        // no zero-filling: the stream's bytes are the first thing written into it.
        let first = total.min(EAGER_ALLOC);
        let mut body = Vec::new();
        body.try_reserve_exact(first)
            .map_err(|_| FrameError::Alloc(first))?;
        self.body = Some(body);
        self.body_total = total;
        Ok(())
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        self.header_filled = 0;
        self.body_total = 0;
        self.body.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(framing: Framing, bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for b in bodies {
            wire.extend_from_slice(FrameHeader::new(framing, b.len() as u64).as_bytes());
            wire.extend_from_slice(b);
        }
        wire
    }

    fn decode_in_pieces(
        framing: Framing,
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut dec = FrameDecoder::new(framing, 0);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        bounds.push(wire.len());
        bounds.sort_unstable();
        for end in bounds {
            while pos < end {
                let (n, msg) = dec.push(&wire[pos..end])?;
                pos += n;
                out.extend(msg);
            }
        }
        assert!(dec.is_idle());
        Ok(out)
    }

    proptest! {
        #[test]
        fn any_split_points_give_the_same_messages(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
            ipc in any::<bool>(),
        ) {
            let framing = if ipc { Framing::Ipc } else { Framing::Tcp };
            let wire = encode(framing, &bodies);
            prop_assert_eq!(decode_in_pieces(framing, &wire, &cuts).unwrap(), bodies);
        }

        #[test]
        fn reading_into_the_body_buffer_gives_the_same_messages(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..6),
            step in 1usize..700,
            ipc in any::<bool>(),
        ) {
            let framing = if ipc { Framing::Ipc } else { Framing::Tcp };
            let wire = encode(framing, &bodies);
            let mut dec = FrameDecoder::new(framing, 0);
            let mut out = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let piece = &rest[..step.min(rest.len())];
                // Like the connection: bodies in progress are filled in place, headers pushed.
                if let Some((body, room)) = dec.body_buffer() {
                    let take = room.min(piece.len());
                    body.extend_from_slice(&piece[..take]);
                    out.extend(dec.body_appended());
                    rest = &rest[take..];
                } else {
                    let (n, msg) = dec.push(piece).unwrap();
                    out.extend(msg);
                    rest = &rest[n..];
                }
            }
            prop_assert!(dec.is_idle());
            prop_assert_eq!(out, bodies);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut dec = FrameDecoder::new(Framing::Ipc, 1 << 16);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                match dec.push(rest) {
                    Ok((n, _)) => rest = &rest[n..],
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn oversized_length_is_refused_before_any_body_byte() {
        let mut dec = FrameDecoder::new(Framing::Tcp, 100);
        let ok = encode(Framing::Tcp, &[vec![7; 100]]);
        assert_eq!(dec.push(&ok).unwrap(), (108, Some(vec![7; 100])));
        let header = FrameHeader::new(Framing::Tcp, 101);
        assert_eq!(
            dec.push(header.as_bytes()),
            Err(FrameError::TooLarge {
                size: 101,
                limit: 100
            })
        );
    }

    #[test]
    fn a_huge_claim_allocates_only_the_first_chunk() {
        let mut dec = FrameDecoder::new(Framing::Tcp, 0);
        let header = FrameHeader::new(Framing::Tcp, 1 << 50);
        assert_eq!(dec.push(header.as_bytes()).unwrap(), (8, None));
        let (body, room) = dec.body_buffer().unwrap();
        assert_eq!((body.len(), room), (0, EAGER_ALLOC));
        assert!(body.capacity() < 2 * EAGER_ALLOC);
        let beyond = FrameHeader::new(Framing::Tcp, MAX_FRAME_LEN + 1);
        let mut dec = FrameDecoder::new(Framing::Tcp, 0);
        assert!(matches!(
            dec.push(beyond.as_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn large_bodies_grow_and_arrive_whole() {
        let body: Vec<u8> = (0..3 * EAGER_ALLOC + 5).map(|i| i as u8).collect();
        let wire = encode(Framing::Ipc, std::slice::from_ref(&body));
        let got = decode_in_pieces(Framing::Ipc, &wire, &[9, 100_000]).unwrap();
        assert_eq!(got, vec![body]);
    }

    #[test]
    fn a_body_is_allocated_once_at_its_announced_size() {
        let body = vec![5u8; 300_000];
        let wire = encode(Framing::Tcp, std::slice::from_ref(&body));
        let mut dec = FrameDecoder::new(Framing::Tcp, 1 << 20);
        let mut got = None;
        for piece in wire.chunks(4096) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, msg) = dec.push(rest).unwrap();
                rest = &rest[n..];
                got = got.or(msg);
            }
        }
        let got = got.unwrap();
        assert_eq!(got, body);
        assert_eq!(got.capacity(), body.len(), "one allocation, never regrown");
    }

    #[test]
    fn ipc_type_byte_must_be_one() {
        let mut dec = FrameDecoder::new(Framing::Ipc, 0);
        assert_eq!(
            dec.push(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Err(FrameError::BadType(2))
        );
    }

    #[test]
    fn empty_frames_are_legal() {
        let wire = encode(Framing::Tcp, &[vec![], vec![1]]);
        assert_eq!(
            decode_in_pieces(Framing::Tcp, &wire, &[]).unwrap(),
            vec![vec![], vec![1]]
        );
    }
}
