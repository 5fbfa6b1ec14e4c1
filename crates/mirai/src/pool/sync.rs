//! Sync mode ([`Daemons::sync`](crate::Daemons::sync)): tasks run in the calling process, on
//! the submitting thread, inside `submit`.
//!
//! Each task takes the path it takes on a daemon: the argument is encoded and decoded, the
//! function runs with a [`TaskContext`] numbered and seeded as the dispatcher would number and
//! seed it, a panic is caught by the registry's hook, the value is encoded, checked against the
//! message limit and decoded by the handle. So the results and errors a caller sees are those a
//! daemon pool gives, and a debugger's breakpoint in the task function stops in this process.

use std::sync::atomic::{AtomicU64, Ordering};

use mirai_dispatch::daemon::{TaskContext, run_caught};
use mirai_dispatch::{Outcome, Payload, RejectReason, Status, Task, TaskId, rng};

use crate::{Error, TaskFn, TaskOptions};

/// The calling process as the pool's only executor.
#[derive(Debug)]
pub(crate) struct Runner {
    seed: Option<u64>,
    max_message: u64,
    max_queued: Option<u64>,
    /// The next task id (every task takes one, as in the dispatcher).
    next_task: AtomicU64,
    /// Ordinary submissions so far: the next task's stream number.
    sequence: AtomicU64,
    completed: AtomicU64,
}

impl Runner {
    pub(crate) fn new(seed: Option<u64>, max_message: u64, max_queued: Option<u64>) -> Self {
        Self {
            seed,
            max_message,
            max_queued,
            next_task: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        }
    }

    /// The argument's payload, refused as the dispatcher refuses it: over the message limit,
    /// or larger than the whole byte cap (nothing is ever queued, so the cap is never full).
    pub(crate) fn encode<A: serde::Serialize>(&self, arg: &A) -> Result<Payload, Error> {
        let payload = crate::wire::encode(arg)?;
        let size = payload.len() as u64;
        if size > self.max_message {
            return Err(Error::from(RejectReason::MessageTooLarge {
                size,
                limit: self.max_message,
            }));
        }
        if let Some(capacity) = self.max_queued.filter(|&c| size > c) {
            return Err(Error::from(RejectReason::TooLarge { size, capacity }));
        }
        Ok(payload)
    }

    /// Runs `task` on `payload` now; `ordinary` tasks take the next RNG stream (an
    /// `everywhere` task takes none, as on daemons). Returns the outcome a daemon pool would
    /// deliver, with the task's id; an error only for options that
    /// would refuse the submission.
    pub(crate) fn run<A, R>(
        &self,
        task: &TaskFn<A, R>,
        payload: Payload,
        options: &TaskOptions,
        ordinary: bool,
    ) -> Result<(TaskId, Outcome), Error> {
        // The options as the dispatcher would get them (a malformed trace context is refused
        // here as at a submit): only what reaches a daemon matters here (the trace context);
        // timeouts cannot interrupt a call on this thread.
        let Task { payload, trace, .. } = options.apply(Task::new(task.name(), payload))?;
        let id = TaskId(self.next_task.fetch_add(1, Ordering::Relaxed));
        let stream = self
            .seed
            .filter(|_| ordinary)
            .map(|seed| rng::stream_seed(seed, self.sequence.fetch_add(1, Ordering::Relaxed)));
        let ctx = TaskContext::new(id, stream).with_trace(trace.map(Vec::from));
        // In the `execute` span a daemon would open, so traces look the same in process.
        let ran = crate::trace::in_task_span(task.name(), &ctx, || {
            run_caught(|| task.run(payload, &ctx))
        });
        let outcome = match ran {
            Ok(value) if value.len() as u64 > self.max_message => Outcome::ResultTooLarge {
                size: value.len() as u64,
                limit: self.max_message,
            },
            Ok(value) => Outcome::Value(value),
            Err(e) => Outcome::TaskError(e),
        };
        self.completed.fetch_add(1, Ordering::Relaxed);
        Ok((id, outcome))
    }

    /// The pool's counters, with this process's tasks: all submitted ones completed.
    pub(crate) fn status(&self, mut status: Status) -> Status {
        let done = self.completed.load(Ordering::Relaxed);
        status.submitted += done;
        status.completed += done;
        status
    }
}
