//! Cooperative cancellation and the context a task function receives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::task::{TaskError, TaskId};

/// A flag the daemon's I/O side sets when a cancel message arrives for the running task.
///
/// ```
/// use mirai_dispatch::daemon::CancelToken;
/// let token = CancelToken::new();
/// let seen_by_task = token.clone();
/// assert!(!seen_by_task.is_cancelled());
/// token.cancel();
/// assert!(seen_by_task.is_cancelled());
/// assert!(seen_by_task.check().is_err());
/// ```
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Flag>);

/// Runs once, at the first look at the token.
type FirstLook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Flag {
    cancelled: AtomicBool,
    /// Whether `first_look` is still to run (checked without the lock).
    pending: AtomicBool,
    first_look: Mutex<Option<FirstLook>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelToken")
            .field(&self.0.cancelled.load(Ordering::Relaxed))
            .finish()
    }
}

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that runs `first_look` the first time anyone asks whether it is cancelled. The
    /// daemon starts watching its connection for cancel messages only then: a function that
    /// never looks cannot be cancelled anyway, and a trivial task then costs no extra syscall.
    #[cfg_attr(not(feature = "shell"), allow(dead_code))]
    pub(crate) fn with_first_look(first_look: impl FnOnce() + Send + 'static) -> Self {
        Self(Arc::new(Flag {
            cancelled: AtomicBool::new(false),
            pending: AtomicBool::new(true),
            first_look: Mutex::new(Some(Box::new(first_look))),
        }))
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        if self.0.pending.load(Ordering::Acquire) && self.0.pending.swap(false, Ordering::AcqRel) {
            let first_look = self
                .0
                .first_look
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(f) = first_look {
                f();
            }
        }
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// `Err` once cancelled, so a function can stop with `token.check()?`.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.is_cancelled() {
            Err(TaskError::new("task cancelled"))
        } else {
            Ok(())
        }
    }

    /// Whether cancellation was requested, without running the first-look hook (for the daemon
    /// itself, after the task).
    #[cfg_attr(not(feature = "shell"), allow(dead_code))]
    pub(crate) fn was_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }
}

/// What a task function knows about the task it runs.
///
/// ```
/// use mirai_dispatch::daemon::TaskContext;
/// use mirai_dispatch::TaskId;
/// let ctx = TaskContext::new(TaskId(1), Some(7));
/// assert_eq!(ctx.rng_seed(), Some(7));
/// assert_eq!(ctx.attempt(), 0);
/// assert!(!ctx.is_cancelled());
/// ```
#[derive(Debug, Clone)]
pub struct TaskContext {
    task: TaskId,
    rng_seed: Option<u64>,
    attempt: u32,
    cancel: CancelToken,
    trace: Option<Vec<u8>>,
}

impl TaskContext {
    /// A context with a fresh cancel token.
    pub fn new(task: TaskId, rng_seed: Option<u64>) -> Self {
        Self {
            task,
            rng_seed,
            attempt: 0,
            cancel: CancelToken::new(),
            trace: None,
        }
    }

    /// Sets the attempt number: how many times the task was retried after losing its daemon.
    ///
    /// ```
    /// use mirai_dispatch::daemon::TaskContext;
    /// use mirai_dispatch::TaskId;
    /// let ctx = TaskContext::new(TaskId(1), None).with_attempt(2);
    /// assert_eq!(ctx.attempt(), 2);
    /// ```
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// 0 the first time the task runs, one more for each retry after a lost daemon
    /// ([`crate::Task::retries`]); a task handed back unstarted keeps its number.
    ///
    /// ```
    /// use mirai_dispatch::daemon::TaskContext;
    /// use mirai_dispatch::TaskId;
    /// assert_eq!(TaskContext::new(TaskId(1), None).attempt(), 0);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Sets the trace context the submitter attached ([`crate::Task::trace`]).
    ///
    /// ```
    /// use mirai_dispatch::daemon::TaskContext;
    /// use mirai_dispatch::TaskId;
    /// let ctx = TaskContext::new(TaskId(1), None).with_trace(Some(b"00-abc-01".to_vec()));
    /// assert_eq!(ctx.trace(), Some(&b"00-abc-01"[..]));
    /// ```
    pub fn with_trace(mut self, trace: Option<Vec<u8>>) -> Self {
        self.trace = trace;
        self
    }

    /// The trace context the submitter attached (e.g. a W3C `traceparent`), to continue its
    /// trace in the task.
    pub fn trace(&self) -> Option<&[u8]> {
        self.trace.as_deref()
    }

    /// A context whose token the caller keeps, to cancel the task from another thread.
    #[cfg_attr(not(feature = "shell"), allow(dead_code))]
    pub(crate) fn with_token(task: TaskId, rng_seed: Option<u64>, cancel: CancelToken) -> Self {
        Self {
            task,
            rng_seed,
            attempt: 0,
            cancel,
            trace: None,
        }
    }

    /// The task's id.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// The task's RNG stream seed (when the dispatcher has a seed), for a reproducible generator.
    pub fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }

    /// The token the daemon cancels when the dispatcher asks.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Shorthand for `cancel_token().is_cancelled()`.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_first_look_runs_once_and_only_when_someone_looks() {
        let looks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&looks);
        let token = CancelToken::with_first_look(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        token.cancel();
        assert!(token.was_cancelled());
        assert_eq!(looks.load(Ordering::SeqCst), 0);
        assert!(token.clone().is_cancelled());
        assert!(token.check().is_err());
        assert_eq!(looks.load(Ordering::SeqCst), 1);
    }
}
