//! The per-protocol headers at the front of a message body: the REQ/REP and SURVEY backtrace
//! (a stack of big-endian u32 words ended by one with the top bit set) and the PAIR1 hop count.
//!
//! The rules follow NNG: a body too short to hold its header is malformed and closes the pipe;
//! a message that travelled more hops than the TTL is dropped and the pipe stays up.

use super::Protocol;

/// The default maximum number of hops (NNG's `NNG_OPT_MAXTTL`).
pub const MAX_TTL_DEFAULT: u8 = 8;

/// Why a protocol header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The body is too short for its header (or a PAIR1 hop count is over 255): close the pipe.
    #[error("malformed protocol header")]
    Malformed,
    /// The message travelled more hops than allowed: drop it, keep the pipe.
    #[error("message exceeded {max_ttl} hops")]
    TtlExceeded {
        /// The TTL in force.
        max_ttl: u8,
    },
}

impl HeaderError {
    /// Whether the pipe the message came on must be closed (otherwise only the message is lost).
    pub const fn closes_pipe(self) -> bool {
        matches!(self, Self::Malformed)
    }
}

/// Length in bytes of the backtrace at the front of a REQ/SURVEY body, terminator included.
///
/// ```
/// use nano_transport::proto::{split_backtrace, HeaderError};
/// assert_eq!(split_backtrace(&[0x80, 0, 0x12, 0x34, b'h', b'i'], 8), Ok(4));
/// assert_eq!(split_backtrace(&[0, 0, 0, 7, 0x80, 0, 0, 0x55], 8), Ok(8));
/// assert_eq!(split_backtrace(&[0x80, 0], 8), Err(HeaderError::Malformed));
/// ```
pub fn split_backtrace(body: &[u8], max_ttl: u8) -> Result<usize, HeaderError> {
    let mut hops = 0usize;
    for (i, word) in body.chunks(4).enumerate() {
        if word.len() < 4 {
            break;
        }
        hops += 1;
        if hops > usize::from(max_ttl) {
            return Err(HeaderError::TtlExceeded { max_ttl });
        }
        if word[0] & 0x80 != 0 {
            return Ok((i + 1) * 4);
        }
    }
    Err(HeaderError::Malformed)
}

/// The hop count at the front of a PAIR1 body (the header is 4 bytes).
///
/// ```
/// use nano_transport::proto::{pair1_hops, HeaderError};
/// assert_eq!(pair1_hops(&[0, 0, 0, 1, b'a'], 8), Ok(1));
/// assert_eq!(pair1_hops(&[0, 0, 0, 9], 8), Err(HeaderError::TtlExceeded { max_ttl: 8 }));
/// assert_eq!(pair1_hops(&[0, 0, 1, 0], 8), Err(HeaderError::Malformed));
/// ```
pub fn pair1_hops(body: &[u8], max_ttl: u8) -> Result<u32, HeaderError> {
    let word: [u8; 4] = body
        .get(..4)
        .ok_or(HeaderError::Malformed)?
        .try_into()
        .expect("4 bytes");
    let hops = u32::from_be_bytes(word);
    if hops > 0xFF {
        return Err(HeaderError::Malformed);
    }
    if hops > u32::from(max_ttl) {
        return Err(HeaderError::TtlExceeded { max_ttl });
    }
    Ok(hops)
}

/// What to do with a body that arrived on a pipe, judged by its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Keep it; the protocol header is the first `header_len` bytes.
    Deliver {
        /// Bytes of protocol header before the payload.
        header_len: usize,
    },
    /// Discard this message, keep the pipe.
    Drop,
    /// Discard it and close the pipe (malformed, or a message this protocol never receives).
    Close,
}

impl Incoming {
    /// Classifies a body received by a socket of protocol `own` (stateless checks only; REQ and
    /// SURVEYOR then match the id against what is outstanding).
    ///
    /// ```
    /// use nano_transport::{Protocol, proto::Incoming};
    /// assert_eq!(Incoming::classify(Protocol::Pair1, &[0, 0, 0, 1, 7], 8), Incoming::Deliver { header_len: 4 });
    /// assert_eq!(Incoming::classify(Protocol::Pull0, b"x", 8), Incoming::Deliver { header_len: 0 });
    /// assert_eq!(Incoming::classify(Protocol::Push0, b"x", 8), Incoming::Close);
    /// ```
    pub fn classify(own: Protocol, body: &[u8], max_ttl: u8) -> Self {
        let judged = match own {
            Protocol::Pair0 | Protocol::Pull0 | Protocol::Sub0 | Protocol::Bus0 => Ok(0),
            Protocol::Push0 | Protocol::Pub0 => return Self::Close,
            Protocol::Pair1 => pair1_hops(body, max_ttl).map(|_| 4),
            Protocol::Rep0 | Protocol::Respondent0 => split_backtrace(body, max_ttl),
            Protocol::Req0 | Protocol::Surveyor0 => {
                if body.len() < 4 {
                    Err(HeaderError::Malformed)
                } else {
                    Ok(4)
                }
            }
        };
        match judged {
            Ok(header_len) => Self::Deliver { header_len },
            Err(e) if e.closes_pipe() => Self::Close,
            Err(_) => Self::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rep_accepts_eight_hops_and_drops_nine() {
        let mut body: Vec<u8> = [[0, 0, 0, 1]; 7].concat();
        body.extend_from_slice(&[0x80, 0, 0, 1]);
        assert_eq!(split_backtrace(&body, 8), Ok(32));
        let mut nine: Vec<u8> = [[0, 0, 0, 1]; 8].concat();
        nine.extend_from_slice(&[0x80, 0, 0, 1]);
        assert_eq!(
            split_backtrace(&nine, 8),
            Err(HeaderError::TtlExceeded { max_ttl: 8 })
        );
        assert_eq!(Incoming::classify(Protocol::Rep0, &nine, 8), Incoming::Drop);
        assert_eq!(
            Incoming::classify(Protocol::Rep0, &[1, 2], 8),
            Incoming::Close
        );
    }

    #[test]
    fn pair1_hop_rules() {
        assert_eq!(
            Incoming::classify(Protocol::Pair1, &[0, 0, 0, 8], 8),
            Incoming::Deliver { header_len: 4 }
        );
        assert_eq!(
            Incoming::classify(Protocol::Pair1, &[0, 0, 0, 9, 1], 8),
            Incoming::Drop
        );
        assert_eq!(
            Incoming::classify(Protocol::Pair1, &[0, 0, 1, 0], 8),
            Incoming::Close
        );
        assert_eq!(
            Incoming::classify(Protocol::Pair1, &[0, 0, 1], 8),
            Incoming::Close
        );
    }

    #[test]
    fn req_replies_need_an_id() {
        assert_eq!(
            Incoming::classify(Protocol::Req0, &[0x80, 0, 0], 8),
            Incoming::Close
        );
        assert_eq!(
            Incoming::classify(Protocol::Surveyor0, &[0x80, 0, 0, 1], 8),
            Incoming::Deliver { header_len: 4 }
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics_and_stays_in_bounds(
            body in proptest::collection::vec(any::<u8>(), 0..80),
            own in 0..11usize,
            ttl in 1u8..16,
        ) {
            if let Incoming::Deliver { header_len } = Incoming::classify(Protocol::ALL[own], &body, ttl) {
                prop_assert!(header_len <= body.len());
            }
        }

        #[test]
        fn backtrace_ends_at_the_first_word_with_the_top_bit(
            hops in proptest::collection::vec(0u32..0x8000_0000, 0..7),
            id in 0x8000_0000u32..,
            payload in proptest::collection::vec(any::<u8>(), 0..10),
        ) {
            let mut body: Vec<u8> = hops.iter().flat_map(|h| h.to_be_bytes()).collect();
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&payload);
            prop_assert_eq!(split_backtrace(&body, 8), Ok(4 * (hops.len() + 1)));
        }
    }
}
