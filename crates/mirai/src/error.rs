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
    /// The encoded argument exceeds the pool's message limit
    /// ([`Daemons::max_message_bytes`](crate::Daemons::max_message_bytes)): refused at submit,
    /// before it is queued (`try_submit` hands the argument back with it).
    ///
    /// ```
    /// # fn len(v: Vec<u8>) -> usize { v.len() }
    /// # const LEN: mirai::TaskFn<Vec<u8>, usize> = mirai::task!(len);
    /// let pool = mirai::Daemons::new().max_message_bytes(1000).start()?;
    /// let (err, arg) = pool.try_submit(&LEN, vec![7; 2000]).unwrap_err();
    /// // A format byte, then 2000 elements and their 2-byte length prefix, as postcard
    /// // encodes them.
    /// assert!(matches!(err, mirai::Error::ArgumentTooLarge { size: 2003, limit: 1000 }));
    /// assert_eq!(arg.len(), 2000); // handed back
    /// # Ok::<(), mirai::Error>(())
    /// ```
    #[error("task argument of {size} bytes exceeds the {limit}-byte message limit")]
    ArgumentTooLarge {
        /// The encoded argument's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The function's encoded result exceeds the pool's message limit
    /// ([`Daemons::max_message_bytes`](crate::Daemons::max_message_bytes)). The daemon checks
    /// the size before it sends and answers with this instead; it stays connected and serves the
    /// next task.
    ///
    /// ```rust,standalone_crate
    /// use mirai::{Daemons, Error, Registry, TaskFn, task};
    /// fn zeros(n: usize) -> Vec<u8> { vec![0; n] }
    /// const ZEROS: TaskFn<usize, Vec<u8>> = task!(zeros);
    ///
    /// fn main() -> Result<(), Error> {
    ///     mirai::daemon_main_if_requested(&Registry::new().with(&ZEROS));
    ///     let pool = Daemons::new().local(1).max_message_bytes(1 << 10).start()?;
    ///     let err = pool.submit(&ZEROS, 4096)?.wait().unwrap_err();
    ///     assert!(matches!(err, Error::ResultTooLarge { size: 4099, limit: 1024 }));
    ///     assert_eq!(pool.submit(&ZEROS, 10)?.wait()?.len(), 10); // the same daemon serves on
    ///     Ok(())
    /// }
    /// ```
    #[error("task result of {size} bytes exceeds the {limit}-byte message limit")]
    ResultTooLarge {
        /// The encoded result's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An argument or a result could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] postcard::Error),
    /// Sharing a value, or attaching to a shared one, failed: `?` on [`mirai::share`](crate::share)
    /// and the other sharing functions converts their error into this variant.
    ///
    /// ```
    /// fn attach(name: &str) -> Result<usize, mirai::Error> {
    ///     Ok(mirai::map_shared(name)?.len())
    /// }
    /// let err = attach("not a region name").unwrap_err();
    /// assert!(matches!(err, mirai::Error::Shared(mirai::SharedError::MalformedName { .. })));
    /// assert!(err.to_string().starts_with("shared memory: "));
    /// ```
    #[error("shared memory: {0}")]
    Shared(#[from] mori_shm::Error),
    /// The trace context given with
    /// [`TaskOptions::trace_parent`](crate::TaskOptions::trace_parent) is not a valid W3C
    /// `traceparent`: refused at submit, before the task is queued.
    #[error("trace context: {0}")]
    TraceParent(#[from] crate::trace::TraceParentError),
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
    /// A `tls+tcp://` address in a build without the `tls` feature (on by default), which
    /// leaves the TLS stack out: refused at start, before anything listens.
    ///
    /// ```
    /// let result = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start();
    /// if cfg!(feature = "tls") {
    ///     assert!(result?.tls_fingerprint().is_some());
    /// } else {
    ///     assert!(matches!(result, Err(mirai::Error::TlsDisabled { .. })));
    /// }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    #[error("{url}: tls+tcp:// needs the `tls` feature of mirai, which this build leaves out")]
    TlsDisabled {
        /// The address.
        url: String,
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
            RejectReason::MessageTooLarge { size, limit } => Self::ArgumentTooLarge { size, limit },
        }
    }
}

/// Decodes an outcome into a typed result.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(outcome: Outcome) -> Result<T, Error> {
    match outcome {
        Outcome::Value(payload) => Ok(crate::wire::decode(payload.to_bytes())?),
        Outcome::TaskError(e) => Err(Error::Task {
            message: e.message,
            backtrace: e.backtrace,
        }),
        Outcome::Cancelled => Err(Error::Cancelled),
        Outcome::TimedOut => Err(Error::TimedOut),
        Outcome::ConnectionLost => Err(Error::ConnectionLost),
        Outcome::ShutDown => Err(Error::ShutDown),
        Outcome::NoDaemons(reason) => Err(Error::NoDaemons { reason }),
        Outcome::ResultTooLarge { size, limit } => Err(Error::ResultTooLarge { size, limit }),
    }
}
