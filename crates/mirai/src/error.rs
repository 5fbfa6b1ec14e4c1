//! One error type for everything a caller of the facade can meet.

use mirai_dispatch::{NoDaemons, Outcome, RejectReason};

/// Why a task or a pool operation failed.
///
/// ```
/// let e = mirai::Error::Cancelled;
/// assert_eq!(e.to_string(), "task cancelled");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The function failed or panicked on the daemon.
    #[error("task failed: {message}")]
    Task {
        /// The error or panic message.
        message: String,
        /// The daemon's backtrace, when one was captured.
        backtrace: String,
    },
    /// The task was cancelled.
    #[error("task cancelled")]
    Cancelled,
    /// A queue or run timeout expired, or `wait_timeout` gave up.
    #[error("task timed out")]
    TimedOut,
    /// The daemon running the task went away.
    #[error("connection to the daemon lost")]
    ConnectionLost,
    /// The queue's byte cap is reached now; retry later.
    #[error("queue is full")]
    Full,
    /// The arguments exceed the whole byte cap and never fit.
    #[error("task of {size} bytes exceeds the {capacity}-byte cap")]
    TooLarge {
        /// Bytes the task needed.
        size: u64,
        /// The cap.
        capacity: u64,
    },
    /// An argument or a result could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] postcard::Error),
    /// The pool was shut down.
    #[error("pool is shut down")]
    ShutDown,
    /// The pool token given to [`Daemons::token`](crate::Daemons::token) is shorter than 16
    /// bytes: short enough to guess.
    ///
    /// ```
    /// let err = mirai::Daemons::new().token("0123456789").start().unwrap_err();
    /// assert!(matches!(err, mirai::Error::WeakToken { len: 10 }));
    /// ```
    #[error("the join token has {len} bytes; at least 16 are needed")]
    WeakToken {
        /// The token's length in bytes.
        len: usize,
    },
    /// The dispatcher or a daemon process could not be started.
    #[error("cannot start: {0}")]
    Start(String),
    /// Remote daemons could not be launched (see [`Pool::launch`](crate::Pool::launch)).
    #[error("launch: {0}")]
    Launch(#[from] crate::launch::Error),
    /// No daemon is connected and the pool gave up starting any: its daemons kept ending
    /// before they joined (see [`Daemons::respawn`](crate::Daemons::respawn)). The task would
    /// otherwise wait forever; [`Pool::status`](crate::Pool::status) shows the same reason.
    ///
    /// ```
    /// use mirai::{DaemonExit, Error, NoDaemons};
    /// let e = Error::NoDaemons {
    ///     reason: NoDaemons::CrashLoop { failures: 6, last: DaemonExit::Code(1) },
    /// };
    /// assert!(e.to_string().starts_with("no daemons: 6 daemons in a row ended before joining"));
    /// ```
    #[error("no daemons: {reason}")]
    NoDaemons {
        /// Why none runs, nor will.
        reason: NoDaemons,
    },
}

impl From<RejectReason> for Error {
    fn from(reason: RejectReason) -> Self {
        match reason {
            RejectReason::Full => Self::Full,
            RejectReason::TooLarge { size, capacity } => Self::TooLarge { size, capacity },
            RejectReason::ShutDown => Self::ShutDown,
        }
    }
}

/// Decodes an outcome into a typed result.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(outcome: Outcome) -> Result<T, Error> {
    match outcome {
        Outcome::Value(bytes) => Ok(postcard::from_bytes(bytes.as_slice())?),
        Outcome::TaskError(e) => Err(Error::Task {
            message: e.message,
            backtrace: e.backtrace,
        }),
        Outcome::Cancelled => Err(Error::Cancelled),
        Outcome::TimedOut => Err(Error::TimedOut),
        Outcome::ConnectionLost => Err(Error::ConnectionLost),
        Outcome::ShutDown => Err(Error::ShutDown),
        Outcome::NoDaemons(reason) => Err(Error::NoDaemons { reason }),
    }
}
