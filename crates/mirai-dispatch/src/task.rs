//! What a task is and how it ends: the types shared by the core, the host handle, the wire
//! protocol and the daemon.
//!
//! They live in their own module because every layer of the crate speaks them: the core queues a
//! [`Task`], the protocol carries its [`Payload`] as a separate slice, the daemon turns a panic into
//! a [`TaskError`], and the host receives exactly one [`Outcome`] per accepted task.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::payload::Payload;

/// A map keyed by our own ids (tasks, daemons, connections), looked up a dozen times per task:
/// hashed with foldhash (randomly seeded per map) instead of std's SipHash, which cost an
/// eighth of a round trip's instructions on the host.
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Identifies one accepted task for its whole life (unique per [`Core`](crate::Core)).
///
/// ```
/// use mirai_dispatch::TaskId;
/// assert_eq!(TaskId(7).to_string(), "task 7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// Identifies one daemon connection (a reconnecting process gets a new id).
///
/// ```
/// use mirai_dispatch::DaemonId;
/// assert_eq!(DaemonId(2).to_string(), "daemon 2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DaemonId(pub u64);

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "daemon {}", self.0)
    }
}

/// A task as submitted: which registered function to run, its serialized argument, and options.
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::Task;
/// let t = Task::new("sum", vec![1, 2, 3])
///     .with_queue_timeout(Duration::from_secs(5))
///     .with_run_timeout(Duration::from_secs(60))
///     .with_retries(2);
/// assert_eq!(t.payload.len(), 3);
/// assert_eq!(t.retries, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Name of the function registered on the daemons.
    pub function: String,
    /// The serialized argument; its length is what the byte budget reserves.
    pub payload: Payload,
    /// Opaque trace context (e.g. a W3C `traceparent`) forwarded to the daemon.
    pub trace: Option<Box<[u8]>>,
    /// Longest time the task may wait in the queue before it resolves [`Outcome::TimedOut`].
    pub queue_timeout: Option<Duration>,
    /// Longest time the task may run on a daemon before it resolves [`Outcome::TimedOut`] and
    /// the daemon is told to cancel it.
    pub run_timeout: Option<Duration>,
    /// How many times the task is queued again when its daemon is lost mid-run. Non-zero keeps
    /// the payload (and its reservation in the byte budget) until the task resolves.
    pub retries: u32,
}

impl Task {
    /// A task with no timeouts, no trace context and no retries.
    pub fn new(function: impl Into<String>, payload: impl Into<Payload>) -> Self {
        Self {
            function: function.into(),
            payload: payload.into(),
            trace: None,
            queue_timeout: None,
            run_timeout: None,
            retries: 0,
        }
    }

    /// Sets [`Task::queue_timeout`].
    pub fn with_queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = Some(timeout);
        self
    }

    /// Sets [`Task::run_timeout`].
    pub fn with_run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// Sets [`Task::retries`].
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets [`Task::trace`].
    pub fn with_trace(mut self, trace: impl Into<Box<[u8]>>) -> Self {
        self.trace = Some(trace.into());
        self
    }
}

/// An error raised by the task's function on the daemon (a returned error or a caught panic).
///
/// ```
/// use mirai_dispatch::TaskError;
/// let e = TaskError::new("division by zero");
/// assert_eq!(e.to_string(), "division by zero");
/// assert!(e.backtrace.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// What went wrong, as the function or the panic put it.
    pub message: String,
    /// Where it went wrong, when it was captured (empty otherwise).
    pub backtrace: String,
}

impl TaskError {
    /// An error with a message and no backtrace.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            backtrace: String::new(),
        }
    }
}

/// How a task ended. Every accepted task resolves exactly once.
///
/// ```
/// use mirai_dispatch::Outcome;
/// assert!(Outcome::Value(vec![1].into()).is_value());
/// assert!(!Outcome::TimedOut.is_value());
/// assert_eq!(Outcome::ConnectionLost.to_string(), "connection to the daemon lost");
/// let big = Outcome::ResultTooLarge { size: 9, limit: 8 };
/// assert_eq!(big.to_string(), "result of 9 bytes exceeds the 8-byte message limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned these bytes.
    Value(Payload),
    /// The function failed or panicked.
    TaskError(TaskError),
    /// The task was cancelled (by the host, or interrupted on the daemon).
    Cancelled,
    /// The queue timeout or the run timeout expired.
    TimedOut,
    /// The daemon running it went away and no retry was left.
    ConnectionLost,
    /// The dispatcher shut down before the task finished.
    ShutDown,
    /// No daemon is connected and the pool gave up starting any (see [`NoDaemons`]): the task
    /// would wait forever.
    NoDaemons(NoDaemons),
    /// The function returned a value whose encoding exceeds the pool's message limit
    /// ([`Limits::max_message`](crate::protocol::Limits::max_message)); the daemon sent this
    /// instead of the value, and stays connected.
    ResultTooLarge {
        /// The encoded value's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl Outcome {
    /// Whether the task produced a value.
    pub fn is_value(&self) -> bool {
        matches!(self, Self::Value(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(p) => write!(f, "value of {} bytes", p.len()),
            Self::TaskError(e) => write!(f, "task error: {}", e.message),
            Self::Cancelled => f.write_str("cancelled"),
            Self::TimedOut => f.write_str("timed out"),
            Self::ConnectionLost => f.write_str("connection to the daemon lost"),
            Self::ShutDown => f.write_str("dispatcher shut down"),
            Self::NoDaemons(why) => write!(f, "no daemons: {why}"),
            Self::ResultTooLarge { size, limit } => {
                write!(
                    f,
                    "result of {size} bytes exceeds the {limit}-byte message limit"
                )
            }
        }
    }
}

/// Why a pool has no daemon to run its tasks and starts no more: its launcher gave up.
///
/// A launcher reports it through [`Core::strand`](crate::Core::strand) (or
/// `Dispatcher::strand`); from then on, whenever no daemon is connected, queued tasks and new
/// submissions resolve [`Outcome::NoDaemons`] instead of waiting for a daemon that will not come.
///
/// ```
/// use mirai_dispatch::{DaemonExit, NoDaemons};
/// let why = NoDaemons::CrashLoop { failures: 6, last: DaemonExit::Code(1) };
/// assert_eq!(
///     why.to_string(),
///     "6 daemons in a row ended before joining (the last exited with code 1); no more are started"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoDaemons {
    /// Daemon processes kept ending before they joined the dispatcher (the program exits at
    /// start, crashes, or cannot be started): `failures` in a row, none joining in between.
    #[error(
        "{failures} daemons in a row ended before joining (the last {last}); no more are started"
    )]
    CrashLoop {
        /// How many daemons in a row ended before joining.
        failures: u32,
        /// How the last one ended.
        last: DaemonExit,
    },
}

/// How a daemon process ended, as its launcher saw it.
///
/// ```
/// use mirai_dispatch::DaemonExit;
/// assert_eq!(DaemonExit::Signal(9).to_string(), "was killed by signal 9");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DaemonExit {
    /// It exited with this code.
    #[error("exited with code {0}")]
    Code(i32),
    /// A signal ended it.
    #[error("was killed by signal {0}")]
    Signal(i32),
    /// Its process could not be started.
    #[error("could not be started ({0})")]
    NotStarted(std::io::ErrorKind),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_vec_returns_the_tail_whether_shared_or_not() {
        let p = Payload::from_frame(vec![0, 0, 1, 2], 2).unwrap();
        let shared = p.clone();
        assert_eq!(p.into_vec(), [1, 2]);
        assert_eq!(shared.into_vec(), [1, 2]);
        assert!(Payload::from_frame(vec![1], 2).is_none());
        assert!(Payload::from_frame(vec![1], 1).unwrap().is_empty());
    }
}
