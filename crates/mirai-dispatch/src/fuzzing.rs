//! Entry points for the fuzz targets in `fuzz/fuzz_targets/`, kept in the library so they
//! always compile against the current decoders.

use crate::protocol::{FromDaemon, Limits, ToDaemon};

/// Decodes arbitrary bytes as a message in both directions; whatever decodes must re-encode to
/// a frame that decodes to the same message and payload.
pub fn dispatch_msg(data: &[u8]) {
    let limits = Limits::new(1 << 20);
    if let Ok((msg, payload)) = ToDaemon::decode(data, &limits) {
        let mut frame = Vec::new();
        msg.encode(&mut frame)
            .expect("a decoded message re-encodes");
        frame.extend_from_slice(payload);
        let (again, body) = ToDaemon::decode(&frame, &limits).expect("re-encoded frame decodes");
        assert_eq!(again, msg);
        assert_eq!(body, payload);
    }
    if let Ok((msg, payload)) = FromDaemon::decode(data, &limits) {
        let mut frame = Vec::new();
        msg.encode(&mut frame)
            .expect("a decoded message re-encodes");
        frame.extend_from_slice(payload);
        let (again, body) = FromDaemon::decode(&frame, &limits).expect("re-encoded frame decodes");
        assert_eq!(again, msg);
        assert_eq!(body, payload);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn survives_edge_inputs() {
        for data in [
            &[][..],
            &[0; 4],
            &[255; 9],
            &[1, 0, 0, 0, 4],
            &[2, 0, 0, 0, 0, 0, 7],
        ] {
            super::dispatch_msg(data);
        }
    }
}
