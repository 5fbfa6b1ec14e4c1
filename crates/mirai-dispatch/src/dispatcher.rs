//! The dispatcher's I/O shell: one thread owning a mio poll over the listener and the daemons'
//! connections (nano-transport's [`Connection`](nano_transport::conn::Connection)), with a
//! [`Waker`] for host threads.
//!
//! Why this shape:
//!
//! - **No thread hop on submission.** A host thread's submission that finds an idle daemon
//!   writes the task itself, through the connection's
//!   [`ConnSender`](nano_transport::conn::ConnSender), as one vectored write of
//!   `frame header | PAIR1 header + envelope | payload` straight from the task's buffer.
//! - **No thread ever waits for a daemon, and no payload byte is copied.** What the kernel does
//!   not take at once stays in that connection's queue *by reference* (the task's own buffer)
//!   and the dispatcher thread flushes it as the daemon reads. A daemon that stops reading
//!   therefore holds only its own task: the other daemons' tasks, heartbeats and hellos go on.
//!   With a byte cap a payload counts against it until its last byte is written, so bytes on
//!   their way out are bounded too.
//! - **No thread hop on the way back either.** A caller blocked on a result from a local
//!   daemon reads that daemon's connection itself, so the result wakes the caller and nobody
//!   else, as in a socket ping-pong: the submitter *leases* the connection before it writes the
//!   task (the dispatcher thread's poll stops watching it for bytes: one `epoll_ctl`, no
//!   wake-up), the waiter takes the lease over, reads, and hands what it read to the core;
//!   while the daemon stays idle the lease is kept for its next task. A lease nobody takes over
//!   ends within [`LEASE`](self::waiting::LEASE) (a timer in the poll), and when the task is
//!   polled as a future, cancelled or forgotten, or its daemon gets another task. See
//!   `lane.rs` for the rules that keep this exact.
//! - **No polling tick.** The dispatcher thread sleeps in `epoll` until a daemon writes, a host
//!   thread wakes it, or the earliest deadline comes: the core's next timeout, the next heartbeat,
//!   a daemon's silence limit, an unfinished handshake's limit, or an accept retry.
//! - **Order.** The core decides the order of sends; a second mutex, taken before the core's lock
//!   is released, keeps that order even when several threads carry out actions at once.
//! - **Zero-copy results.** A result's value is handed to the host as a slice of the buffer the
//!   frame was read into ([`Payload::from_frame`](crate::Payload::from_frame)).
//! - **Events never block the loop.** [`DaemonEvent`]s go through a bounded channel
//!   ([`EVENT_CAPACITY`]); when nobody drains it they are dropped and counted
//!   ([`Dispatcher::dropped_events`]), so a flood of refused peers can neither grow memory nor
//!   stall the I/O thread.
//!
//! Liveness: with a heartbeat interval `h` (see [`DispatcherConfig::heartbeat`]) both sides send a
//! heartbeat every `h`, and each side treats [`MISSED_BEATS`]` * h` of silence from the other as a
//! lost connection. A daemon that vanished without closing its socket (power loss, a network
//! partition, a frozen process) is therefore declared lost, and its task resolved, at most
//! `MISSED_BEATS * h` after its last message; a daemon whose host vanished likewise exits. A
//! normal close (including a killed process) is seen at once.
//!
//! Admission: a connection is nobody until its hello carries a valid credential. On `ipc://`
//! and `abstract://` a process of another user is closed at the accept, before a byte is
//! exchanged (`SO_PEERCRED`; see [`crate::security`]). Over `tls+tcp://` the listener's TLS
//! handshake runs first, inside this same loop (the accepted TCP stream is wrapped as a TLS
//! stream and each read or flush advances the handshake, as on a nano-transport socket), then
//! the SP header exchange, then the hello; all three must finish within
//! [`DispatcherConfig::hello_timeout`] of the accept, and at most
//! [`DispatcherConfig::max_unauthenticated`] connections may be at it at once, the oldest closed
//! first (see [`crate::admission`]). Out of descriptors, the oldest unauthenticated connection
//! makes room, so the listener never stalls. Heartbeat silence applies only to admitted daemons,
//! so the limits never overlap. Refused and timed out peers are logged (`tracing`, WARN) and
//! closed, and a refusal at the hello or at the accept (another user's local process) is also
//! a [`DaemonEvent`]; a refused one is closed once its refusal is written, and nothing but that refusal is
//! ever sent to it. Plain `tcp://` is refused unless [`DispatcherConfig::allow_plain_tcp`].
//!
//! Launch ids: a hello for launch `N` must carry `N`'s credential
//! ([`Secret::launch_credential`](crate::secret::Secret::launch_credential)), and while a daemon of launch `N` (nonzero) is admitted, a
//! second claim of `N` is refused ([`RefuseReason::LaunchInUse`]): the first holder keeps its
//! place. A refusal reports only the launch id the peer *claimed*
//! ([`DaemonEvent::Refused`]), which nobody should act on; only [`DaemonEvent::Joined`] and
//! what follows it name authentic launch ids.
//!
//! Local daemons are the ones on `ipc://` and `abstract://` addresses, which only processes of
//! this machine (and of our user) can reach; a hard cancel or an unanswered cancel turns into
//! [`DaemonEvent::KillRequested`] for whoever launched them.

mod accept;
mod config;
mod event_loop;
mod inbound;
mod lane;
mod shared;
mod status;
mod waiting;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Token, Waker};
use nano_transport::Address;
#[cfg(feature = "tls")]
use nano_transport::tls::{Fingerprint, TlsError};

use self::accept::{Listener, bind};
pub use self::config::DispatcherConfig;
use self::event_loop::EventLoop;
use self::lane::Lanes;
use self::shared::{Shared, Unwritten};
pub use self::status::DaemonRow;
use self::waiting::LeaseTimer;
use crate::admission::Admission;
use crate::core::{CancelMode, Core, RejectReason, Rejected, Status};
use crate::daemon::ExitReason;
use crate::host::Host;
use crate::protocol::RefuseReason;
use crate::secret::MIN_TOKEN_LEN;
use crate::security::{PolicyError, check_listen_url, listener_tls};
use crate::task::{DaemonId, IdMap, NoDaemons, Outcome, Task, TaskId};

/// How many heartbeat intervals of silence mean a peer is lost (both sides use this rule).
pub const MISSED_BEATS: u32 = 4;

/// How long a connection may take to present its hello before it is closed, by default (see
/// [`DispatcherConfig::hello_timeout`]).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The PAIR1 header of every message we send: a hop count of 1, as NNG writes it.
const PAIR1_HEADER: [u8; 4] = [0, 0, 0, 1];

/// The largest frame a connection may send before its hello is accepted: a hello with the
/// longest token the codec takes, its envelope and the PAIR1 header, with room to spare.
const PRE_ADMISSION_LIMIT: u64 = (crate::protocol::MAX_TOKEN + 256 + PAIR1_HEADER.len()) as u64;

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const LEASE_TIMER: Token = Token(2);
const FIRST_PEER: usize = 3;

/// How many connections may wait for their hello at once, by default (see
/// [`DispatcherConfig::max_unauthenticated`]).
pub const MAX_UNAUTHENTICATED: usize = 64;

/// How many [`DaemonEvent`]s wait in the channel [`Dispatcher::start`] returns before further
/// ones are dropped (and counted: [`Dispatcher::dropped_events`]). A launcher that drains the
/// channel as events come never loses one: an event is a daemon joining, leaving or being
/// refused, and a thousand of them only queue when nobody reads them. (The channel's memory is
/// allocated up front, so this stays modest.)
pub const EVENT_CAPACITY: usize = 1024;

/// Most messages read from one connection before the others get a turn.
const READ_BATCH: usize = 256;

/// Why the dispatcher could not start.
///
/// Non-exhaustive: the `Tls` variant exists with the `tls` feature only, and a match written
/// without it must still compile when another crate turns the feature on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The address could not be parsed or bound, or it is `tls+tcp://` in a build without the
    /// `tls` feature ([`nano_transport::Error::TlsDisabled`]).
    #[error("cannot listen: {0}")]
    Transport(#[from] nano_transport::Error),
    /// The poll, the listener or the thread could not be set up.
    #[error("cannot start the dispatcher: {0}")]
    Thread(#[from] io::Error),
    /// The address is refused by the security policy (plain tcp without the opt-in).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The TLS configuration could not be built (feature `tls`).
    #[cfg(feature = "tls")]
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The pool token is shorter than [`MIN_TOKEN_LEN`] bytes: guessable.
    #[error("the join token has {len} bytes; at least {min} are needed", min = MIN_TOKEN_LEN)]
    WeakToken {
        /// Its length.
        len: usize,
    },
}

/// Something that happened to a daemon, for launchers and autoscalers.
///
/// The channel carrying them holds at most [`EVENT_CAPACITY`]; the dispatcher never waits for
/// its reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A daemon was admitted. Its launch id is authentic: the daemon presented that launch's
    /// credential (or the pool token, for launch id 0), and no other daemon holds it.
    Joined {
        /// The dispatcher's id for it.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
    },
    /// A connection was refused at its hello.
    ///
    /// Nothing about it is authenticated: anyone who can reach the listener can claim any
    /// launch id, so `claimed_launch_id` is for logs only. Never fail or replace a launch on
    /// this event (a launched daemon that is refused exits, and its launcher sees that).
    Refused {
        /// The launch id the peer claimed (unauthenticated).
        claimed_launch_id: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// A daemon left.
    ///
    /// `retired` says whether the departure was a retirement: the daemon announced that it
    /// leaves by one of its own exit rules ([`FromDaemon::Retiring`]), or the dispatcher told it
    /// to go (after a result it marked last, or at shutdown; [`ExitReason::HostGone`] then,
    /// unless the daemon named its rule). `None` is a loss, whatever the process's exit code or
    /// signal: a launcher replaces the daemon.
    ///
    /// ```
    /// use mirai_dispatch::{DaemonEvent, DaemonId};
    /// use mirai_dispatch::daemon::ExitReason;
    /// let event = DaemonEvent::Left { daemon: DaemonId(0), launch_id: 1, retired: Some(ExitReason::IdleTime) };
    /// let replace = matches!(event, DaemonEvent::Left { retired: None, .. });
    /// assert!(!replace);
    /// ```
    ///
    /// [`FromDaemon::Retiring`]: crate::protocol::FromDaemon::Retiring
    Left {
        /// The daemon.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
        /// Why it left, if it retired; `None` if it was lost.
        retired: Option<ExitReason>,
    },
    /// A local connection (`ipc://`, `abstract://`) from a process of another user was closed
    /// at its accept, before a byte was exchanged (see [`crate::security`]). The uid and pid are
    /// the kernel's record of the peer (`SO_PEERCRED`), not a claim.
    ForeignPeer {
        /// The peer's user id.
        uid: u32,
        /// Its process id when it connected.
        pid: i32,
    },
    /// A join setup ([`Dispatcher::everywhere_persistent`]) failed on a daemon that joined;
    /// the daemon serves on.
    SetupFailed {
        /// The daemon.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
        /// How the setup ended.
        outcome: Outcome,
    },
    /// The core wants this local daemon's process killed (and replaced if the pool wants it).
    KillRequested {
        /// The daemon.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
    },
}

/// A running dispatcher: the listening endpoint, its thread, and the host-side API.
///
/// ```no_run
/// use std::time::Duration;
/// use mirai_dispatch::{Dispatcher, DispatcherConfig, Outcome, Task};
/// let (dispatcher, _events) =
///     Dispatcher::start(DispatcherConfig::new("tls+tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()))?;
/// // ... launch daemons that dial dispatcher.url() with the token, pinning
/// // dispatcher.tls_fingerprint() ...
/// let id = dispatcher.submit(Task::new("add", vec![1, 2]), None).unwrap();
/// let outcome = dispatcher.wait(id, Some(Duration::from_secs(10)));
/// # Ok::<(), mirai_dispatch::StartError>(())
/// ```
pub struct Dispatcher {
    shared: Arc<Shared>,
    url: String,
    #[cfg(feature = "tls")]
    tls_fingerprint: Option<Fingerprint>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("url", &self.url)
            .field("status", &self.status())
            .finish()
    }
}

impl Dispatcher {
    /// Listens, starts the dispatcher thread, and returns the handle with the daemon events.
    pub fn start(
        config: DispatcherConfig,
    ) -> Result<(Self, mpsc::Receiver<DaemonEvent>), StartError> {
        if config.token.len() < MIN_TOKEN_LEN {
            return Err(StartError::WeakToken {
                len: config.token.len(),
            });
        }
        check_listen_url(&config.url, config.allow_plain_tcp)?;
        let address = Address::parse(&config.url)?;
        #[cfg(feature = "tls")]
        let (tls, tls_fingerprint) = {
            let tls = listener_tls(&config.url, config.tls, config.tls_clients)?;
            let fingerprint = tls.as_ref().map(|(_, f)| *f);
            (tls.map(|(c, _)| c), fingerprint)
        };
        #[cfg(not(feature = "tls"))]
        listener_tls(&config.url)?;
        let (mut listener, url, ipc_path) = bind(
            &address,
            &config.url,
            #[cfg(feature = "tls")]
            tls,
        )?;
        let local = matches!(address, Address::Ipc(_) | Address::Abstract(_));
        let track_collected = config.core.max_uncollected_bytes.is_some();
        let mut core_config = config.core;
        // Nothing larger than the daemons accept is ever queued: it is refused at submit.
        core_config.max_message_bytes = Some(
            core_config
                .max_message_bytes
                .map_or(config.limits.max_message, |m| {
                    m.min(config.limits.max_message)
                }),
        );
        // With a cap, a payload counts against it until it is written to its daemon, so the
        // bytes on their way out are bounded too.
        core_config.release_when_written |= core_config.max_queued_bytes.is_some();
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        match &mut listener {
            Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
            #[cfg(feature = "tls")]
            Listener::Tls(l, _) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
            Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
        }
        let host = {
            let waker = Arc::clone(&waker);
            Host::with_notify(Core::new(core_config), move || {
                let _ = waker.wake();
            })
        };
        let (tx, rx) = mpsc::sync_channel(EVENT_CAPACITY);
        let unwritten = Arc::new(Unwritten::new(Arc::clone(&waker)));
        let lanes = Arc::new(Lanes::new(Arc::clone(&waker)));
        let lease_timer = LeaseTimer::new()?;
        poll.registry().register(
            &mut mio::unix::SourceFd(&lease_timer.raw_fd()),
            LEASE_TIMER,
            Interest::READABLE,
        )?;
        let shared = Arc::new(Shared {
            host,
            links: Mutex::new(IdMap::default()),
            outbox: Mutex::new(()),
            completions: Default::default(),
            events: tx,
            dropped_events: AtomicU64::new(0),
            unwritten,
            waker,
            stop: AtomicBool::new(false),
            local,
            settings: config.settings,
            limits: config.limits,
            heartbeat: config.heartbeat,
            track_collected,
            epoch: Instant::now(),
            sleep_until: AtomicU64::new(0),
            registry: poll.registry().try_clone()?,
            lanes,
            lease_timer,
        });
        let event_loop = EventLoop {
            shared: Arc::clone(&shared),
            poll,
            listener,
            ipc_path,
            token: config.token,
            peers: IdMap::default(),
            by_daemon: IdMap::default(),
            launches: IdMap::default(),
            next_token: FIRST_PEER,
            ready: Vec::new(),
            listener_ready: false,
            accept_retry: None,
            next_beat: config.heartbeat.map(|h| Instant::now() + h),
            admission: Admission::new(config.hello_timeout, config.max_unauthenticated),
        };
        let thread = std::thread::Builder::new()
            .name("mirai-dispatcher".into())
            .spawn(move || event_loop.run())?;
        Ok((
            Self {
                shared,
                url,
                #[cfg(feature = "tls")]
                tls_fingerprint,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// The address daemons dial (with the bound port for `tcp://...:0`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The fingerprint of the certificate a `tls+tcp://` dispatcher presents, for daemons to
    /// pin (`None` on other transports).
    ///
    /// ```
    /// use mirai_dispatch::{Dispatcher, DispatcherConfig};
    /// let (d, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("tls+tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()))?;
    /// let pin = d.tls_fingerprint().expect("a tls+tcp dispatcher has one");
    /// assert!(pin.to_string().starts_with("sha256:"));
    /// let (local, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-fingerprint", b"0123456789abcdef".to_vec()))?;
    /// assert_eq!(local.tls_fingerprint(), None);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_fingerprint(&self) -> Option<Fingerprint> {
        self.tls_fingerprint
    }

    /// The submission handle (blocking and non-blocking submit, status) without the I/O. Calls
    /// through it wake the dispatcher thread, which carries out what they decided.
    pub fn host(&self) -> &Host {
        &self.shared.host
    }

    /// [`Host::submit`]; a task that finds an idle daemon is written to it from this thread.
    pub fn submit(&self, task: Task, deadline: Option<Instant>) -> Result<TaskId, Rejected> {
        let span =
            tracing::debug_span!("submit", function = %task.function, bytes = task.payload.len());
        let _entered = span.enter();
        let (result, core) = self.shared.host.submit_held(task, deadline);
        if let Ok(id) = &result {
            tracing::trace!(task = id.0, "queued");
            self.shared.lease_for(&core, *id);
        }
        self.shared.flush_held(core);
        result
    }

    /// [`Host::wait_for_room`]: waits until a task of `bytes` would fit, so a producer can build
    /// a large payload only once the budget has room for it.
    pub fn wait_for_room(&self, bytes: u64, deadline: Option<Instant>) -> Result<(), RejectReason> {
        self.shared.host.wait_for_room(bytes, deadline)
    }

    /// [`Host::room`]: a future resolving once a task of `bytes` would fit, for async producers
    /// (see `mirai::Pool::submit_async`).
    pub fn room(&self, bytes: u64) -> crate::Room {
        self.shared.host.room(bytes)
    }

    /// [`Host::try_submit`]; a task that finds an idle daemon is written to it from this thread.
    pub fn try_submit(&self, task: Task) -> Result<TaskId, Rejected> {
        let task = self.shared.host.refuse_if_full(task)?;
        let mut core = self.shared.host.lock();
        let result = core.submit(task, Instant::now());
        if let Ok(id) = &result {
            self.shared.lease_for(&core, *id);
        }
        self.shared.flush_held(core);
        result
    }

    /// [`Host::everywhere`], then sends what can go now.
    pub fn everywhere(
        &self,
        task: Task,
        min: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<TaskId>, Rejected> {
        let (result, core) = self.shared.host.everywhere_held(task, min, deadline);
        self.shared.flush_held(core);
        result
    }

    /// [`Host::cancel`]; the task's outcome ([`Outcome::Cancelled`]) is ready at once.
    pub fn cancel(&self, task: TaskId, mode: CancelMode) -> bool {
        // The daemon's answer frees its slot: the dispatcher thread reads it.
        self.shared.end_lease(task);
        let mut core = self.shared.host.lock();
        let found = core.cancel(task, mode, Instant::now());
        self.shared.flush_held(core);
        found
    }

    /// Waits up to `timeout` (forever with `None`) for the task's outcome and takes it; `None`
    /// if it is not ready by then (or was already taken). Outcomes are kept until taken or
    /// forgotten ([`Dispatcher::forget`]).
    ///
    /// A wait for a task running on a local daemon reads that daemon's connection itself for
    /// a while (50 ms at most, then it waits as before) instead of waiting to be woken by the dispatcher
    /// thread: the result wakes this thread directly, as in a socket ping-pong.
    pub fn wait(&self, task: TaskId, timeout: Option<Duration>) -> Option<Outcome> {
        let outcome = match self.shared.completions.try_take(task) {
            Some(outcome) => outcome,
            None if timeout.is_some_and(|t| t.is_zero()) => return None,
            None => {
                let start = Instant::now();
                let deadline = timeout.and_then(|t| start.checked_add(t));
                self.shared.read_for(task, start, deadline);
                let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
                self.shared.completions.wait(task, left)?
            }
        };
        self.shared.taken(task, &outcome);
        Some(outcome)
    }

    /// Takes the task's outcome if it is ready; otherwise registers `waker` (replacing the one
    /// registered before) to be woken, once, when it arrives. For `Future` implementations.
    ///
    /// ```
    /// # use mirai_dispatch::{CancelMode, Dispatcher, DispatcherConfig, Outcome, Task};
    /// # let (dispatcher, _events) =
    /// #     Dispatcher::start(DispatcherConfig::new("tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()).with_plain_tcp(true))?;
    /// let waker = std::task::Waker::noop();
    /// let id = dispatcher.submit(Task::new("f", vec![]), None).unwrap(); // no daemon: queued
    /// assert_eq!(dispatcher.poll_outcome(id, waker), None); // `waker` is kept
    /// dispatcher.cancel(id, CancelMode::Soft); // wakes it
    /// assert_eq!(dispatcher.poll_outcome(id, waker), Some(Outcome::Cancelled));
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn poll_outcome(&self, task: TaskId, waker: &std::task::Waker) -> Option<Outcome> {
        // A future is woken by the dispatcher thread, which must read the result.
        self.shared.end_lease(task);
        let outcome = self.shared.completions.poll(task, waker)?;
        self.shared.taken(task, &outcome);
        Some(outcome)
    }

    /// Nobody will take the task's outcome: it is freed now if it arrived, or discarded on
    /// arrival, and its value never counts against the uncollected-results cap. The task itself
    /// is not cancelled. Call it at most once, for a task whose outcome was not taken.
    ///
    /// ```
    /// # use mirai_dispatch::{CancelMode, Dispatcher, DispatcherConfig, Task};
    /// # let (dispatcher, _events) =
    /// #     Dispatcher::start(DispatcherConfig::new("tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()).with_plain_tcp(true))?;
    /// let id = dispatcher.submit(Task::new("f", vec![]), None).unwrap(); // no daemon: queued
    /// dispatcher.forget(id); // fire and forget: it stays queued, to run when a daemon joins
    /// assert_eq!(dispatcher.status().awaiting, 1);
    ///
    /// let other = dispatcher.submit(Task::new("f", vec![]), None).unwrap();
    /// dispatcher.cancel(other, CancelMode::Soft);
    /// assert_eq!(dispatcher.retained(), 2); // a forget mark and an untaken outcome
    /// dispatcher.forget(other);
    /// assert_eq!(dispatcher.retained(), 1);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn forget(&self, task: TaskId) {
        // Either order is exact: the core stops counting the value whether it resolved yet or
        // not, and the table drops the outcome whether it was delivered yet or not.
        self.shared.end_lease(task);
        let mut core = self.shared.host.lock();
        core.forget(task, Instant::now());
        self.shared.flush_held(core);
        self.shared.completions.forget(task);
    }

    /// How many tasks the dispatcher keeps an outcome, waker or forget mark for: zero once
    /// every outcome was taken or forgotten and every forgotten task resolved.
    ///
    /// ```
    /// # use mirai_dispatch::{CancelMode, Dispatcher, DispatcherConfig, Task};
    /// # let (dispatcher, _events) =
    /// #     Dispatcher::start(DispatcherConfig::new("tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()).with_plain_tcp(true))?;
    /// let id = dispatcher.submit(Task::new("f", vec![]), None).unwrap();
    /// assert_eq!(dispatcher.retained(), 0);
    /// dispatcher.cancel(id, CancelMode::Soft);
    /// assert_eq!(dispatcher.retained(), 1);
    /// assert!(dispatcher.wait(id, None).is_some());
    /// assert_eq!(dispatcher.retained(), 0);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn retained(&self) -> usize {
        self.shared.completions.len()
    }

    /// How many [`DaemonEvent`]s were dropped because their channel was full (nobody drained
    /// it; see [`EVENT_CAPACITY`]).
    ///
    /// ```
    /// use mirai_dispatch::{Dispatcher, DispatcherConfig};
    /// let (d, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-dropped-events", b"0123456789abcdef".to_vec()))?;
    /// assert_eq!(d.dropped_events(), 0);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped_events.load(Ordering::Relaxed)
    }

    /// The counters.
    pub fn status(&self) -> Status {
        self.shared.host.status()
    }

    /// Tells the dispatcher that its launcher gave up starting daemons, for `reason` (`None`:
    /// it starts them again). Whenever no daemon is connected from then on, queued tasks and new
    /// submissions resolve [`Outcome::NoDaemons`] rather than wait; see [`Core::strand`].
    /// [`Status::no_daemons`] shows the reason.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mirai_dispatch::{DaemonExit, Dispatcher, DispatcherConfig, NoDaemons, Outcome, Task};
    /// let (dispatcher, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-strand", b"0123456789abcdef".to_vec()))?;
    /// let queued = dispatcher.submit(Task::new("f", vec![]), None).unwrap();
    /// let why = NoDaemons::CrashLoop { failures: 6, last: DaemonExit::Signal(6) };
    /// dispatcher.strand(Some(why));
    /// let wait = Some(Duration::from_secs(10));
    /// assert_eq!(dispatcher.wait(queued, wait), Some(Outcome::NoDaemons(why)));
    /// let later = dispatcher.submit(Task::new("f", vec![]), None).unwrap();
    /// assert_eq!(dispatcher.wait(later, wait), Some(Outcome::NoDaemons(why)));
    /// assert_eq!(dispatcher.status().no_daemons, Some(why));
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn strand(&self, reason: Option<NoDaemons>) {
        if let Some(reason) = reason {
            tracing::warn!(%reason, "no daemons: tasks that find none connected fail");
        }
        let mut core = self.shared.host.lock();
        core.strand(reason, Instant::now());
        self.shared.flush_held(core);
    }

    /// Resolves every pending task with [`Outcome::ShutDown`], tells every daemon to exit, and
    /// stops the thread and the listener. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let mut core = self.shared.host.lock();
        core.shutdown(Instant::now());
        self.shared.flush_held(core);
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.waker.wake();
        let _ = thread.join();
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}
