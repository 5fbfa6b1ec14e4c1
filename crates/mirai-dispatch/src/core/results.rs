//! What comes back: a daemon's [`Reply`] for a task, the [`ProtocolViolation`]s the core
//! refuses, and the host collecting (or forgetting) resolved values.
//!
//! Separate because answers arrive in a daemon's order and may race with cancels and recalls;
//! the rules for which answer counts live here together.

use std::time::Instant;

use super::{Action, Core, DaemonState, Slot};
use crate::task::{DaemonId, Outcome, Payload, TaskError, TaskId};

#[cfg(doc)]
use super::Config;

/// A daemon message the core cannot accept; the shell should drop that daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// The daemon is not (or no longer) connected.
    #[error("{0} is not connected")]
    UnknownDaemon(DaemonId),
    /// The daemon answered for a task it was not running.
    #[error("{daemon} sent a result for {task}, which it was not running")]
    UnexpectedResult {
        /// The daemon.
        daemon: DaemonId,
        /// The task it named.
        task: TaskId,
    },
    /// The daemon answered [`Reply::NotStarted`] for the task it was running, which the core
    /// had neither cancelled nor asked back: only a task still waiting behind another, or one
    /// the daemon was told to drop, may come back unstarted. Taking the answer would requeue a
    /// task that may have run (and had its effects) as if it never had.
    #[error("{daemon} answered {task}, which it was running, as not started")]
    NotStartedWhileRunning {
        /// The daemon.
        daemon: DaemonId,
        /// The task it named.
        task: TaskId,
    },
}

/// What a daemon reported for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The function returned these bytes.
    Value(Payload),
    /// The function failed or panicked.
    Error(TaskError),
    /// The evaluation was interrupted (after a cancel message, or by the daemon itself).
    Interrupted,
    /// The daemon dropped the task without starting it: a cancel or recall reached it while the
    /// task still waited (behind another, see [`Config::send_ahead`], or unread). A task not yet
    /// resolved is queued again at the front. Said of a task the daemon runs that the core never
    /// cancelled nor asked back, it is a [`ProtocolViolation::NotStartedWhileRunning`].
    NotStarted,
    /// The function returned a value over the message limit, which the daemon did not send.
    TooLarge {
        /// The encoded value's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl Reply {
    fn into_outcome(self) -> Outcome {
        match self {
            Self::Value(v) => Outcome::Value(v),
            Self::Error(e) => Outcome::TaskError(e),
            Self::Interrupted | Self::NotStarted => Outcome::Cancelled,
            Self::TooLarge { size, limit } => Outcome::ResultTooLarge { size, limit },
        }
    }
}

impl Core {
    /// A daemon answered for `task`. With `last`, the daemon is about to exit: it is released
    /// and never gets new work. A result for an already resolved (cancelled, timed-out) task
    /// just frees the daemon. A daemon answers its tasks in the order it got them, except that
    /// a task waiting ahead may be answered [`Reply::NotStarted`] at any time. Its current task
    /// may be answered [`Reply::NotStarted`] only if the core cancelled it or asked it back
    /// (the daemon may not have started it yet); otherwise the answer is refused with
    /// [`ProtocolViolation::NotStartedWhileRunning`] and nothing changes, so the shell drops
    /// the daemon and [`Core::daemon_disconnected`] resolves the task as lost.
    pub fn on_result(
        &mut self,
        daemon: DaemonId,
        task: TaskId,
        reply: Reply,
        last: bool,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        let d = self
            .daemons
            .get_mut(&daemon)
            .ok_or(ProtocolViolation::UnknownDaemon(daemon))?;
        if d.state == DaemonState::Exiting {
            // Late answers from a daemon being released carry nothing to resolve.
            self.finish(now);
            return Ok(());
        }
        if matches!(reply, Reply::NotStarted)
            && let Some(at) = d.slots.iter().skip(1).position(|s| s.task == task)
        {
            // Dropped while it still waited (the daemon's watcher answers at once, even while
            // the task before it runs).
            let slot = d.slots.remove(at + 1).expect("position found above");
            if !slot.abandoned {
                self.requeue(task, now);
            }
            self.finish(now);
            return Ok(());
        }
        if d.slots.front().is_none_or(|s| s.task != task) {
            if d.state == DaemonState::Killed {
                self.finish(now);
                return Ok(());
            }
            return Err(ProtocolViolation::UnexpectedResult { daemon, task });
        }
        if matches!(reply, Reply::NotStarted)
            && d.slots.front().is_some_and(|s| !s.abandoned)
            && !self.tasks.get(&task).is_some_and(|e| e.recalled)
        {
            // The daemon runs this task and was never told to drop it: it cannot be unstarted.
            // Nothing changes here; the shell drops the daemon, and its disconnect resolves the
            // task as any task of a lost daemon (retried or `ConnectionLost`).
            return Err(ProtocolViolation::NotStartedWhileRunning { daemon, task });
        }
        let killed = d.state == DaemonState::Killed;
        let slot = d.slots.pop_front().expect("front checked above");
        if !matches!(reply, Reply::NotStarted) {
            d.answered += 1;
        }
        d.last_took = d.started.map(|s| now.saturating_duration_since(s));
        if killed {
            // The process is going, but until it dies it may answer: a task it finished (one
            // that started there after the killed one) resolves with that answer, and the next
            // may now have started there, so its disconnect will count it as lost, not
            // unstarted. Only the abandoned task's answer is not used.
            let next = d.slots.front().copied();
            if !slot.abandoned {
                if matches!(reply, Reply::NotStarted) {
                    self.requeue(task, now);
                } else {
                    self.resolve(task, reply.into_outcome());
                }
            }
            if let Some(next) = next.filter(|s| !s.abandoned) {
                self.start(next.task, daemon, now);
            }
            self.finish(now);
            return Ok(());
        }
        let ahead: Vec<Slot> = if last {
            d.state = DaemonState::Exiting;
            self.connections -= 1;
            self.actions.push_back(Action::Release { daemon });
            // It exits without starting anything else.
            d.slots.drain(..).collect()
        } else {
            Vec::new()
        };
        if !slot.abandoned {
            if matches!(reply, Reply::NotStarted) {
                self.requeue(task, now);
            } else {
                self.resolve(task, reply.into_outcome());
            }
        }
        for s in ahead.iter().rev().filter(|s| !s.abandoned) {
            self.requeue(s.task, now);
        }
        if !last {
            self.next_current(daemon, now);
        }
        self.finish(now);
        Ok(())
    }

    /// The host took the value of `task`: its bytes leave the uncollected count. `false` if the
    /// task had no tracked value.
    pub fn collected(&mut self, task: TaskId, now: Instant) -> bool {
        let Some(bytes) = self.uncollected.remove(&task) else {
            return false;
        };
        self.uncollected_bytes -= bytes;
        self.finish(now);
        true
    }

    /// The handle of `task` is gone and nobody will collect its value. An unresolved task keeps
    /// its place (queued or running: forgetting is not cancelling) but its value will not count
    /// as uncollected when it arrives; a resolved one's value leaves the uncollected count now.
    /// It still resolves exactly once ([`Action::Resolve`]): the shell discards that outcome.
    /// `false` if the task was neither unresolved nor holding uncollected bytes.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Reply, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default().with_max_uncollected_bytes(100));
    /// let id = core.submit(Task::new("f", vec![]), now).unwrap();
    /// let daemon = core.daemon_connected(true, now);
    /// assert!(core.forget(id, now));
    /// assert_eq!(core.status().executing, 1, "still runs");
    /// core.on_result(daemon, id, Reply::Value(vec![0; 10].into()), false, now).unwrap();
    /// assert_eq!(core.status().memory.uncollected, 0, "never counted");
    /// assert!(!core.forget(id, now));
    /// ```
    pub fn forget(&mut self, task: TaskId, now: Instant) -> bool {
        if let Some(entry) = self.tasks.get_mut(&task) {
            entry.forgotten = true;
            return true;
        }
        self.collected(task, now)
    }
}
