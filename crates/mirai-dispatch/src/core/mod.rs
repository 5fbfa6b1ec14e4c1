//! The dispatcher as a pure state machine: queue, byte budget, daemon table and task states.
//!
//! The core does no I/O, starts no threads and reads no clock. The shell feeds it events
//! (a submission, a daemon connecting, a result, the time) and carries out the [`Action`]s it
//! returns (send this task to that daemon, resolve that task). Everything that matters for
//! correctness — the exact byte cap, FIFO order, every task resolving exactly once, the
//! counters — is therefore decided here and tested here without sockets.

mod budget;
mod daemons;
mod timers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::rng;
use crate::task::{DaemonId, NoDaemons, Outcome, Payload, Task, TaskError, TaskId};
use budget::{Budget, Shortfall};
use timers::{Timer, Timers};

pub use daemons::{DaemonInfo, DaemonPhase};

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
/// microseconds, a trivial task a few).
pub const DEFAULT_MAX_AHEAD: usize = 4;

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
    /// [`Config::send_ahead`] (default [`DEFAULT_MAX_AHEAD`]; 0 never sends ahead). Deeper
    /// keeps a daemon fed through a slow wake-up of the dispatcher; each task ahead keeps its
    /// bytes reserved until it starts.
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

/// How to cancel a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMode {
    /// Ask the daemon to stop (cooperative); it stays connected.
    Soft,
    /// Kill a local daemon (the shell replaces it); remote daemons get a soft cancel.
    Hard,
}

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

/// A daemon message the core cannot accept; the shell should drop that daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// The daemon is not (or no longer) connected.
    #[error("{0} is not connected")]
    UnknownDaemon(DaemonId),
    /// The daemon answered for a task it was not running.
    #[error("{daemon} sent a result for {task}, which it was not running")]
    UnexpectedResult {
        /// The daemon.
        daemon: DaemonId,
        /// The task it named.
        task: TaskId,
    },
    /// The daemon answered [`Reply::NotStarted`] for the task it was running, which the core
    /// had neither cancelled nor asked back: only a task still waiting behind another, or one
    /// the daemon was told to drop, may come back unstarted. Taking the answer would requeue a
    /// task that may have run (and had its effects) as if it never had.
    #[error("{daemon} answered {task}, which it was running, as not started")]
    NotStartedWhileRunning {
        /// The daemon.
        daemon: DaemonId,
        /// The task it named.
        task: TaskId,
    },
}

/// What a daemon reported for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The function returned these bytes.
    Value(Payload),
    /// The function failed or panicked.
    Error(TaskError),
    /// The evaluation was interrupted (after a cancel message, or by the daemon itself).
    Interrupted,
    /// The daemon dropped the task without starting it: a cancel or recall reached it while the
    /// task still waited (behind another, see [`Config::send_ahead`], or unread). A task not yet
    /// resolved is queued again at the front. Said of a task the daemon runs that the core never
    /// cancelled nor asked back, it is a [`ProtocolViolation::NotStartedWhileRunning`].
    NotStarted,
    /// The function returned a value over the message limit, which the daemon did not send.
    TooLarge {
        /// The encoded value's size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl Reply {
    fn into_outcome(self) -> Outcome {
        match self {
            Self::Value(v) => Outcome::Value(v),
            Self::Error(e) => Outcome::TaskError(e),
            Self::Interrupted | Self::NotStarted => Outcome::Cancelled,
            Self::TooLarge { size, limit } => Outcome::ResultTooLarge { size, limit },
        }
    }
}

/// What the shell sends to a daemon to run one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The registered function's name.
    pub function: String,
    /// The argument bytes (shared, not copied).
    pub payload: Payload,
    /// Trace context from the submitter.
    pub trace: Option<Vec<u8>>,
    /// The task's RNG stream seed, when the dispatcher has a seed. Fixed at submission, so a
    /// retried or requeued task keeps its stream.
    pub rng_seed: Option<u64>,
    /// How many times the task was retried after losing its daemon mid-run (0 the first time;
    /// a task handed back unstarted keeps its number).
    pub attempt: u32,
}

/// Work for the shell, returned by [`Core::poll_action`] in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A daemon joined: send it the init message with this RNG stream.
    Joined {
        /// The new daemon.
        daemon: DaemonId,
        /// Its per-connection RNG stream seed.
        rng_stream: u64,
    },
    /// Send a task to a daemon.
    Send {
        /// Where to.
        daemon: DaemonId,
        /// The task.
        task: TaskId,
        /// What to run.
        job: Job,
    },
    /// Tell a daemon to cancel a task it runs or holds (a task sent ahead that has not started
    /// is dropped and answered with [`Reply::NotStarted`]).
    Cancel {
        /// The daemon.
        daemon: DaemonId,
        /// The task it runs or holds.
        task: TaskId,
    },
    /// Ask a daemon to hand back a task waiting ahead: it drops it if it has not started it
    /// (answering [`Reply::NotStarted`]), and otherwise lets it run (a recall never interrupts).
    Recall {
        /// The daemon.
        daemon: DaemonId,
        /// The task waiting ahead.
        task: TaskId,
    },
    /// Kill a local daemon's process (and start a replacement if the pool wants one); the shell
    /// then reports [`Core::daemon_disconnected`].
    Kill {
        /// The daemon.
        daemon: DaemonId,
    },
    /// Tell a daemon to exit: it marked its last result, or the dispatcher shuts down. It gets
    /// no more work.
    Release {
        /// The daemon.
        daemon: DaemonId,
    },
    /// A daemon left (after [`Core::daemon_disconnected`]).
    Left {
        /// The daemon.
        daemon: DaemonId,
    },
    /// A task ended; complete its handle. Happens exactly once per accepted task.
    Resolve {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: Outcome,
    },
    /// Budget bytes were released: blocked submitters may retry.
    WakeSubmitters,
    /// A join setup ([`Core::add_setup`]) ended on `daemon` without a value (an error, a
    /// result over the limit, an interruption). Nobody holds a handle for it; the daemon
    /// serves on. Setups that end with their daemon or at shutdown are not reported.
    SetupFailed {
        /// The daemon.
        daemon: DaemonId,
        /// How the setup ended.
        outcome: Outcome,
    },
}

/// Byte accounting in a [`Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Payload bytes reserved now (queued tasks, and retryable tasks until they resolve).
    pub used: u64,
    /// The most ever reserved at once.
    pub peak: u64,
    /// The cap, `None` when unbounded.
    pub capacity: Option<u64>,
    /// Bytes of values resolved but not yet collected (tracked only with a cap).
    pub uncollected: u64,
    /// The uncollected-results cap.
    pub uncollected_capacity: Option<u64>,
}

/// A snapshot of the counters. `awaiting + executing + completed == submitted` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Daemons connected and accepting work (idle or busy).
    pub connections: u64,
    /// Daemons ever connected.
    pub cumulative: u64,
    /// Daemons idle now.
    pub idle: u64,
    /// Tasks queued.
    pub awaiting: u64,
    /// Tasks running on a daemon and not yet resolved.
    pub executing: u64,
    /// Tasks resolved, whatever the outcome.
    pub completed: u64,
    /// Tasks ever accepted.
    pub submitted: u64,
    /// Byte accounting.
    pub memory: Memory,
    /// Set when the launcher gave up starting daemons ([`Core::strand`]): while no daemon is
    /// connected, tasks resolve [`Outcome::NoDaemons`] with this reason instead of waiting.
    pub no_daemons: Option<NoDaemons>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Queued,
    /// Sent to a daemon that still runs the task before it.
    Ahead(DaemonId),
    /// The daemon's current task (it may still be on its way).
    Running(DaemonId),
}

#[derive(Debug)]
struct Entry {
    /// Kept while queued, and while running when the task may be retried.
    job: Option<Job>,
    state: TaskState,
    reserved: u64,
    queue_timeout: Option<Duration>,
    run_timeout: Option<Duration>,
    retries_left: u32,
    attempt: u32,
    group: Option<u64>,
    /// Dispatched, its bytes still reserved until [`Core::written`].
    unwritten: bool,
    /// Sent ahead and then asked back (a daemon fell idle): its bytes stay reserved, and its
    /// payload kept, until the daemon answers.
    recalled: bool,
    /// Its handle is gone ([`Core::forget`]): its value will never be collected.
    forgotten: bool,
    /// A join setup's copy ([`Core::add_setup`]): nobody holds a handle, so it resolves
    /// without an [`Action::Resolve`].
    setup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaemonState {
    /// Connected and taking work (idle when it holds no task).
    Active,
    /// Released (last result or shutdown): no more work, waiting for the disconnect.
    Exiting,
    /// A kill was requested: waiting for the disconnect.
    Killed,
}

/// A task a daemon holds, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    task: TaskId,
    /// Resolved early (cancel or timeout): its answer only frees the slot.
    abandoned: bool,
    /// Abandoned with [`CancelMode::Hard`] while it waited: a local daemon is killed if the
    /// task may have started.
    hard: bool,
}

#[derive(Debug)]
struct Daemon {
    local: bool,
    state: DaemonState,
    /// The current task first, then the one sent ahead. A daemon answers in this order.
    slots: VecDeque<Slot>,
    /// When the current task started.
    started: Option<Instant>,
    /// How long the last task it answered took.
    last_took: Option<Duration>,
    /// When it joined.
    connected: Instant,
    /// Tasks sent to it.
    assigned: u64,
    /// Tasks it answered (with a value, an error or an interruption).
    answered: u64,
    /// The join setups it has still to run, before any other task ([`Core::add_setup`]).
    setups: VecDeque<Job>,
}

impl Daemon {
    /// Active, holding fewer than `1 + max_ahead` tasks, its current one not abandoned and
    /// looking shorter than `short`: it may take one more ahead.
    fn open(&self, short: Duration, max_ahead: usize, now: Instant) -> bool {
        self.state == DaemonState::Active
            && self.setups.is_empty()
            && !self.slots.is_empty()
            && self.slots.len() <= max_ahead
            && self.slots.front().is_some_and(|s| !s.abandoned)
            && self.last_took.is_some_and(|t| t < short)
            && self
                .started
                .is_some_and(|s| now.saturating_duration_since(s) < short)
    }
}

/// The copies of one `everywhere` call: which daemons already got one.
#[derive(Debug)]
struct Group {
    served: Vec<DaemonId>,
    remaining: usize,
}

/// The dispatcher state machine.
///
/// # Rules
///
/// - **Budget.** Submitting a task reserves its payload length against
///   [`Config::max_queued_bytes`] in the same step that queues it, so `used <= capacity` always
///   holds. The bytes are released when the task leaves the queue: dispatched (or, with
///   [`Config::release_when_written`], once the shell reports its payload written), cancelled
///   or timed out while queued. A task with [`Task::retries`] keeps its reservation until it resolves,
///   because the core keeps its payload to run it again.
/// - **Oversized tasks.** A task whose payload alone exceeds the whole capacity is refused at
///   once with [`RejectReason::TooLarge`]: it could never fit, so waiting for it would deadlock.
///   A task exactly the size of the capacity is admitted when the queue is empty.
/// - **Scheduling.** One FIFO queue; a task goes to the daemon that has been idle longest. A
///   daemon that marked a result as its last is never sent new work.
/// - **Send-ahead.** With [`Config::send_ahead`] (the default), when every daemon is busy an
///   ordinary task of at most [`MAX_AHEAD_BYTES`] also goes to a busy daemon whose tasks look
///   short (by default under [`SHORT_TASK`]), up to [`Config::max_ahead`] ahead of its current
///   task, daemons taking turns (starting with the one whose current task started first), so a
///   daemon that finishes a short task starts the next without a round trip through the
///   dispatcher. A daemon answers its tasks in the order it got them, so a task ahead starts
///   exactly when the one before it is answered: its run timeout
///   starts then, its queue timeout holds until then, and its bytes stay reserved (and its
///   payload kept) until then. When a daemon idles with nothing queued, tasks waiting ahead are
///   asked back ([`Action::Recall`]); a daemon that had not started one answers
///   [`Reply::NotStarted`] and the task is queued again at the front, so no task waits behind
///   another while a daemon idles for longer than that round trip. A task waiting ahead is
///   queued again, without using a retry, when its daemon goes or answers its last result; it is
///   never lost with the daemon, because it had not started.
/// - **Uncollected results.** With [`Config::max_uncollected_bytes`], dispatch pauses while the
///   values resolved but not yet [`collected`](Core::collected) reach the cap (results of tasks
///   already running still arrive, so this cap is a brake, not an exact bound).
/// - **Timeouts.** The queue timeout counts from submission until dispatch; the run timeout from
///   dispatch until the result. Both resolve [`Outcome::TimedOut`]; a run timeout also tells the
///   daemon to cancel.
/// - **Cancel.** A queued task is removed and its bytes released at once (certain). A running
///   task resolves [`Outcome::Cancelled`] at once and its daemon gets a cancel message; with
///   [`CancelMode::Hard`] (or after [`Config::cancel_grace`] without an answer) a local daemon is
///   killed instead, and the shell replaces it. The daemon is busy until it answers or goes. A
///   task waiting ahead resolves at once too and its daemon is told to drop it; a hard cancel
///   kills a local daemon only if it has not dropped the task [`UNSTARTED_GRACE`] after
///   answering the task before it.
/// - **Daemon loss.** A running task whose daemon disconnects is queued again at the front if it
///   has retries left, otherwise it resolves [`Outcome::ConnectionLost`]. Queued tasks stay
///   queued; a task waiting ahead is queued again at the front.
/// - **Everywhere.** One copy per connected daemon, or `min` copies if more, each landing on a
///   different daemon; copies beyond the connected daemons wait for new ones (a rendezvous).
/// - **Retirement.** A daemon that retires by its own rules ([`Core::daemon_retiring`]) gets
///   no more work; its departure is not a loss of the pool's making, and its launcher does not
///   replace it.
/// - **No daemons.** Once the launcher gave up starting daemons ([`Core::strand`]), whenever no
///   daemon is connected every queued task, and every task submitted then, resolves
///   [`Outcome::NoDaemons`]: nothing waits forever on a pool that cannot run it.
/// - **Shutdown.** Every unresolved task resolves [`Outcome::ShutDown`]; daemons are released.
///
/// ```
/// use std::time::Instant;
/// use mirai_dispatch::{Action, Config, Core, Outcome, Reply, Task};
///
/// let now = Instant::now();
/// let mut core = Core::new(Config::default().with_max_queued_bytes(1 << 20));
/// let id = core.submit(Task::new("double", vec![21]), now).unwrap();
/// let daemon = core.daemon_connected(true, now);
/// let mut sent = None;
/// while let Some(action) = core.poll_action() {
///     if let Action::Send { daemon, task, job } = action {
///         assert_eq!(job.function, "double");
///         sent = Some((daemon, task));
///     }
/// }
/// assert_eq!(sent, Some((daemon, id)));
/// core.on_result(daemon, id, Reply::Value(vec![42].into()), false, now).unwrap();
/// let resolved = std::iter::from_fn(|| core.poll_action()).find_map(|a| match a {
///     Action::Resolve { task, outcome } => Some((task, outcome)),
///     _ => None,
/// });
/// assert_eq!(resolved, Some((id, Outcome::Value(vec![42].into()))));
/// assert_eq!(core.status().completed, 1);
/// ```
#[derive(Debug)]
pub struct Core {
    config: Config,
    budget: Budget,
    /// Task ids in FIFO order; ids of tasks that left the queue by cancel or timeout stay here
    /// until they reach the front (lazy removal keeps cancel O(1)).
    queue: VecDeque<TaskId>,
    tasks: HashMap<TaskId, Entry>,
    daemons: BTreeMap<DaemonId, Daemon>,
    /// Idle daemons, the one idle longest first.
    idle: VecDeque<DaemonId>,
    /// Daemons that may take a task ahead, the one whose current task started first in front
    /// (entries are checked when taken, so stale ones are harmless).
    open: VecDeque<DaemonId>,
    /// Tasks sent ahead, not yet started, abandoned or recalled.
    recallable: usize,
    groups: HashMap<u64, Group>,
    timers: Timers,
    actions: VecDeque<Action>,
    uncollected: HashMap<TaskId, u64>,
    uncollected_bytes: u64,
    next_task: u64,
    next_daemon: u64,
    next_group: u64,
    rng_sequence: u64,
    submitted: u64,
    completed: u64,
    awaiting: u64,
    executing: u64,
    connections: u64,
    shut_down: bool,
    /// The launcher gave up starting daemons (see [`Core::strand`]).
    stranded: Option<NoDaemons>,
    /// Bytes were released since the last `WakeSubmitters`.
    released: bool,
    /// Bytes were released since the host handle last looked.
    host_wake: bool,
    /// What every daemon runs when it joins, before any other task ([`Core::add_setup`]).
    setups: Vec<Job>,
}

impl Core {
    /// A core with no daemons and an empty queue.
    pub fn new(config: Config) -> Self {
        Self {
            budget: Budget::new(config.max_queued_bytes),
            config,
            queue: VecDeque::new(),
            tasks: HashMap::new(),
            daemons: BTreeMap::new(),
            idle: VecDeque::new(),
            open: VecDeque::new(),
            recallable: 0,
            groups: HashMap::new(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            uncollected: HashMap::new(),
            uncollected_bytes: 0,
            next_task: 0,
            next_daemon: 0,
            next_group: 0,
            rng_sequence: 0,
            submitted: 0,
            completed: 0,
            awaiting: 0,
            executing: 0,
            connections: 0,
            shut_down: false,
            stranded: None,
            released: false,
            host_wake: false,
            setups: Vec::new(),
        }
    }

    /// The settings this core was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

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

    /// Cancels a task; `true` if it was still unresolved (it then resolves
    /// [`Outcome::Cancelled`]), `false` if unknown or already resolved.
    pub fn cancel(&mut self, task: TaskId, mode: CancelMode, now: Instant) -> bool {
        let Some(entry) = self.tasks.get(&task) else {
            return false;
        };
        match entry.state {
            TaskState::Running(daemon) => self.abandon(daemon, task, mode, now),
            TaskState::Ahead(daemon) => self.abandon_ahead(daemon, task, mode),
            TaskState::Queued => {}
        }
        self.resolve(task, Outcome::Cancelled);
        self.finish(now);
        true
    }

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

    /// A daemon answered for `task`. With `last`, the daemon is about to exit: it is released
    /// and never gets new work. A result for an already resolved (cancelled, timed-out) task
    /// just frees the daemon. A daemon answers its tasks in the order it got them, except that
    /// a task waiting ahead may be answered [`Reply::NotStarted`] at any time. Its current task
    /// may be answered [`Reply::NotStarted`] only if the core cancelled it or asked it back
    /// (the daemon may not have started it yet); otherwise the answer is refused with
    /// [`ProtocolViolation::NotStartedWhileRunning`] and nothing changes, so the shell drops
    /// the daemon and [`Core::daemon_disconnected`] resolves the task as lost.
    pub fn on_result(
        &mut self,
        daemon: DaemonId,
        task: TaskId,
        reply: Reply,
        last: bool,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        let d = self
            .daemons
            .get_mut(&daemon)
            .ok_or(ProtocolViolation::UnknownDaemon(daemon))?;
        if d.state == DaemonState::Exiting {
            // Late answers from a daemon being released carry nothing to resolve.
            self.finish(now);
            return Ok(());
        }
        if matches!(reply, Reply::NotStarted)
            && let Some(at) = d.slots.iter().skip(1).position(|s| s.task == task)
        {
            // Dropped while it still waited (the daemon's watcher answers at once, even while
            // the task before it runs).
            let slot = d.slots.remove(at + 1).expect("position found above");
            if !slot.abandoned {
                self.requeue(task, now);
            }
            self.finish(now);
            return Ok(());
        }
        if d.slots.front().is_none_or(|s| s.task != task) {
            if d.state == DaemonState::Killed {
                self.finish(now);
                return Ok(());
            }
            return Err(ProtocolViolation::UnexpectedResult { daemon, task });
        }
        if matches!(reply, Reply::NotStarted)
            && d.slots.front().is_some_and(|s| !s.abandoned)
            && !self.tasks.get(&task).is_some_and(|e| e.recalled)
        {
            // The daemon runs this task and was never told to drop it: it cannot be unstarted.
            // Nothing changes here; the shell drops the daemon, and its disconnect resolves the
            // task as any task of a lost daemon (retried or `ConnectionLost`).
            return Err(ProtocolViolation::NotStartedWhileRunning { daemon, task });
        }
        let killed = d.state == DaemonState::Killed;
        let slot = d.slots.pop_front().expect("front checked above");
        if !matches!(reply, Reply::NotStarted) {
            d.answered += 1;
        }
        d.last_took = d.started.map(|s| now.saturating_duration_since(s));
        if killed {
            // The process is going, but until it dies it may answer: a task it finished (one
            // that started there after the killed one) resolves with that answer, and the next
            // may now have started there, so its disconnect will count it as lost, not
            // unstarted. Only the abandoned task's answer is not used.
            let next = d.slots.front().copied();
            if !slot.abandoned {
                if matches!(reply, Reply::NotStarted) {
                    self.requeue(task, now);
                } else {
                    self.resolve(task, reply.into_outcome());
                }
            }
            if let Some(next) = next.filter(|s| !s.abandoned) {
                self.start(next.task, daemon, now);
            }
            self.finish(now);
            return Ok(());
        }
        let ahead: Vec<Slot> = if last {
            d.state = DaemonState::Exiting;
            self.connections -= 1;
            self.actions.push_back(Action::Release { daemon });
            // It exits without starting anything else.
            d.slots.drain(..).collect()
        } else {
            Vec::new()
        };
        if !slot.abandoned {
            if matches!(reply, Reply::NotStarted) {
                self.requeue(task, now);
            } else {
                self.resolve(task, reply.into_outcome());
            }
        }
        for s in ahead.iter().rev().filter(|s| !s.abandoned) {
            self.requeue(s.task, now);
        }
        if !last {
            self.next_current(daemon, now);
        }
        self.finish(now);
        Ok(())
    }

    /// The host took the value of `task`: its bytes leave the uncollected count. `false` if the
    /// task had no tracked value.
    pub fn collected(&mut self, task: TaskId, now: Instant) -> bool {
        let Some(bytes) = self.uncollected.remove(&task) else {
            return false;
        };
        self.uncollected_bytes -= bytes;
        self.finish(now);
        true
    }

    /// The handle of `task` is gone and nobody will collect its value. An unresolved task keeps
    /// its place (queued or running: forgetting is not cancelling) but its value will not count
    /// as uncollected when it arrives; a resolved one's value leaves the uncollected count now.
    /// It still resolves exactly once ([`Action::Resolve`]): the shell discards that outcome.
    /// `false` if the task was neither unresolved nor holding uncollected bytes.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Reply, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default().with_max_uncollected_bytes(100));
    /// let id = core.submit(Task::new("f", vec![]), now).unwrap();
    /// let daemon = core.daemon_connected(true, now);
    /// assert!(core.forget(id, now));
    /// assert_eq!(core.status().executing, 1, "still runs");
    /// core.on_result(daemon, id, Reply::Value(vec![0; 10].into()), false, now).unwrap();
    /// assert_eq!(core.status().memory.uncollected, 0, "never counted");
    /// assert!(!core.forget(id, now));
    /// ```
    pub fn forget(&mut self, task: TaskId, now: Instant) -> bool {
        if let Some(entry) = self.tasks.get_mut(&task) {
            entry.forgotten = true;
            return true;
        }
        self.collected(task, now)
    }

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

    /// The earliest time [`Core::handle_timeout`] has work (possibly none by then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Queue(task, attempt) => {
                    let state = self
                        .tasks
                        .get(&task)
                        .filter(|e| e.attempt == attempt)
                        .map(|e| e.state);
                    match state {
                        Some(TaskState::Queued) => self.resolve(task, Outcome::TimedOut),
                        // Still waiting behind another task on a daemon: the queue timeout
                        // holds until it starts.
                        Some(TaskState::Ahead(daemon)) => {
                            self.abandon_ahead(daemon, task, CancelMode::Soft);
                            self.resolve(task, Outcome::TimedOut);
                        }
                        _ => {}
                    }
                }
                Timer::Run(task, attempt) => {
                    let running_on = self.tasks.get(&task).and_then(|e| match e.state {
                        TaskState::Running(d) if e.attempt == attempt => Some(d),
                        _ => None,
                    });
                    if let Some(daemon) = running_on {
                        self.abandon(daemon, task, CancelMode::Soft, now);
                        self.resolve(task, Outcome::TimedOut);
                    }
                }
                Timer::CancelGrace(daemon, task) => {
                    if let Some(d) = self.daemons.get_mut(&daemon)
                        && d.state == DaemonState::Active
                        && d.slots
                            .front()
                            .is_some_and(|s| s.task == task && s.abandoned)
                    {
                        self.kill(daemon);
                    }
                }
            }
        }
        self.finish(now);
    }

    /// Resolves every unresolved task with [`Outcome::ShutDown`] (queued ones first, in FIFO
    /// order), releases every daemon and refuses further submissions.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let queued: Vec<TaskId> = self.queue.drain(..).collect();
        for task in queued {
            if self.is_queued(task) {
                self.resolve(task, Outcome::ShutDown);
            }
        }
        let mut running: Vec<TaskId> = self.tasks.keys().copied().collect();
        running.sort_unstable();
        for task in running {
            self.resolve(task, Outcome::ShutDown);
        }
        for (&daemon, d) in &mut self.daemons {
            if d.state == DaemonState::Active {
                d.state = DaemonState::Exiting;
                self.connections -= 1;
                self.actions.push_back(Action::Release { daemon });
            }
        }
        self.idle.clear();
        self.open.clear();
        self.timers.clear();
        self.released = true;
        self.finish(now);
    }

    /// Whether [`Core::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether actions are waiting for [`Core::poll_action`].
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The counters now.
    pub fn status(&self) -> Status {
        Status {
            connections: self.connections,
            cumulative: self.next_daemon,
            idle: self.idle.len() as u64,
            awaiting: self.awaiting,
            executing: self.executing,
            completed: self.completed,
            submitted: self.submitted,
            memory: Memory {
                used: self.budget.used(),
                peak: self.budget.peak(),
                capacity: self.budget.capacity(),
                uncollected: self.uncollected_bytes,
                uncollected_capacity: self.config.max_uncollected_bytes,
            },
            no_daemons: self.stranded,
        }
    }

    /// Whether a submission of `bytes` would fit in the budget now.
    pub fn fits(&self, bytes: u64) -> bool {
        self.budget
            .capacity()
            .is_none_or(|cap| bytes <= cap - self.budget.used())
    }

    /// Takes the "bytes were released" flag the host handle uses to wake blocked submitters.
    pub(crate) fn take_host_wake(&mut self) -> bool {
        std::mem::take(&mut self.host_wake)
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

    fn is_queued(&self, task: TaskId) -> bool {
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
    fn pump(&mut self, now: Instant) {
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
    fn recall(&mut self) {
        let mut wanted = self.idle.len().min(self.recallable);
        let mut recalls = Vec::new();
        for (&daemon, d) in &self.daemons {
            if wanted == 0 {
                break;
            }
            if d.state != DaemonState::Active {
                continue;
            }
            for slot in d.slots.iter().skip(1).filter(|s| !s.abandoned) {
                if self
                    .tasks
                    .get(&slot.task)
                    .is_some_and(|e| e.state == TaskState::Ahead(daemon) && !e.recalled)
                    && wanted > 0
                {
                    recalls.push((daemon, slot.task));
                    wanted -= 1;
                }
            }
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
    fn assign(&mut self, task: TaskId, daemon: DaemonId, now: Instant) {
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
    fn start(&mut self, task: TaskId, daemon: DaemonId, now: Instant) {
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
    fn next_current(&mut self, daemon: DaemonId, now: Instant) {
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

    /// The running `task` on `daemon` is being resolved early (cancel or run timeout): stop it.
    fn abandon(&mut self, daemon: DaemonId, task: TaskId, mode: CancelMode, now: Instant) {
        let Some(d) = self.daemons.get_mut(&daemon) else {
            return;
        };
        if let Some(slot) = d.slots.iter_mut().find(|s| s.task == task) {
            slot.abandoned = true;
        }
        if mode == CancelMode::Hard && d.local && d.state == DaemonState::Active {
            self.kill(daemon);
            return;
        }
        self.actions.push_back(Action::Cancel { daemon, task });
        if d.local
            && let Some(at) = self.config.cancel_grace.and_then(|g| now.checked_add(g))
        {
            self.timers.arm(at, Timer::CancelGrace(daemon, task));
        }
    }

    /// `task`, sent ahead to `daemon` and not known to have started, is being resolved early:
    /// the daemon is told to drop it. Nothing is killed yet (the task has most likely not
    /// started); a hard cancel kills once the task may have started (see `next_current`).
    fn abandon_ahead(&mut self, daemon: DaemonId, task: TaskId, mode: CancelMode) {
        let Some(d) = self.daemons.get_mut(&daemon) else {
            return;
        };
        if let Some(slot) = d.slots.iter_mut().find(|s| s.task == task) {
            slot.abandoned = true;
            slot.hard = mode == CancelMode::Hard;
        }
        self.actions.push_back(Action::Cancel { daemon, task });
    }

    /// Asks the shell to kill `daemon` (it then reports the disconnect).
    fn kill(&mut self, daemon: DaemonId) {
        if let Some(d) = self.daemons.get_mut(&daemon)
            && d.state == DaemonState::Active
        {
            d.state = DaemonState::Killed;
            self.connections -= 1;
            self.actions.push_back(Action::Kill { daemon });
        }
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
    fn requeue(&mut self, task: TaskId, now: Instant) {
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

    /// Ends `task` with `outcome`: the one place a task resolves.
    fn resolve(&mut self, task: TaskId, outcome: Outcome) {
        let Some(entry) = self.tasks.remove(&task) else {
            return;
        };
        match entry.state {
            TaskState::Queued => self.awaiting -= 1,
            TaskState::Ahead(_) => {
                self.executing -= 1;
                if !entry.recalled {
                    self.recallable -= 1;
                }
            }
            TaskState::Running(_) => self.executing -= 1,
        }
        if entry.reserved > 0 {
            self.budget.release(entry.reserved);
            self.released = true;
        }
        if let Some(g) = entry.group
            && let Some(group) = self.groups.get_mut(&g)
        {
            group.remaining -= 1;
            if group.remaining == 0 {
                self.groups.remove(&g);
            }
        }
        self.completed += 1;
        if entry.setup {
            // Nobody waits for a join setup's copy; a failure is reported apart.
            if let (TaskState::Running(daemon), false) = (
                entry.state,
                matches!(
                    outcome,
                    Outcome::Value(_) | Outcome::ConnectionLost | Outcome::ShutDown
                ),
            ) {
                self.actions
                    .push_back(Action::SetupFailed { daemon, outcome });
            }
            return;
        }
        if let (Some(_), Outcome::Value(v), false) =
            (self.config.max_uncollected_bytes, &outcome, entry.forgotten)
        {
            let bytes = v.len() as u64;
            self.uncollected.insert(task, bytes);
            self.uncollected_bytes += bytes;
        }
        self.actions.push_back(Action::Resolve { task, outcome });
    }

    /// Every public event ends here: fail what cannot run (see [`Core::strand`]), dispatch what
    /// can be dispatched, then wake submitters once.
    fn finish(&mut self, now: Instant) {
        if let Some(reason) = self.stranded
            && self.connections == 0
            && self.awaiting > 0
        {
            let queued: Vec<TaskId> = self.queue.drain(..).collect();
            for task in queued {
                if self.is_queued(task) {
                    self.resolve(task, Outcome::NoDaemons(reason));
                }
            }
        }
        self.pump(now);
        if std::mem::take(&mut self.released) {
            self.host_wake = true;
            self.actions.push_back(Action::WakeSubmitters);
        }
    }
}
