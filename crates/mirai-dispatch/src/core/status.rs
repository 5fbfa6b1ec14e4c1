//! The counters the core reports ([`Status`], [`Memory`]) and the budget queries the host
//! handle makes.
//!
//! Read-only views of the core's state, apart from the events that change it.

use super::Core;
use crate::task::NoDaemons;
#[cfg(feature = "shell")]
use {
    super::{DaemonState, TaskState},
    crate::task::{DaemonId, TaskId},
};

#[cfg(doc)]
use crate::task::Outcome;

/// Byte accounting in a [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Payload bytes reserved now (queued tasks, and retryable tasks until they resolve).
    pub used: u64,
    /// The most ever reserved at once.
    pub peak: u64,
    /// The cap, `None` when unbounded.
    pub capacity: Option<u64>,
    /// Bytes of values resolved but not yet collected (tracked only with a cap).
    pub uncollected: u64,
    /// The uncollected-results cap.
    pub uncollected_capacity: Option<u64>,
}

/// A snapshot of the counters. `awaiting + executing + completed == submitted` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Daemons connected and accepting work (idle or busy).
    pub connections: u64,
    /// Daemons ever connected.
    pub cumulative: u64,
    /// Daemons idle now.
    pub idle: u64,
    /// Tasks queued.
    pub awaiting: u64,
    /// Tasks running on a daemon and not yet resolved.
    pub executing: u64,
    /// Tasks resolved, whatever the outcome.
    pub completed: u64,
    /// Tasks ever accepted.
    pub submitted: u64,
    /// Byte accounting.
    pub memory: Memory,
    /// Set when the launcher gave up starting daemons ([`Core::strand`]): while no daemon is
    /// connected, tasks resolve [`Outcome::NoDaemons`] with this reason instead of waiting.
    pub no_daemons: Option<NoDaemons>,
}

impl Core {
    /// The daemon `task` was sent to, while it runs there or waits there behind another task;
    /// `None` while it is queued, and once it resolved.
    #[cfg(feature = "shell")]
    pub(crate) fn daemon_of(&self, task: TaskId) -> Option<DaemonId> {
        match self.tasks.get(&task)?.state {
            TaskState::Queued => None,
            TaskState::Ahead(daemon) | TaskState::Running(daemon) => Some(daemon),
        }
    }

    /// The daemon `task` runs on, when it is that daemon's current task (nothing before it).
    #[cfg(feature = "shell")]
    pub(crate) fn running_on(&self, task: TaskId) -> Option<DaemonId> {
        match self.tasks.get(&task)?.state {
            TaskState::Running(daemon) => Some(daemon),
            TaskState::Queued | TaskState::Ahead(_) => None,
        }
    }

    /// Whether `task` is the core's: queued or on a daemon, not resolved.
    #[cfg(feature = "shell")]
    pub(crate) fn knows(&self, task: TaskId) -> bool {
        self.tasks.contains_key(&task)
    }

    /// Whether `daemon` is connected, taking work, and holds no task.
    #[cfg(feature = "shell")]
    pub(crate) fn is_idle(&self, daemon: DaemonId) -> bool {
        self.daemons.get(&daemon).is_some_and(|d| {
            d.slots.is_empty() && d.setups.is_empty() && d.state == DaemonState::Active
        })
    }

    /// The counters now.
    pub fn status(&self) -> Status {
        Status {
            connections: self.connections,
            cumulative: self.next_daemon,
            idle: self.idle.len() as u64,
            awaiting: self.awaiting,
            executing: self.executing,
            completed: self.completed,
            submitted: self.submitted,
            memory: Memory {
                used: self.budget.used(),
                peak: self.budget.peak(),
                capacity: self.budget.capacity(),
                uncollected: self.uncollected_bytes,
                uncollected_capacity: self.config.max_uncollected_bytes,
            },
            no_daemons: self.stranded,
        }
    }

    /// Whether a submission of `bytes` would fit in the budget now.
    pub fn fits(&self, bytes: u64) -> bool {
        self.budget
            .capacity()
            .is_none_or(|cap| bytes <= cap - self.budget.used())
    }

    /// The bytes a submission may take now before it is refused [`RejectReason::Full`]:
    /// `u64::MAX` when nothing is refused for want of room (no cap, or shut down, where the
    /// refusal has another reason). The host mirrors it in an atomic after every locked call,
    /// so a refusal needs no lock.
    ///
    /// [`RejectReason::Full`]: super::RejectReason::Full
    pub(crate) fn room_left(&self) -> u64 {
        match self.budget.capacity() {
            Some(cap) if !self.shut_down => cap - self.budget.used(),
            _ => u64::MAX,
        }
    }

    /// The largest submission that [`Core::submit`] refuses only for want of room (a larger
    /// one is refused for its size, whatever the room): the cap or the message limit, the
    /// smaller; 0 without a cap. Fixed for the core's life.
    pub(crate) fn full_refusal_bound(&self) -> u64 {
        match self.budget.capacity() {
            Some(cap) => self.config.max_message_bytes.map_or(cap, |m| m.min(cap)),
            None => 0,
        }
    }

    /// Takes the "bytes were released" flag the host handle uses to wake blocked submitters.
    pub(crate) fn take_host_wake(&mut self) -> bool {
        std::mem::take(&mut self.host_wake)
    }
}
