//! The user-facing socket: options, blocking/non-blocking/async send and receive, contexts.
//!
//! A socket is shared state behind one mutex plus a background I/O thread (`io.rs`) that owns
//! the mio `Poll`, the listeners, the dialers and the pipes' reading halves while nobody else
//! reads them. Sends do not cross to that thread: the calling thread picks the pipe and writes
//! the frame itself (one vectored write from the caller's buffer), and only wakes the I/O thread
//! when the kernel did not take everything. Receives either take what the I/O thread queued (in
//! batches, with one condvar notification and the async `Waker`s per batch) or, for a blocking
//! receive on a socket with a single pipe, read that pipe directly ([`DirectRead`]), which saves
//! a thread hand-off per message.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::task::{Context as TaskContext, Poll as TaskPoll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::{ConnSender, Connection, ReadProgress, SendStatus, SharedBody};
use crate::io::{self, Command};
use crate::peer::LocalPeers;
use crate::proto::{
    HandshakeError, MAX_FRAME_LEN, MAX_TTL_DEFAULT, ReqState, RoundRobin, SurveyorState,
    TopicFilter, broadcast_targets,
};
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

/// A connection coming or going, as reported by [`Socket::pipe_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEvent {
    /// A pipe completed its handshake and is usable.
    Added(PipeId),
    /// A pipe was closed (by either side, or because it broke a protocol rule).
    Removed(PipeId),
}

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

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) send_timeout: Option<Duration>,
    pub(crate) recv_timeout: Option<Duration>,
    pub(crate) recv_max_size: u64,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) recv_buffer: usize,
    pub(crate) max_ttl: u8,
    pub(crate) survey_time: Duration,
    pub(crate) poly: bool,
    /// Who `ipc://` and `abstract://` listeners started from now on admit.
    pub(crate) local_peers: LocalPeers,
    /// The configuration `tls+tcp://` listeners and dialers use.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
}

pub(crate) struct PipeSlot {
    pub(crate) sender: ConnSender,
    pub(crate) reader: Arc<Mutex<Connection>>,
    pub(crate) interests: Arc<Mutex<io::Interests>>,
}

/// Received messages waiting for a receiver, with their total size (the I/O thread stops
/// reading ahead at [`io::RECV_QUEUE_BYTES`]).
#[derive(Default)]
pub(crate) struct RecvQueue {
    q: VecDeque<Message>,
    bytes: usize,
}

impl RecvQueue {
    pub(crate) fn push_back(&mut self, m: Message) {
        self.bytes += m.wire_len();
        self.q.push_back(m);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Message> {
        let m = self.q.pop_front()?;
        self.bytes -= m.wire_len();
        Some(m)
    }

    pub(crate) fn clear(&mut self) {
        self.q.clear();
        self.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Everything the user threads and the I/O thread share, under one lock.
pub(crate) struct Core {
    pub(crate) opts: Options,
    pub(crate) closed: bool,
    pub(crate) pipes: BTreeMap<PipeId, PipeSlot>,
    rr: RoundRobin,
    pub(crate) recv_q: RecvQueue,
    /// REQ: the reply of each context that has arrived and not been taken.
    pub(crate) replies: HashMap<u32, Message>,
    pub(crate) req: ReqState,
    pub(crate) survey: SurveyorState,
    pub(crate) topics: TopicFilter,
    /// REP/RESPONDENT: where each context's pending reply goes and its backtrace.
    saved: HashMap<u32, (PipeId, Vec<u8>)>,
    pub(crate) commands: Vec<Command>,
    pub(crate) recv_wakers: Vec<Waker>,
    pub(crate) send_wakers: Vec<Waker>,
    pub(crate) events: Vec<mpsc::Sender<PipeEvent>>,
    /// Live pipes per dialer id, for `dial_blocking`.
    pub(crate) dialers: HashMap<u32, usize>,
    /// The last connection header a dialer's peer sent that was refused, for `dial_blocking`.
    pub(crate) dial_errors: HashMap<u32, HandshakeError>,
    next_dialer: u32,
    next_ctx: u32,
    /// Receivers blocked on `recv_cv`.
    pub(crate) recv_waiting: usize,
    /// The I/O thread stopped reading some pipe because `recv_q` was full.
    pub(crate) reads_paused: bool,
}

pub(crate) struct Inner {
    pub(crate) protocol: Protocol,
    pub(crate) core: Mutex<Core>,
    /// Signalled when messages arrive, a survey ends or the socket closes.
    pub(crate) recv_cv: Condvar,
    /// Signalled when a pipe is added, removed or drains its queue, or the socket closes.
    pub(crate) send_cv: Condvar,
    pub(crate) waker: mio::Waker,
    /// The I/O thread's registry, to pause its reading of a pipe a receiver reads directly.
    pub(crate) io_registry: mio::Registry,
    /// A second poll over the same pipes, for a receiving thread that reads directly.
    direct_poll: Mutex<(mio::Poll, mio::Events)>,
    pub(crate) direct_registry: mio::Registry,
    direct_waker: mio::Waker,
    /// A direct reader is (about to be) blocked on `direct_poll`.
    direct_waiting: AtomicBool,
    /// Set when a sender left frames queued and woke the I/O thread to flush them; further
    /// senders then skip the (syscall-priced) wake until the I/O thread has flushed.
    pub(crate) flush_requested: AtomicBool,
    /// Blocking senders waiting for a ready pipe (see [`SendWaiter`]).
    pub(crate) send_waiting: AtomicUsize,
    /// Async senders registered a waker.
    send_wakers_waiting: AtomicBool,
    /// Frames a pipe may have queued before it stops counting as ready.
    pub(crate) send_buffer: AtomicUsize,
    /// When the I/O thread's current poll times out, in nanoseconds after `epoch`
    /// (`u64::MAX`: no timeout). A user thread arming an earlier timer wakes it.
    pub(crate) io_deadline: AtomicU64,
    pub(crate) epoch: Instant,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake_io(&self) {
        // A failed wake means the I/O thread is gone, i.e. the socket is closing.
        let _ = self.waker.wake();
    }

    pub(crate) fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Wakes the I/O thread if `t` is earlier than the timeout it is sleeping on.
    pub(crate) fn timer_armed(&self, t: Instant) {
        if self.nanos_since_epoch(t) < self.io_deadline.load(Ordering::Acquire) {
            self.wake_io();
        }
    }

    /// Ends every direct-read lease at once (see [`DirectRead`]), so the I/O thread resumes
    /// reading now: for receivers that wait for it (async, or several pipes).
    fn expire_leases(&self, core: &Core) {
        let mut expired = false;
        for slot in core.pipes.values() {
            let mut i = slot.interests.lock().unwrap_or_else(|e| e.into_inner());
            if i.direct && !i.reader_active && i.lease_end.is_some() {
                i.lease_end = None;
                expired = true;
            }
        }
        if expired {
            self.wake_io();
        }
    }

    /// Wakes a receiver blocked reading a pipe directly, so it looks at the queue and the pipe
    /// set again. Call with the core locked.
    pub(crate) fn wake_direct(&self) {
        if self.direct_waiting.load(Ordering::SeqCst) {
            let _ = self.direct_waker.wake();
        }
    }

    pub(crate) fn notify_recv(&self, core: &mut Core) {
        self.wake_direct();
        // A notification is a syscall even with nobody waiting; most receives never wait here
        // (they read directly or find the queue full).
        if core.recv_waiting > 0 {
            self.recv_cv.notify_all();
        }
        for w in core.recv_wakers.drain(..) {
            w.wake();
        }
    }

    pub(crate) fn notify_send(&self, core: &mut Core) {
        self.send_cv.notify_all();
        self.send_wakers_waiting.store(false, Ordering::SeqCst);
        for w in core.send_wakers.drain(..) {
            w.wake();
        }
    }

    /// Whether a sender (blocking or async) may be waiting for a pipe to become ready.
    pub(crate) fn senders_waiting(&self) -> bool {
        self.send_waiting.load(Ordering::SeqCst) > 0
            || self.send_wakers_waiting.load(Ordering::SeqCst)
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
    inner: Arc<Inner>,
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

/// What a send carries: borrowed pieces (written straight from the caller's buffers, copied
/// only if they must wait in a queue) or an owned body the queues keep without a copy.
#[derive(Clone, Copy)]
enum Body<'a> {
    Parts(&'a [&'a [u8]]),
    Shared(&'a SharedBody),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Parts(p) => p.iter().map(|p| p.len()).sum(),
            Self::Shared(b) => (***b).as_ref().len(),
        }
    }

    /// The whole body in one buffer, for a REQ request kept for resends.
    fn to_vec(self) -> Vec<u8> {
        match self {
            Self::Parts(p) => p.concat(),
            Self::Shared(b) => (**b).as_ref().to_vec(),
        }
    }
}

/// Where a send goes.
#[derive(Clone, Copy)]
enum Target {
    /// The protocol decides.
    Route,
    /// PAIR1 poly: this pipe.
    Pipe(PipeId),
}

enum Header {
    None,
    Word([u8; 4]),
    Bytes(Vec<u8>),
}

impl Header {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::Word(w) => w,
            Self::Bytes(b) => b,
        }
    }
}

struct Plan {
    header: Header,
    targets: Vec<ConnSender>,
    /// A timer this send armed (REQ resend), which the I/O thread must know about.
    timer: Option<Instant>,
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
        let timeout = self.inner.lock().opts.send_timeout;
        self.send_inner(0, Target::Route, Body::Parts(parts), Wait::until(timeout))
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
        let timeout = self.inner.lock().opts.send_timeout;
        self.send_shared_inner(Target::Route, Arc::new(body), Wait::until(timeout))
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
        let timeout = self.inner.lock().opts.send_timeout;
        self.send_shared_inner(Target::Route, body, Wait::until(timeout))
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
        let timeout = self.inner.lock().opts.send_timeout;
        self.send_inner(
            0,
            Target::Pipe(pipe),
            Body::Parts(parts),
            Wait::until(timeout),
        )
    }

    /// PAIR1 poly mode: sends an owned message to one pipe; the queue keeps it without a copy
    /// (see [`send_vec`](Self::send_vec)).
    pub fn send_vec_to(&self, pipe: PipeId, body: Vec<u8>) -> Result<(), Error> {
        let timeout = self.inner.lock().opts.send_timeout;
        self.send_shared_inner(Target::Pipe(pipe), Arc::new(body), Wait::until(timeout))
    }

    /// Receives a message, blocking up to the receive timeout.
    pub fn recv(&self) -> Result<Message, Error> {
        let timeout = self.inner.lock().opts.recv_timeout;
        self.recv_inner(0, Wait::until(timeout))
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
    /// [`Error::Closed`]. Idempotent.
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

    fn send_inner(
        &self,
        ctx: u32,
        target: Target,
        body: Body<'_>,
        wait_for: Wait,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let mut core = inner.lock();
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
            Wait::Never => None,
            Wait::Until(d) => Some(d),
        };
        write_plan(inner, &plan, body, deadline);
        Ok(())
    }

    fn recv_inner(&self, ctx: u32, wait_for: Wait) -> Result<Message, Error> {
        let inner = &self.inner;
        let mut core = inner.lock();
        loop {
            let mut deadline = match wait_for {
                Wait::Never => None,
                Wait::Until(d) => d,
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

#[derive(Clone, Copy)]
enum Wait {
    Never,
    Until(Option<Instant>),
}

impl Wait {
    fn until(timeout: Option<Duration>) -> Self {
        Self::Until(timeout.and_then(|t| Instant::now().checked_add(t)))
    }
}

/// Waits on `cv` until notified or `deadline`; `Err(Timeout)` once the deadline has passed.
fn wait<'a>(
    cv: &Condvar,
    guard: MutexGuard<'a, Core>,
    deadline: Option<Instant>,
) -> Result<MutexGuard<'a, Core>, Error> {
    match deadline {
        None => Ok(cv.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return Err(Error::Timeout);
            }
            let (g, _) = cv
                .wait_timeout(guard, d - now)
                .unwrap_or_else(|e| e.into_inner());
            Ok(g)
        }
    }
}

fn is_ready(inner: &Inner, slot: &PipeSlot) -> bool {
    slot.sender.queued() < inner.send_buffer.load(Ordering::SeqCst)
}

/// Decides where a message goes and with which header; `Ok(None)` means "wait for a pipe".
fn plan_send(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    target: Target,
    body: Body<'_>,
) -> Result<Option<Plan>, Error> {
    let proto = inner.protocol;
    if !proto.can_send() {
        return Err(Error::State("protocol cannot send"));
    }
    // Room for the largest protocol header (a full REP backtrace) under the wire's limit.
    let limit = MAX_FRAME_LEN - 64;
    let len = body.len() as u64;
    if len > limit {
        return Err(Error::TooLarge { size: len, limit });
    }
    if let Target::Pipe(pipe) = target {
        if proto != Protocol::Pair1 {
            return Err(Error::State("send_to needs a pair1 socket"));
        }
        let slot = core.pipes.get(&pipe).ok_or(Error::NoSuchPipe(pipe))?;
        if !is_ready(inner, slot) {
            return Ok(None);
        }
        let targets = vec![slot.sender.clone()];
        return Ok(Some(Plan {
            header: Header::Word(1u32.to_be_bytes()),
            targets,
            timer: None,
        }));
    }
    match proto {
        Protocol::Pub0 | Protocol::Bus0 | Protocol::Surveyor0 => {
            let header = if proto == Protocol::Surveyor0 {
                let window = core.opts.survey_time;
                let id = core.survey.start(Instant::now(), window);
                core.recv_q.clear();
                Header::Word(id.to_be_bytes())
            } else {
                Header::None
            };
            let ready = core
                .pipes
                .iter()
                .filter(|(_, s)| is_ready(inner, s))
                .map(|(id, _)| *id);
            let targets = broadcast_targets(ready, None)
                .map(|id| core.pipes[&id].sender.clone())
                .collect();
            Ok(Some(Plan {
                header,
                targets,
                timer: None,
            }))
        }
        Protocol::Rep0 | Protocol::Respondent0 => {
            let (pipe, backtrace) = core
                .saved
                .remove(&ctx)
                .ok_or(Error::State("no request to reply to"))?;
            // A reply whose requester has gone is discarded, as NNG does.
            let targets = core
                .pipes
                .get(&pipe)
                .map(|s| s.sender.clone())
                .into_iter()
                .collect();
            Ok(Some(Plan {
                header: Header::Bytes(backtrace),
                targets,
                timer: None,
            }))
        }
        _ => {
            let Some(pipe) = core.rr.pick(
                core.pipes
                    .iter()
                    .filter(|(_, s)| is_ready(inner, s))
                    .map(|(id, _)| *id),
            ) else {
                return Ok(None);
            };
            let mut timer = None;
            let header = match proto {
                Protocol::Pair1 => Header::Word(1u32.to_be_bytes()),
                Protocol::Req0 => {
                    // The request is kept until its reply arrives: a resend (timer or lost pipe)
                    // needs the payload after the caller's buffer is gone. This copy is the
                    // price of REQ's resend guarantee.
                    let id = core.req.start(ctx, body.to_vec());
                    core.req.sent_on(ctx, pipe, Instant::now());
                    core.replies.remove(&ctx);
                    timer = core.req.next_deadline();
                    Header::Word(id.to_be_bytes())
                }
                _ => Header::None,
            };
            let targets = vec![core.pipes[&pipe].sender.clone()];
            Ok(Some(Plan {
                header,
                targets,
                timer,
            }))
        }
    }
}

/// Writes the planned frames from the calling thread; wakes the I/O thread if anything was left
/// queued or a pipe failed (it flushes or closes it).
///
/// A blocking send to one pipe (`wait` is `Some(deadline)`) waits for the stream to drain rather
/// than copy the unwritten part of a large message; broadcasts never wait.
fn write_plan(inner: &Inner, plan: &Plan, body: Body<'_>, wait: Option<Option<Instant>>) {
    let broadcast = matches!(
        inner.protocol,
        Protocol::Pub0 | Protocol::Bus0 | Protocol::Surveyor0
    );
    let mut wake = false;
    for t in &plan.targets {
        let wait = wait.filter(|_| !broadcast);
        let sent = match body {
            Body::Parts(parts) => {
                let mut inline: [&[u8]; 4] = [plan.header.as_slice(), &[], &[], &[]];
                let joined: Vec<&[u8]>;
                let all: &[&[u8]] = if parts.len() < inline.len() {
                    inline[1..=parts.len()].copy_from_slice(parts);
                    &inline[..=parts.len()]
                } else {
                    joined = std::iter::once(plan.header.as_slice())
                        .chain(parts.iter().copied())
                        .collect();
                    &joined
                };
                match wait {
                    Some(deadline) => t.send_blocking(all, deadline),
                    None => t.send(all),
                }
            }
            Body::Shared(b) => t.send_shared(&[plan.header.as_slice()], b, wait),
        };
        match sent {
            Ok(SendStatus::Written) => {}
            Ok(SendStatus::Queued) => wake |= !inner.flush_requested.swap(true, Ordering::AcqRel),
            Err(_) => wake = true,
        }
    }
    if wake {
        inner.wake_io();
    } else if let Some(t) = plan.timer {
        inner.timer_armed(t);
    }
}

/// Takes the next message for `ctx` if one is there; may shorten `deadline` (survey window).
fn take_message(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    deadline: &mut Option<Instant>,
) -> Result<Option<Message>, Error> {
    if core.closed {
        return Err(Error::Closed);
    }
    let proto = inner.protocol;
    if !proto.can_recv() {
        return Err(Error::State("protocol cannot receive"));
    }
    match proto {
        Protocol::Req0 => {
            if let Some(m) = core.replies.remove(&ctx) {
                return Ok(Some(m));
            }
            if !core.req.is_pending(ctx) {
                return Err(Error::State("no request outstanding"));
            }
            Ok(None)
        }
        Protocol::Surveyor0 => {
            if let Some(m) = core.recv_q.pop_front() {
                return Ok(Some(m));
            }
            let end = core
                .survey
                .deadline()
                .ok_or(Error::State("no survey started"))?;
            if Instant::now() >= end {
                return Err(Error::Timeout);
            }
            *deadline = Some(deadline.map_or(end, |d| d.min(end)));
            Ok(None)
        }
        _ => {
            let Some(m) = core.recv_q.pop_front() else {
                return Ok(None);
            };
            if core.reads_paused
                && core.recv_q.len() <= core.opts.recv_buffer / 2
                && core.recv_q.bytes() <= io::RECV_QUEUE_BYTES / 2
            {
                core.reads_paused = false;
                core.commands.push(Command::ResumeReads);
                inner.wake_io();
            }
            if matches!(proto, Protocol::Rep0 | Protocol::Respondent0) {
                core.saved.insert(ctx, (m.pipe(), m.header().to_vec()));
            }
            Ok(Some(m))
        }
    }
}

/// Future of [`Socket::recv_async`] and [`Context::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a> {
    inner: &'a Arc<Inner>,
    ctx: u32,
}

impl std::fmt::Debug for RecvFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture")
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl Future for RecvFuture<'_> {
    type Output = Result<Message, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> TaskPoll<Self::Output> {
        let mut core = self.inner.lock();
        let mut deadline = None;
        match take_message(self.inner, &mut core, self.ctx, &mut deadline) {
            Ok(Some(m)) => TaskPoll::Ready(Ok(m)),
            Ok(None) => {
                core.recv_wakers.push(cx.waker().clone());
                self.inner.expire_leases(&core);
                if deadline.is_some() {
                    // The I/O thread wakes receivers when a survey window closes.
                    drop(core);
                    self.inner.wake_io();
                }
                TaskPoll::Pending
            }
            Err(e) => TaskPoll::Ready(Err(e)),
        }
    }
}

/// Future of [`Socket::send_async`] and [`Context::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a> {
    socket: &'a Socket,
    ctx: u32,
    body: &'a [u8],
}

impl std::fmt::Debug for SendFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("len", &self.body.len())
            .finish()
    }
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> TaskPoll<Self::Output> {
        let inner = &self.socket.inner;
        let mut core = inner.lock();
        if core.closed {
            return TaskPoll::Ready(Err(Error::Closed));
        }
        // Announced before looking, as a blocking sender does (see `send_inner`).
        inner.send_wakers_waiting.store(true, Ordering::SeqCst);
        let body = Body::Parts(std::slice::from_ref(&self.body));
        match plan_send(inner, &mut core, self.ctx, Target::Route, body) {
            Ok(Some(plan)) => {
                drop(core);
                write_plan(inner, &plan, body, None);
                TaskPoll::Ready(Ok(()))
            }
            Ok(None) => {
                core.send_wakers.push(cx.waker().clone());
                TaskPoll::Pending
            }
            Err(e) => TaskPoll::Ready(Err(e)),
        }
    }
}

/// An independent request/reply state on a REQ, REP or RESPONDENT socket: each context has
/// its own outstanding request (REQ) or pending reply (REP), so many can be in flight at once.
///
/// ```
/// use std::time::Duration;
/// use nano_transport::{Protocol, Socket};
/// let rep = Socket::new(Protocol::Rep0)?;
/// let url = rep.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
/// let req = Socket::new(Protocol::Req0)?;
/// req.dial_blocking(&url, Duration::from_secs(5))?;
/// let (a, b) = (req.context()?, req.context()?);
/// a.send(b"a")?;
/// b.send(b"b")?;
/// for _ in 0..2 {
///     let m = rep.recv()?;
///     let answer = [&b"re:"[..], &m].concat();
///     rep.send(&answer)?;
/// }
/// assert_eq!(&*b.recv()?, b"re:b");
/// assert_eq!(&*a.recv()?, b"re:a");
/// # Ok::<(), nano_transport::Error>(())
/// ```
#[derive(Debug)]
pub struct Context {
    socket: Socket,
    id: u32,
}

impl Context {
    /// Sends on this context (REQ: a new request, abandoning this context's previous one;
    /// REP: the reply to the request this context received last).
    pub fn send(&self, body: &[u8]) -> Result<(), Error> {
        let timeout = self.socket.inner.lock().opts.send_timeout;
        self.socket.send_inner(
            self.id,
            Target::Route,
            Body::Parts(&[body]),
            Wait::until(timeout),
        )
    }

    /// Receives on this context, blocking up to the socket's receive timeout.
    pub fn recv(&self) -> Result<Message, Error> {
        let timeout = self.socket.inner.lock().opts.recv_timeout;
        self.socket.recv_inner(self.id, Wait::until(timeout))
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        self.socket.recv_inner(self.id, Wait::until(Some(timeout)))
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<Message, Error> {
        self.socket.recv_inner(self.id, Wait::Never)
    }

    /// A future of the next message on this context.
    pub fn recv_async(&self) -> RecvFuture<'_> {
        RecvFuture {
            inner: &self.socket.inner,
            ctx: self.id,
        }
    }

    /// A future that resolves once the message has been handed to a pipe.
    pub fn send_async<'a>(&'a self, body: &'a [u8]) -> SendFuture<'a> {
        SendFuture {
            socket: &self.socket,
            ctx: self.id,
            body,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let mut core = self.socket.inner.lock();
        core.req.cancel(self.id);
        core.replies.remove(&self.id);
        core.saved.remove(&self.id);
    }
}

/// How many bytes of messages a direct read hands over per batch.
const DIRECT_BATCH_BYTES: usize = 64 * 1024;

/// A blocking receive that reads the socket's only pipe itself instead of waiting for the I/O
/// thread to hand messages over: one thread wake-up per message instead of two, which is most
/// of a request/reply round trip. The I/O thread's read interest in the pipe is paused
/// meanwhile and restored afterwards (re-registering re-checks readiness, so nothing that arrived
/// in between is missed).
struct DirectRead {
    reader: Arc<Mutex<Connection>>,
    interests: Arc<Mutex<io::Interests>>,
    sender: ConnSender,
    pipe: PipeId,
}

impl DirectRead {
    /// Whether the calling receiver may read directly: a protocol without receive-side timers,
    /// exactly one pipe.
    fn begin(inner: &Inner, core: &Core) -> Option<Self> {
        let eligible = !matches!(inner.protocol, Protocol::Surveyor0) && core.pipes.len() == 1;
        if !eligible {
            return None;
        }
        let (&pipe, slot) = core.pipes.iter().next()?;
        Some(Self {
            reader: Arc::clone(&slot.reader),
            interests: Arc::clone(&slot.interests),
            sender: slot.sender.clone(),
            pipe,
        })
    }

    /// Reads until a message for `ctx` arrives, the deadline passes or the socket closes;
    /// `None` means "fall back to waiting for the I/O thread".
    fn run(
        self,
        inner: &Inner,
        ctx: u32,
        deadline: Option<Instant>,
    ) -> Option<Result<Message, Error>> {
        let Ok(mut conn) = self.reader.try_lock() else {
            return None;
        };
        self.pause_io(inner);
        // Waiting first is safe only if every byte in the stream has an event still to come.
        let mut wait_first = !conn.may_have_more();
        let mut batch = Vec::new();
        let outcome = loop {
            if !wait_first {
                let room = io::receive_room(inner.protocol, &inner.lock());
                if room == 0 {
                    break None;
                }
                // Stop once a batch holds DIRECT_BATCH_BYTES: small messages still come many per
                // lock, but large ones are handed over one by one instead of being read ahead
                // into fresh memory, so the allocator reuses the buffer the caller just freed
                // (still in cache, its pages already mapped).
                let mut bytes = 0;
                let progress = conn.on_readable(room, &mut |body| {
                    bytes += body.len();
                    batch.push(body);
                    bytes < DIRECT_BATCH_BYTES
                });
                let yielded = matches!(progress, Ok(ReadProgress::Yielded));
                let mut core = inner.lock();
                let broken =
                    io::deliver(inner, &mut core, self.pipe, &mut batch) || progress.is_err();
                if broken {
                    self.sender.mark_failed();
                    inner.wake_io();
                }
                let mut d = deadline;
                match take_message(inner, &mut core, ctx, &mut d) {
                    Ok(Some(m)) => break Some(Ok(m)),
                    Err(e) => break Some(Err(e)),
                    Ok(None) => {}
                }
                if broken || core.pipes.len() != 1 || !core.pipes.contains_key(&self.pipe) {
                    break None;
                }
                drop(core);
                if yielded {
                    continue;
                }
            }
            wait_first = false;
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => Some(t),
                    _ => break Some(Err(Error::Timeout)),
                },
                None => None,
            };
            {
                // Look once more and announce the wait in one critical section: a message the
                // I/O thread queues after this (say from a pipe added meanwhile) or a new pipe
                // then wakes the wait below.
                let mut core = inner.lock();
                let mut d = deadline;
                match take_message(inner, &mut core, ctx, &mut d) {
                    Ok(Some(m)) => break Some(Ok(m)),
                    Err(e) => break Some(Err(e)),
                    Ok(None) => {}
                }
                if core.pipes.len() != 1 || !core.pipes.contains_key(&self.pipe) {
                    break None;
                }
                inner.direct_waiting.store(true, Ordering::SeqCst);
            }
            let mut guard = inner.direct_poll.lock().unwrap_or_else(|e| e.into_inner());
            let (poll, events) = &mut *guard;
            let polled = poll.poll(events, timeout);
            inner.direct_waiting.store(false, Ordering::SeqCst);
            // Whatever readiness the wait consumed must now be read before waiting again.
            conn.note_readable();
            if events.iter().any(|e| e.is_read_closed()) {
                conn.note_read_closed();
            }
            if polled.is_err_and(|e| e.kind() != std::io::ErrorKind::Interrupted) {
                break None;
            }
        };
        drop(conn);
        self.end(inner);
        outcome
    }

    /// Pauses the I/O thread's reading (if its lease had lapsed).
    fn pause_io(&self, inner: &Inner) {
        let mut i = self.interests.lock().unwrap_or_else(|e| e.into_inner());
        i.reader_active = true;
        i.direct = true;
        i.apply(&inner.io_registry);
    }

    /// Leaves the pipe paused for the I/O thread for a short lease, so a receiver that comes
    /// straight back (a request/reply loop) costs no re-registration; the I/O thread takes the
    /// pipe back when the lease lapses.
    fn end(&self, inner: &Inner) {
        let mut i = self.interests.lock().unwrap_or_else(|e| e.into_inner());
        i.reader_active = false;
        let lease_end = Instant::now() + io::DIRECT_LEASE;
        i.lease_end = Some(lease_end);
        drop(i);
        inner.timer_armed(lease_end);
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
