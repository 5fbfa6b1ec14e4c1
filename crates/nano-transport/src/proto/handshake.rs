//! The 8-byte SP connection header both sides send as soon as a stream connects.
//!
//! Layout: `00 'S' 'P' 00`, the u16 big-endian endpoint type, `00 00`. The transport magic
//! (including the version byte) and the reserved bytes are checked before the peer type, and any
//! failure closes the connection without a reply, as NNG does.

use super::Protocol;

/// The length of the connection header.
pub const HANDSHAKE_LEN: usize = 8;

/// Why a peer's connection header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Bytes 0..4 are not `00 53 50 00` (this includes an unknown version byte).
    #[error("bad sp header magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// Bytes 6..8 are not zero.
    #[error("bad reserved bytes {0:02x?}")]
    BadReserved([u8; 2]),
    /// The header is well formed but the peer is not our partner protocol.
    #[error("peer type {peer:#x} is not a partner of {own}")]
    PeerMismatch {
        /// Our protocol.
        own: Protocol,
        /// The endpoint type the peer announced.
        peer: u16,
    },
}

/// The header we send for `protocol`.
///
/// ```
/// use nano_transport::{Protocol, proto::encode_handshake};
/// assert_eq!(encode_handshake(Protocol::Pair1), [0, b'S', b'P', 0, 0, 0x11, 0, 0]);
/// ```
pub const fn encode_handshake(protocol: Protocol) -> [u8; HANDSHAKE_LEN] {
    let [hi, lo] = protocol.id().to_be_bytes();
    [0, b'S', b'P', 0, hi, lo, 0, 0]
}

/// Checks a peer's header for a socket of protocol `own`; returns the peer's endpoint type.
///
/// ```
/// use nano_transport::{Protocol, proto::{decode_handshake, encode_handshake, HandshakeError}};
/// let rep = encode_handshake(Protocol::Rep0);
/// assert_eq!(decode_handshake(Protocol::Req0, &rep), Ok(0x31));
/// assert!(matches!(
///     decode_handshake(Protocol::Push0, &rep),
///     Err(HandshakeError::PeerMismatch { .. })
/// ));
/// ```
pub fn decode_handshake(
    own: Protocol,
    header: &[u8; HANDSHAKE_LEN],
) -> Result<u16, HandshakeError> {
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != [0, b'S', b'P', 0] {
        return Err(HandshakeError::BadMagic(magic));
    }
    let reserved = [header[6], header[7]];
    if reserved != [0, 0] {
        return Err(HandshakeError::BadReserved(reserved));
    }
    let peer = u16::from_be_bytes([header[4], header[5]]);
    if !own.accepts(peer) {
        return Err(HandshakeError::PeerMismatch { own, peer });
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_protocol_accepts_its_partner_header() {
        for p in Protocol::ALL {
            let h = encode_handshake(p.peer());
            assert_eq!(decode_handshake(p, &h), Ok(p.peer_id()));
        }
    }

    #[test]
    fn version_byte_and_reserved_are_checked() {
        let mut h = encode_handshake(Protocol::Rep0);
        h[3] = 1;
        assert!(matches!(
            decode_handshake(Protocol::Req0, &h),
            Err(HandshakeError::BadMagic(_))
        ));
        let mut h = encode_handshake(Protocol::Rep0);
        h[7] = 1;
        assert_eq!(
            decode_handshake(Protocol::Req0, &h),
            Err(HandshakeError::BadReserved([0, 1]))
        );
        assert!(decode_handshake(Protocol::Req0, b"GET / HT").is_err());
    }

    proptest! {
        #[test]
        fn only_the_exact_partner_header_is_accepted(bytes in any::<[u8; 8]>(), own in 0..11usize) {
            let own = Protocol::ALL[own];
            let ok = decode_handshake(own, &bytes).is_ok();
            prop_assert_eq!(ok, bytes == encode_handshake(own.peer()));
        }
    }
}
