//! The message types, one enum per direction.

use serde::{Deserialize, Serialize};

use crate::daemon::ExitReason;
use crate::task::{DaemonId, TaskError, TaskId};

/// The daemon's first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the daemon speaks ([`super::VERSION`]).
    pub version: u16,
    /// The id the launcher gave this daemon (0 when launched by hand), for logs and events.
    pub launch_id: u64,
    /// The join token: a secret the dispatcher handed its launchers.
    pub token: Vec<u8>,
}

/// The dispatcher's answer to an accepted [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    /// The dispatcher's id for this connection.
    pub daemon: DaemonId,
    /// Seed of the daemon's own RNG stream (used by tasks that carry none).
    pub rng_stream: u64,
    /// The pool's message limit ([`Limits::max_message`](super::Limits::max_message)), which
    /// both sides keep: the largest task argument the dispatcher sends and the largest result
    /// value it accepts. A daemon answers a larger value with [`ResultStatus::TooLarge`]
    /// instead of sending it.
    pub max_message: u64,
    /// How often the dispatcher expects a heartbeat, in milliseconds (0: never).
    pub heartbeat_ms: u64,
    /// Application settings, opaque to the dispatcher (e.g. serialization options).
    pub settings: Vec<u8>,
}

/// Why a daemon was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The daemon speaks another protocol version; the dispatcher speaks this one.
    Version(u16),
    /// The join token did not match.
    Token,
    /// The dispatcher is shutting down.
    ShuttingDown,
    /// The credential is right, but a daemon of the same (nonzero) launch id is already
    /// admitted: each launch's credential admits one daemon at a time, the first to present it.
    LaunchInUse,
}

/// Dispatcher -> daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToDaemon {
    /// Accepts the daemon.
    Init(Init),
    /// Refuses the daemon; it should exit.
    Refused(RefuseReason),
    /// Run a task; the argument is the frame's payload.
    Task {
        /// The task.
        task: TaskId,
        /// The registered function to run.
        function: String,
        /// Trace context from the submitter.
        trace: Option<Vec<u8>>,
        /// The task's RNG stream seed, when the dispatcher has a seed.
        rng_seed: Option<u64>,
        /// 0 the first time; one more for each retry after a lost daemon.
        attempt: u32,
    },
    /// Cancel a task: the running one is interrupted (through its token), one still waiting
    /// behind it is dropped unstarted and answered [`ResultStatus::NotStarted`], one already
    /// finished is ignored.
    Cancel {
        /// The task.
        task: TaskId,
    },
    /// Hand back a task waiting behind the running one: drop it and answer
    /// [`ResultStatus::NotStarted`] if it has not started; otherwise let it run (never
    /// interrupts).
    Recall {
        /// The task.
        task: TaskId,
    },
    /// The dispatcher is alive.
    Heartbeat,
    /// Exit now (after a last result, or at shutdown).
    Exit,
}

/// How a task ended on the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultStatus {
    /// Returned a value: the frame's payload.
    Ok,
    /// Returned an error or panicked.
    Err(TaskError),
    /// Stopped by a cancel.
    Interrupted,
    /// Dropped without starting: a cancel arrived while it waited behind the running task.
    NotStarted,
    /// Returned a value whose encoding exceeds the message limit ([`Init::max_message`]): the
    /// daemon sent this instead, and stays connected.
    TooLarge {
        /// The encoded value's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Daemon -> dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromDaemon {
    /// The handshake.
    Hello(Hello),
    /// A task's result; the value is the frame's payload when `status` is `Ok`.
    Result {
        /// The task.
        task: TaskId,
        /// How it ended.
        status: ResultStatus,
        /// The daemon exits after this result (maxtasks or walltime reached): send no more work.
        last: bool,
    },
    /// The daemon is alive.
    Heartbeat,
    /// The daemon leaves by one of its own exit rules (idletime, walltime, maxtasks) and will
    /// close its connection: it starts nothing more, so the tasks it holds had not started. Sent
    /// after its last result (if any), as its last message. A daemon that leaves without this
    /// message is lost, whatever its exit code.
    Retiring {
        /// Which rule: never [`ExitReason::HostGone`], which nobody would hear.
        reason: ExitReason,
    },
}

impl ToDaemon {
    /// The message's name, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Refused(_) => "refused",
            Self::Task { .. } => "task",
            Self::Cancel { .. } => "cancel",
            Self::Recall { .. } => "recall",
            Self::Heartbeat => "heartbeat",
            Self::Exit => "exit",
        }
    }
}

impl FromDaemon {
    /// The message's name, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Result { .. } => "result",
            Self::Heartbeat => "heartbeat",
            Self::Retiring { .. } => "retiring",
        }
    }
}
