//! The core's output: the [`Action`] queue the shell drains, and the [`Job`] a send carries.
//!
//! Every decision the core makes reaches the outside world only as an [`Action`], in the
//! order it must happen; this file is that boundary, apart from the decisions themselves.

use super::Core;
use crate::task::{DaemonId, Outcome, Payload, TaskId};

#[cfg(doc)]
use super::Reply;

/// What the shell sends to a daemon to run one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The registered function's name.
    pub function: String,
    /// The argument bytes (shared, not copied).
    pub payload: Payload,
    /// Trace context from the submitter.
    pub trace: Option<Vec<u8>>,
    /// The task's RNG stream seed, when the dispatcher has a seed. Fixed at submission, so a
    /// retried or requeued task keeps its stream.
    pub rng_seed: Option<u64>,
    /// How many times the task was retried after losing its daemon mid-run (0 the first time;
    /// a task handed back unstarted keeps its number).
    pub attempt: u32,
}

/// Work for the shell, returned by [`Core::poll_action`] in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A daemon joined: send it the init message with this RNG stream.
    Joined {
        /// The new daemon.
        daemon: DaemonId,
        /// Its per-connection RNG stream seed.
        rng_stream: u64,
    },
    /// Send a task to a daemon.
    Send {
        /// Where to.
        daemon: DaemonId,
        /// The task.
        task: TaskId,
        /// What to run.
        job: Job,
    },
    /// Tell a daemon to cancel a task it runs or holds (a task sent ahead that has not started
    /// is dropped and answered with [`Reply::NotStarted`]).
    Cancel {
        /// The daemon.
        daemon: DaemonId,
        /// The task it runs or holds.
        task: TaskId,
    },
    /// Ask a daemon to hand back a task waiting ahead: it drops it if it has not started it
    /// (answering [`Reply::NotStarted`]), and otherwise lets it run (a recall never interrupts).
    Recall {
        /// The daemon.
        daemon: DaemonId,
        /// The task waiting ahead.
        task: TaskId,
    },
    /// Kill a local daemon's process (and start a replacement if the pool wants one); the shell
    /// then reports [`Core::daemon_disconnected`].
    Kill {
        /// The daemon.
        daemon: DaemonId,
    },
    /// Tell a daemon to exit: it marked its last result, or the dispatcher shuts down. It gets
    /// no more work.
    Release {
        /// The daemon.
        daemon: DaemonId,
    },
    /// A daemon left (after [`Core::daemon_disconnected`]).
    Left {
        /// The daemon.
        daemon: DaemonId,
    },
    /// A task ended; complete its handle. Happens exactly once per accepted task.
    Resolve {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: Outcome,
    },
    /// Budget bytes were released: blocked submitters may retry.
    WakeSubmitters,
    /// A join setup ([`Core::add_setup`]) ended on `daemon` without a value (an error, a
    /// result over the limit, an interruption). Nobody holds a handle for it; the daemon
    /// serves on. Setups that end with their daemon or at shutdown are not reported.
    SetupFailed {
        /// The daemon.
        daemon: DaemonId,
        /// How the setup ended.
        outcome: Outcome,
    },
}

impl Core {
    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether actions are waiting for [`Core::poll_action`].
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }
}
