//! The daemon's socket loop: dial, hello, init, then run tasks until an exit rule fires.
//!
//! Why this shape: a trivial task should cost the daemon one wake-up, as a plain blocking
//! server would. So the loop's thread (the "main thread" below; [`serve`] starts it and waits
//! for it) owns the connection (nano-transport's [`Connection`] over a mio stream): it sleeps in
//! its own poll, reads the task, runs it inline, and writes the result as one vectored write
//! whose value is its own slice (not copied). No other thread is involved while the daemon is
//! idle or running short tasks.
//!
//! A watcher thread covers what the main thread cannot do while a task runs. Its poll holds only
//! a waker, plus the connection from the running task's first look at its [`CancelToken`] (or,
//! for a task that never looks, from the second of the watcher's looks that finds it running,
//! see [`WATCH_TICK`]) until the task ends: a cancel or exit message then reaches the token at
//! once. Trivial tasks pay nothing for this. The watcher also sends the heartbeats and watches
//! the host's silence (see [`MISSED_BEATS`](crate::MISSED_BEATS)): a host silent that long gets
//! its connection shut down, which the main thread then sees as the host gone. The connection
//! itself (dialing, handshakes, one message in or out) is in `link`, the watcher in `watch`.
//!
//! # When the host goes
//!
//! The host is gone when its connection ends (end of stream or reset, as when the host process
//! dies and the kernel closes its sockets) or falls silent for `MISSED_BEATS` heartbeat
//! intervals (a frozen host, or a network that is gone). An idle daemon sees this in its own
//! poll. A busy one learns it from the watcher, which cancels the running task's token; what
//! follows is the [`AutoExit`] rule:
//!
//! - [`AutoExit::Immediately`] (the default, and what launched daemons use): the task gets
//!   [`HOST_GONE_GRACE`] to return after its cancel; past that, [`serve`] returns
//!   [`ExitReason::HostGone`] without it, leaving its thread behind, and a daemon process's
//!   `main` exits, which ends the task. Rust code cannot be interrupted safely, so abandoning
//!   the thread and ending the process is the only way to stop a function that never checks its
//!   token, and a daemon must not outlive its host: nobody can collect its result, and on a
//!   shared machine an orphan holds memory and CPU for nothing. The bound after a host's
//!   connection closes is `2 * WATCH_TICK + HOST_GONE_GRACE` (2 s; one grace once the task ran
//!   for two looks); after a host falls silent, `MISSED_BEATS` heartbeats plus that.
//! - [`AutoExit::FinishTask`]: the running task ends as it will, then the daemon exits.
//! - [`AutoExit::Never`]: the daemon finishes its task and redials the same address.
//!
//! An exit message received mid-task counts as the host going for the grace. With heartbeats
//! disabled, a silent (but open) connection is never detected.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry as MioRegistry, Token, Waker};
use nano_transport::Address;
use nano_transport::conn::{ConnSender, Connection, ReadProgress};

mod link;
mod watch;

use link::{connect, decode, limits_of, note_events, send};
use watch::watch;

use super::{
    AutoExit, CancelToken, ExitReason, ExitRules, HostGone, Lifecycle, Registry, TaskContext,
};
use crate::protocol::{EncodeError, FromDaemon, Limits, RefuseReason, ResultStatus, ToDaemon};
use crate::secret::Secret;
use crate::task::{Payload, TaskError, TaskId};

/// How long a daemon that sent its last result waits for the dispatcher's exit message.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// The PAIR1 header of every message we send: a hop count of 1, as NNG writes it.
const PAIR1_HEADER: [u8; 4] = [0, 0, 0, 1];

const CONN: Token = Token(0);
const WAKE: Token = Token(1);

/// Most messages read in one go.
const READ_BATCH: usize = 64;

/// Most cancelled-before-start task ids remembered (see [`Shared::dropped`]).
const MAX_DROPPED: usize = 64;

/// Where and how a daemon connects.
///
/// ```
/// use mirai_dispatch::daemon::DaemonConfig;
/// let c = DaemonConfig::new("abstract://example", b"token".to_vec());
/// assert_eq!(c.launch_id, 0);
/// ```
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The dispatcher's address.
    pub url: String,
    /// What the daemon presents in its hello: the pool token (launch id 0) or its launch's
    /// credential ([`Secret::launch_credential`]).
    pub token: Secret,
    /// The id the launcher gave this daemon.
    pub launch_id: u64,
    /// When to exit.
    pub rules: ExitRules,
    /// How long to wait for the first connection, for the init message, and for a send.
    pub connect_timeout: Duration,
    /// How to verify a `tls+tcp://` dispatcher (typically the pinned fingerprint from the launch
    /// command) and the client certificate to present, if any. Feature `tls`: without it a
    /// `tls+tcp://` address ends [`serve`] with [`nano_transport::Error::TlsDisabled`].
    #[cfg(feature = "tls")]
    pub tls: Option<nano_transport::tls::TlsConfig>,
}

impl DaemonConfig {
    /// Defaults: launch id 0, no exit rules, 10 s to connect.
    pub fn new(url: impl Into<String>, token: impl Into<Secret>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            launch_id: 0,
            rules: ExitRules::default(),
            connect_timeout: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The address is malformed, or it is `tls+tcp://` in a build without the `tls` feature
    /// ([`nano_transport::Error::TlsDisabled`]).
    #[error("transport: {0}")]
    Transport(#[from] nano_transport::Error),
    /// The dispatcher refused the handshake.
    #[error("refused by the dispatcher: {0:?}")]
    Refused(RefuseReason),
    /// No init message arrived in time.
    #[error("no init message within {0:?}")]
    NoInit(Duration),
    /// A message could not be encoded.
    #[error("cannot encode a message: {0}")]
    Encode(#[from] EncodeError),
    /// The connection or the watcher thread failed.
    #[error("i/o: {0}")]
    Thread(#[from] io::Error),
}

/// How long a task may keep running once the host is gone, with autoexit
/// [`AutoExit::Immediately`] (the default, and what launched daemons use): its
/// [`CancelToken`] is cancelled at once, and if it has not returned this long after, [`serve`]
/// returns [`ExitReason::HostGone`] without it (see the module docs).
///
/// ```
/// assert_eq!(mirai_dispatch::daemon::HOST_GONE_GRACE.as_secs(), 1);
/// ```
pub const HOST_GONE_GRACE: Duration = Duration::from_secs(1);

/// How often the watcher looks at the running task (the heartbeat interval instead, if
/// shorter): a task running at two looks in a row gets the connection watched, so a host that
/// closes it is seen at once from then on, and within two looks of a task's start before.
///
/// Together with [`HOST_GONE_GRACE`] this bounds how long a daemon outlives a host whose
/// connection closed (a killed host's, say) when its task ignores its token:
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::daemon::{HOST_GONE_GRACE, WATCH_TICK};
/// assert!(2 * WATCH_TICK + HOST_GONE_GRACE <= Duration::from_secs(2));
/// ```
pub const WATCH_TICK: Duration = Duration::from_millis(500);

/// The stack of the thread that runs tasks: what a main thread usually gets, since a daemon
/// program's tasks would otherwise run on `main`.
const SERVE_STACK: usize = 8 << 20;

/// How the thread that runs tasks reports back to [`serve`]'s caller.
enum Ended {
    /// The loop returned.
    Returned(Result<ExitReason, DaemonError>),
    /// The host is gone and the running task outlived [`HOST_GONE_GRACE`]: the loop's thread
    /// is left behind.
    Abandoned,
    /// The loop panicked (a bug: task panics are caught by the registry).
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Connects to the dispatcher and serves tasks from `registry` until an exit rule fires;
/// returns why (its [`ExitReason::code`] is the process exit code).
///
/// The loop, and the tasks, run on a thread of its own (`registry` is cloned for it: handlers
/// are shared, not copied), so that this call can return while a task still runs: when the
/// host is gone with autoexit [`AutoExit::Immediately`], the running task's token is cancelled
/// and, if the task has not returned [`HOST_GONE_GRACE`] later, this returns
/// [`ExitReason::HostGone`] and leaves that thread to finish the task on its own. A process
/// that then exits (as a daemon's `main` does with the exit code) ends the task with it.
pub fn serve(config: &DaemonConfig, registry: &Registry) -> Result<ExitReason, DaemonError> {
    let (tx, rx) = mpsc::channel();
    let (config, registry) = (config.clone(), registry.clone());
    let ended = tx.clone();
    let serving = std::thread::Builder::new()
        .name("mirai-daemon".into())
        .stack_size(SERVE_STACK)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                serve_here(&config, &registry, ended)
            }));
            let _ = tx.send(match outcome {
                Ok(result) => Ended::Returned(result),
                Err(panic) => Ended::Panicked(panic),
            });
        })?;
    match rx.recv() {
        Ok(Ended::Returned(result)) => {
            // It has nothing left to do but end.
            let _ = serving.join();
            result
        }
        // Never joined: the task may run for as long as it likes.
        Ok(Ended::Abandoned) => Ok(ExitReason::HostGone),
        Ok(Ended::Panicked(panic)) => std::panic::resume_unwind(panic),
        Err(mpsc::RecvError) => Err(io::Error::other("the daemon thread ended silently").into()),
    }
}

/// [`serve`] on the calling thread; `ended` is how the watcher gives up on a task that
/// outlives its host.
fn serve_here(
    config: &DaemonConfig,
    registry: &Registry,
    ended: mpsc::Sender<Ended>,
) -> Result<ExitReason, DaemonError> {
    let address = Address::parse(&config.url)?;
    let mut poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    let watch_poll = Poll::new()?;
    let watch_waker = Waker::new(watch_poll.registry(), WAKE)?;
    let (conn, init, early) = connect(&address, config, &mut poll, None)?;
    let fd = conn.stream().as_raw_fd();
    let shared = Arc::new(Shared {
        sender: Mutex::new(conn.sender().clone()),
        conn: Mutex::new(conn),
        pending: Mutex::new(VecDeque::new()),
        current: Mutex::new(None),
        dropped: Mutex::new(VecDeque::new()),
        epoch: Instant::now(),
        last_rx: AtomicU64::new(0),
        heartbeat_ms: AtomicU64::new(init.heartbeat_ms),
        exit: AtomicBool::new(false),
        watching: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        lost: AtomicBool::new(false),
        autoexit: config.rules.autoexit,
        main_waker: waker,
        watch_waker,
        watch_registry: watch_poll.registry().try_clone()?,
        ended: Mutex::new(ended),
    });
    // What followed the init in the same read (a first task, or an exit) is filed like the rest.
    file_incoming(&shared, early, &limits_of(&init));
    let watcher = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("mirai-daemon-watch".into())
            .spawn(move || watch(&shared, watch_poll))?
    };
    // Stops the watcher and closes the connection however the loop ends.
    let _stop = StopWatcher {
        shared: Arc::clone(&shared),
        watcher: Some(watcher),
    };
    let mut daemon = Daemon {
        shared,
        poll,
        life: Lifecycle::new(config.rules, Instant::now()),
        limits: limits_of(&init),
        address,
        buffered: false,
        fd,
    };
    daemon.run(config, registry)
}

/// Stops and joins the watcher, then shuts the connection, when dropped.
struct StopWatcher {
    shared: Arc<Shared>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StopWatcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.watch_waker.wake();
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let _ = self.shared.conn().stream().shutdown();
    }
}

/// State the main thread and the watcher share.
struct Shared {
    conn: Mutex<Connection>,
    sender: Mutex<ConnSender>,
    /// Messages the watcher read that are for the main thread (pushed under the `conn` lock, so
    /// their order with what the main thread reads is kept).
    pending: Mutex<VecDeque<Vec<u8>>>,
    /// The running task and its token, for cancel messages.
    current: Mutex<Option<(TaskId, CancelToken)>>,
    /// Tasks cancelled before they started, whose task message the main thread already holds:
    /// it drops them unstarted (bounded: a cancel for a task that already ended lands here too).
    dropped: Mutex<VecDeque<TaskId>>,
    epoch: Instant,
    /// When the dispatcher was last heard from, in milliseconds since `epoch`.
    last_rx: AtomicU64,
    heartbeat_ms: AtomicU64,
    /// The dispatcher said exit (seen by the watcher during a task).
    exit: AtomicBool,
    /// The watcher is attached to the connection (for the running task).
    watching: AtomicBool,
    stop: AtomicBool,
    /// The watcher found the host gone (closed, or silent too long).
    lost: AtomicBool,
    autoexit: AutoExit,
    main_waker: Waker,
    /// Wakes the watcher to read bytes the main thread already took from the kernel.
    watch_waker: Waker,
    watch_registry: MioRegistry,
    /// Tells [`serve`]'s caller to give up on a task that outlives its host.
    ended: Mutex<mpsc::Sender<Ended>>,
}

impl Shared {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn heard(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_rx.store(ms, Ordering::Release);
    }

    /// Cancels the running task's token, if a task runs.
    fn cancel_current(&self) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, token)) = current.as_ref() {
            token.cancel();
        }
    }

    /// Answers that `task` was dropped without starting.
    fn not_started(&self, task: TaskId) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let msg = FromDaemon::Result {
            task,
            status: ResultStatus::NotStarted,
            last: false,
        };
        // A failed send means the host is going; the main thread sees it on its next read.
        let _ = send(&sender, &msg, &[]);
    }

    /// The oldest message waiting for the main thread.
    fn next_pending(&self) -> Option<Vec<u8>> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn pending_is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Notes that `task` was cancelled before it started (see [`Shared::dropped`]).
    fn drop_unstarted(&self, task: TaskId) {
        let mut dropped = self.dropped.lock().unwrap_or_else(PoisonError::into_inner);
        if dropped.len() == MAX_DROPPED {
            dropped.pop_front();
        }
        dropped.push_back(task);
    }

    /// Whether `task` was cancelled before it started (forgetting it).
    fn take_dropped(&self, task: TaskId) -> bool {
        let mut dropped = self.dropped.lock().unwrap_or_else(PoisonError::into_inner);
        match dropped.iter().position(|&t| t == task) {
            Some(at) => {
                dropped.remove(at);
                true
            }
            None => false,
        }
    }

    /// The host is gone (closed, or silent too long): a task that must not outlive it stops
    /// (and is abandoned after [`HOST_GONE_GRACE`] if it does not, see [`watch()`]).
    fn host_lost(&self) {
        self.lost.store(true, Ordering::Release);
        if self.autoexit == AutoExit::Immediately {
            self.cancel_current();
        }
        let _ = self.main_waker.wake();
    }

    /// Whether a task is running.
    fn running(&self) -> Option<TaskId> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(t, _)| *t)
    }
}

/// Files messages just read (by either thread, with the connection locked, so their order is
/// kept): cancels, recalls and exit act at once, everything else waits in [`Shared::pending`]
/// for the main thread.
///
/// A cancel reaches the running task's token. A cancel or recall for a task still waiting is
/// answered [`ResultStatus::NotStarted`] at once and the task dropped, even while a long task
/// runs; one for a task the main thread is about to start is noted in [`Shared::dropped`]. The
/// `current` lock orders this against the main thread starting a task (see
/// `Daemon::start_or_drop`). A recall of the running task is ignored: it never interrupts.
fn file_incoming(shared: &Shared, bodies: Vec<Vec<u8>>, limits: &Limits) {
    let mut unstarted = Vec::new();
    let pend = |body: Vec<u8>| {
        shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(body);
    };
    for body in bodies {
        if body
            .get(PAIR1_HEADER.len()..)
            .is_some_and(ToDaemon::is_task)
        {
            // Decoded once, when it runs.
            pend(body);
            continue;
        }
        let (task, cancel) = match decode(&body, limits) {
            Some((ToDaemon::Cancel { task }, _)) => (task, true),
            Some((ToDaemon::Recall { task }, _)) => (task, false),
            Some((ToDaemon::Heartbeat, _)) => continue,
            Some((ToDaemon::Exit, _)) => {
                shared.exit.store(true, Ordering::Release);
                shared.cancel_current();
                continue;
            }
            _ => {
                pend(body);
                continue;
            }
        };
        let current = shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some((t, token)) if *t == task => {
                if cancel {
                    token.cancel();
                }
            }
            _ if withdraw(shared, task) => unstarted.push(task),
            _ => shared.drop_unstarted(task),
        }
    }
    for task in unstarted {
        shared.not_started(task);
    }
}

/// Removes `task`'s task message from [`Shared::pending`]; `false` if it is not there.
fn withdraw(shared: &Shared, task: TaskId) -> bool {
    // Only the id is looked at; the connection's receive limit already held the frame's size.
    let any_size = Limits::new(u64::MAX);
    let is_it = |b: &Vec<u8>| matches!(decode(b, &any_size), Some((ToDaemon::Task { task: t, .. }, _)) if t == task);
    let mut pending = shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match pending.iter().position(is_it) {
        Some(at) => {
            pending.remove(at);
            true
        }
        None => false,
    }
}

/// What the main thread got from a read.
enum Got {
    /// This many messages were read (they wait in [`Shared::pending`], or acted already).
    Read(usize),
    Closed,
}

struct Daemon {
    shared: Arc<Shared>,
    poll: Poll,
    life: Lifecycle,
    limits: Limits,
    address: Address,
    /// The last read stopped at its batch limit with bytes left in the connection.
    buffered: bool,
    /// The connection's descriptor.
    fd: RawFd,
}

impl Daemon {
    fn run(
        &mut self,
        config: &DaemonConfig,
        registry: &Registry,
    ) -> Result<ExitReason, DaemonError> {
        self.shared.heard();
        let mut events = Events::with_capacity(8);
        loop {
            if self.shared.exit.swap(false, Ordering::AcqRel) {
                self.life.exit_requested();
            }
            if self.shared.autoexit != AutoExit::Never && self.shared.lost.load(Ordering::Acquire) {
                // The watcher saw the host go during the task that just ended: tasks that
                // still wait here were the host's, and there is nobody to answer.
                self.life.host_gone(Instant::now());
                return Ok(ExitReason::HostGone);
            }
            let now = Instant::now();
            if let Some(reason) = self.life.poll(now) {
                return Ok(self.retire(reason));
            }
            let read = match self.read() {
                Got::Read(n) => n,
                Got::Closed => {
                    match self.life.host_gone(Instant::now()) {
                        HostGone::Redial => self.reconnect(config)?,
                        HostGone::Exit | HostGone::ExitAfterTask => {
                            return Ok(ExitReason::HostGone);
                        }
                    }
                    continue;
                }
            };
            let next = self.shared.next_pending();
            let Some(body) = next else {
                if read > 0 {
                    // Cancels, recalls or heartbeats only: look again before sleeping.
                    continue;
                }
                let timeout = self
                    .life
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(now));
                if let Err(e) = self.poll.poll(&mut events, timeout)
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    return Err(e.into());
                }
                note_events(&mut self.shared.conn(), &events);
                continue;
            };
            // One message at a time: the rest stay in `pending`, where the watcher finds a
            // task asked back while this one runs.
            self.handle(registry, body)?;
        }
    }

    /// Tells the dispatcher that the daemon leaves by one of its own rules
    /// ([`FromDaemon::Retiring`], after its last result), so its launcher does not take the
    /// exit for a loss; the host going needs no word. A failed send means the host is going.
    fn retire(&self, reason: ExitReason) -> ExitReason {
        if reason.is_rule() {
            let sender = self.shared.conn().sender().clone();
            let _ = send(&sender, &FromDaemon::Retiring { reason }, &[]);
        }
        reason
    }

    /// Reads what the connection has into [`Shared::pending`] (see [`file_incoming`]).
    fn read(&mut self) -> Got {
        let mut conn = self.shared.conn();
        if !conn.may_have_more() {
            return Got::Read(0);
        }
        let mut bodies = Vec::new();
        let before = conn.bytes_received();
        let progress = conn.on_readable(READ_BATCH, &mut |b| {
            bodies.push(b);
            true
        });
        // Bytes past the batch stay in the connection, where no event will announce them.
        self.buffered = matches!(progress, Ok(ReadProgress::Yielded));
        let read = bodies.len();
        // Bytes arriving are a sign of life even before they complete a message: a task of
        // gigabytes takes longer than the silence limit, and the host's heartbeats wait behind it.
        if conn.bytes_received() != before {
            self.shared.heard();
        }
        if read > 0 {
            file_incoming(&self.shared, bodies, &self.limits);
        }
        drop(conn);
        match progress {
            // Whatever arrived before the close is handled first; the close is seen next time.
            Err(_) if read == 0 && self.shared.pending_is_empty() => Got::Closed,
            _ => Got::Read(read),
        }
    }

    /// A token for `task` whose first look attaches the watcher to the connection, so cancel
    /// messages reach it while it runs; a task that never looks costs no syscall for this.
    fn watch_token(&self, task: TaskId) -> CancelToken {
        let shared = Arc::clone(&self.shared);
        let (fd, buffered) = (self.fd, self.buffered);
        CancelToken::with_first_look(move || {
            let running = shared
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|(t, _)| *t == task);
            if !running || shared.watching.swap(true, Ordering::AcqRel) {
                return;
            }
            if shared
                .watch_registry
                .register(&mut SourceFd(&fd), CONN, Interest::READABLE)
                .is_err()
            {
                shared.watching.store(false, Ordering::Release);
            }
            if buffered {
                // Bytes already read from the kernel raise no event: have the watcher look.
                let _ = shared.watch_waker.wake();
            }
        })
    }

    /// Handles one message from [`Shared::pending`].
    fn handle(&mut self, registry: &Registry, body: Vec<u8>) -> Result<(), DaemonError> {
        let Some((msg, payload)) = decode(&body, &self.limits) else {
            // Malformed frames are ignored.
            return Ok(());
        };
        let start = body.len() - payload.len();
        match msg {
            ToDaemon::Task {
                task,
                function,
                rng_seed,
                trace,
                attempt,
            } => {
                let token = self.watch_token(task);
                if !self.start_or_drop(task, &token) {
                    // Cancelled or asked back (or the daemon released) before it started: it
                    // never runs and does not count towards maxtasks. The dispatcher queues it
                    // again if it only asked it back.
                    self.shared.not_started(task);
                    return Ok(());
                }
                let ctx = TaskContext::with_token(task, rng_seed, token.clone())
                    .with_trace(trace)
                    .with_attempt(attempt);
                // The frame itself goes to the function, which may free it early.
                let payload = Payload::from_frame(body, start).expect("a tail of the frame");
                self.run_task(registry, &function, payload, &ctx)
            }
            ToDaemon::Init(init) => {
                // A fresh init after a reconnect.
                self.limits = limits_of(&init);
                Ok(())
            }
            ToDaemon::Exit => {
                self.life.exit_requested();
                Ok(())
            }
            // Acted on when read (see `file_incoming`).
            ToDaemon::Cancel { .. }
            | ToDaemon::Recall { .. }
            | ToDaemon::Heartbeat
            | ToDaemon::Refused(_) => Ok(()),
        }
    }

    /// Makes `task` the running task, unless a cancel or recall for it (or an exit) came first:
    /// `false` then. Decided under the `current` lock, which `file_incoming` holds while it
    /// looks for a task to drop, so a cancel is never lost between the two threads.
    fn start_or_drop(&self, task: TaskId, token: &CancelToken) -> bool {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.shared.take_dropped(task) || self.shared.exit.load(Ordering::Acquire) {
            return false;
        }
        *current = Some((task, token.clone()));
        true
    }

    fn run_task(
        &mut self,
        registry: &Registry,
        function: &str,
        payload: Payload,
        ctx: &TaskContext,
    ) -> Result<(), DaemonError> {
        self.life.task_started(Instant::now());
        let span = tracing::debug_span!(
            "execute",
            task = ctx.task().0,
            function,
            trace = ctx.trace().map(String::from_utf8_lossy).as_deref(),
        );
        let result = span.in_scope(|| registry.run_frame(function, payload, ctx));
        // Cleared before the result goes, so it never covers the next task, and before the
        // watcher is detached, so the watcher (which attaches under this lock) cannot attach
        // after the detach.
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if self.shared.watching.swap(false, Ordering::AcqRel) {
            let _ = self
                .shared
                .watch_registry
                .deregister(&mut SourceFd(&self.fd));
        }
        // Bytes that arrived during the task raised an edge in the main poll too (its
        // registration never lapses), so the next wait returns at once for them: no read here.
        let last = self.life.task_finished(Instant::now());
        // A failed send means the host is going; the next read sees it.
        if self
            .send_result(ctx.task(), result, ctx.cancel_token().was_cancelled(), last)
            .is_ok()
            && last
        {
            self.await_exit();
        }
        Ok(())
    }

    fn send_result(
        &self,
        task: TaskId,
        result: Result<Payload, TaskError>,
        interrupted: bool,
        last: bool,
    ) -> Result<(), DaemonError> {
        let limit = self.limits.max_message;
        let none = Payload::from(Vec::new());
        let (status, value) = match result {
            _ if interrupted => (ResultStatus::Interrupted, none),
            // Sending it would break the pool's limit, and the dispatcher would close the
            // connection: the host learns the value's size instead, and this daemon serves on.
            Ok(value) if value.len() as u64 > limit => {
                let size = value.len() as u64;
                drop(value);
                (ResultStatus::TooLarge { size, limit }, none)
            }
            Ok(value) => (ResultStatus::Ok, value),
            Err(e) => (ResultStatus::Err(e), none),
        };
        let sender = self.shared.conn().sender().clone();
        send(
            &sender,
            &FromDaemon::Result { task, status, last },
            value.parts(),
        )?;
        // The host took the whole result: it is alive, though its heartbeats (which waited
        // behind a large one) are still unread.
        self.shared.heard();
        Ok(())
    }

    /// After a last result, wait (bounded) for the dispatcher's exit message or its close, so
    /// the result is delivered before the connection drops.
    fn await_exit(&mut self) {
        let deadline = Instant::now() + ACK_WAIT;
        let mut events = Events::with_capacity(8);
        loop {
            match self.read() {
                Got::Closed => return,
                // An exit message sets the flag when it is read.
                _ if self.shared.exit.load(Ordering::Acquire) => return,
                Got::Read(n) if n > 0 => continue,
                Got::Read(_) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.poll.poll(&mut events, Some(left)).is_err() {
                return;
            }
            note_events(&mut self.shared.conn(), &events);
        }
    }

    /// Redials and handshakes again (autoexit `Never`), unless an exit rule fires first.
    fn reconnect(&mut self, config: &DaemonConfig) -> Result<(), DaemonError> {
        let old = self.shared.conn().stream().as_raw_fd();
        let _ = self.shared.conn().stream().shutdown();
        let mut first = Some(old);
        loop {
            if self.life.poll(Instant::now()).is_some() {
                return Ok(());
            }
            match connect(&self.address, config, &mut self.poll, first.take()) {
                Ok((conn, init, early)) => {
                    self.limits = limits_of(&init);
                    // Sent on the new connection: the old connection's tasks are gone (the
                    // host resolved them with the connection), so what waits is dropped.
                    self.shared
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                    self.shared
                        .heartbeat_ms
                        .store(init.heartbeat_ms, Ordering::Release);
                    *self
                        .shared
                        .sender
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = conn.sender().clone();
                    self.fd = conn.stream().as_raw_fd();
                    *self.shared.conn() = conn;
                    file_incoming(&self.shared, early, &self.limits);
                    self.shared.heard();
                    return Ok(());
                }
                Err(DaemonError::Refused(r)) => return Err(DaemonError::Refused(r)),
                // A configuration error: redialing cannot fix it.
                Err(e @ DaemonError::Transport(_)) => return Err(e),
                Err(_) => {}
            }
        }
    }
}
