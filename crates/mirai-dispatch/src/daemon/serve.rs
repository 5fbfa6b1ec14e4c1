//! The daemon's socket loop: dial, hello, init, then run tasks until an exit rule fires.
//!
//! A listener thread reads the socket for the daemon's whole life. It applies a cancel message
//! to the running task's [`CancelToken`](super::CancelToken) at once, and hands everything else
//! (tasks, exit, the host leaving or coming back) to the main thread over a channel. The main
//! thread runs each task inline, so a trivial task costs no thread start. Rust code cannot be
//! interrupted safely: a function that never checks its token runs to the end (a local daemon
//! can still be killed by its launcher).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nano_transport::{Message, PipeEvent, Protocol, Socket};

use super::{
    AutoExit, CancelToken, ExitReason, ExitRules, HostGone, Lifecycle, Registry, TaskContext,
};
use crate::protocol::{
    EncodeError, FromDaemon, Hello, Init, Limits, RefuseReason, ResultStatus, ToDaemon, VERSION,
};
use crate::task::{TaskError, TaskId};

/// How often the listener looks at pipe events and its stop flag.
const TICK: Duration = Duration::from_millis(5);

/// How long a daemon that sent its last result waits for the dispatcher's exit message.
const ACK_WAIT: Duration = Duration::from_secs(2);

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
    /// The join token.
    pub token: Vec<u8>,
    /// The id the launcher gave this daemon.
    pub launch_id: u64,
    /// When to exit.
    pub rules: ExitRules,
    /// How long to wait for the first connection, for the init message, and for a send.
    pub connect_timeout: Duration,
    /// How to verify a `tls+tcp://` dispatcher (typically the pinned fingerprint from the launch
    /// command) and the client certificate to present, if any.
    pub tls: Option<nano_transport::tls::TlsConfig>,
}

impl DaemonConfig {
    /// Defaults: launch id 0, no exit rules, 10 s to connect.
    pub fn new(url: impl Into<String>, token: Vec<u8>) -> Self {
        Self {
            url: url.into(),
            token,
            launch_id: 0,
            rules: ExitRules::default(),
            connect_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Why a daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket failed.
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
    /// The listener thread could not start.
    #[error("cannot start the listener thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Connects to the dispatcher and serves tasks from `registry` until an exit rule fires;
/// returns why (its [`ExitReason::code`] is the process exit code).
pub fn serve(config: &DaemonConfig, registry: &Registry) -> Result<ExitReason, DaemonError> {
    let socket = Socket::new(Protocol::Pair1)?;
    socket.set_send_timeout(Some(config.connect_timeout));
    if let Some(tls) = &config.tls {
        socket.set_tls(tls.clone());
    }
    let events = socket.pipe_events();
    socket.dial_blocking(&config.url, config.connect_timeout)?;
    let init = handshake(&socket, config)?;
    let limits = Limits {
        max_frame: usize::try_from(init.max_frame).unwrap_or(usize::MAX),
    };
    socket.set_recv_max_size(limits.max_frame);

    let shared = Arc::new(Shared {
        current: Mutex::new(None),
        connected: AtomicBool::new(true),
        stop: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel();
    let listener = {
        let (socket, shared) = (socket.clone(), Arc::clone(&shared));
        let autoexit = config.rules.autoexit;
        std::thread::Builder::new()
            .name("mirai-daemon-listener".into())
            .spawn(move || listen(&socket, &events, &shared, limits, autoexit, &tx))?
    };
    let mut daemon = Daemon {
        socket,
        shared,
        incoming: rx,
        life: Lifecycle::new(config.rules, Instant::now()),
    };
    let result = daemon.run(config, registry);
    daemon.shared.stop.store(true, Ordering::Release);
    daemon.socket.close();
    let _ = listener.join();
    result
}

/// What the listener hands to the main thread.
enum Incoming {
    Task {
        task: TaskId,
        function: String,
        rng_seed: Option<u64>,
        token: CancelToken,
        frame: Message,
        payload_start: usize,
    },
    Init,
    Refused(RefuseReason),
    Exit,
    HostLeft,
    HostBack,
    Closed,
}

/// State the listener and the main thread share.
struct Shared {
    /// The running task and its token, for cancel messages.
    current: Mutex<Option<(TaskId, CancelToken)>>,
    /// Whether a pipe to the dispatcher is up (no point sending otherwise).
    connected: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn cancel_current(&self, only: Option<TaskId>) {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((task, token)) = current.as_ref()
            && only.is_none_or(|t| t == *task)
        {
            token.cancel();
        }
    }
}

fn listen(
    socket: &Socket,
    events: &mpsc::Receiver<PipeEvent>,
    shared: &Shared,
    limits: Limits,
    autoexit: AutoExit,
    tx: &mpsc::Sender<Incoming>,
) {
    let forward = |i: Incoming| tx.send(i).is_ok();
    while !shared.stop.load(Ordering::Acquire) {
        while let Ok(event) = events.try_recv() {
            let incoming = match event {
                PipeEvent::Removed(_) => {
                    shared.connected.store(false, Ordering::Release);
                    if autoexit == AutoExit::Immediately {
                        shared.cancel_current(None);
                    }
                    Incoming::HostLeft
                }
                PipeEvent::Added(_) => {
                    shared.connected.store(true, Ordering::Release);
                    Incoming::HostBack
                }
            };
            if !forward(incoming) {
                return;
            }
        }
        let msg = match socket.recv_timeout(TICK) {
            Ok(m) => m,
            Err(nano_transport::Error::Timeout) => continue,
            Err(_) => {
                forward(Incoming::Closed);
                return;
            }
        };
        let incoming = match ToDaemon::decode(&msg, &limits) {
            Ok((
                ToDaemon::Task {
                    task,
                    function,
                    rng_seed,
                    ..
                },
                payload,
            )) => {
                let payload_start = msg.len() - payload.len();
                // Registered here, not when the task starts, so a cancel that follows at once
                // finds it.
                let token = CancelToken::new();
                *shared
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((task, token.clone()));
                Incoming::Task {
                    task,
                    function,
                    rng_seed,
                    token,
                    frame: msg,
                    payload_start,
                }
            }
            Ok((ToDaemon::Cancel { task }, _)) => {
                shared.cancel_current(Some(task));
                continue;
            }
            Ok((ToDaemon::Exit, _)) => {
                shared.cancel_current(None);
                Incoming::Exit
            }
            Ok((ToDaemon::Init(_), _)) => Incoming::Init,
            Ok((ToDaemon::Refused(reason), _)) => Incoming::Refused(reason),
            // Heartbeats and malformed frames are ignored.
            _ => continue,
        };
        if !forward(incoming) {
            return;
        }
    }
}

fn hello(socket: &Socket, config: &DaemonConfig) -> Result<(), DaemonError> {
    let hello = FromDaemon::Hello(Hello {
        version: VERSION,
        launch_id: config.launch_id,
        token: config.token.clone(),
    });
    let mut frame = Vec::new();
    hello.encode(&mut frame)?;
    socket.send(&frame)?;
    Ok(())
}

/// The first handshake, before the listener runs.
fn handshake(socket: &Socket, config: &DaemonConfig) -> Result<Init, DaemonError> {
    hello(socket, config)?;
    let deadline = Instant::now() + config.connect_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match socket.recv_timeout(left) {
            Ok(m) => m,
            Err(nano_transport::Error::Timeout) => {
                return Err(DaemonError::NoInit(config.connect_timeout));
            }
            Err(e) => return Err(e.into()),
        };
        match ToDaemon::decode(&msg, &Limits::default()) {
            Ok((ToDaemon::Init(init), _)) => return Ok(init),
            Ok((ToDaemon::Refused(reason), _)) => return Err(DaemonError::Refused(reason)),
            _ => {}
        }
    }
}

struct Daemon {
    socket: Socket,
    shared: Arc<Shared>,
    incoming: mpsc::Receiver<Incoming>,
    life: Lifecycle,
}

impl Daemon {
    fn run(
        &mut self,
        config: &DaemonConfig,
        registry: &Registry,
    ) -> Result<ExitReason, DaemonError> {
        loop {
            let now = Instant::now();
            if let Some(reason) = self.life.poll(now) {
                return Ok(reason);
            }
            let wait = self
                .life
                .next_deadline()
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            let incoming = match self.incoming.recv_timeout(wait) {
                Ok(i) => i,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => Incoming::Closed,
            };
            match incoming {
                Incoming::Task {
                    task,
                    function,
                    rng_seed,
                    token,
                    frame,
                    payload_start,
                } => {
                    let ctx = TaskContext::with_token(task, rng_seed, token);
                    self.run_task(registry, &function, &frame[payload_start..], &ctx)?;
                }
                Incoming::Exit => self.life.exit_requested(),
                Incoming::HostLeft => match self.life.host_gone(Instant::now()) {
                    HostGone::Redial => self.reconnect(config)?,
                    HostGone::Exit | HostGone::ExitAfterTask => return Ok(ExitReason::HostGone),
                },
                Incoming::Closed => return Err(nano_transport::Error::Closed.into()),
                Incoming::HostBack | Incoming::Init | Incoming::Refused(_) => {}
            }
        }
    }

    /// Waits for the background redial to reconnect, then handshakes again.
    fn reconnect(&mut self, config: &DaemonConfig) -> Result<(), DaemonError> {
        let mut hello_sent_at = None;
        loop {
            if self.life.poll(Instant::now()).is_some() {
                return Ok(());
            }
            if hello_sent_at.is_some_and(|t: Instant| t.elapsed() > config.connect_timeout) {
                return Err(DaemonError::NoInit(config.connect_timeout));
            }
            let wait = self
                .life
                .next_deadline()
                .map_or(Duration::from_secs(1), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            match self.incoming.recv_timeout(wait) {
                Ok(Incoming::HostBack) => {
                    hello(&self.socket, config)?;
                    hello_sent_at = Some(Instant::now());
                }
                Ok(Incoming::Init) if hello_sent_at.is_some() => return Ok(()),
                Ok(Incoming::Refused(reason)) => return Err(DaemonError::Refused(reason)),
                Ok(Incoming::Exit) => {
                    self.life.exit_requested();
                    return Ok(());
                }
                Ok(Incoming::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(nano_transport::Error::Closed.into());
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn run_task(
        &mut self,
        registry: &Registry,
        function: &str,
        payload: &[u8],
        ctx: &TaskContext,
    ) -> Result<(), DaemonError> {
        self.life.task_started(Instant::now());
        let result = registry.run(function, payload, ctx);
        // Cleared before the result goes, so it never covers the next task.
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let last = self.life.task_finished(Instant::now());
        if !self.shared.connected.load(Ordering::Acquire) {
            // The result has nowhere to go; the host-left notice is handled next.
            return Ok(());
        }
        // A failed send means the host is going; its notice follows.
        if self
            .send_result(ctx.task(), result, ctx.is_cancelled(), last)
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
        result: Result<Vec<u8>, TaskError>,
        interrupted: bool,
        last: bool,
    ) -> Result<(), DaemonError> {
        let (status, value) = match result {
            _ if interrupted => (ResultStatus::Interrupted, Vec::new()),
            Ok(value) => (ResultStatus::Ok, value),
            Err(e) => (ResultStatus::Err(e), Vec::new()),
        };
        let mut frame = Vec::with_capacity(64 + value.len());
        FromDaemon::Result { task, status, last }.encode(&mut frame)?;
        // The one copy of the result path: the socket API takes a single buffer.
        frame.extend_from_slice(&value);
        self.socket.send(&frame)?;
        Ok(())
    }

    /// After a last result, wait (bounded) for the dispatcher's exit message, so the result is
    /// delivered before the connection drops.
    fn await_exit(&mut self) {
        let deadline = Instant::now() + ACK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(Incoming::Exit) | Ok(Incoming::HostLeft) | Ok(Incoming::Closed) | Err(_) => {
                    return;
                }
                Ok(_) => {}
            }
        }
    }
}
