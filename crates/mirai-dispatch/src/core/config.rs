//! The core's settings ([`Config`]) and the default limits they start from.
//!
//! Kept apart from the state machine: these are plain values the shell fills in once, read by
//! every other part of the core.

use std::time::Duration;

#[cfg(doc)]
use super::{Core, RejectReason};

/// How long a local daemon has, after answering the task before a hard-cancelled one that
/// waited behind it, to drop that task unstarted before it is killed (the cancel message most
/// likely reached it first, so it answers at once; if the task did start, it is stopped).
pub const UNSTARTED_GRACE: Duration = Duration::from_millis(100);

/// The default [`Config::send_ahead`]: sending ahead saves a round trip to the dispatcher (tens
/// of microseconds), which only matters for tasks about that short, while a task sent behind a
/// long one waits for it (until it is asked back).
pub const SHORT_TASK: Duration = Duration::from_millis(1);

/// The default [`Config::max_ahead`]: enough that a daemon running trivial tasks rarely runs dry
/// while the dispatcher wakes up to send more (a wake-up of an idle virtual CPU costs tens of
/// microseconds, a trivial task a few). The depth a daemon gets is also bounded by the time of
/// its last task: no more tasks ahead than fit into [`Config::send_ahead`] at that pace, so
/// deep queues ahead are only for tasks far shorter than that bound.
pub const DEFAULT_MAX_AHEAD: usize = 16;

/// Largest payload sent ahead ([`Config::send_ahead`]): sending ahead saves a round trip,
/// which matters for small tasks only, while a large payload would wait in a busy daemon's
/// socket buffers (and hold the writer) until the daemon reads it.
pub const MAX_AHEAD_BYTES: usize = 64 * 1024;

/// Settings of a [`Core`].
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::Config;
/// let c = Config::default()
///     .with_max_queued_bytes(50_000_000)
///     .with_seed(42)
///     .with_cancel_grace(Duration::from_secs(2));
/// assert_eq!(c.max_queued_bytes, Some(50_000_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Cap on the payload bytes of queued tasks; `None` is unbounded.
    pub max_queued_bytes: Option<u64>,
    /// Dispatch pauses while resolved, uncollected values hold this many bytes; `None` disables
    /// the brake (and the bookkeeping it needs).
    pub max_uncollected_bytes: Option<u64>,
    /// With a seed, each ordinary task gets its own reproducible RNG stream (see [`crate::rng`]).
    pub seed: Option<u64>,
    /// Randomness from the shell, used for per-daemon streams when there is no seed.
    pub entropy: u64,
    /// A running task cancelled on a local daemon that has not answered within this time gets the
    /// daemon killed; `None` never escalates.
    pub cancel_grace: Option<Duration>,
    /// Keep a dispatched task's bytes reserved until the shell reports them written
    /// ([`Core::written`]) instead of releasing them at dispatch, so the budget also bounds
    /// payloads on their way out (the dispatcher shell turns this on when there is a cap).
    pub release_when_written: bool,
    /// With `Some(short)`, a busy daemon whose last task took less than `short`, and whose
    /// current task has run less than `short`, gets its next task before its result arrives
    /// (one task ahead), so it starts the next without waiting for the dispatcher; `None` never
    /// sends ahead. Default: [`SHORT_TASK`]. See the rules on [`Core`].
    pub send_ahead: Option<Duration>,
    /// How many tasks a daemon may hold ahead of the one it runs, with
    /// [`Config::send_ahead`] (default [`DEFAULT_MAX_AHEAD`]; 0 never sends ahead), and fewer
    /// when its last task's time fits fewer times into the `send_ahead` bound. Deeper keeps a
    /// daemon fed through a slow wake-up of the dispatcher; each task ahead keeps its bytes
    /// reserved until it starts.
    pub max_ahead: usize,
    /// Largest payload a task may carry, in bytes; a larger one is refused at submit
    /// ([`RejectReason::MessageTooLarge`]). `None`: no limit in the core. A
    /// [`Dispatcher`](crate::Dispatcher) sets it from its
    /// [`Limits::max_message`](crate::protocol::Limits::max_message), so nothing larger than
    /// its daemons accept is ever queued.
    pub max_message_bytes: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_queued_bytes: None,
            max_uncollected_bytes: None,
            seed: None,
            entropy: 0,
            cancel_grace: None,
            release_when_written: false,
            send_ahead: Some(SHORT_TASK),
            max_ahead: DEFAULT_MAX_AHEAD,
            max_message_bytes: None,
        }
    }
}

impl Config {
    /// Sets [`Config::max_queued_bytes`].
    pub fn with_max_queued_bytes(mut self, bytes: u64) -> Self {
        self.max_queued_bytes = Some(bytes);
        self
    }

    /// Sets [`Config::max_uncollected_bytes`].
    pub fn with_max_uncollected_bytes(mut self, bytes: u64) -> Self {
        self.max_uncollected_bytes = Some(bytes);
        self
    }

    /// Sets [`Config::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets [`Config::entropy`].
    pub fn with_entropy(mut self, entropy: u64) -> Self {
        self.entropy = entropy;
        self
    }

    /// Sets [`Config::cancel_grace`].
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = Some(grace);
        self
    }

    /// Sets [`Config::release_when_written`].
    pub fn with_release_when_written(mut self, on: bool) -> Self {
        self.release_when_written = on;
        self
    }

    /// Sets [`Config::send_ahead`].
    ///
    /// ```
    /// use mirai_dispatch::Config;
    /// use std::time::Duration;
    /// assert_eq!(Config::default().send_ahead, Some(mirai_dispatch::SHORT_TASK));
    /// let c = Config::default().with_send_ahead(Some(Duration::from_millis(5)));
    /// assert_eq!(c.send_ahead, Some(Duration::from_millis(5)));
    /// assert_eq!(Config::default().with_send_ahead(None).send_ahead, None);
    /// ```
    pub fn with_send_ahead(mut self, short: Option<Duration>) -> Self {
        self.send_ahead = short;
        self
    }

    /// Sets [`Config::max_ahead`].
    ///
    /// ```
    /// use mirai_dispatch::Config;
    /// assert_eq!(Config::default().with_max_ahead(1).max_ahead, 1);
    /// ```
    pub fn with_max_ahead(mut self, tasks: usize) -> Self {
        self.max_ahead = tasks;
        self
    }

    /// Sets [`Config::max_message_bytes`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, RejectReason, Task};
    /// let mut core = Core::new(Config::default().with_max_message_bytes(4));
    /// let refused = core.submit(Task::new("f", vec![0; 5]), Instant::now()).unwrap_err();
    /// assert_eq!(refused.reason, RejectReason::MessageTooLarge { size: 5, limit: 4 });
    /// assert_eq!(refused.task.payload.len(), 5); // handed back
    /// assert!(core.submit(Task::new("f", vec![0; 4]), Instant::now()).is_ok());
    /// ```
    pub fn with_max_message_bytes(mut self, bytes: u64) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }
}
