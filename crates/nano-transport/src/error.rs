//! The one error type of the socket API.
//!
//! Errors are typed so callers can match on the condition (a timeout is retried, a closed
//! socket is not) and carry the context a log line needs (the URL, the size).

use std::io;

use crate::proto::HandshakeError;

/// Everything a socket operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A blocking operation ran out of time (send/recv timeout, survey window, dial wait).
    #[error("timed out")]
    Timeout,
    /// A non-blocking operation could not complete now.
    #[error("operation would block")]
    WouldBlock,
    /// The socket (or the context) has been closed.
    #[error("socket closed")]
    Closed,
    /// The URL could not be parsed or names an unsupported transport.
    #[error("bad url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `tls+tcp://` address in a build without the `tls` feature (of this crate, or of the
    /// crate that depends on it: `mirai-dispatch`, `mirai`), which leaves the TLS stack out.
    ///
    /// ```
    /// let e = nano_transport::Error::TlsDisabled { url: "tls+tcp://h:1".into() };
    /// assert!(e.to_string().contains("`tls` feature"));
    /// ```
    #[error("{url}: tls+tcp:// needs the `tls` feature, which this build leaves out")]
    TlsDisabled {
        /// The URL as given.
        url: String,
    },
    /// Another live listener owns the address.
    #[error("address in use: {0}")]
    AddrInUse(String),
    /// The peer speaks a protocol that is not our partner.
    #[error("protocol mismatch: {0}")]
    ProtocolMismatch(#[from] HandshakeError),
    /// A message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size of the message.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The operation does not apply to this protocol or in this state (e.g. a REP send with
    /// no request received, `subscribe` on a non-SUB socket).
    #[error("operation not valid now: {0}")]
    State(&'static str),
    /// The named pipe is not (or no longer) connected.
    #[error("no such pipe: {0}")]
    NoSuchPipe(crate::PipeId),
    /// An operating-system error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
