//! Entry points for the fuzz targets (not part of the stable API).

use crate::Protocol;
use crate::proto::{FrameDecoder, Framing, HANDSHAKE_LEN, Incoming, ReqState, decode_handshake};

/// Feeds arbitrary bytes to both frame decoders with a small limit, in pieces whose sizes come
/// from the input itself, alternating between [`FrameDecoder::push`] and appending straight to
/// [`FrameDecoder::body_buffer`] (as the connection does for large bodies).
pub fn frame_decode(data: &[u8]) {
    for framing in [Framing::Tcp, Framing::Ipc] {
        let mut dec = FrameDecoder::new(framing, 1 << 16);
        let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
        let direct = data.get(1).copied().unwrap_or(0);
        let mut rest = data;
        let mut turn = 0u32;
        while !rest.is_empty() {
            let piece = &rest[..step.min(rest.len())];
            turn += 1;
            if direct & (1 << (turn % 8)) != 0
                && let Some((body, room)) = dec.body_buffer()
            {
                assert!(room > 0, "a body in progress always has room");
                let take = room.min(piece.len());
                body.extend_from_slice(&piece[..take]);
                let done = dec.body_appended();
                assert!(done.is_none_or(|b| b.len() <= 1 << 16));
                rest = &rest[take..];
                continue;
            }
            match dec.push(piece) {
                Ok((n, body)) => {
                    assert!(n <= piece.len());
                    assert!(body.is_none_or(|b| b.len() <= 1 << 16));
                    // The decoder consumes at least one byte of a non-empty piece.
                    assert!(n > 0);
                    rest = &rest[n..];
                }
                Err(_) => break,
            }
        }
    }
}

/// Checks arbitrary 8-byte headers against every protocol.
pub fn handshake(data: &[u8]) {
    if let Some(h) = data.get(..HANDSHAKE_LEN) {
        let h: &[u8; HANDSHAKE_LEN] = h.try_into().expect("8 bytes");
        for p in Protocol::ALL {
            if let Ok(peer) = decode_handshake(p, h) {
                assert!(p.accepts(peer));
            }
        }
    }
}

/// Classifies arbitrary bodies for every protocol and matches them as REQ replies.
pub fn proto_headers(data: &[u8]) {
    let ttl = data.first().map_or(8, |b| b % 16);
    for p in Protocol::ALL {
        if let Incoming::Deliver { header_len } = Incoming::classify(p, data, ttl) {
            assert!(header_len <= data.len());
        }
    }
    let mut req = ReqState::new(0, None);
    req.start(0, Vec::new());
    let _ = req.on_reply(data);
}

/// Feeds arbitrary bytes to the decoders of user-supplied TLS material: PEM certificate chains,
/// PEM private keys and fingerprint text.
#[cfg(feature = "tls")]
pub fn tls_material(data: &[u8]) {
    use crate::tls::{Fingerprint, MAX_CHAIN, certificates_from_pem, key_from_pem};
    if let Ok(chain) = certificates_from_pem(data) {
        assert!(!chain.is_empty() && chain.len() <= MAX_CHAIN);
    }
    let _ = key_from_pem(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(f) = Fingerprint::parse(text)
    {
        assert_eq!(Fingerprint::parse(&f.to_string()), Ok(f));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entry_points_hold_on_arbitrary_input(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::frame_decode(&data);
            super::handshake(&data);
            super::proto_headers(&data);
            #[cfg(feature = "tls")]
            super::tls_material(&data);
        }
    }
}
