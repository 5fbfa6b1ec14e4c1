//! The dispatcher's I/O shell: one thread owning a mio poll over the listener and the daemons'
//! connections (nano-transport's [`Connection`]), with a [`Waker`] for host threads.
//!
//! Why this shape:
//!
//! - **No thread hop on submission.** A host thread's submission that finds an idle daemon
//!   writes the task itself, through the connection's [`ConnSender`], as one vectored write of
//!   `frame header | PAIR1 header + envelope | payload` straight from the task's buffer: payload
//!   bytes are never copied on the way out. Only when the kernel buffer is full does the sender
//!   keep the rest and wake the dispatcher thread to flush it.
//! - **No polling tick.** The dispatcher thread sleeps in `epoll` until a daemon writes, a host
//!   thread wakes it, or the earliest deadline comes: the core's next timeout, the next heartbeat,
//!   a daemon's silence limit or an unfinished handshake's limit.
//! - **Order.** The core decides the order of sends; a second mutex, taken before the core's lock
//!   is released, keeps that order even when several threads carry out actions at once.
//! - **Zero-copy results.** A result's value is handed to the host as a slice of the buffer the
//!   frame was read into ([`Payload::from_frame`]).
//!
//! Liveness: with a heartbeat interval `h` (see [`DispatcherConfig::heartbeat`]) both sides send a
//! heartbeat every `h`, and each side treats [`MISSED_BEATS`]` * h` of silence from the other as a
//! lost connection. A daemon that vanished without closing its socket (power loss, a network
//! partition, a frozen process) is therefore declared lost, and its task resolved, at most
//! `MISSED_BEATS * h` after its last message; a daemon whose host vanished likewise exits. A
//! normal close (including a killed process) is seen at once.
//!
//! Admission: a connection is nobody until its hello carries the pool's token. Over
//! `tls+tcp://` the listener's TLS handshake runs first, inside this same loop (the accepted TCP
//! stream is wrapped as [`Stream::Tls`] and each read or flush advances the handshake, as on a
//! nano-transport socket), then the SP header exchange, then the hello; all three must finish
//! within [`DispatcherConfig::hello_timeout`] of the accept (see [`crate::admission`]). Heartbeat
//! silence applies only to admitted daemons, so the two limits never overlap. Refused and timed
//! out peers are logged (`tracing`, WARN) and closed; a refused one is closed once its refusal is
//! written, and nothing but that refusal is ever sent to it. Plain `tcp://` is refused unless
//! [`DispatcherConfig::allow_plain_tcp`] (see [`crate::security`]).
//!
//! Local daemons are the ones on `ipc://` and `abstract://` addresses, which only processes of
//! this machine can reach; a hard cancel or an unanswered cancel turns into
//! [`DaemonEvent::KillRequested`] for whoever launched them.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nano_transport::conn::{ConnSender, Connection, ReadProgress, SendStatus, Stream};
use nano_transport::proto::{MAX_TTL_DEFAULT, pair1_hops};
use nano_transport::tls::{ClientAuth, Fingerprint, Identity, TlsConfig, TlsError};
use nano_transport::{Address, Protocol};

use crate::admission::Admission;
use crate::core::{Action, CancelMode, Config, Core, RejectReason, Rejected, Reply, Status};
use crate::host::{CoreGuard, Host};
use crate::protocol::{
    FromDaemon, Hello, Init, Limits, RefuseReason, ResultStatus, ToDaemon, check_hello,
};
use crate::secret::{MIN_TOKEN_LEN, Secret};
use crate::security::{PolicyError, check_listen_url, listener_tls};
use crate::task::{DaemonId, Outcome, Payload, Task, TaskId};

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
const FIRST_PEER: usize = 2;

/// Payloads from this size on are written without a copy, waiting for the daemon to read them
/// (up to [`BLOCKING_SEND_WAIT`]); smaller ones are copied into the connection's queue when the
/// kernel does not take them at once.
const BLOCKING_SEND: usize = 256 * 1024;

/// The longest a large send waits for its daemon before the rest is queued (copied).
const BLOCKING_SEND_WAIT: Duration = Duration::from_secs(1);

/// Most messages read from one connection before the others get a turn.
const READ_BATCH: usize = 256;

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be parsed or bound.
    #[error("cannot listen: {0}")]
    Transport(#[from] nano_transport::Error),
    /// The poll, the listener or the thread could not be set up.
    #[error("cannot start the dispatcher: {0}")]
    Thread(#[from] io::Error),
    /// The address is refused by the security policy (plain tcp without the opt-in).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The TLS configuration could not be built.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A daemon was admitted.
    Joined {
        /// The dispatcher's id for it.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
    },
    /// A daemon was refused at the handshake.
    Refused {
        /// The id it claimed.
        launch_id: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// A daemon left.
    Left {
        /// The daemon.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
    },
    /// The core wants this local daemon's process killed (and replaced if the pool wants it).
    KillRequested {
        /// The daemon.
        daemon: DaemonId,
        /// The id its launcher gave it.
        launch_id: u64,
    },
}

/// Dispatcher settings.
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::{Config, DispatcherConfig};
/// let c = DispatcherConfig::new("abstract://example", b"0123456789abcdef".to_vec())
///     .with_core(Config::default().with_max_queued_bytes(1 << 20))
///     .with_heartbeat(Some(Duration::from_millis(250)));
/// assert_eq!(c.core.max_queued_bytes, Some(1 << 20));
/// assert_eq!(c.heartbeat, Some(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Where daemons dial (`tls+tcp://0.0.0.0:0`, `ipc:///path`, `abstract://name`, or
    /// `tcp://...` with [`allow_plain_tcp`](Self::allow_plain_tcp)).
    pub url: String,
    /// The pool token: hand-started daemons present it, launched ones a credential derived from
    /// it ([`Secret::launch_credential`]). At least [`MIN_TOKEN_LEN`] bytes.
    pub token: Secret,
    /// The core's settings.
    pub core: Config,
    /// Receive limits.
    pub limits: Limits,
    /// Opaque settings sent to every daemon in its init message.
    pub settings: Vec<u8>,
    /// Heartbeat interval (default 1 s); `None` disables heartbeats, and with them the detection
    /// of peers lost without a close. See the module docs for the detection bound.
    pub heartbeat: Option<Duration>,
    /// The certificate a `tls+tcp://` listener presents; `None` generates one at start (its
    /// fingerprint is [`Dispatcher::tls_fingerprint`], for the daemons to pin).
    pub tls: Option<Identity>,
    /// Client certificates demanded of daemons on `tls+tcp://` (mutual TLS), on top of the token.
    pub tls_clients: ClientAuth,
    /// Listen on plain `tcp://` although it carries the token and task data unencrypted.
    pub allow_plain_tcp: bool,
    /// How long a connection may take, from its accept, to finish the TLS handshake (if any),
    /// the SP header exchange and a valid hello before it is closed (default [`HELLO_TIMEOUT`]).
    pub hello_timeout: Duration,
}

impl DispatcherConfig {
    /// Defaults for everything but the address and the token.
    pub fn new(url: impl Into<String>, token: impl Into<Secret>) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            core: Config::default(),
            limits: Limits::default(),
            settings: Vec::new(),
            heartbeat: Some(Duration::from_secs(1)),
            tls: None,
            tls_clients: ClientAuth::None,
            allow_plain_tcp: false,
            hello_timeout: HELLO_TIMEOUT,
        }
    }

    /// Allows listening on plain `tcp://` (see [`crate::security`]).
    ///
    /// ```
    /// use mirai_dispatch::DispatcherConfig;
    /// let c = DispatcherConfig::new("tcp://127.0.0.1:0", b"0123456789abcdef".to_vec()).with_plain_tcp(true);
    /// assert!(c.allow_plain_tcp);
    /// ```
    pub fn with_plain_tcp(mut self, allow: bool) -> Self {
        self.allow_plain_tcp = allow;
        self
    }

    /// Sets the certificate `tls+tcp://` listeners present.
    ///
    /// ```
    /// use mirai_dispatch::DispatcherConfig;
    /// use nano_transport::tls::Identity;
    /// let id = Identity::generate(&["pool.example"])?;
    /// let pin = id.fingerprint();
    /// let c = DispatcherConfig::new("tls+tcp://0.0.0.0:0", b"0123456789abcdef".to_vec()).with_tls_identity(id);
    /// assert_eq!(c.tls.map(|i| i.fingerprint()), Some(pin));
    /// # Ok::<(), nano_transport::tls::TlsError>(())
    /// ```
    pub fn with_tls_identity(mut self, identity: Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Sets [`DispatcherConfig::core`].
    pub fn with_core(mut self, core: Config) -> Self {
        self.core = core;
        self
    }

    /// Sets [`DispatcherConfig::heartbeat`] (a zero interval counts as `None`).
    pub fn with_heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval.filter(|d| !d.is_zero());
        self
    }
}

/// How host threads reach a daemon.
struct Link {
    sender: ConnSender,
    launch_id: u64,
}

/// What host threads and the dispatcher thread share.
struct Shared {
    host: Host,
    links: Mutex<HashMap<DaemonId, Link>>,
    /// Held while actions are carried out, so they go out in the order the core made them.
    outbox: Mutex<()>,
    completions: crate::completions::Completions,
    events: Mutex<mpsc::Sender<DaemonEvent>>,
    waker: Arc<Waker>,
    stop: AtomicBool,
    local: bool,
    settings: Vec<u8>,
    limits: Limits,
    heartbeat: Option<Duration>,
    /// Whether values must be reported collected (only with an uncollected-bytes cap).
    track_collected: bool,
    epoch: Instant,
    /// When the dispatcher thread will wake on its own, in nanoseconds since `epoch`
    /// (`u64::MAX`: not before an event; 0: it is awake). Written and read under the core's lock,
    /// so a host call that arms an earlier core timer knows to wake it.
    sleep_until: AtomicU64,
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
        let tls = listener_tls(&config.url, config.tls, config.tls_clients)?;
        let tls_fingerprint = tls.as_ref().map(|(_, f)| *f);
        let (mut listener, url, ipc_path) = bind(&address, &config.url, tls.map(|(c, _)| c))?;
        let local = matches!(address, Address::Ipc(_) | Address::Abstract(_));
        let track_collected = config.core.max_uncollected_bytes.is_some();
        let mut core_config = config.core;
        // With a cap, a payload counts against it until it is written to its daemon, so the
        // bytes on their way out are bounded too.
        core_config.release_when_written |= core_config.max_queued_bytes.is_some();
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        match &mut listener {
            Listener::Tcp(l) | Listener::Tls(l, _) => {
                poll.registry().register(l, LISTENER, Interest::READABLE)?
            }
            Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
        }
        let host = {
            let waker = Arc::clone(&waker);
            Host::with_notify(Core::new(core_config), move || {
                let _ = waker.wake();
            })
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            host,
            links: Mutex::new(HashMap::new()),
            outbox: Mutex::new(()),
            completions: Default::default(),
            events: Mutex::new(tx),
            waker,
            stop: AtomicBool::new(false),
            local,
            settings: config.settings,
            limits: config.limits,
            heartbeat: config.heartbeat,
            track_collected,
            epoch: Instant::now(),
            sleep_until: AtomicU64::new(0),
        });
        let event_loop = EventLoop {
            shared: Arc::clone(&shared),
            poll,
            listener,
            ipc_path,
            token: config.token,
            peers: HashMap::new(),
            by_daemon: HashMap::new(),
            next_token: FIRST_PEER,
            ready: Vec::new(),
            next_beat: config.heartbeat.map(|h| Instant::now() + h),
            admission: Admission::new(config.hello_timeout),
        };
        let thread = std::thread::Builder::new()
            .name("mirai-dispatcher".into())
            .spawn(move || event_loop.run())?;
        Ok((
            Self {
                shared,
                url,
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
        let mut core = self.shared.host.lock();
        let result = core.submit(task, Instant::now());
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
        let mut core = self.shared.host.lock();
        let found = core.cancel(task, mode, Instant::now());
        self.shared.flush_held(core);
        found
    }

    /// Waits up to `timeout` (forever with `None`) for the task's outcome and takes it; `None`
    /// if it is not ready by then (or was already taken). Outcomes are kept until taken or
    /// forgotten ([`Dispatcher::forget`]).
    pub fn wait(&self, task: TaskId, timeout: Option<Duration>) -> Option<Outcome> {
        let outcome = self.shared.completions.wait(task, timeout)?;
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

    /// The counters.
    pub fn status(&self) -> Status {
        self.shared.host.status()
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

impl Shared {
    /// A handle took `task`'s outcome: with an uncollected cap, its value leaves the count.
    fn taken(&self, task: TaskId, outcome: &Outcome) {
        if outcome.is_value() && self.track_collected {
            let mut core = self.host.lock();
            if core.collected(task, Instant::now()) {
                self.flush_held(core);
            }
        }
    }

    /// Drains the core's actions and carries them out, in order; takes the core's lock and
    /// releases it before anything is written.
    fn flush_held(&self, mut core: CoreGuard<'_>) {
        let asleep_until = self.sleep_until.load(Ordering::Relaxed);
        if asleep_until != 0
            && core
                .poll_timeout()
                .is_some_and(|t| self.nanos(t) < asleep_until)
        {
            // A core timer earlier than the dispatcher thread's wake-up was just armed.
            let _ = self.waker.wake();
        }
        if !core.has_actions() {
            return;
        }
        let track = core.config().release_when_written;
        let actions: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
        let order = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        drop(core);
        let mut resolved = Vec::new();
        let mut written = Vec::new();
        for action in actions {
            match action {
                Action::Resolve { task, outcome } => resolved.push((task, outcome)),
                Action::Send { daemon, task, job } if track => {
                    self.carry_out(Action::Send { daemon, task, job });
                    written.push(task);
                }
                other => self.carry_out(other),
            }
        }
        drop(order);
        if !resolved.is_empty() {
            self.completions.deliver(resolved);
        }
        if !written.is_empty() {
            // The payloads are out of our hands: their bytes leave the budget, which may let
            // blocked submitters in and queue more sends.
            let mut core = self.host.lock();
            let now = Instant::now();
            for task in written {
                core.written(task, now);
            }
            self.flush_held(core);
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .max(1)
    }

    fn link(&self, daemon: DaemonId) -> Option<(ConnSender, u64)> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&daemon)
            .map(|l| (l.sender.clone(), l.launch_id))
    }

    fn carry_out(&self, action: Action) {
        match action {
            Action::Joined { daemon, rng_stream } => {
                if let Some((sender, _)) = self.link(daemon) {
                    let init = Init {
                        daemon,
                        rng_stream,
                        max_frame: self.limits.max_frame as u64,
                        heartbeat_ms: self
                            .heartbeat
                            .map_or(0, |h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX)),
                        settings: self.settings.clone(),
                    };
                    self.send(&sender, &ToDaemon::Init(init), &[]);
                }
            }
            Action::Send { daemon, task, job } => {
                let _span =
                    tracing::debug_span!("dispatch", task = task.0, daemon = daemon.0).entered();
                if let Some((sender, _)) = self.link(daemon) {
                    let msg = ToDaemon::Task {
                        task,
                        function: job.function,
                        trace: job.trace,
                        rng_seed: job.rng_seed,
                    };
                    // A failed send means the connection is going; its close resolves the task.
                    self.send(&sender, &msg, &job.payload);
                }
            }
            Action::Cancel { daemon, task } => {
                if let Some((sender, _)) = self.link(daemon) {
                    self.send(&sender, &ToDaemon::Cancel { task }, &[]);
                }
            }
            Action::Recall { daemon, task } => {
                if let Some((sender, _)) = self.link(daemon) {
                    self.send(&sender, &ToDaemon::Recall { task }, &[]);
                }
            }
            Action::Kill { daemon } => {
                if let Some((sender, launch_id)) = self.link(daemon) {
                    self.send(&sender, &ToDaemon::Exit, &[]);
                    self.event(DaemonEvent::KillRequested { daemon, launch_id });
                }
            }
            Action::Release { daemon } => {
                if let Some((sender, _)) = self.link(daemon) {
                    self.send(&sender, &ToDaemon::Exit, &[]);
                }
            }
            Action::Left { daemon } => {
                let link = self
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&daemon);
                if let Some(link) = link {
                    self.event(DaemonEvent::Left {
                        daemon,
                        launch_id: link.launch_id,
                    });
                }
            }
            Action::Resolve { task, outcome } => self.completions.deliver([(task, outcome)]),
            Action::WakeSubmitters => {}
        }
    }

    /// Writes one message: `PAIR1 header + envelope` and the payload as separate slices of one
    /// vectored write, so the payload is not copied.
    fn send(&self, sender: &ConnSender, msg: &ToDaemon, payload: &[u8]) {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&PAIR1_HEADER);
        if msg.encode(&mut head).is_err() {
            return;
        }
        let sent = if payload.len() >= BLOCKING_SEND {
            // Wait for the daemon (idle: it was just given this task) to read it, rather than
            // copy megabytes into the connection's queue: the copy would double the task's
            // memory outside the byte budget.
            sender.send_blocking(&[&head, payload], Some(Instant::now() + BLOCKING_SEND_WAIT))
        } else {
            sender.send(&[&head, payload])
        };
        match sent {
            Ok(SendStatus::Written) => {}
            // The rest waits in the connection's queue: the dispatcher thread flushes it. A
            // failed write marks the connection failed; the dispatcher thread closes it.
            Ok(SendStatus::Queued) | Err(_) => {
                let _ = self.waker.wake();
            }
        }
    }

    fn event(&self, event: DaemonEvent) {
        // Nobody listening is fine.
        let _ = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(event);
    }
}

enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
    /// Accepted connections start the server side of TLS with this configuration.
    Tls(mio::net::TcpListener, TlsConfig),
}

/// Binds `address`; returns the listener, the URL daemons dial, and the socket file to remove
/// at the end (`ipc://` only). `tls` is the listener configuration of a `tls+tcp://` address.
fn bind(
    address: &Address,
    url: &str,
    tls: Option<TlsConfig>,
) -> Result<(Listener, String, Option<PathBuf>), StartError> {
    let in_use = |e: io::Error| -> StartError {
        if e.kind() == io::ErrorKind::AddrInUse {
            nano_transport::Error::AddrInUse(url.to_owned()).into()
        } else {
            e.into()
        }
    };
    match address {
        Address::Tcp(sa) => {
            let l = mio::net::TcpListener::bind(*sa).map_err(in_use)?;
            let local = Address::Tcp(l.local_addr()?).to_url();
            Ok((Listener::Tcp(l), local, None))
        }
        Address::Ipc(path) => {
            let l = match mio::net::UnixListener::bind(path) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // A stale file from a dead dispatcher: nobody accepts on it, so take it over.
                    match std::os::unix::net::UnixStream::connect(path) {
                        Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                            std::fs::remove_file(path)?;
                            mio::net::UnixListener::bind(path).map_err(in_use)?
                        }
                        _ => return Err(in_use(e)),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            Ok((Listener::Unix(l), address.to_url(), Some(path.clone())))
        }
        Address::Abstract(name) => {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            let l = mio::net::UnixListener::bind_addr(&addr).map_err(in_use)?;
            Ok((Listener::Unix(l), address.to_url(), None))
        }
        Address::Tls { addr, .. } => {
            let tls = tls.ok_or(nano_transport::Error::State(
                "tls+tcp:// listeners need a TLS listener configuration",
            ))?;
            let l = mio::net::TcpListener::bind(*addr).map_err(in_use)?;
            let local = l.local_addr()?;
            let url = Address::Tls {
                addr: local,
                host: local.ip().to_string(),
            }
            .to_url();
            Ok((Listener::Tls(l, tls), url, None))
        }
    }
}

/// One accepted connection, admitted or not yet.
struct Peer {
    conn: Connection,
    daemon: Option<DaemonId>,
    last_rx: Instant,
    /// Registered for writability (only while its sender has bytes queued).
    writable: bool,
    /// Refused: closed as soon as the refusal is written, and read no more.
    refused: bool,
}

/// A daemon message after decoding, waiting for the core.
enum Inbound {
    Result {
        daemon: DaemonId,
        token: Token,
        task: TaskId,
        reply: Reply,
        last: bool,
    },
}

/// The dispatcher thread's state.
struct EventLoop {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Listener,
    ipc_path: Option<PathBuf>,
    token: Secret,
    peers: HashMap<Token, Peer>,
    by_daemon: HashMap<DaemonId, Token>,
    next_token: usize,
    /// Connections that may hold unread bytes no readiness event will announce.
    ready: Vec<Token>,
    next_beat: Option<Instant>,
    /// Hello deadlines of the connections not yet admitted.
    admission: Admission<Token>,
}

impl EventLoop {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = if self.ready.is_empty() {
                self.sleep_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.sleep_until.store(0, Ordering::Relaxed);
            if let Err(e) = polled
                && e.kind() != io::ErrorKind::Interrupted
            {
                break;
            }
            let mut woken = false;
            for event in &events {
                match event.token() {
                    WAKER => woken = true,
                    LISTENER => self.accept(),
                    token => {
                        if (event.is_readable() || event.is_read_closed() || event.is_error())
                            && let Some(peer) = self.peers.get_mut(&token)
                        {
                            peer.conn.note_readable();
                            if event.is_read_closed() {
                                // The daemon's last frame and its close may both be in this
                                // event: read until the close shows.
                                peer.conn.note_read_closed();
                            }
                            if !self.ready.contains(&token) {
                                self.ready.push(token);
                            }
                        }
                        if event.is_writable() {
                            woken = true;
                        }
                    }
                }
            }
            if woken {
                self.flush_queues();
            }
            self.read_ready();
            // Also carries out what host calls through [`Dispatcher::host`] left.
            self.timers(Instant::now());
        }
        self.close_all();
    }

    /// The earliest time something is due (a core timeout, a heartbeat, a silence limit),
    /// published for host threads before the thread sleeps.
    fn sleep_deadline(&self) -> Option<Instant> {
        let core = self.shared.host.lock();
        let next = self.next_deadline(core.poll_timeout());
        let until = next.map_or(u64::MAX, |t| self.shared.nanos(t));
        self.shared.sleep_until.store(until, Ordering::Relaxed);
        drop(core);
        next
    }

    fn next_deadline(&self, core_next: Option<Instant>) -> Option<Instant> {
        let mut next = core_next;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(b) = self.next_beat {
            consider(b);
        }
        if let Some(t) = self.admission.next_deadline() {
            consider(t);
        }
        if let Some(h) = self.shared.heartbeat {
            for peer in self.peers.values().filter(|p| p.daemon.is_some()) {
                consider(peer.last_rx + h * MISSED_BEATS);
            }
        }
        next
    }

    fn accept(&mut self) {
        loop {
            let stream = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                Listener::Tls(l, config) => l.accept().and_then(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    // The server side of TLS; its handshake advances with this connection's
                    // reads and flushes, before the SP headers are exchanged.
                    config.accept(s).map(Stream::Tls)
                }),
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // TLS could not start on this connection: skip it alone.
                Err(e) if e.kind() == io::ErrorKind::Other => continue,
                // Out of descriptors or a connection reset before accept: try again on the next
                // event rather than spin.
                Err(_) => return,
            };
            // Until its hello passes, a peer may send no more than a hello can be: it cannot
            // make us read (or buffer) a large frame before it has authenticated.
            let recv_limit = PRE_ADMISSION_LIMIT.min(self.full_recv_limit());
            let Ok(conn) = Connection::new(stream, Protocol::Pair1, recv_limit) else {
                continue;
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            let fd = conn.stream().as_raw_fd();
            if self
                .poll
                .registry()
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            let now = Instant::now();
            self.admission.added(token, now);
            self.peers.insert(
                token,
                Peer {
                    conn,
                    daemon: None,
                    last_rx: now,
                    writable: false,
                    refused: false,
                },
            );
            // The peer's header may already be waiting.
            self.ready.push(token);
        }
    }

    /// Flushes connections with queued bytes; watches for writability only while some remain.
    fn flush_queues(&mut self) {
        let mut failed = Vec::new();
        for (&token, peer) in &mut self.peers {
            let sender = peer.conn.sender();
            if sender.has_failed() {
                failed.push(token);
                continue;
            }
            if sender.queued() == 0 && !peer.writable {
                continue;
            }
            let Ok(done) = sender.flush() else {
                failed.push(token);
                continue;
            };
            if done && peer.refused {
                // The refusal is out: nothing more for this peer.
                failed.push(token);
                continue;
            }
            let want = !done;
            if want != peer.writable {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let fd = peer.conn.stream().as_raw_fd();
                if self
                    .poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), token, interest)
                    .is_err()
                {
                    failed.push(token);
                    continue;
                }
                peer.writable = want;
            }
        }
        for token in failed {
            self.close(token);
        }
    }

    /// Reads every connection that may have bytes, then feeds the results to the core under one
    /// lock.
    fn read_ready(&mut self) {
        let mut inbound = Vec::new();
        let mut closing = Vec::new();
        let tokens = std::mem::take(&mut self.ready);
        let mut output = false;
        for token in tokens {
            let Some(peer) = self.peers.get_mut(&token) else {
                continue;
            };
            if peer.refused {
                continue;
            }
            let mut bodies = Vec::new();
            let progress = peer.conn.on_readable(READ_BATCH, &mut |b| {
                bodies.push(b);
                true
            });
            if !bodies.is_empty() {
                peer.last_rx = Instant::now();
            }
            // A TLS read may leave handshake records for the socket to take.
            output |= peer.conn.sender().queued() > 0 && !peer.writable;
            match progress {
                Ok(ReadProgress::Drained) => {}
                Ok(ReadProgress::HandshakeDone | ReadProgress::Yielded) => self.ready.push(token),
                Err(e) => {
                    if peer.daemon.is_none() {
                        unauthenticated_closed(token, &e);
                    }
                    closing.push(token);
                }
            }
            for body in bodies {
                if !self.on_body(token, body, &mut inbound) {
                    closing.push(token);
                    break;
                }
            }
        }
        if !inbound.is_empty() {
            let now = Instant::now();
            let mut core = self.shared.host.lock();
            for Inbound::Result {
                daemon,
                token,
                task,
                reply,
                last,
            } in inbound
            {
                if core.on_result(daemon, task, reply, last, now).is_err() {
                    // A result for a task the daemon was not running: drop the daemon.
                    closing.push(token);
                }
            }
            self.shared.flush_held(core);
        }
        for token in closing {
            self.close(token);
        }
        if output {
            self.flush_queues();
        }
    }

    /// Handles one message body; `false` closes the connection.
    fn on_body(&mut self, token: Token, body: Vec<u8>, inbound: &mut Vec<Inbound>) -> bool {
        match pair1_hops(&body, MAX_TTL_DEFAULT) {
            Ok(_) => {}
            Err(e) => return !e.closes_pipe(),
        }
        let frame = &body[PAIR1_HEADER.len()..];
        let Some(peer) = self.peers.get(&token) else {
            return false;
        };
        let admitted = peer.daemon.is_some();
        let Ok((msg, payload)) = FromDaemon::decode(frame, &self.shared.limits) else {
            // A malformed message: this daemon cannot be trusted, the others carry on.
            if !admitted {
                drop_unauthenticated(token, "malformed message before the hello");
            }
            return false;
        };
        let payload_len = payload.len();
        match (msg, peer.daemon) {
            (FromDaemon::Hello(hello), None) => self.on_hello(token, &hello),
            (_, None) => {
                drop_unauthenticated(token, "message before the hello");
                false
            }
            // A second hello: not our protocol.
            (FromDaemon::Hello(_), Some(_)) => false,
            (FromDaemon::Heartbeat, Some(_)) => true,
            (FromDaemon::Result { task, status, last }, Some(daemon)) => {
                let reply = match status {
                    ResultStatus::Ok => {
                        let start = body.len() - payload_len;
                        match Payload::from_frame(body, start) {
                            Some(p) => Reply::Value(p),
                            None => return false,
                        }
                    }
                    ResultStatus::Err(e) => Reply::Error(e),
                    ResultStatus::Interrupted => Reply::Interrupted,
                    ResultStatus::NotStarted => Reply::NotStarted,
                };
                inbound.push(Inbound::Result {
                    daemon,
                    token,
                    task,
                    reply,
                    last,
                });
                true
            }
        }
    }

    /// The receive limit of an admitted daemon: the largest result frame.
    fn full_recv_limit(&self) -> u64 {
        self.shared.limits.max_frame as u64 + PAIR1_HEADER.len() as u64
    }

    fn on_hello(&mut self, token: Token, hello: &Hello) -> bool {
        let full_limit = self.full_recv_limit();
        let Some(peer) = self.peers.get_mut(&token) else {
            return false;
        };
        let sender = peer.conn.sender().clone();
        let mut core = self.shared.host.lock();
        let refusal = match check_hello(hello, &self.token) {
            Err(e) => Some(e.refuse_reason()),
            Ok(()) if core.is_shut_down() => Some(RefuseReason::ShuttingDown),
            Ok(()) => None,
        };
        if let Some(reason) = refusal {
            drop(core);
            tracing::warn!(
                connection = token.0,
                launch_id = hello.launch_id,
                ?reason,
                "refusing a daemon"
            );
            peer.refused = true;
            self.shared.send(&sender, &ToDaemon::Refused(reason), &[]);
            self.shared.event(DaemonEvent::Refused {
                launch_id: hello.launch_id,
                reason,
            });
            // Closed once the refusal is written: at once if the kernel took it, else when the
            // dispatcher thread has flushed it (the hello deadline still bounds the wait).
            return sender.queued() > 0;
        }
        self.admission.admit(token);
        peer.conn.set_recv_limit(full_limit);
        let daemon = core.daemon_connected(self.shared.local, Instant::now());
        // Linked before the core's lock is released, so whoever carries out the init finds it.
        self.shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                daemon,
                Link {
                    sender,
                    launch_id: hello.launch_id,
                },
            );
        peer.daemon = Some(daemon);
        self.by_daemon.insert(daemon, token);
        self.shared.event(DaemonEvent::Joined {
            daemon,
            launch_id: hello.launch_id,
        });
        self.shared.flush_held(core);
        true
    }

    /// Fires the core's timeouts, sends heartbeats, and closes silent connections.
    fn timers(&mut self, now: Instant) {
        {
            let mut core = self.shared.host.lock();
            if core.poll_timeout().is_some_and(|t| t <= now) {
                core.handle_timeout(now);
            }
            self.shared.flush_held(core);
        }
        let heartbeat = self.shared.heartbeat;
        if let (Some(h), Some(beat)) = (heartbeat, self.next_beat)
            && beat <= now
        {
            self.next_beat = Some(now + h);
            for peer in self.peers.values() {
                if peer.daemon.is_some() {
                    self.shared
                        .send(peer.conn.sender(), &ToDaemon::Heartbeat, &[]);
                }
            }
        }
        for token in self.admission.expired(now) {
            if self.peers.get(&token).is_some_and(|p| !p.refused) {
                drop_unauthenticated(token, "no valid hello in time");
            }
            self.close(token);
        }
        let silent: Vec<Token> = match heartbeat {
            Some(h) => self
                .peers
                .iter()
                .filter(|(_, p)| p.daemon.is_some() && now >= p.last_rx + h * MISSED_BEATS)
                .map(|(&t, _)| t)
                .collect(),
            None => Vec::new(),
        };
        for token in silent {
            self.close(token);
        }
    }

    /// Closes a connection; an admitted daemon leaves the core (resolving or retrying its task).
    fn close(&mut self, token: Token) {
        let Some(peer) = self.peers.remove(&token) else {
            return;
        };
        self.admission.removed(token);
        self.ready.retain(|&t| t != token);
        let fd = peer.conn.stream().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        let _ = peer.conn.stream().shutdown();
        if let Some(daemon) = peer.daemon {
            self.by_daemon.remove(&daemon);
            let mut core = self.shared.host.lock();
            core.daemon_disconnected(daemon, Instant::now());
            self.shared.flush_held(core);
        }
    }

    /// At stop: push out what is queued (the exit messages), then close everything.
    fn close_all(&mut self) {
        for peer in self.peers.values() {
            let _ = peer.conn.sender().flush();
        }
        let tokens: Vec<Token> = self.peers.keys().copied().collect();
        for token in tokens {
            self.close(token);
        }
        if let Some(path) = &self.ipc_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Logs that a connection which never authenticated is being closed, and why.
fn drop_unauthenticated(token: Token, why: &str) {
    tracing::warn!(
        connection = token.0,
        reason = why,
        "closing an unauthenticated connection"
    );
}

/// Logs a transport failure of a connection that never authenticated (a failed TLS handshake,
/// a refused SP header, an oversized frame). A plain close is only a debug event: refused
/// daemons and probes leave that way.
fn unauthenticated_closed(token: Token, error: &nano_transport::conn::ConnError) {
    match error {
        nano_transport::conn::ConnError::Closed => {
            tracing::debug!(connection = token.0, "closed before its hello");
        }
        e => {
            let why = e.to_string();
            drop_unauthenticated(token, &why);
        }
    }
}
