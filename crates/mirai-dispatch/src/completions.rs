//! Outcomes waiting for their handles, and the one waker (or blocked thread) each belongs to.
//!
//! Why per task: a result must wake exactly the handle waiting for it. A future registers its
//! [`Waker`] here when polled; the thread that records the outcome takes that waker out under
//! the lock and calls `wake()` after releasing it, so one result costs one wake-up and no
//! thread hand-off. Blocking waits share one condition variable, notified only while some
//! thread is actually blocked. A handle dropped before its outcome arrives leaves a
//! `Forgotten` mark, so the late outcome is dropped on arrival instead of kept for good.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::task::{IdMap, Outcome, TaskId};

/// Per-task state; a task without an entry has no waiter and no outcome yet.
enum Entry {
    /// Polled as a future, not resolved yet: wake this on arrival.
    Waiting(Waker),
    /// Resolved, not taken yet.
    Done(Outcome),
    /// The handle is gone: discard the outcome on arrival.
    Forgotten,
}

#[derive(Default)]
struct State {
    entries: IdMap<TaskId, Entry>,
    /// Threads blocked in [`Completions::wait`] now.
    blocked: usize,
}

impl State {
    /// Takes `task`'s outcome if it arrived; any other entry stays.
    fn take_done(&mut self, task: TaskId) -> Option<Outcome> {
        if !matches!(self.entries.get(&task), Some(Entry::Done(_))) {
            return None;
        }
        match self.entries.remove(&task) {
            Some(Entry::Done(outcome)) => Some(outcome),
            _ => None,
        }
    }
}

/// The outcome table shared by the dispatcher thread and host threads.
#[derive(Default)]
pub(crate) struct Completions {
    state: Mutex<State>,
    ready: Condvar,
}

impl Completions {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records outcomes, then wakes exactly their waiters, outside the lock. Outcomes of
    /// forgotten tasks are dropped (also outside the lock: a value may be large).
    pub(crate) fn deliver(&self, resolved: impl IntoIterator<Item = (TaskId, Outcome)>) {
        let mut wakers = Vec::new();
        let mut discarded = Vec::new();
        let notify = {
            let mut state = self.lock();
            for (task, outcome) in resolved {
                match state.entries.remove(&task) {
                    Some(Entry::Forgotten) => discarded.push(outcome),
                    Some(Entry::Waiting(waker)) => {
                        wakers.push(waker);
                        state.entries.insert(task, Entry::Done(outcome));
                    }
                    // A second outcome for one task cannot happen (the core resolves each task
                    // once); keeping the latest is the harmless choice.
                    Some(Entry::Done(_)) | None => {
                        state.entries.insert(task, Entry::Done(outcome));
                    }
                }
            }
            state.blocked > 0
        };
        if notify {
            self.ready.notify_all();
        }
        drop(discarded);
        for waker in wakers {
            waker.wake();
        }
    }

    /// Takes the outcome if it is there; otherwise registers `waker` (replacing an earlier one
    /// unless it would wake the same task) to be woken when it arrives.
    pub(crate) fn poll(&self, task: TaskId, waker: &Waker) -> Option<Outcome> {
        let mut state = self.lock();
        match state.entries.remove(&task) {
            Some(Entry::Done(outcome)) => Some(outcome),
            Some(Entry::Waiting(old)) if old.will_wake(waker) => {
                state.entries.insert(task, Entry::Waiting(old));
                None
            }
            Some(Entry::Waiting(_)) | None => {
                state.entries.insert(task, Entry::Waiting(waker.clone()));
                None
            }
            Some(Entry::Forgotten) => {
                state.entries.insert(task, Entry::Forgotten);
                None
            }
        }
    }

    /// Whether the outcome of `task` is here and not taken.
    pub(crate) fn is_done(&self, task: TaskId) -> bool {
        matches!(self.lock().entries.get(&task), Some(Entry::Done(_)))
    }

    /// Takes the outcome of `task` if it is here.
    pub(crate) fn try_take(&self, task: TaskId) -> Option<Outcome> {
        self.lock().take_done(task)
    }

    /// Waits up to `timeout` (forever with `None`) and takes the outcome; `None` if it is not
    /// there by then.
    pub(crate) fn wait(&self, task: TaskId, timeout: Option<Duration>) -> Option<Outcome> {
        // The deadline is set at the first look that finds nothing (`Some(None)`: past the
        // clock's range, no limit): a wait whose outcome is already there reads no clock, and
        // one that sleeps reads it once per sleep.
        let mut deadline: Option<Option<Instant>> = None;
        let mut state = self.lock();
        loop {
            if let Some(outcome) = state.take_done(task) {
                return Some(outcome);
            }
            let wait_for = match timeout {
                None => None,
                Some(t) => {
                    let now = Instant::now();
                    match *deadline.get_or_insert_with(|| now.checked_add(t)) {
                        None => None,
                        Some(d) if now >= d => return None,
                        Some(d) => Some(d - now),
                    }
                }
            };
            state.blocked += 1;
            state = match wait_for {
                None => self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(t) => {
                    self.ready
                        .wait_timeout(state, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.blocked -= 1;
        }
    }

    /// The handle of `task` is gone: drop its outcome if it arrived, or discard it on arrival.
    /// Call it only for a task that will still resolve or already did and was not taken.
    pub(crate) fn forget(&self, task: TaskId) {
        let dropped = {
            let mut state = self.lock();
            match state.entries.remove(&task) {
                // Resolved and never taken: drop it, and leave no mark (nothing more arrives).
                Some(Entry::Done(outcome)) => Some(outcome),
                Some(Entry::Waiting(_) | Entry::Forgotten) | None => {
                    state.entries.insert(task, Entry::Forgotten);
                    None
                }
            }
        };
        drop(dropped);
    }

    /// How many tasks have an entry (outcome, waker or forget mark): zero once every handle
    /// has taken or forgotten its outcome and every forgotten task has resolved.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    //! Random interleavings of arrivals, polls with changing wakers, zero-timeout waits and
    //! forgets, against a model: every outcome is taken once or discarded, each arrival wakes
    //! exactly the latest waker of its task (once) and no other, and nothing stays behind.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use proptest::prelude::*;

    use super::*;

    const TASKS: u64 = 6;
    const WAKERS: usize = 3;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deliver(u64),
        Poll(u64, usize),
        WaitZero(u64),
        Forget(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..TASKS).prop_map(Op::Deliver),
            (0..TASKS, 0..WAKERS).prop_map(|(t, w)| Op::Poll(t, w)),
            (0..TASKS).prop_map(Op::WaitZero),
            (0..TASKS).prop_map(Op::Forget),
        ]
    }

    #[derive(Default, Clone, Copy)]
    struct Handle {
        delivered: bool,
        /// Taken by a poll or a wait, or forgotten: the handle is done.
        done: bool,
        /// The waker of the latest poll that found nothing.
        waiting: Option<usize>,
    }

    proptest! {
        #[test]
        fn outcomes_are_taken_once_and_wake_exactly_their_waiter(
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let table = Completions::default();
            let counts: Vec<Vec<Arc<Count>>> = (0..TASKS)
                .map(|_| (0..WAKERS).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect())
                .collect();
            let wakers: Vec<Vec<Waker>> = counts
                .iter()
                .map(|c| c.iter().map(|c| Waker::from(Arc::clone(c))).collect())
                .collect();
            let snapshot = || -> Vec<usize> {
                counts.iter().flatten().map(|c| c.0.load(Ordering::SeqCst)).collect()
            };
            let mut model = [Handle::default(); TASKS as usize];
            let outcome = |t: u64| Outcome::Value(vec![t as u8].into());
            for op in ops {
                let before = snapshot();
                match op {
                    Op::Deliver(t) => {
                        let h = &mut model[t as usize];
                        if h.delivered {
                            continue; // the core resolves a task once
                        }
                        h.delivered = true;
                        table.deliver([(TaskId(t), outcome(t))]);
                        let mut expected = before.clone();
                        if let (false, Some(w)) = (h.done, h.waiting.take()) {
                            expected[t as usize * WAKERS + w] += 1;
                        }
                        prop_assert_eq!(snapshot(), expected);
                    }
                    Op::Poll(t, w) => {
                        let h = &mut model[t as usize];
                        if h.done {
                            continue;
                        }
                        let got = table.poll(TaskId(t), &wakers[t as usize][w]);
                        if h.delivered {
                            prop_assert_eq!(got, Some(outcome(t)));
                            h.done = true;
                        } else {
                            prop_assert_eq!(got, None);
                            h.waiting = Some(w);
                        }
                        prop_assert_eq!(snapshot(), before);
                    }
                    Op::WaitZero(t) => {
                        let h = &mut model[t as usize];
                        if h.done {
                            continue;
                        }
                        let got = table.wait(TaskId(t), Some(Duration::ZERO));
                        if h.delivered {
                            prop_assert_eq!(got, Some(outcome(t)));
                            h.done = true;
                        } else {
                            prop_assert_eq!(got, None);
                        }
                    }
                    Op::Forget(t) => {
                        let h = &mut model[t as usize];
                        if h.done {
                            continue;
                        }
                        table.forget(TaskId(t));
                        h.done = true;
                        prop_assert_eq!(snapshot(), before);
                    }
                }
            }
            // Every task resolves; every handle still alive is dropped.
            for t in 0..TASKS {
                if !model[t as usize].done {
                    table.forget(TaskId(t));
                }
                if !model[t as usize].delivered {
                    table.deliver([(TaskId(t), outcome(t))]);
                }
            }
            prop_assert_eq!(table.len(), 0, "something stayed behind");
        }
    }
}
