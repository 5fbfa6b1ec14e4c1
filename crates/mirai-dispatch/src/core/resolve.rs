//! The end of a task: [`Core::resolve`], the one place a task resolves (counters, budget,
//! `everywhere` groups, uncollected bytes, the [`Action::Resolve`]), and [`Core::shutdown`],
//! which resolves them all.
//!
//! Separate so that "every task resolves exactly once" can be checked in one place.

use std::time::Instant;

use super::{Action, Core, DaemonState, TaskState};
use crate::task::{Outcome, TaskId};

impl Core {
    /// Resolves every unresolved task with [`Outcome::ShutDown`] (queued ones first, in FIFO
    /// order), releases every daemon and refuses further submissions.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let queued: Vec<TaskId> = self.queue.drain(..).collect();
        for task in queued {
            if self.is_queued(task) {
                self.resolve(task, Outcome::ShutDown);
            }
        }
        let mut running: Vec<TaskId> = self.tasks.keys().copied().collect();
        running.sort_unstable();
        for task in running {
            self.resolve(task, Outcome::ShutDown);
        }
        for (&daemon, d) in &mut self.daemons {
            if d.state == DaemonState::Active {
                d.state = DaemonState::Exiting;
                self.connections -= 1;
                self.actions.push_back(Action::Release { daemon });
            }
        }
        self.idle.clear();
        self.open.clear();
        self.timers.clear();
        self.released = true;
        self.finish(now);
    }

    /// Whether [`Core::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Ends `task` with `outcome`: the one place a task resolves.
    pub(super) fn resolve(&mut self, task: TaskId, outcome: Outcome) {
        let Some(entry) = self.tasks.remove(&task) else {
            return;
        };
        match entry.state {
            TaskState::Queued => self.awaiting -= 1,
            TaskState::Ahead(_) => {
                self.executing -= 1;
                if !entry.recalled {
                    self.recallable -= 1;
                }
            }
            TaskState::Running(_) => self.executing -= 1,
        }
        if entry.reserved > 0 {
            self.budget.release(entry.reserved);
            self.released = true;
        }
        if let Some(g) = entry.group
            && let Some(group) = self.groups.get_mut(&g)
        {
            group.remaining -= 1;
            if group.remaining == 0 {
                self.groups.remove(&g);
            }
        }
        self.completed += 1;
        if entry.setup {
            // Nobody waits for a join setup's copy; a failure is reported apart.
            if let (TaskState::Running(daemon), false) = (
                entry.state,
                matches!(
                    outcome,
                    Outcome::Value(_) | Outcome::ConnectionLost | Outcome::ShutDown
                ),
            ) {
                self.actions
                    .push_back(Action::SetupFailed { daemon, outcome });
            }
            return;
        }
        if let (Some(_), Outcome::Value(v), false) =
            (self.config.max_uncollected_bytes, &outcome, entry.forgotten)
        {
            let bytes = v.len() as u64;
            self.uncollected.insert(task, bytes);
            self.uncollected_bytes += bytes;
        }
        self.actions.push_back(Action::Resolve { task, outcome });
    }
}
