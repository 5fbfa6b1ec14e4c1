//! Per-task settings for [`Pool::submit_with`](crate::Pool::submit_with).
//!
//! Why a value of its own: the dispatcher gives each task a queue timeout, a run timeout, a
//! number of retries after a lost daemon and a limit on how long submission may wait for room;
//! and a trace context may replace the current span's; one `Copy` value keeps them together so a caller can build them once and reuse them for many
//! tasks, and `Pool` keeps one submission method instead of one per combination.

use std::time::{Duration, Instant};

use mirai_dispatch::Task;

use crate::trace::{TraceParent, TraceParentError};

/// How one task is queued, run and retried. The default is what [`Pool::submit`] does: wait
/// for room as long as it takes, no timeouts, no retries.
///
/// [`Pool::submit`]: crate::Pool::submit
///
/// ```
/// use std::time::Duration;
/// use mirai::TaskOptions;
///
/// let options = TaskOptions::new()
///     .queue_timeout(Duration::from_secs(10))
///     .run_timeout(Duration::from_secs(60))
///     .retries(2)
///     .submit_timeout(Duration::from_millis(100));
/// assert_ne!(options, TaskOptions::default());
/// assert_eq!(TaskOptions::new(), TaskOptions::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOptions {
    queue_timeout: Option<Duration>,
    run_timeout: Option<Duration>,
    retries: u32,
    submit_timeout: Option<Duration>,
    /// An explicit trace context, checked when it was given and reported at submit.
    trace: Option<Result<TraceParent, TraceParentError>>,
}

impl TaskOptions {
    /// No timeouts, no retries, submission waits for room as long as it takes.
    pub const fn new() -> Self {
        Self {
            queue_timeout: None,
            run_timeout: None,
            retries: 0,
            submit_timeout: None,
            trace: None,
        }
    }

    /// The task resolves with [`Error::TimedOut`](crate::Error::TimedOut) if no daemon has
    /// started it `timeout` after it was queued.
    pub const fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = Some(timeout);
        self
    }

    /// The task resolves with [`Error::TimedOut`](crate::Error::TimedOut) if it has not
    /// finished `timeout` after it started on a daemon; the daemon is then cancelled, and a
    /// local one killed after the cancel grace if it does not stop.
    pub const fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// If the daemon running the task goes away (killed, crashed, disconnected), the task is
    /// queued again, up to `retries` times, before it resolves with
    /// [`Error::ConnectionLost`](crate::Error::ConnectionLost). Its argument bytes are kept
    /// for that and stay counted in the byte cap until the task finishes. Only for tasks that
    /// are safe to run more than once.
    pub const fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Submission waits at most `timeout` for room under the byte cap, then fails with
    /// [`Error::Full`](crate::Error::Full).
    pub const fn submit_timeout(mut self, timeout: Duration) -> Self {
        self.submit_timeout = Some(timeout);
        self
    }

    /// The task continues the trace `context` names (a W3C `traceparent`, as text or a
    /// [`TraceParent`]) instead of the current span's: its `submit` span, and so the daemon's
    /// `execute` span, join that trace, with `context`'s span as the `submit` span's parent
    /// (see [`trace`](crate::trace)). A malformed context makes the submission fail with
    /// [`Error::TraceParent`](crate::Error::TraceParent); nothing is queued.
    ///
    /// ```
    /// # fn neg(x: i64) -> i64 { -x }
    /// # const NEG: mirai::TaskFn<i64, i64> = mirai::task!(neg);
    /// use mirai::{Error, TaskOptions};
    /// use mirai::trace::TraceParentError;
    ///
    /// let pool = mirai::Daemons::new().start()?; // no daemons: tasks wait in the queue
    /// let traced = TaskOptions::new()
    ///     .trace_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// let _queued = pool.submit_with(&NEG, 1, traced)?;
    /// let bad = TaskOptions::new().trace_parent("00-not-a-trace");
    /// let err = pool.submit_with(&NEG, 2, bad).unwrap_err();
    /// assert!(matches!(err, Error::TraceParent(TraceParentError::Length { len: 14 })));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn trace_parent<T>(mut self, context: T) -> Self
    where
        T: TryInto<TraceParent>,
        T::Error: Into<TraceParentError>,
    {
        self.trace = Some(context.try_into().map_err(Into::into));
        self
    }

    /// Until when submission may wait for room, if limited, counted from now.
    pub(crate) fn submit_deadline(&self) -> Option<Instant> {
        self.submit_timeout
            .and_then(|t| Instant::now().checked_add(t))
    }

    /// `task` with these settings and its trace context; fails on a malformed explicit one.
    pub(crate) fn apply(&self, mut task: Task) -> Result<Task, crate::Error> {
        let explicit = self.trace.transpose()?;
        task = crate::trace::attach(task, explicit);
        if let Some(t) = self.queue_timeout {
            task = task.with_queue_timeout(t);
        }
        if let Some(t) = self.run_timeout {
            task = task.with_run_timeout(t);
        }
        Ok(task.with_retries(self.retries))
    }
}
