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
    /// `Some` while a body is being received; its `len()` is the part allocated so far.
    body: Option<Vec<u8>>,
    body_filled: usize,
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
            body_filled: 0,
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
        let spare = self.body_spare().ok_or(FrameError::Alloc(total))?;
        let take = spare.len().min(rest.len());
        spare[..take].copy_from_slice(&rest[..take]);
        used += take;
        Ok((used, self.body_filled(take)))
    }

    /// While a body is in progress, the allocated but unfilled part of it, so the caller can read
    /// from the stream straight into the message (no intermediate copy for large bodies).
    ///
    /// Grows the allocation when the filled part reached it; `None` between frames or when memory
    /// cannot be had (the next [`push`](Self::push) then reports nothing new).
    pub fn body_spare(&mut self) -> Option<&mut [u8]> {
        let body = self.body.as_mut()?;
        if self.body_filled == body.len() && body.len() < self.body_total {
            let grown = (body.len().saturating_mul(2)).clamp(EAGER_ALLOC, self.body_total);
            if body.try_reserve_exact(grown - body.len()).is_err() {
                return None;
            }
            body.resize(grown, 0);
        }
        Some(&mut body[self.body_filled..])
    }

    /// Records that `n` bytes were written into [`body_spare`](Self::body_spare); returns the
    /// body when it is complete.
    pub fn body_filled(&mut self, n: usize) -> Option<Vec<u8>> {
        self.body_filled += n;
        debug_assert!(
            self.body
                .as_ref()
                .is_some_and(|b| self.body_filled <= b.len())
        );
        if self.body_filled == self.body_total {
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
        let first = total.min(EAGER_ALLOC);
        let mut body = Vec::new();
        body.try_reserve_exact(first)
            .map_err(|_| FrameError::Alloc(first))?;
        body.resize(first, 0);
        self.body = Some(body);
        self.body_filled = 0;
        self.body_total = total;
        Ok(())
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        self.header_filled = 0;
        self.body_filled = 0;
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
        assert_eq!(dec.body_spare().map(|s| s.len()), Some(EAGER_ALLOC));
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
