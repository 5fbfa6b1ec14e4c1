//! The dispatcher's I/O shell: a PAIR1 (polyamorous) socket that daemons dial, a thread that
//! feeds the [`Core`] with what arrives, and the code that carries out the core's actions.
//!
//! Actions are carried out by whichever thread produced them: a host thread's submission that
//! finds an idle daemon writes the task to the daemon itself, so the hot path crosses no extra
//! thread. A second mutex, taken before the core's lock is released, keeps the order of sends
//! the core decided even when several threads flush at once.
//!
//! Local daemons are the ones on `ipc://` and `abstract://` addresses, which only processes of
//! this machine can reach; a hard cancel or an unanswered cancel turns into
//! [`DaemonEvent::KillRequested`] for whoever launched them.
//!
//! What the socket API costs today, to be removed when the transport offers the matching calls:
//! a task or result frame is assembled into one buffer before the send (one copy of the payload;
//! a vectored `send_to` would avoid it), a received result is moved down over its 4-byte PAIR1
//! header ([`Message::into_vec`]), and timers and pipe events are checked between receives, at
//! least every [`TICK`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nano_transport::tls::{ClientAuth, Fingerprint, Identity, TlsError};
use nano_transport::{Message, PipeEvent, PipeId, Protocol, Socket};

use crate::admission::Admission;
use crate::core::{Action, CancelMode, Config, Core, Rejected, Reply, Status};
use crate::host::Host;
use crate::protocol::{
    FromDaemon, Init, Limits, RefuseReason, ResultStatus, ToDaemon, check_hello,
};
use crate::security::{PolicyError, check_listen_url, configure_tls};
use crate::task::{DaemonId, Outcome, Payload, Task, TaskId};

/// The longest the dispatcher thread sleeps before it looks at timers and pipe events.
pub const TICK: Duration = Duration::from_millis(5);

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The socket could not be opened or bound.
    #[error("cannot listen: {0}")]
    Transport(#[from] nano_transport::Error),
    /// The thread could not be started.
    #[error("cannot start the dispatcher thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The address is refused by the security policy (plain tcp without the opt-in).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The TLS configuration could not be built.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
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
/// use mirai_dispatch::{Config, DispatcherConfig};
/// let c = DispatcherConfig::new("abstract://example", b"token".to_vec())
///     .with_core(Config::default().with_max_queued_bytes(1 << 20));
/// assert_eq!(c.core.max_queued_bytes, Some(1 << 20));
/// ```
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Where daemons dial (`tcp://127.0.0.1:0`, `ipc:///path`, `abstract://name`).
    pub url: String,
    /// The join token daemons must present.
    pub token: Vec<u8>,
    /// The core's settings.
    pub core: Config,
    /// Receive limits.
    pub limits: Limits,
    /// Opaque settings sent to every daemon in its init message.
    pub settings: Vec<u8>,
    /// The certificate a `tls+tcp://` listener presents; `None` generates one at start (its
    /// fingerprint is [`Dispatcher::tls_fingerprint`], for the daemons to pin).
    pub tls: Option<Identity>,
    /// Client certificates demanded of daemons on `tls+tcp://` (mutual TLS), on top of the token.
    pub tls_clients: ClientAuth,
    /// Listen on plain `tcp://` although it carries the token and task data unencrypted.
    pub allow_plain_tcp: bool,
    /// How long a connection may stay without a valid hello before it is closed.
    pub hello_timeout: Duration,
}

impl DispatcherConfig {
    /// Defaults for everything but the address and the token.
    pub fn new(url: impl Into<String>, token: Vec<u8>) -> Self {
        Self {
            url: url.into(),
            token,
            core: Config::default(),
            limits: Limits::default(),
            settings: Vec::new(),
            tls: None,
            tls_clients: ClientAuth::None,
            allow_plain_tcp: false,
            hello_timeout: Duration::from_secs(10),
        }
    }

    /// Allows listening on plain `tcp://` (see [`crate::security`]).
    pub fn with_plain_tcp(mut self, allow: bool) -> Self {
        self.allow_plain_tcp = allow;
        self
    }

    /// Sets the certificate `tls+tcp://` listeners present.
    pub fn with_tls_identity(mut self, identity: Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Sets [`DispatcherConfig::core`].
    pub fn with_core(mut self, core: Config) -> Self {
        self.core = core;
        self
    }
}

/// Outcomes waiting for their handles.
#[derive(Default)]
struct Completions {
    done: Mutex<HashMap<TaskId, Outcome>>,
    ready: Condvar,
}

struct Links {
    daemon_of: HashMap<PipeId, DaemonId>,
    pipe_of: HashMap<DaemonId, (PipeId, u64)>,
}

struct Shell {
    host: Host,
    socket: Socket,
    local: bool,
    limits: Limits,
    settings: Vec<u8>,
    links: Mutex<Links>,
    /// Held while actions are carried out, so they go out in the order the core made them.
    outbox: Mutex<()>,
    completions: Completions,
    events: Mutex<mpsc::Sender<DaemonEvent>>,
    stop: AtomicBool,
    /// Hello deadlines of connections not yet admitted.
    admission: Mutex<Admission>,
}

/// A running dispatcher: the listening socket, its thread, and the host-side API.
///
/// ```no_run
/// use std::time::Duration;
/// use mirai_dispatch::{Dispatcher, DispatcherConfig, Outcome, Task};
/// let (dispatcher, _events) =
///     Dispatcher::start(DispatcherConfig::new("tcp://127.0.0.1:0", b"t0ken".to_vec()))?;
/// // ... launch daemons that dial dispatcher.url() with the token ...
/// let id = dispatcher.submit(Task::new("add", vec![1, 2]), None).unwrap();
/// let outcome = dispatcher.wait(id, Some(Duration::from_secs(10)));
/// # Ok::<(), mirai_dispatch::StartError>(())
/// ```
pub struct Dispatcher {
    shell: Arc<Shell>,
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
        check_listen_url(&config.url, config.allow_plain_tcp)?;
        let socket = Socket::new(Protocol::Pair1)?;
        socket.set_pair1_poly(true);
        socket.set_recv_max_size(config.limits.max_frame);
        let tls_fingerprint = configure_tls(&socket, &config.url, config.tls, config.tls_clients)?;
        let pipe_events = socket.pipe_events();
        let listener = socket.listen(&config.url)?;
        let url = listener.local_url().to_owned();
        let local = url.starts_with("ipc://") || url.starts_with("abstract://");
        let (tx, rx) = mpsc::channel();
        let token = config.token;
        let shell = Arc::new(Shell {
            host: Host::new(Core::new(config.core)),
            socket,
            local,
            limits: config.limits,
            settings: config.settings,
            links: Mutex::new(Links {
                daemon_of: HashMap::new(),
                pipe_of: HashMap::new(),
            }),
            outbox: Mutex::new(()),
            completions: Completions::default(),
            events: Mutex::new(tx),
            stop: AtomicBool::new(false),
            admission: Mutex::new(Admission::new(config.hello_timeout)),
        });
        let thread = {
            let shell = Arc::clone(&shell);
            std::thread::Builder::new()
                .name("mirai-dispatcher".into())
                .spawn(move || shell.run(&token, &pipe_events))?
        };
        Ok((
            Self {
                shell,
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
    pub fn tls_fingerprint(&self) -> Option<Fingerprint> {
        self.tls_fingerprint
    }

    /// The submission handle (blocking and non-blocking submit, status) without the I/O.
    pub fn host(&self) -> &Host {
        &self.shell.host
    }

    /// [`Host::submit`], then sends what can go now from this thread.
    pub fn submit(&self, task: Task, deadline: Option<Instant>) -> Result<TaskId, Rejected> {
        let id = self.shell.host.submit(task, deadline)?;
        self.shell.flush();
        Ok(id)
    }

    /// [`Host::try_submit`], then sends what can go now from this thread.
    pub fn try_submit(&self, task: Task) -> Result<TaskId, Rejected> {
        let id = self.shell.host.try_submit(task)?;
        self.shell.flush();
        Ok(id)
    }

    /// [`Host::everywhere`], then sends what can go now.
    pub fn everywhere(
        &self,
        task: Task,
        min: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<TaskId>, Rejected> {
        let ids = self.shell.host.everywhere(task, min, deadline)?;
        self.shell.flush();
        Ok(ids)
    }

    /// [`Host::cancel`]; the task's outcome ([`Outcome::Cancelled`]) is ready at once.
    pub fn cancel(&self, task: TaskId, mode: CancelMode) -> bool {
        let found = self.shell.host.cancel(task, mode);
        self.shell.flush();
        found
    }

    /// Waits up to `timeout` (forever with `None`) for the task's outcome and takes it; `None`
    /// if it is not ready by then (or was already taken). Outcomes are kept until taken.
    pub fn wait(&self, task: TaskId, timeout: Option<Duration>) -> Option<Outcome> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let c = &self.shell.completions;
        let mut done = c.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(outcome) = done.remove(&task) {
                drop(done);
                if outcome.is_value() {
                    self.shell.host.collected(task);
                    self.shell.flush();
                }
                return Some(outcome);
            }
            done = match deadline {
                None => c.ready.wait(done).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    c.ready
                        .wait_timeout(done, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// The counters.
    pub fn status(&self) -> Status {
        self.shell.host.status()
    }

    /// Resolves every pending task with [`Outcome::ShutDown`], tells every daemon to exit, and
    /// stops the thread and the socket. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shell.host.shutdown();
        self.shell.flush();
        self.shell.stop.store(true, Ordering::Release);
        let _ = thread.join();
        self.shell.socket.close();
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shell {
    /// The dispatcher thread: receive, feed the core, carry out its actions.
    fn run(&self, token: &[u8], pipe_events: &mpsc::Receiver<PipeEvent>) {
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            while let Ok(event) = pipe_events.try_recv() {
                match event {
                    PipeEvent::Added(pipe) => self.admission().added(pipe, now),
                    PipeEvent::Removed(pipe) => {
                        self.admission().removed(pipe);
                        self.pipe_removed(pipe);
                    }
                }
            }
            let late = self.admission().expired(now);
            for pipe in late {
                self.drop_peer(pipe, "no valid hello in time");
            }
            let wait = self
                .host
                .lock()
                .poll_timeout()
                .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
            match self.socket.recv_timeout(wait) {
                Ok(msg) => self.on_message(msg, token),
                Err(nano_transport::Error::Timeout) => {}
                Err(_) => break,
            }
            self.host.lock().handle_timeout(Instant::now());
            self.flush();
        }
    }

    fn pipe_removed(&self, pipe: PipeId) {
        let daemon = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .daemon_of
            .get(&pipe)
            .copied();
        if let Some(daemon) = daemon {
            self.host.lock().daemon_disconnected(daemon, Instant::now());
        }
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs and closes a connection that failed authentication (or never tried).
    fn drop_peer(&self, pipe: PipeId, why: &str) {
        tracing::warn!(
            pipe = pipe.0,
            reason = why,
            "closing an unauthenticated connection"
        );
        let _ = self.socket.close_pipe(pipe);
    }

    fn on_message(&self, msg: Message, token: &[u8]) {
        let pipe = msg.pipe();
        let admitted = self.admission().is_admitted(pipe);
        let Ok((decoded, payload)) = FromDaemon::decode(&msg, &self.limits) else {
            // A malformed message from one daemon does not stop the others; from a connection
            // that has not authenticated, it ends that connection.
            if !admitted {
                self.drop_peer(pipe, "malformed message before the hello");
            }
            return;
        };
        if !admitted && !matches!(decoded, FromDaemon::Hello(_)) {
            self.drop_peer(pipe, "message before the hello");
            return;
        }
        let payload_len = payload.len();
        match decoded {
            FromDaemon::Hello(hello) => {
                let known = self
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .daemon_of
                    .contains_key(&pipe);
                if known {
                    return;
                }
                let refusal = match check_hello(&hello, token) {
                    Err(e) => Some(e.refuse_reason()),
                    Ok(()) if self.host.lock().is_shut_down() => Some(RefuseReason::ShuttingDown),
                    Ok(()) => None,
                };
                if let Some(reason) = refusal {
                    tracing::warn!(
                        pipe = pipe.0,
                        launch_id = hello.launch_id,
                        ?reason,
                        "refusing a daemon"
                    );
                    self.send(pipe, &ToDaemon::Refused(reason), &[]);
                    let _ = self.socket.close_pipe(pipe);
                    self.event(DaemonEvent::Refused {
                        launch_id: hello.launch_id,
                        reason,
                    });
                    return;
                }
                self.admission().admit(pipe);
                let mut core = self.host.lock();
                let daemon = core.daemon_connected(self.local, Instant::now());
                let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
                links.daemon_of.insert(pipe, daemon);
                links.pipe_of.insert(daemon, (pipe, hello.launch_id));
                drop(links);
                drop(core);
                self.event(DaemonEvent::Joined {
                    daemon,
                    launch_id: hello.launch_id,
                });
            }
            FromDaemon::Result { task, status, last } => {
                let daemon = self
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .daemon_of
                    .get(&pipe)
                    .copied();
                let Some(daemon) = daemon else {
                    return;
                };
                let reply = match status {
                    ResultStatus::Ok => {
                        let frame = msg.into_vec();
                        let start = frame.len() - payload_len;
                        match Payload::from_frame(frame, start) {
                            Some(p) => Reply::Value(p),
                            None => return,
                        }
                    }
                    ResultStatus::Err(e) => Reply::Error(e),
                    ResultStatus::Interrupted => Reply::Interrupted,
                };
                // A daemon answering out of turn is ignored; its connection stays.
                let _ = self
                    .host
                    .lock()
                    .on_result(daemon, task, reply, last, Instant::now());
            }
            FromDaemon::Heartbeat => {}
        }
    }

    /// Drains the core's actions and carries them out, in order.
    fn flush(&self) {
        let mut core = self.host.lock();
        if !core.has_actions() {
            return;
        }
        let actions: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
        let _order = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        drop(core);
        for action in actions {
            self.carry_out(action);
        }
    }

    fn pipe_of(&self, daemon: DaemonId) -> Option<(PipeId, u64)> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pipe_of
            .get(&daemon)
            .copied()
    }

    fn carry_out(&self, action: Action) {
        match action {
            Action::Joined { daemon, rng_stream } => {
                if let Some((pipe, _)) = self.pipe_of(daemon) {
                    let init = Init {
                        daemon,
                        rng_stream,
                        max_frame: self.limits.max_frame as u64,
                        heartbeat_ms: 0,
                        settings: self.settings.clone(),
                    };
                    self.send(pipe, &ToDaemon::Init(init), &[]);
                }
            }
            Action::Send { daemon, task, job } => {
                if let Some((pipe, _)) = self.pipe_of(daemon) {
                    let msg = ToDaemon::Task {
                        task,
                        function: job.function,
                        trace: job.trace,
                        rng_seed: job.rng_seed,
                    };
                    // A failed send means the pipe is going; its removal resolves the task.
                    self.send(pipe, &msg, &job.payload);
                }
            }
            Action::Cancel { daemon, task } => {
                if let Some((pipe, _)) = self.pipe_of(daemon) {
                    self.send(pipe, &ToDaemon::Cancel { task }, &[]);
                }
            }
            Action::Kill { daemon } => {
                if let Some((pipe, launch_id)) = self.pipe_of(daemon) {
                    self.send(pipe, &ToDaemon::Exit, &[]);
                    self.event(DaemonEvent::KillRequested { daemon, launch_id });
                }
            }
            Action::Release { daemon } => {
                if let Some((pipe, _)) = self.pipe_of(daemon) {
                    self.send(pipe, &ToDaemon::Exit, &[]);
                }
            }
            Action::Left { daemon } => {
                let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((pipe, launch_id)) = links.pipe_of.remove(&daemon) {
                    links.daemon_of.remove(&pipe);
                    drop(links);
                    self.event(DaemonEvent::Left { daemon, launch_id });
                }
            }
            Action::Resolve { task, outcome } => {
                let c = &self.completions;
                c.done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(task, outcome);
                c.ready.notify_all();
            }
            Action::WakeSubmitters => {}
        }
    }

    fn send(&self, pipe: PipeId, msg: &ToDaemon, payload: &[u8]) {
        let mut frame = Vec::with_capacity(64 + payload.len());
        if msg.encode(&mut frame).is_err() {
            return;
        }
        // The one payload copy of the send path: the socket API takes a single buffer.
        frame.extend_from_slice(payload);
        let _ = self.socket.send_to(pipe, &frame);
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
