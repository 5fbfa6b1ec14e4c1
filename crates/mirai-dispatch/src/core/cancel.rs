//! Ending a task early: cancellation ([`CancelMode`]), queue and run timeouts, and killing a
//! local daemon that does not stop in time.
//!
//! Separate because a task may be cancelled in any state (queued, waiting ahead, running), and
//! each needs its daemon told differently.

use std::time::Instant;

use super::timers::Timer;
use super::{Action, Core, DaemonState, TaskState};
use crate::task::{DaemonId, Outcome, TaskId};

/// How to cancel a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMode {
    /// Ask the daemon to stop (cooperative); it stays connected.
    Soft,
    /// Kill a local daemon (the shell replaces it); remote daemons get a soft cancel.
    Hard,
}

impl Core {
    /// Cancels a task; `true` if it was still unresolved (it then resolves
    /// [`Outcome::Cancelled`]), `false` if unknown or already resolved.
    pub fn cancel(&mut self, task: TaskId, mode: CancelMode, now: Instant) -> bool {
        let Some(entry) = self.tasks.get(&task) else {
            return false;
        };
        match entry.state {
            TaskState::Running(daemon) => self.abandon(daemon, task, mode, now),
            TaskState::Ahead(daemon) => self.abandon_ahead(daemon, task, mode),
            TaskState::Queued => {}
        }
        self.resolve(task, Outcome::Cancelled);
        self.finish(now);
        true
    }

    /// The earliest time [`Core::handle_timeout`] has work (possibly none by then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Queue(task, attempt) => {
                    let state = self
                        .tasks
                        .get(&task)
                        .filter(|e| e.attempt == attempt)
                        .map(|e| e.state);
                    match state {
                        Some(TaskState::Queued) => self.resolve(task, Outcome::TimedOut),
                        // Still waiting behind another task on a daemon: the queue timeout
                        // holds until it starts.
                        Some(TaskState::Ahead(daemon)) => {
                            self.abandon_ahead(daemon, task, CancelMode::Soft);
                            self.resolve(task, Outcome::TimedOut);
                        }
                        _ => {}
                    }
                }
                Timer::Run(task, attempt) => {
                    let running_on = self.tasks.get(&task).and_then(|e| match e.state {
                        TaskState::Running(d) if e.attempt == attempt => Some(d),
                        _ => None,
                    });
                    if let Some(daemon) = running_on {
                        self.abandon(daemon, task, CancelMode::Soft, now);
                        self.resolve(task, Outcome::TimedOut);
                    }
                }
                Timer::CancelGrace(daemon, task) => {
                    if let Some(d) = self.daemons.get_mut(&daemon)
                        && d.state == DaemonState::Active
                        && d.slots
                            .front()
                            .is_some_and(|s| s.task == task && s.abandoned)
                    {
                        self.kill(daemon);
                    }
                }
            }
        }
        self.finish(now);
    }

    /// The running `task` on `daemon` is being resolved early (cancel or run timeout): stop it.
    fn abandon(&mut self, daemon: DaemonId, task: TaskId, mode: CancelMode, now: Instant) {
        let Some(d) = self.daemons.get_mut(&daemon) else {
            return;
        };
        if let Some(slot) = d.slots.iter_mut().find(|s| s.task == task) {
            slot.abandoned = true;
        }
        if mode == CancelMode::Hard && d.local && d.state == DaemonState::Active {
            self.kill(daemon);
            return;
        }
        self.actions.push_back(Action::Cancel { daemon, task });
        if d.local
            && let Some(at) = self.config.cancel_grace.and_then(|g| now.checked_add(g))
        {
            self.timers.arm(at, Timer::CancelGrace(daemon, task));
        }
    }

    /// `task`, sent ahead to `daemon` and not known to have started, is being resolved early:
    /// the daemon is told to drop it. Nothing is killed yet (the task has most likely not
    /// started); a hard cancel kills once the task may have started (see `next_current`).
    fn abandon_ahead(&mut self, daemon: DaemonId, task: TaskId, mode: CancelMode) {
        let Some(d) = self.daemons.get_mut(&daemon) else {
            return;
        };
        if let Some(slot) = d.slots.iter_mut().find(|s| s.task == task) {
            slot.abandoned = true;
            slot.hard = mode == CancelMode::Hard;
        }
        self.actions.push_back(Action::Cancel { daemon, task });
    }

    /// Asks the shell to kill `daemon` (it then reports the disconnect).
    fn kill(&mut self, daemon: DaemonId) {
        if let Some(d) = self.daemons.get_mut(&daemon)
            && d.state == DaemonState::Active
        {
            d.state = DaemonState::Killed;
            self.connections -= 1;
            self.actions.push_back(Action::Kill { daemon });
        }
    }
}
