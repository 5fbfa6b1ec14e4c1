//! The dispatcher as a pure state machine: queue, byte budget, daemon table and task states.
//!
//! The core does no I/O, starts no threads and reads no clock. The shell feeds it events
//! (a submission, a daemon connecting, a result, the time) and carries out the [`Action`]s it
//! returns (send this task to that daemon, resolve that task). Everything that matters for
//! correctness — the exact byte cap, FIFO order, every task resolving exactly once, the
//! counters — is therefore decided here and tested here without sockets.
//!
//! One concept per file: [`Config`] (`config`), admission (`submit`), assignment and
//! send-ahead (`dispatch`), daemons' answers (`results`), cancel and timeouts (`cancel`),
//! daemons joining and leaving (`membership`), resolving (`resolve`), the [`Action`] output
//! (`action`), counters (`status`), the daemon table and join setups (`daemons`), the byte
//! budget (`budget`) and deadlines (`timers`). This file holds the state they share: [`Core`]
//! and the per-task and per-daemon records.

mod action;
mod budget;
mod cancel;
mod config;
mod daemons;
mod dispatch;
mod membership;
mod resolve;
mod results;
mod status;
mod submit;
mod timers;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::task::{DaemonId, IdMap, NoDaemons, Outcome, TaskId};
use budget::Budget;
use timers::Timers;

pub use action::{Action, Job};
pub use cancel::CancelMode;
pub use config::{Config, DEFAULT_MAX_AHEAD, MAX_AHEAD_BYTES, SHORT_TASK, UNSTARTED_GRACE};
pub use daemons::{DaemonInfo, DaemonPhase};
pub use results::{ProtocolViolation, Reply};
pub use status::{Memory, Status};
pub use submit::{RejectReason, Rejected};

#[cfg(doc)]
use crate::task::Task;

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
    /// Active, holding fewer than `1 + ahead_depth(..)` tasks, its current one not abandoned
    /// and looking shorter than `short`: it may take one more ahead.
    fn open(&self, short: Duration, max_ahead: usize, now: Instant) -> bool {
        self.state == DaemonState::Active
            && self.setups.is_empty()
            && !self.slots.is_empty()
            && self.slots.front().is_some_and(|s| !s.abandoned)
            && self
                .last_took
                .is_some_and(|t| t < short && self.slots.len() <= ahead_depth(short, max_ahead, t))
            && self
                .started
                .is_some_and(|s| now.saturating_duration_since(s) < short)
    }
}

/// How many tasks a daemon whose last task took `last_took` may hold ahead of its current one:
/// as many as fit into `short` at that pace, at least one and at most `max_ahead`. So the work
/// queued ahead of a daemon is about `short` whatever the tasks' length: deep for trivial
/// tasks (a daemon running 10 µs tasks never runs dry while the dispatcher wakes up), one for
/// tasks close to `short`, and what waits behind a task that turns out long stays bounded.
pub(crate) fn ahead_depth(short: Duration, max_ahead: usize, last_took: Duration) -> usize {
    let fit = short.as_nanos() / last_took.as_nanos().max(1);
    usize::try_from(fit)
        .unwrap_or(usize::MAX)
        .max(1)
        .min(max_ahead)
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
///   short (by default under [`SHORT_TASK`]), as many ahead of its current task as its last
///   task's time fits into that bound (at least one, at most [`Config::max_ahead`]), daemons
///   taking turns (starting with the one whose current task started first), so a
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
    tasks: IdMap<TaskId, Entry>,
    daemons: BTreeMap<DaemonId, Daemon>,
    /// Idle daemons, the one idle longest first.
    idle: VecDeque<DaemonId>,
    /// Daemons that may take a task ahead, the one whose current task started first in front
    /// (entries are checked when taken, so stale ones are harmless).
    open: VecDeque<DaemonId>,
    /// Tasks sent ahead, not yet started, abandoned or recalled.
    recallable: usize,
    groups: IdMap<u64, Group>,
    timers: Timers,
    actions: VecDeque<Action>,
    uncollected: IdMap<TaskId, u64>,
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
            tasks: IdMap::default(),
            daemons: BTreeMap::new(),
            idle: VecDeque::new(),
            open: VecDeque::new(),
            recallable: 0,
            groups: IdMap::default(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            uncollected: IdMap::default(),
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
