//! Assignment: handing queued tasks to idle daemons (FIFO, longest-idle first), sending short
//! tasks ahead to busy daemons, asking them back, and a task starting on its daemon.
//!
//! Separate because this is the scheduling policy; the other parts only change state and call
//! [`Core::pump`] (through `finish`) to act on it.

use std::time::{Duration, Instant};

use super::timers::Timer;
use super::{Action, Core, DaemonState, MAX_AHEAD_BYTES, Slot, TaskState, UNSTARTED_GRACE};
use crate::task::{DaemonId, TaskId};

#[cfg(doc)]
use super::{Config, Reply};

impl Core {
    /// The shell finished writing `task`'s payload (or gave up): with
    /// [`Config::release_when_written`], its bytes leave the budget now. `false` if nothing was
    /// held for it (already resolved, retryable, or the option is off).
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Action, Config, Core, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(
    ///     Config::default().with_max_queued_bytes(8).with_release_when_written(true),
    /// );
    /// let id = core.submit(Task::new("f", vec![0; 8]), now).unwrap();
    /// core.daemon_connected(true, now);
    /// assert!(std::iter::from_fn(|| core.poll_action()).any(|a| matches!(a, Action::Send { .. })));
    /// assert_eq!(core.status().memory.used, 8, "still on its way out");
    /// assert!(core.written(id, now));
    /// assert_eq!(core.status().memory.used, 0);
    /// ```
    pub fn written(&mut self, task: TaskId, now: Instant) -> bool {
        let Some(entry) = self.tasks.get_mut(&task) else {
            return false;
        };
        if !std::mem::take(&mut entry.unwritten) {
            return false;
        }
        // A task sent ahead keeps its bytes (and payload) until it starts.
        if matches!(entry.state, TaskState::Running(_)) && !entry.recalled {
            let bytes = std::mem::take(&mut entry.reserved);
            if bytes > 0 {
                self.budget.release(bytes);
                self.released = true;
            }
        }
        self.finish(now);
        true
    }

    pub(super) fn is_queued(&self, task: TaskId) -> bool {
        self.tasks
            .get(&task)
            .is_some_and(|e| e.state == TaskState::Queued)
    }

    fn eligible(&self, task: TaskId, daemon: DaemonId) -> bool {
        match self.tasks.get(&task) {
            Some(e) if e.state == TaskState::Queued => match e.group {
                None => true,
                Some(g) => self
                    .groups
                    .get(&g)
                    .is_none_or(|g| !g.served.contains(&daemon)),
            },
            _ => false,
        }
    }

    fn paused(&self) -> bool {
        self.config
            .max_uncollected_bytes
            .is_some_and(|cap| self.uncollected_bytes >= cap)
    }

    /// The first task still queued, dropping ids that left the queue by cancel or timeout.
    fn head(&mut self) -> Option<TaskId> {
        while let Some(&head) = self.queue.front() {
            if self.is_queued(head) {
                return Some(head);
            }
            self.queue.pop_front();
        }
        None
    }

    /// Hands queued tasks to idle daemons, FIFO to the longest-idle daemon; then, with
    /// [`Config::send_ahead`], ordinary tasks to busy daemons one ahead; and when a daemon still
    /// idles with nothing queued, asks tasks sent ahead back.
    pub(super) fn pump(&mut self, now: Instant) {
        while self.awaiting > 0 && !self.idle.is_empty() && !self.paused() {
            let Some(head) = self.head() else {
                break;
            };
            let plain = self.tasks.get(&head).is_some_and(|e| e.group.is_none());
            if plain {
                self.queue.pop_front();
                if let Some(daemon) = self.idle.pop_front() {
                    self.assign(head, daemon, now);
                }
                continue;
            }
            // The head is an `everywhere` copy: find, daemon by daemon in idle order, the first
            // queued task that daemon may take.
            let found = self.idle.iter().enumerate().find_map(|(di, &daemon)| {
                self.queue
                    .iter()
                    .position(|&task| self.eligible(task, daemon))
                    .map(|qi| (di, qi))
            });
            let Some((di, qi)) = found else {
                break;
            };
            if let (Some(daemon), Some(task)) = (self.idle.remove(di), self.queue.remove(qi)) {
                self.assign(task, daemon, now);
            }
        }
        if let Some(short) = self.config.send_ahead
            && self.idle.is_empty()
        {
            self.send_ahead(short, now);
        }
        if !self.idle.is_empty() && self.awaiting == 0 && self.recallable > 0 && !self.paused() {
            self.recall();
        }
        if self.queue.len() > 2 * self.awaiting as usize + 64 {
            let tasks = &self.tasks;
            self.queue
                .retain(|t| tasks.get(t).is_some_and(|e| e.state == TaskState::Queued));
        }
        if self.open.len() > 2 * self.daemons.len() + 64 {
            let daemons = &self.daemons;
            let short = self.config.send_ahead.unwrap_or_default();
            let max = self.config.max_ahead;
            self.open
                .retain(|d| daemons.get(d).is_some_and(|d| d.open(short, max, now)));
        }
    }

    /// Every daemon busy: ordinary tasks at the head of the queue go to busy daemons with room,
    /// in turn, starting with the daemon whose current task started first. An `everywhere` copy at the head waits
    /// for an idle daemon (it must land on a daemon of its own choosing).
    fn send_ahead(&mut self, short: Duration, now: Instant) {
        while self.awaiting > 0 && !self.paused() {
            let Some(head) = self.head() else {
                break;
            };
            if self.tasks.get(&head).is_none_or(|e| {
                e.group.is_some()
                    || e.job
                        .as_ref()
                        .is_none_or(|j| j.payload.len() > MAX_AHEAD_BYTES)
            }) {
                break;
            }
            let daemon = loop {
                match self.open.pop_front() {
                    Some(d)
                        if self
                            .daemons
                            .get(&d)
                            .is_some_and(|x| x.open(short, self.config.max_ahead, now)) =>
                    {
                        break Some(d);
                    }
                    Some(_) => {}
                    None => break None,
                }
            };
            let Some(daemon) = daemon else {
                break;
            };
            self.queue.pop_front();
            let Some(entry) = self.tasks.get_mut(&head) else {
                continue;
            };
            entry.state = TaskState::Ahead(daemon);
            self.awaiting -= 1;
            self.executing += 1;
            self.recallable += 1;
            if self.config.release_when_written && entry.reserved > 0 && entry.retries_left == 0 {
                entry.unwritten = true;
            }
            // The payload is shared, not copied: the core keeps it to queue the task again if
            // it is asked back or its daemon goes before starting it.
            let Some(job) = entry.job.clone() else {
                continue;
            };
            if let Some(d) = self.daemons.get_mut(&daemon) {
                d.assigned += 1;
                d.slots.push_back(Slot {
                    task: head,
                    abandoned: false,
                    hard: false,
                });
                if d.open(short, self.config.max_ahead, now) {
                    self.open.push_back(daemon);
                }
            }
            self.actions.push_back(Action::Send {
                daemon,
                task: head,
                job,
            });
        }
    }

    /// A daemon idles with nothing queued: ask tasks waiting ahead on busy daemons back, one per
    /// idle daemon. A daemon that has not started the task answers [`Reply::NotStarted`] and the
    /// task is queued again at the front; one that already started it just runs it.
    ///
    /// The task asked back is the one farthest from starting: the last waiting on the daemon
    /// with the most waiting. The one next in line is the wrong choice: its daemon starts it the
    /// moment it has answered the task before, and that answer is what usually makes the idle
    /// daemon look for work, so the request arrives after the start and gives nothing back,
    /// every time (the idle daemon then waits while its neighbour runs everything).
    fn recall(&mut self) {
        let wanted = self.idle.len().min(self.recallable);
        // Per busy daemon, the tasks it holds that may be asked back, in the order it runs them.
        let mut waiting: Vec<(DaemonId, Vec<TaskId>)> = self
            .daemons
            .iter()
            .filter(|(_, d)| d.state == DaemonState::Active)
            .map(|(&daemon, d)| {
                let tasks = d
                    .slots
                    .iter()
                    .skip(1)
                    .filter(|s| !s.abandoned)
                    .map(|s| s.task)
                    .filter(|t| {
                        self.tasks
                            .get(t)
                            .is_some_and(|e| e.state == TaskState::Ahead(daemon) && !e.recalled)
                    })
                    .collect();
                (daemon, tasks)
            })
            .collect();
        let mut recalls = Vec::new();
        for _ in 0..wanted {
            let Some((daemon, tasks)) = waiting.iter_mut().max_by_key(|(_, t)| t.len()) else {
                break;
            };
            let Some(task) = tasks.pop() else {
                break;
            };
            recalls.push((*daemon, task));
        }
        for (daemon, task) in recalls {
            if let Some(entry) = self.tasks.get_mut(&task) {
                entry.recalled = true;
                self.recallable -= 1;
                self.actions.push_back(Action::Recall { daemon, task });
            }
        }
    }

    /// Sends `task` to the idle `daemon`, which starts it at once.
    pub(super) fn assign(&mut self, task: TaskId, daemon: DaemonId, now: Instant) {
        let Some(entry) = self.tasks.get_mut(&task) else {
            return;
        };
        self.awaiting -= 1;
        self.executing += 1;
        let job = if entry.retries_left > 0 {
            entry.job.clone()
        } else if self.config.release_when_written && entry.reserved > 0 {
            entry.unwritten = true;
            entry.job.take()
        } else {
            entry.job.take()
        };
        if let Some(g) = entry.group.and_then(|g| self.groups.get_mut(&g)) {
            g.served.push(daemon);
        }
        if let Some(d) = self.daemons.get_mut(&daemon) {
            d.assigned += 1;
            d.slots.push_back(Slot {
                task,
                abandoned: false,
                hard: false,
            });
        }
        self.start(task, daemon, now);
        if let Some(job) = job {
            self.actions.push_back(Action::Send { daemon, task, job });
        }
    }

    /// `task` becomes `daemon`'s current task: its run timeout starts and, unless it may be
    /// retried, still being written, or asked back, its bytes leave the budget.
    pub(super) fn start(&mut self, task: TaskId, daemon: DaemonId, now: Instant) {
        let Some(entry) = self.tasks.get_mut(&task) else {
            return;
        };
        if entry.state == TaskState::Ahead(daemon) && !entry.recalled {
            self.recallable -= 1;
        }
        entry.state = TaskState::Running(daemon);
        if entry.retries_left == 0 && !entry.recalled {
            entry.job = None;
            if !entry.unwritten {
                let bytes = std::mem::take(&mut entry.reserved);
                if bytes > 0 {
                    self.budget.release(bytes);
                    self.released = true;
                }
            }
        }
        if let Some(at) = entry.run_timeout.and_then(|t| now.checked_add(t)) {
            self.timers.arm(at, Timer::Run(task, entry.attempt));
        }
        if let Some(d) = self.daemons.get_mut(&daemon) {
            d.started = Some(now);
            if self
                .config
                .send_ahead
                .is_some_and(|short| d.open(short, self.config.max_ahead, now))
            {
                self.open.push_back(daemon);
            }
        }
    }

    /// `daemon` answered its current task: the one sent ahead (if any) has started, or it is
    /// idle now.
    pub(super) fn next_current(&mut self, daemon: DaemonId, now: Instant) {
        let Some(d) = self.daemons.get(&daemon) else {
            return;
        };
        let Some(&slot) = d.slots.front() else {
            if !self.run_setup(daemon, now) {
                self.idle.push_back(daemon);
            }
            return;
        };
        let local = d.local;
        if slot.abandoned {
            // Cancelled while it waited: the daemon drops it if the cancel came first (and
            // answers at once), or runs it with its token cancelled. A local daemon that does
            // not answer in time is killed: soon after a hard cancel, after the grace otherwise.
            let grace = if slot.hard {
                Some(UNSTARTED_GRACE)
            } else {
                self.config.cancel_grace
            };
            if local && let Some(at) = grace.and_then(|g| now.checked_add(g)) {
                self.timers.arm(at, Timer::CancelGrace(daemon, slot.task));
            }
            return;
        }
        self.start(slot.task, daemon, now);
    }
}
