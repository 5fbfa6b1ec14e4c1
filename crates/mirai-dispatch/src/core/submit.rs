//! Admission: how a task (or an `everywhere` group of copies) enters the queue, and why a
//! submission is refused ([`RejectReason`], [`Rejected`]).
//!
//! Separate because it is the only place bytes are reserved against the budget and task ids,
//! RNG streams and queue timeouts are handed out.

use std::time::Instant;

use super::budget::Shortfall;
use super::timers::Timer;
use super::{Core, Entry, Group, Job, TaskState};
use crate::rng;
use crate::task::{Task, TaskId};

#[cfg(doc)]
use super::Config;

/// Why a submission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The payload does not fit in the budget now; it would later.
    #[error("queue is full")]
    Full,
    /// The payload exceeds the whole budget and never fits.
    #[error("task of {size} bytes exceeds the {capacity}-byte queue budget")]
    TooLarge {
        /// Bytes the submission needed.
        size: u64,
        /// The whole budget.
        capacity: u64,
    },
    /// The dispatcher no longer accepts tasks.
    #[error("dispatcher is shut down")]
    ShutDown,
    /// The payload exceeds the message limit ([`Config::max_message_bytes`]): no daemon would
    /// accept it.
    #[error("task argument of {size} bytes exceeds the {limit}-byte message limit")]
    MessageTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// A refused submission, handing the task back.
///
/// ```
/// use std::time::Instant;
/// use mirai_dispatch::{Config, Core, RejectReason, Task};
/// let mut core = Core::new(Config::default().with_max_queued_bytes(2));
/// let refused = core.submit(Task::new("f", vec![0; 3]), Instant::now()).unwrap_err();
/// assert_eq!(refused.reason, RejectReason::TooLarge { size: 3, capacity: 2 });
/// assert_eq!(refused.task.payload.len(), 3);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected {
    /// Why.
    pub reason: RejectReason,
    /// The task, untouched.
    pub task: Task,
}

impl Core {
    /// Accepts a task if its payload fits in the budget now; otherwise hands it back with
    /// [`RejectReason::Full`], [`RejectReason::TooLarge`], [`RejectReason::MessageTooLarge`] or
    /// [`RejectReason::ShutDown`].
    ///
    /// Accepting reserves the bytes, assigns the next RNG stream (with a seed) and queues the
    /// task; it is dispatched at once if a daemon is idle.
    pub fn submit(&mut self, task: Task, now: Instant) -> Result<TaskId, Rejected> {
        if self.shut_down {
            return Err(Rejected {
                reason: RejectReason::ShutDown,
                task,
            });
        }
        let size = task.payload.len() as u64;
        if let Some(reason) = self.over_message_limit(size) {
            return Err(Rejected { reason, task });
        }
        if let Err(shortfall) = self.budget.reserve(size) {
            return Err(self.refuse(shortfall, size, task));
        }
        let rng_seed = self.config.seed.map(|seed| {
            let s = rng::stream_seed(seed, self.rng_sequence);
            self.rng_sequence += 1;
            s
        });
        let id = self.enqueue(task, size, rng_seed, None, now);
        self.finish(now);
        Ok(id)
    }

    /// [`RejectReason::MessageTooLarge`] for a payload of `size` bytes over the message limit.
    fn over_message_limit(&self, size: u64) -> Option<RejectReason> {
        self.config
            .max_message_bytes
            .filter(|&limit| size > limit)
            .map(|limit| RejectReason::MessageTooLarge { size, limit })
    }

    /// Sends one copy of `task` to every connected daemon, or to `min` distinct daemons if more
    /// (the extra copies wait for daemons to join). Each copy reserves the payload length;
    /// all copies are accepted or none. Copies get no RNG stream and do not advance it.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default());
    /// core.daemon_connected(true, now);
    /// let ids = core.everywhere(Task::new("setup", vec![]), 2, now).unwrap();
    /// assert_eq!(ids.len(), 2);
    /// assert_eq!(core.status().executing, 1); // the second copy waits for a second daemon
    /// ```
    pub fn everywhere(
        &mut self,
        task: Task,
        min: usize,
        now: Instant,
    ) -> Result<Vec<TaskId>, Rejected> {
        if self.shut_down {
            return Err(Rejected {
                reason: RejectReason::ShutDown,
                task,
            });
        }
        let copies = (min as u64).max(self.connections);
        if copies == 0 {
            return Ok(Vec::new());
        }
        let each = task.payload.len() as u64;
        if let Some(reason) = self.over_message_limit(each) {
            return Err(Rejected { reason, task });
        }
        let Some(total) = each.checked_mul(copies) else {
            return Err(Rejected {
                reason: RejectReason::TooLarge {
                    size: u64::MAX,
                    capacity: self.budget.capacity().unwrap_or(u64::MAX),
                },
                task,
            });
        };
        if let Err(shortfall) = self.budget.reserve(total) {
            return Err(self.refuse(shortfall, total, task));
        }
        let group = self.next_group;
        self.next_group += 1;
        let copies = copies as usize;
        self.groups.insert(
            group,
            Group {
                served: Vec::new(),
                remaining: copies,
            },
        );
        let mut ids = Vec::with_capacity(copies);
        for _ in 1..copies {
            ids.push(self.enqueue(task.clone(), each, None, Some(group), now));
        }
        ids.push(self.enqueue(task, each, None, Some(group), now));
        self.finish(now);
        Ok(ids)
    }

    fn refuse(&self, shortfall: Shortfall, size: u64, task: Task) -> Rejected {
        let reason = match shortfall {
            Shortfall::Full => RejectReason::Full,
            Shortfall::TooLarge => RejectReason::TooLarge {
                size,
                capacity: self.budget.capacity().unwrap_or(u64::MAX),
            },
        };
        Rejected { reason, task }
    }

    fn enqueue(
        &mut self,
        task: Task,
        reserved: u64,
        rng_seed: Option<u64>,
        group: Option<u64>,
        now: Instant,
    ) -> TaskId {
        let id = TaskId(self.next_task);
        self.next_task += 1;
        self.submitted += 1;
        self.awaiting += 1;
        if let Some(at) = task.queue_timeout.and_then(|t| now.checked_add(t)) {
            self.timers.arm(at, Timer::Queue(id, 0));
        }
        let entry = Entry {
            job: Some(Job {
                function: task.function,
                payload: task.payload,
                trace: task.trace.map(Vec::from),
                rng_seed,
                attempt: 0,
            }),
            state: TaskState::Queued,
            reserved,
            queue_timeout: task.queue_timeout,
            run_timeout: task.run_timeout,
            retries_left: task.retries,
            attempt: 0,
            group,
            unwritten: false,
            recalled: false,
            forgotten: false,
            setup: false,
        };
        self.tasks.insert(id, entry);
        self.queue.push_back(id);
        id
    }
}
