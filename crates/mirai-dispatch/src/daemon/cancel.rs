//! Cooperative cancellation and the context a task function receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Err` once cancelled, so a function can stop with `token.check()?`.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.is_cancelled() {
            Err(TaskError::new("task cancelled"))
        } else {
            Ok(())
        }
    }
}

/// What a task function knows about the task it runs.
///
/// ```
/// use mirai_dispatch::daemon::TaskContext;
/// use mirai_dispatch::TaskId;
/// let ctx = TaskContext::new(TaskId(1), Some(7));
/// assert_eq!(ctx.rng_seed(), Some(7));
/// assert!(!ctx.is_cancelled());
/// ```
#[derive(Debug, Clone)]
pub struct TaskContext {
    task: TaskId,
    rng_seed: Option<u64>,
    cancel: CancelToken,
    trace: Option<Vec<u8>>,
}

impl TaskContext {
    /// A context with a fresh cancel token.
    pub fn new(task: TaskId, rng_seed: Option<u64>) -> Self {
        Self {
            task,
            rng_seed,
            cancel: CancelToken::new(),
            trace: None,
        }
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
