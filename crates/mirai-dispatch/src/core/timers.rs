//! Deadlines the core waits for, kept in one heap and checked lazily.
//!
//! A timer is never removed when its task moves on: when it fires, the core checks it still
//! applies (same task, same attempt, same state), which keeps cancel and dispatch O(1).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::task::{DaemonId, TaskId};

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The task's queue timeout, for the given attempt.
    Queue(TaskId, u32),
    /// The task's run timeout, for the given attempt.
    Run(TaskId, u32),
    /// A running task was cancelled: kill its local daemon if it has not answered by now.
    CancelGrace(DaemonId, TaskId),
}

/// A min-heap of deadlines.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest deadline, which may be stale.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
