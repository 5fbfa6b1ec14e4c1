//! Entry points for the fuzz targets (not part of the stable API).

use std::time::{Duration, Instant};

use crate::Protocol;
use crate::proto::{
    FrameDecoder, Framing, HANDSHAKE_LEN, HeaderError, Incoming, ReqState, SurveyorState,
    decode_handshake, split_backtrace,
};
use crate::url::{Address, numeric_only};

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

/// Parses arbitrary text as an endpoint URL (tcp-family hosts resolved as numeric addresses
/// only, so nothing touches the network). What is accepted obeys the length rules of
/// `sun_path` and re-parses from its [`Address::to_url`] to the same address.
pub fn url_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(addr) = Address::parse_with(&text, &numeric_only) else {
        return;
    };
    match &addr {
        Address::Ipc(path) => assert!((1..=107).contains(&path.as_os_str().len())),
        Address::Abstract(name) => assert!(!name.is_empty() && name.len() <= 107),
        Address::Tcp(_) | Address::Tls { .. } => {}
    }
    let url = addr.to_url();
    let again = Address::parse_with(&url, &numeric_only)
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its URL {url:?} does not: {e}"));
    match (&addr, &again) {
        // The host as written may be any spelling of the address (`0:0::1` for `::1`).
        (Address::Tls { addr: a, .. }, Address::Tls { addr: b, .. }) => assert_eq!(a, b),
        _ => assert_eq!(addr, again, "{text:?} -> {url:?}"),
    }
}

/// Drives the SURVEY protocol's pure state with an arbitrary sequence of steps: surveys
/// started with arbitrary windows, time passing, arbitrary bodies arriving at the surveyor
/// (responses) and at a respondent (surveys, possibly forwarded over several hops), and the
/// respondent's replies going back. Checks that a surveyor keeps only responses to its current
/// survey within its window, and that a respondent's reply to that survey is accepted.
///
/// Each step is `op, len, len bytes`.
pub fn survey_state(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let seed = data
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
    let ttl = data.get(4).map_or(8, |b| b % 16).max(1);
    let mut surveyor = SurveyorState::new(seed);
    let mut current: Option<(u32, Instant)> = None;
    let mut rest = data.get(5..).unwrap_or_default();
    while let [op, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (arg, next) = tail.split_at(take);
        rest = next;
        match op % 5 {
            0 => {
                let window = Duration::from_millis(u64::from(*len) * 10);
                let id = surveyor.start(now, window);
                assert!(id & 0x8000_0000 != 0, "a survey id has its top bit set");
                assert!(current.is_none_or(|(old, _)| old != id), "a fresh id");
                current = Some((id, now + window));
                assert_eq!(surveyor.deadline(), Some(now + window));
            }
            1 => now += Duration::from_millis(u64::from(*len)),
            2 => {
                // An arbitrary body arriving at the surveyor.
                let classified = Incoming::classify(Protocol::Surveyor0, arg, ttl);
                let accepted = surveyor.accepts(arg, now);
                if arg.len() < 4 {
                    assert_eq!(classified, Incoming::Close);
                    assert_eq!(accepted, Err(HeaderError::Malformed));
                } else {
                    assert_eq!(classified, Incoming::Deliver { header_len: 4 });
                    let id = u32::from_be_bytes(arg[..4].try_into().expect("4 bytes"));
                    let expected = current.is_some_and(|(cur, end)| cur == id && now < end);
                    assert_eq!(accepted, Ok(expected));
                }
            }
            3 => {
                // An arbitrary (possibly forwarded) survey arriving at a respondent, which
                // replies with the backtrace it received.
                let classified = Incoming::classify(Protocol::Respondent0, arg, ttl);
                match split_backtrace(arg, ttl) {
                    Ok(n) => {
                        assert_eq!(classified, Incoming::Deliver { header_len: n });
                        assert!(n % 4 == 0 && n >= 4 && n <= 4 * usize::from(ttl));
                        assert!(arg[n - 4] & 0x80 != 0, "the backtrace ends with an id");
                        let reply = [&arg[..n], b"reply"].concat();
                        let id = u32::from_be_bytes(reply[..4].try_into().expect("4 bytes"));
                        let expected = current.is_some_and(|(cur, end)| cur == id && now < end);
                        assert_eq!(surveyor.accepts(&reply, now), Ok(expected));
                    }
                    Err(e) => {
                        let want = if e.closes_pipe() {
                            Incoming::Close
                        } else {
                            Incoming::Drop
                        };
                        assert_eq!(classified, want);
                    }
                }
            }
            _ => {
                // The current survey itself, sent directly to a respondent and answered.
                let Some((id, end)) = current else {
                    assert!(surveyor.deadline().is_none());
                    continue;
                };
                let survey = [&id.to_be_bytes()[..], arg].concat();
                assert_eq!(
                    Incoming::classify(Protocol::Respondent0, &survey, ttl),
                    Incoming::Deliver { header_len: 4 }
                );
                let reply = [&survey[..4], b"yes"].concat();
                assert_eq!(surveyor.accepts(&reply, now), Ok(now < end));
            }
        }
    }
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
            super::url_parse(&data);
            super::survey_state(&data);
            #[cfg(feature = "tls")]
            super::tls_material(&data);
        }

        /// Survey step sequences built from valid ops (start, wait, respond, forward, answer)
        /// rather than raw bytes, so long runs of meaningful steps are covered.
        #[test]
        fn survey_state_holds_on_step_sequences(
            seed in any::<[u8; 5]>(),
            steps in proptest::collection::vec(
                (0u8..5, proptest::collection::vec(any::<u8>(), 0..24)),
                0..64,
            ),
        ) {
            let mut data = seed.to_vec();
            for (op, arg) in steps {
                data.push(op);
                data.push(arg.len() as u8);
                data.extend_from_slice(&arg);
            }
            super::survey_state(&data);
        }
    }
}
