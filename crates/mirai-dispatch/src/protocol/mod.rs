//! The messages between the dispatcher and its daemons, and how they are framed.
//!
//! Each message is one transport frame laid out as
//! `[envelope length: u32 little-endian | postcard envelope | zero padding | payload]`. The
//! envelope says what the message is; the payload (task argument or result value) is never part
//! of it, so the sender writes `[transport header | length + envelope | payload pieces]` in one
//! vectored write straight from the buffers the payload lives in, and the receiver hands out the
//! payload as a slice of the frame it read. The padding (counted in the envelope length) makes
//! the payload start at a multiple of [`PAYLOAD_ALIGN`] in the receiver's message buffer, so
//! numbers in it can be read in place. Nothing copies payload bytes.
//!
//! A connection: the daemon dials and sends [`FromDaemon::Hello`] (protocol version, its launch
//! id, the join token); the dispatcher checks it with [`check_hello`] and answers
//! [`ToDaemon::Init`] (daemon id, RNG stream, limits, settings) or [`ToDaemon::Refused`]. Then
//! [`ToDaemon::Task`] / [`FromDaemon::Result`] pairs, [`ToDaemon::Cancel`] for the running task,
//! [`ToDaemon::Heartbeat`] / [`FromDaemon::Heartbeat`] both ways, and [`ToDaemon::Exit`] to end.
//! A daemon that leaves by its own exit rules says so last, with [`FromDaemon::Retiring`]; a
//! daemon that leaves without it is lost, whatever its exit code.
//!
//! Decoding never trusts the peer: the frame is checked against a size limit, the envelope
//! against [`MAX_ENVELOPE`], every variable field against its own limit, and a payload is only
//! accepted on the two messages that carry one.
//!
//! ```
//! use std::io::IoSlice;
//! use mirai_dispatch::protocol::{Limits, ToDaemon};
//! use mirai_dispatch::TaskId;
//!
//! let msg = ToDaemon::Task { task: TaskId(3), function: "sum".into(), trace: None, rng_seed: None, attempt: 0 };
//! let payload = [1u8, 2, 3];
//! let mut header = Vec::new();
//! msg.encode(&mut header).unwrap();
//! // A shell writes both parts at once, e.g. with `write_vectored`.
//! let parts = [IoSlice::new(&header), IoSlice::new(&payload)];
//! let frame: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
//!
//! let (back, body) = ToDaemon::decode(&frame, &Limits::default()).unwrap();
//! assert_eq!(back, msg);
//! assert_eq!(body, &payload);
//! ```

mod codec;
mod handshake;
mod messages;

pub use codec::{DEFAULT_MAX_MESSAGE, DecodeError, EncodeError, FRAME_OVERHEAD, Limits};
pub use handshake::{HandshakeError, check_hello};
pub use messages::{FromDaemon, Hello, Init, RefuseReason, ResultStatus, ToDaemon};

/// The protocol version this crate speaks; a daemon with another version is refused.
pub const VERSION: u16 = 4;

/// Where a payload starts: at a multiple of this many bytes from the start of the message body
/// (the transport's per-message header included), the envelope ending in up to
/// `PAYLOAD_ALIGN - 1` zeros to get there. A receiver whose message buffer is so aligned (an
/// allocation of the system allocator is) finds the payload aligned too, so numbers inside it
/// can be read in place instead of copied out.
///
/// ```
/// use mirai_dispatch::TaskId;
/// use mirai_dispatch::protocol::{PAYLOAD_ALIGN, ToDaemon};
/// let mut body = vec![0u8; 4]; // a transport header
/// ToDaemon::Task { task: TaskId(1), function: "f".into(), trace: None, rng_seed: None, attempt: 0 }
///     .encode(&mut body)?;
/// assert_eq!(body.len() % PAYLOAD_ALIGN, 0);
/// # Ok::<(), mirai_dispatch::protocol::EncodeError>(())
/// ```
pub const PAYLOAD_ALIGN: usize = 16;

/// Largest envelope (message without its payload) accepted, in bytes.
pub const MAX_ENVELOPE: usize = 64 * 1024;

/// Largest function name, in bytes.
pub const MAX_FUNCTION_NAME: usize = 256;

/// Largest trace context, in bytes.
pub const MAX_TRACE: usize = 1024;

/// Largest join token, in bytes.
pub const MAX_TOKEN: usize = 1024;

/// Largest opaque settings blob in an init message, in bytes.
pub const MAX_SETTINGS: usize = 32 * 1024;

/// Largest task-error message or backtrace, in bytes (daemons truncate to fit).
pub const MAX_ERROR_TEXT: usize = 16 * 1024;
