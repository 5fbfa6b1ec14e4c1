//! Daemons joining, retiring and leaving, the launcher giving up ([`Core::strand`]), and what
//! happens to the tasks a departing daemon held: retried, lost, or queued again.
//!
//! Separate because a departure is the one event that moves tasks back into the queue.

use std::collections::VecDeque;
use std::time::Instant;

use super::timers::Timer;
use super::{Action, Core, Daemon, DaemonState, ProtocolViolation, TaskState};
use crate::rng;
use crate::task::{DaemonId, NoDaemons, Outcome, TaskId};

#[cfg(doc)]
use super::Status;

impl Core {
    /// Registers a new daemon connection (`local`: a process the shell can kill and replace).
    /// The shell sends it the init message on [`Action::Joined`].
    pub fn daemon_connected(&mut self, local: bool, now: Instant) -> DaemonId {
        let daemon = DaemonId(self.next_daemon);
        self.next_daemon += 1;
        let seed = self.config.seed.unwrap_or(self.config.entropy);
        self.actions.push_back(Action::Joined {
            daemon,
            rng_stream: rng::daemon_stream(seed, daemon.0),
        });
        let state = if self.shut_down {
            self.actions.push_back(Action::Release { daemon });
            DaemonState::Exiting
        } else {
            self.connections += 1;
            DaemonState::Active
        };
        let setups = match state {
            DaemonState::Active => self.setups.iter().cloned().collect(),
            _ => VecDeque::new(),
        };
        self.daemons.insert(
            daemon,
            Daemon {
                local,
                state,
                slots: VecDeque::new(),
                started: None,
                last_took: None,
                connected: now,
                assigned: 0,
                answered: 0,
                setups,
            },
        );
        if state == DaemonState::Active {
            // Idle, or first busy with the join setups.
            self.next_current(daemon, now);
        }
        self.finish(now);
        daemon
    }

    /// A daemon's connection is gone. Its unresolved current task is queued again (if it has
    /// retries left) or resolves [`Outcome::ConnectionLost`]; a task sent ahead had not started
    /// (a daemon answers its current task before it starts the next) and is queued again at the
    /// front without using a retry. Unknown daemons are ignored.
    pub fn daemon_disconnected(&mut self, daemon: DaemonId, now: Instant) {
        let Some(mut d) = self.daemons.remove(&daemon) else {
            return;
        };
        if d.state == DaemonState::Active {
            self.connections -= 1;
            if d.slots.is_empty() {
                self.idle.retain(|&i| i != daemon);
            }
        }
        let current = d.slots.pop_front();
        // Back to the queue in their order, behind the current task if that is retried.
        for slot in d.slots.iter().rev() {
            if !slot.abandoned {
                self.requeue(slot.task, now);
            }
        }
        if let Some(slot) = current.filter(|s| !s.abandoned) {
            self.lose(slot.task, now);
        }
        self.actions.push_back(Action::Left { daemon });
        self.finish(now);
    }

    /// A daemon said it retires by one of its own exit rules (idletime, walltime, maxtasks): it
    /// gets no more work and leaves the connection count at once. The tasks it holds resolve
    /// (or are queued again) as at any departure when its connection closes. A daemon already
    /// released or killed is left as it is.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default());
    /// let daemon = core.daemon_connected(true, now);
    /// core.daemon_retiring(daemon, now).unwrap();
    /// assert_eq!(core.status().connections, 0);
    /// core.submit(Task::new("f", vec![]), now).unwrap();
    /// assert_eq!(core.status().awaiting, 1, "not sent to the retiring daemon");
    /// ```
    pub fn daemon_retiring(
        &mut self,
        daemon: DaemonId,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        let d = self
            .daemons
            .get_mut(&daemon)
            .ok_or(ProtocolViolation::UnknownDaemon(daemon))?;
        if d.state == DaemonState::Active {
            d.state = DaemonState::Exiting;
            self.connections -= 1;
            self.idle.retain(|&i| i != daemon);
        }
        self.finish(now);
        Ok(())
    }

    /// The launcher gave up starting daemons, for `reason` (`None`: it starts them again).
    /// From then on, whenever no daemon is connected, queued tasks and new submissions
    /// resolve [`Outcome::NoDaemons`]; daemons that do connect (started by hand, or remote)
    /// run tasks as usual. [`Status::no_daemons`] shows the reason.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Action, Config, Core, DaemonExit, NoDaemons, Outcome, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default());
    /// let id = core.submit(Task::new("f", vec![]), now).unwrap();
    /// let why = NoDaemons::CrashLoop { failures: 6, last: DaemonExit::Code(1) };
    /// core.strand(Some(why), now);
    /// let resolved = std::iter::from_fn(|| core.poll_action()).find_map(|a| match a {
    ///     Action::Resolve { task, outcome } => Some((task, outcome)),
    ///     _ => None,
    /// });
    /// assert_eq!(resolved, Some((id, Outcome::NoDaemons(why))));
    /// assert_eq!(core.status().no_daemons, Some(why));
    /// ```
    pub fn strand(&mut self, reason: Option<NoDaemons>, now: Instant) {
        self.stranded = reason;
        self.finish(now);
    }

    /// `task`'s daemon went away mid-run: retry it or resolve it.
    fn lose(&mut self, task: TaskId, now: Instant) {
        let Some(entry) = self.tasks.get_mut(&task) else {
            return;
        };
        if entry.retries_left == 0 || entry.job.is_none() {
            self.resolve(task, Outcome::ConnectionLost);
            return;
        }
        entry.retries_left -= 1;
        if let Some(job) = entry.job.as_mut() {
            job.attempt += 1;
        }
        self.requeue(task, now);
    }

    /// Puts a dispatched `task` back at the front of the queue (it was dispatched before
    /// everything still queued); it keeps its reservation and payload.
    pub(super) fn requeue(&mut self, task: TaskId, now: Instant) {
        let Some(entry) = self.tasks.get_mut(&task) else {
            return;
        };
        if entry.job.is_none() {
            // Nothing to send again (cannot happen for a task that had not started).
            self.resolve(task, Outcome::ConnectionLost);
            return;
        }
        if matches!(entry.state, TaskState::Ahead(_)) && !entry.recalled {
            self.recallable -= 1;
        }
        entry.recalled = false;
        entry.unwritten = false;
        entry.attempt += 1;
        entry.state = TaskState::Queued;
        if let Some(at) = entry.queue_timeout.and_then(|t| now.checked_add(t)) {
            self.timers.arm(at, Timer::Queue(task, entry.attempt));
        }
        self.executing -= 1;
        self.awaiting += 1;
        self.queue.push_front(task);
    }
}
