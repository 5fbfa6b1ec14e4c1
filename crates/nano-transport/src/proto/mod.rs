//! Pure protocol logic: no sockets, no threads, no clocks.
//!
//! Everything here is fed bytes (and, where timers matter, the current [`Instant`]) and answers
//! with decisions, so it can be tested exhaustively and fuzzed without any I/O. The shell in
//! [`Socket`](crate::Socket) and [`crate::conn`] only moves bytes between these machines and mio.
//!
//! [`Instant`]: std::time::Instant

mod frame;
mod handshake;
mod headers;
mod protocol;
mod reqrep;
mod routing;
mod survey;

pub use frame::{FrameDecoder, FrameError, FrameHeader, Framing, MAX_FRAME_LEN};
pub use handshake::{HANDSHAKE_LEN, HandshakeError, decode_handshake, encode_handshake};
pub use headers::{HeaderError, Incoming, MAX_TTL_DEFAULT, pair1_hops, split_backtrace};
pub use protocol::Protocol;
pub use reqrep::{ReqState, Resend};
pub use routing::{PipeId, RoundRobin, TopicFilter, broadcast_targets};
pub use survey::SurveyorState;
