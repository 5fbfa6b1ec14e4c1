//! The user-facing socket: opening, options, listening and dialing, and the blocking,
//! non-blocking and async entry points of send and receive.
//!
//! The pieces behind it live in their own modules: the state shared with the I/O thread in
//! `shared`, the per-protocol send and receive paths in `route`, contexts and futures in
//! `context`, and the direct read in `direct`.
//!
//! A socket is shared state behind one mutex plus a background I/O thread (`io.rs`) that owns
//! the mio `Poll`, the listeners, the dialers and the pipes' reading halves while nobody else
//! reads them. Sends do not cross to that thread: the calling thread picks the pipe and writes
//! the frame itself (one vectored write from the caller's buffer), and only wakes the I/O thread
//! when the kernel did not take everything, or for a stream of small sends, which it queues for
//! the I/O thread to write many per `writev` (see `route::STREAM_GAP`). Receives either take what the I/O thread queued (in
//! batches, with one condvar notification and the async `Waker`s per batch) or, for a blocking
//! receive on a socket with a single pipe, read that pipe directly ([`DirectRead`]), which saves
//! a thread hand-off per message.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::conn::SharedBody;
use crate::context::{Context, RecvFuture, SendFuture};
use crate::direct::DirectRead;
use crate::io;
use crate::peer::LocalPeers;
use crate::proto::{MAX_TTL_DEFAULT, ReqState, RoundRobin, SurveyorState, TopicFilter};
use crate::route::{Body, Target, Wait, plan_send, take_message, wait, write_plan};
use crate::shared::{Command, Core, Inner, Options, PipeEvent, RecvQueue};
use crate::url::Address;
use crate::{Error, Message, PipeId, Protocol};

/// The default of [`Socket::set_recv_max_size`]: 1 MiB, NNG's own default for
/// `NNG_OPT_RECVMAXSZ`.
///
/// A frame's length prefix is the peer's claim, and without a limit one peer could make us
/// reserve (and keep reading toward) any size it names. With NNG's figure, a program moved
/// between NNG and this crate accepts the same messages, and a hostile peer costs at most
/// 1 MiB per connection. A socket that expects larger messages raises it explicitly;
/// `set_recv_max_size(0)` removes the limit.
///
/// ```
/// assert_eq!(nano_transport::DEFAULT_RECV_MAX_SIZE, 1 << 20);
/// ```
pub const DEFAULT_RECV_MAX_SIZE: usize = 1 << 20;

/// A bound listening endpoint.
#[derive(Debug, Clone)]
pub struct Listener {
    url: String,
}

impl Listener {
    /// The URL peers should dial, with the real port when listening on port 0.
    pub fn local_url(&self) -> &str {
        &self.url
    }
}

/// Closes the socket when the last clone of it is dropped.
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        close(&self.0);
    }
}

/// An SP socket of one [`Protocol`]. Cheap to clone (clones share the socket); `Send + Sync`.
/// The socket closes when [`close`](Self::close) is called or the last clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use nano_transport::{Protocol, Socket};
/// let rep = Socket::new(Protocol::Rep0)?;
/// let url = rep.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
/// let req = Socket::new(Protocol::Req0)?;
/// req.dial_blocking(&url, Duration::from_secs(5))?;
/// req.send(b"ping")?;
/// let request = rep.recv()?;
/// assert_eq!(&*request, b"ping");
/// rep.send(b"pong")?;
/// assert_eq!(&*req.recv()?, b"pong");
/// # Ok::<(), nano_transport::Error>(())
/// ```
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<Inner>,
    _close: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("protocol", &self.inner.protocol)
            .finish()
    }
}

fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    h.finish() as u32
}

impl Socket {
    /// Opens a socket and starts its I/O thread.
    pub fn new(protocol: Protocol) -> Result<Self, Error> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), io::WAKER)?;
        let io_registry = poll.registry().try_clone()?;
        let direct_poll = mio::Poll::new()?;
        let direct_registry = direct_poll.registry().try_clone()?;
        let direct_waker = mio::Waker::new(direct_poll.registry(), io::WAKER)?;
        let opts = Options {
            send_timeout: None,
            recv_timeout: None,
            recv_max_size: DEFAULT_RECV_MAX_SIZE as u64,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::ZERO,
            handshake_timeout: Duration::from_secs(10),
            recv_buffer: if protocol == Protocol::Sub0 {
                128
            } else {
                1024
            },
            max_ttl: MAX_TTL_DEFAULT,
            survey_time: Duration::from_secs(1),
            poly: false,
            local_peers: LocalPeers::SameUser,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let core = Core {
            opts,
            closed: false,
            pipes: BTreeMap::new(),
            rr: RoundRobin::default(),
            recv_q: RecvQueue::default(),
            replies: HashMap::new(),
            req: ReqState::new(random_u32(), Some(Duration::from_secs(60))),
            survey: SurveyorState::new(random_u32()),
            topics: TopicFilter::default(),
            saved: HashMap::new(),
            commands: Vec::new(),
            recv_wakers: Vec::new(),
            send_wakers: Vec::new(),
            events: Vec::new(),
            dialers: HashMap::new(),
            dial_errors: HashMap::new(),
            next_dialer: 1,
            next_ctx: 1,
            reads_paused: false,
            last_send: None,
            recv_waiting: 0,
        };
        let send_buffer = if protocol == Protocol::Pub0 { 16 } else { 128 };
        let inner = Arc::new(Inner {
            protocol,
            core: Mutex::new(core),
            recv_cv: Condvar::new(),
            send_cv: Condvar::new(),
            waker,
            io_registry,
            direct_poll: Mutex::new((direct_poll, mio::Events::with_capacity(8))),
            direct_registry,
            direct_waker,
            direct_waiting: AtomicBool::new(false),
            flush_requested: AtomicBool::new(false),
            send_waiting: AtomicUsize::new(0),
            send_wakers_waiting: AtomicBool::new(false),
            send_buffer: AtomicUsize::new(send_buffer),
            io_deadline: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            thread: Mutex::new(None),
        });
        let handle = io::spawn(Arc::clone(&inner), poll)?;
        *inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(Self {
            _close: Arc::new(CloseOnDrop(Arc::clone(&inner))),
            inner,
        })
    }

    /// The socket's protocol.
    pub fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    /// Binds and listens on `url` (`tcp://127.0.0.1:0`, `ipc:///path`, `abstract://name`).
    ///
    /// A stale ipc socket file (nobody accepting on it) is removed and rebound; a live one (or
    /// a file that is not a socket) gives [`Error::AddrInUse`]. The file is created with mode
    /// 0600 and removed again when the socket closes. Local listeners admit only our own user
    /// unless [`set_local_peers`](Self::set_local_peers) says otherwise.
    pub fn listen(&self, url: &str) -> Result<Listener, Error> {
        let addr = Address::parse(url)?;
        let (source, local) = crate::endpoint::bind(&addr, url, &self.inner)?;
        let mut core = self.inner.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        core.commands.push(Command::Listen(source));
        drop(core);
        self.inner.wake_io();
        Ok(Listener { url: local })
    }

    /// Dials `url` in the background, redialing after failures and disconnects (see
    /// [`set_reconnect`](Self::set_reconnect)). Returns as soon as the URL is parsed.
    pub fn dial(&self, url: &str) -> Result<(), Error> {
        self.start_dial(url).map(|_| ())
    }

    /// Dials `url` and waits until a pipe through it completed its handshake. Fails with
    /// [`Error::ProtocolMismatch`] as soon as the peer's connection header is refused (not an SP
    /// peer, or not our partner protocol), or [`Error::Timeout`] when `timeout` passes; in both
    /// cases the dialer keeps trying in the background, as NNG's does.
    pub fn dial_blocking(&self, url: &str, timeout: Duration) -> Result<(), Error> {
        let id = self.start_dial(url)?;
        let deadline = Instant::now().checked_add(timeout);
        let mut core = self.inner.lock();
        loop {
            if core.closed {
                return Err(Error::Closed);
            }
            if core.dialers.get(&id).is_some_and(|&n| n > 0) {
                return Ok(());
            }
            if let Some(refused) = core.dial_errors.remove(&id) {
                return Err(Error::ProtocolMismatch(refused));
            }
            core = wait(&self.inner.send_cv, core, deadline)?;
        }
    }

    fn start_dial(&self, url: &str) -> Result<u32, Error> {
        let addr = Address::parse(url)?;
        let mut core = self.inner.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        if let Address::Tls { .. } = addr {
            #[cfg(feature = "tls")]
            if !core.opts.tls.as_ref().is_some_and(|t| t.has_dialer()) {
                return Err(Error::State(
                    "tls+tcp:// dialers need a TLS dialer configuration (Socket::set_tls)",
                ));
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::TlsDisabled {
                url: url.to_owned(),
            });
        }
        let id = core.next_dialer;
        core.next_dialer += 1;
        core.dialers.insert(id, 0);
        core.commands.push(Command::Dial(id, addr));
        drop(core);
        self.inner.wake_io();
        Ok(id)
    }

    /// Sends a message, blocking while no suitable pipe is ready (up to the send timeout).
    /// PUB, BUS and SURVEYOR never block: peers whose queue is full miss the message.
    pub fn send(&self, body: &[u8]) -> Result<(), Error> {
        self.send_parts(&[body])
    }

    /// Sends one message made of several pieces (say a header and a payload), as
    /// [`send`](Self::send) does, without assembling them: the frame goes out in one vectored
    /// write straight from these slices.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nano_transport::{Protocol, Socket};
    /// let pull = Socket::new(Protocol::Pull0)?;
    /// let url = pull.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
    /// let push = Socket::new(Protocol::Push0)?;
    /// push.dial_blocking(&url, Duration::from_secs(5))?;
    /// push.send_parts(&[b"head:", b"payload"])?;
    /// assert_eq!(&*pull.recv()?, b"head:payload");
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn send_parts(&self, parts: &[&[u8]]) -> Result<(), Error> {
        self.send_inner(0, Target::Route, Body::Parts(parts), Wait::Timeout)
    }

    /// Sends an owned message as [`send`](Self::send) does; when the kernel does not take it at
    /// once (a non-blocking, timed-out or broadcast send), the queue keeps this very buffer
    /// instead of a copy of its unwritten part, and a broadcast shares it among all pipes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nano_transport::{Protocol, Socket};
    /// let pull = Socket::new(Protocol::Pull0)?;
    /// let url = pull.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
    /// let push = Socket::new(Protocol::Push0)?;
    /// push.dial_blocking(&url, Duration::from_secs(5))?;
    /// push.send_vec(vec![7u8; 1 << 20])?;
    /// assert_eq!(pull.recv()?.len(), 1 << 20);
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn send_vec(&self, body: Vec<u8>) -> Result<(), Error> {
        self.send_shared_inner(Target::Route, Arc::new(body), Wait::Timeout)
    }

    /// Like [`send_vec`](Self::send_vec), for a body that is already shared (say a region
    /// several messages refer to): it is referenced by the queues, never copied.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use nano_transport::{Protocol, Socket, conn::SharedBody};
    /// let publisher = Socket::new(Protocol::Pub0)?;
    /// let url = publisher.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
    /// let sub = Socket::new(Protocol::Sub0)?;
    /// sub.subscribe(b"")?;
    /// sub.set_recv_max_size(32 << 20); // over the 1 MiB default
    /// sub.dial_blocking(&url, Duration::from_secs(5))?;
    /// # while publisher.pipes().is_empty() { std::thread::sleep(Duration::from_millis(1)); }
    /// let body: SharedBody = Arc::new(vec![1u8; 32 << 20]);
    /// publisher.send_shared(Arc::clone(&body))?;
    /// assert_eq!(sub.recv()?.len(), 32 << 20);
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn send_shared(&self, body: SharedBody) -> Result<(), Error> {
        self.send_shared_inner(Target::Route, body, Wait::Timeout)
    }

    /// [`send_vec`](Self::send_vec) without blocking: [`Error::WouldBlock`] when no pipe is
    /// ready. What the kernel does not take at once waits in the pipe's queue without a copy.
    pub fn try_send_vec(&self, body: Vec<u8>) -> Result<(), Error> {
        self.send_shared_inner(Target::Route, Arc::new(body), Wait::Never)
    }

    /// [`send_shared`](Self::send_shared) without blocking: [`Error::WouldBlock`] when no pipe
    /// is ready.
    pub fn try_send_shared(&self, body: SharedBody) -> Result<(), Error> {
        self.send_shared_inner(Target::Route, body, Wait::Never)
    }

    fn send_shared_inner(&self, target: Target, body: SharedBody, wait: Wait) -> Result<(), Error> {
        self.send_inner(0, target, Body::Shared(&body), wait)
    }

    /// Sends without blocking; [`Error::WouldBlock`] when no pipe is ready.
    pub fn try_send(&self, body: &[u8]) -> Result<(), Error> {
        self.send_inner(0, Target::Route, Body::Parts(&[body]), Wait::Never)
    }

    /// PAIR1 poly mode: sends to one pipe (e.g. [`Message::pipe`] of a received message).
    pub fn send_to(&self, pipe: PipeId, body: &[u8]) -> Result<(), Error> {
        self.send_parts_to(pipe, &[body])
    }

    /// PAIR1 poly mode: sends one message made of several pieces to one pipe, in one vectored
    /// write from these slices (see [`send_parts`](Self::send_parts)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use nano_transport::{Protocol, Socket};
    /// let hub = Socket::new(Protocol::Pair1)?;
    /// hub.set_pair1_poly(true);
    /// let url = hub.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
    /// let peer = Socket::new(Protocol::Pair1)?;
    /// peer.dial_blocking(&url, Duration::from_secs(5))?;
    /// peer.send(b"hello")?;
    /// let m = hub.recv()?;
    /// hub.send_parts_to(m.pipe(), &[b"re: ", &m])?;
    /// assert_eq!(&*peer.recv()?, b"re: hello");
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn send_parts_to(&self, pipe: PipeId, parts: &[&[u8]]) -> Result<(), Error> {
        self.send_inner(0, Target::Pipe(pipe), Body::Parts(parts), Wait::Timeout)
    }

    /// PAIR1 poly mode: sends an owned message to one pipe; the queue keeps it without a copy
    /// (see [`send_vec`](Self::send_vec)).
    pub fn send_vec_to(&self, pipe: PipeId, body: Vec<u8>) -> Result<(), Error> {
        self.send_shared_inner(Target::Pipe(pipe), Arc::new(body), Wait::Timeout)
    }

    /// Receives a message, blocking up to the receive timeout.
    pub fn recv(&self) -> Result<Message, Error> {
        self.recv_inner(0, Wait::Timeout)
    }

    /// Receives without blocking; [`Error::WouldBlock`] when nothing is queued.
    pub fn try_recv(&self) -> Result<Message, Error> {
        self.recv_inner(0, Wait::Never)
    }

    /// Receives, blocking at most `timeout` (whatever the socket's receive timeout).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        self.recv_inner(0, Wait::until(Some(timeout)))
    }

    /// A future that resolves to the next message; works under any executor (it registers the
    /// task's `Waker`). The socket's receive timeout does not apply; use the executor's timers.
    pub fn recv_async(&self) -> RecvFuture<'_> {
        RecvFuture {
            inner: &self.inner,
            ctx: 0,
        }
    }

    /// A future that resolves once the message has been handed to a pipe.
    pub fn send_async<'a>(&'a self, body: &'a [u8]) -> SendFuture<'a> {
        SendFuture {
            socket: self,
            ctx: 0,
            body,
        }
    }

    /// Sets the send timeout (`None`: wait forever, the default).
    pub fn set_send_timeout(&self, timeout: Option<Duration>) {
        self.inner.lock().opts.send_timeout = timeout;
    }

    /// Sets the receive timeout (`None`: wait forever, the default).
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) {
        self.inner.lock().opts.recv_timeout = timeout;
    }

    /// Sets the largest message accepted from peers for pipes connected from now on, protocol
    /// header included (as NNG's `NNG_OPT_RECVMAXSZ`); a peer that announces more is
    /// disconnected as soon as its frame's length prefix arrives, before anything is allocated
    /// for it. The default is [`DEFAULT_RECV_MAX_SIZE`] (1 MiB, as in NNG). 0 means no limit
    /// but the wire's 2^60-1 (memory then still follows the bytes actually received): only for
    /// peers you trust.
    ///
    /// ```
    /// use nano_transport::{Protocol, Socket};
    /// let pull = Socket::new(Protocol::Pull0)?;
    /// pull.set_recv_max_size(64 << 20); // this socket expects messages of up to 64 MiB
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn set_recv_max_size(&self, bytes: usize) {
        self.inner.lock().opts.recv_max_size = bytes as u64;
    }

    /// Sets which local users `ipc://` and `abstract://` listeners started from now on admit.
    ///
    /// The default, [`LocalPeers::SameUser`], closes a connection from a process of another
    /// user right after accepting it (asked of the kernel with `SO_PEERCRED`), before our SP
    /// header is sent or any of its bytes is read, and logs it with `tracing::warn!`: an
    /// abstract socket has no file permissions, so without this any user of the machine could
    /// connect. [`LocalPeers::AnyUser`] is for a service deliberately offered to other users
    /// (which then authenticates them itself). `ipc://` socket files are created with mode 0600
    /// either way. TCP listeners are not affected.
    ///
    /// ```
    /// use nano_transport::{LocalPeers, Protocol, Socket};
    /// let rep = Socket::new(Protocol::Rep0)?;
    /// rep.set_local_peers(LocalPeers::AnyUser);
    /// rep.listen(&format!("abstract://doc-shared-{}", std::process::id()))?;
    /// # Ok::<(), nano_transport::Error>(())
    /// ```
    pub fn set_local_peers(&self, peers: LocalPeers) {
        self.inner.lock().opts.local_peers = peers;
    }

    /// Sets the TLS configuration used by `tls+tcp://` listeners and dialers started afterwards
    /// (feature `tls`); see [`crate::tls`].
    #[cfg(feature = "tls")]
    pub fn set_tls(&self, config: crate::tls::TlsConfig) {
        self.inner.lock().opts.tls = Some(config);
    }

    /// Closes one pipe (e.g. a peer that failed an application-level check); the socket keeps
    /// its other pipes, and a dialer on our side redials as after any disconnect.
    ///
    /// ```
    /// use nano_transport::{PipeId, Protocol, Socket, Error};
    /// let s = Socket::new(Protocol::Pair1)?;
    /// assert!(matches!(s.close_pipe(PipeId(7)), Err(Error::NoSuchPipe(_))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn close_pipe(&self, pipe: PipeId) -> Result<(), Error> {
        let core = self.inner.lock();
        let slot = core.pipes.get(&pipe).ok_or(Error::NoSuchPipe(pipe))?;
        // The I/O thread closes pipes whose sender failed when it next handles commands.
        slot.sender.mark_failed();
        drop(core);
        self.inner.wake_io();
        Ok(())
    }

    /// Sets how long a new connection may take to exchange SP headers (default 10 s).
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        self.inner.lock().opts.handshake_timeout = timeout;
    }

    /// Sets the redial interval: `min` after a failure, doubling up to `max` if `max > min`
    /// (default 1 s, no backoff, as NNG).
    pub fn set_reconnect(&self, min: Duration, max: Duration) {
        let mut core = self.inner.lock();
        core.opts.reconnect_min = min;
        core.opts.reconnect_max = max;
    }

    /// Sets how many received messages may wait in the socket before the I/O thread stops
    /// reading (back-pressure to the peers); SUB instead drops the oldest, and SURVEYOR drops
    /// responses beyond it (as NNG does). Queued bytes are bounded too, at 4 MiB. Defaults:
    /// 1024, SUB 128.
    pub fn set_recv_buffer(&self, messages: usize) {
        self.inner.lock().opts.recv_buffer = messages.max(1);
    }

    /// Sets how many frames a pipe may have queued before it stops counting as ready (default
    /// 128; PUB 16).
    pub fn set_send_buffer(&self, frames: usize) {
        self.inner
            .send_buffer
            .store(frames.max(1), Ordering::Relaxed);
    }

    /// Sets the maximum hop count (REP, RESPONDENT, PAIR1; default 8, clamped to 1..=15).
    pub fn set_max_ttl(&self, ttl: u8) {
        self.inner.lock().opts.max_ttl = ttl.clamp(1, 15);
    }

    /// REQ: sets the resend interval (`None`: never resend on a timer; default 60 s).
    pub fn set_resend_time(&self, ivl: Option<Duration>) {
        self.inner.lock().req.set_resend_interval(ivl);
    }

    /// SURVEYOR: sets how long each survey accepts responses (default 1 s).
    pub fn set_survey_time(&self, window: Duration) {
        self.inner.lock().opts.survey_time = window;
    }

    /// PAIR1: polyamorous mode (many peers, [`send_to`](Self::send_to) a chosen pipe). Set it
    /// before listening or dialing.
    pub fn set_pair1_poly(&self, on: bool) {
        self.inner.lock().opts.poly = on;
    }

    /// SUB: receive messages starting with `prefix` (the empty prefix matches everything).
    pub fn subscribe(&self, prefix: &[u8]) -> Result<(), Error> {
        self.require(Protocol::Sub0)?;
        self.inner.lock().topics.subscribe(prefix);
        Ok(())
    }

    /// SUB: stop receiving messages for `prefix`.
    pub fn unsubscribe(&self, prefix: &[u8]) -> Result<(), Error> {
        self.require(Protocol::Sub0)?;
        self.inner.lock().topics.unsubscribe(prefix);
        Ok(())
    }

    /// A stream of pipe additions and removals from now on.
    pub fn pipe_events(&self) -> mpsc::Receiver<PipeEvent> {
        let (tx, rx) = mpsc::channel();
        self.inner.lock().events.push(tx);
        rx
    }

    /// The pipes currently connected (handshake done).
    pub fn pipes(&self) -> Vec<PipeId> {
        self.inner.lock().pipes.keys().copied().collect()
    }

    /// A context (REQ, REP, SURVEYOR, RESPONDENT): its own request/reply state, so several
    /// requests can be in flight on one socket.
    pub fn context(&self) -> Result<Context, Error> {
        if !matches!(
            self.inner.protocol,
            Protocol::Req0 | Protocol::Rep0 | Protocol::Respondent0
        ) {
            return Err(Error::State("contexts need req, rep or respondent"));
        }
        let mut core = self.inner.lock();
        let id = core.next_ctx;
        core.next_ctx += 1;
        Ok(Context {
            socket: self.clone(),
            id,
        })
    }

    /// Closes the socket: every pipe, listener and dialer, and wakes blocked callers with
    /// [`Error::Closed`]. Idempotent. Messages still queued on a pipe are written first, as
    /// long as its peer takes them within the send timeout (1 s without one).
    pub fn close(&self) {
        close(&self.inner);
    }

    fn require(&self, p: Protocol) -> Result<(), Error> {
        if self.inner.protocol == p {
            Ok(())
        } else {
            Err(Error::State("operation not supported by this protocol"))
        }
    }

    pub(crate) fn send_inner(
        &self,
        ctx: u32,
        target: Target,
        body: Body<'_>,
        wait_for: Wait,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let mut core = inner.lock();
        let wait_for = wait_for.resolve(core.opts.send_timeout);
        let mut waiting: Option<SendWaiter<'_>> = None;
        let plan = loop {
            if core.closed {
                return Err(Error::Closed);
            }
            if let Some(plan) = plan_send(inner, &mut core, ctx, target, body)? {
                break plan;
            }
            let Wait::Until(deadline) = wait_for else {
                return Err(Error::WouldBlock);
            };
            if waiting.is_none() {
                // Announce the wait, then look once more: a queue drained in between is seen
                // either by that look or by the flusher, which then notifies.
                waiting = Some(SendWaiter::announce(&inner.send_waiting));
                continue;
            }
            core = wait(&inner.send_cv, core, deadline)?;
        };
        drop(waiting);
        drop(core);
        let deadline = match wait_for {
            Wait::Until(d) => Some(d),
            // (`Timeout` was resolved into `Until` above.)
            Wait::Never | Wait::Timeout => None,
        };
        write_plan(inner, &plan, body, deadline);
        Ok(())
    }

    pub(crate) fn recv_inner(&self, ctx: u32, wait_for: Wait) -> Result<Message, Error> {
        let inner = &self.inner;
        let mut core = inner.lock();
        let wait_for = wait_for.resolve(core.opts.recv_timeout);
        loop {
            let mut deadline = match wait_for {
                Wait::Until(d) => d,
                // (`Timeout` was resolved into `Until` above.)
                Wait::Never | Wait::Timeout => None,
            };
            if let Some(m) = take_message(inner, &mut core, ctx, &mut deadline)? {
                return Ok(m);
            }
            if matches!(wait_for, Wait::Never) {
                return Err(Error::WouldBlock);
            }
            if let Some(direct) = DirectRead::begin(inner, &core) {
                drop(core);
                if let Some(result) = direct.run(inner, ctx, deadline) {
                    return result;
                }
                core = inner.lock();
                if let Some(m) = take_message(inner, &mut core, ctx, &mut deadline)? {
                    return Ok(m);
                }
            }
            inner.expire_leases(&core);
            core.recv_waiting += 1;
            let waited = wait(&inner.recv_cv, core, deadline);
            core = match waited {
                Ok(mut c) => {
                    c.recv_waiting -= 1;
                    c
                }
                Err(e) => {
                    inner.lock().recv_waiting -= 1;
                    return Err(e);
                }
            };
        }
    }
}

fn close(inner: &Arc<Inner>) {
    let mut core = inner.lock();
    if !core.closed {
        core.closed = true;
        core.commands.push(Command::Shutdown);
        core.events.clear();
        inner.notify_recv(&mut core);
        inner.notify_send(&mut core);
    }
    drop(core);
    inner.wake_io();
    let _ = inner.direct_waker.wake();
    let handle = inner
        .thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(h) = handle.filter(|h| h.thread().id() != thread::current().id()) {
        let _ = h.join();
    }
}

/// Counts a blocking sender as waiting while it lives.
struct SendWaiter<'a>(&'a AtomicUsize);

impl<'a> SendWaiter<'a> {
    fn announce(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for SendWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Socket>();
        shareable::<Context>();
        shareable::<Message>();
    }
}
