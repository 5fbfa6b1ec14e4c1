//! The state a socket's user threads and its I/O thread share: [`Inner`] (the lock, condvars,
//! wakers and counters) around [`Core`] (pipes, queues, protocol state), each pipe's
//! [`PipeSlot`], and the [`Command`]s and [`Interests`] through which the two sides coordinate.
//!
//! It lives apart from both `socket` (the user API) and `io` (the I/O thread) because both read
//! and write it: with it here, each of them depends on this module instead of on the other.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::conn::{ConnSender, Connection};
use crate::endpoint::ListenSource;
use crate::peer::LocalPeers;
use crate::proto::{HandshakeError, ReqState, RoundRobin, SurveyorState, TopicFilter};
use crate::url::Address;
use crate::{Message, PipeId, Protocol};

/// A connection coming or going, as reported by
/// [`Socket::pipe_events`](crate::Socket::pipe_events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEvent {
    /// A pipe completed its handshake and is usable.
    Added(PipeId),
    /// A pipe was closed (by either side, or because it broke a protocol rule).
    Removed(PipeId),
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
    pub(crate) interests: Arc<Mutex<Interests>>,
}

/// Received messages waiting for a receiver, with their total size (the I/O thread stops
/// reading ahead at [`crate::deliver::RECV_QUEUE_BYTES`]).
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
    pub(crate) rr: RoundRobin,
    pub(crate) recv_q: RecvQueue,
    /// REQ: the reply of each context that has arrived and not been taken.
    pub(crate) replies: HashMap<u32, Message>,
    pub(crate) req: ReqState,
    pub(crate) survey: SurveyorState,
    pub(crate) topics: TopicFilter,
    /// REP/RESPONDENT: where each context's pending reply goes and its backtrace.
    pub(crate) saved: HashMap<u32, (PipeId, Vec<u8>)>,
    pub(crate) commands: Vec<Command>,
    pub(crate) recv_wakers: Vec<Waker>,
    pub(crate) send_wakers: Vec<Waker>,
    pub(crate) events: Vec<mpsc::Sender<PipeEvent>>,
    /// Live pipes per dialer id, for `dial_blocking`.
    pub(crate) dialers: HashMap<u32, usize>,
    /// The last connection header a dialer's peer sent that was refused, for `dial_blocking`.
    pub(crate) dial_errors: HashMap<u32, HandshakeError>,
    pub(crate) next_dialer: u32,
    pub(crate) next_ctx: u32,
    /// Receivers blocked on `recv_cv`.
    pub(crate) recv_waiting: usize,
    /// The I/O thread stopped reading some pipe because `recv_q` was full.
    pub(crate) reads_paused: bool,
    /// When the last send was planned, unless a message was received since (see
    /// `route::STREAM_GAP`).
    pub(crate) last_send: Option<Instant>,
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
    pub(crate) direct_poll: Mutex<(mio::Poll, mio::Events)>,
    pub(crate) direct_registry: mio::Registry,
    pub(crate) direct_waker: mio::Waker,
    /// A direct reader is (about to be) blocked on `direct_poll`.
    pub(crate) direct_waiting: AtomicBool,
    /// Set when a sender left frames queued and woke the I/O thread to flush them; further
    /// senders then skip the (syscall-priced) wake until the I/O thread has flushed.
    pub(crate) flush_requested: AtomicBool,
    /// Blocking senders waiting for a ready pipe (see `SendWaiter` in `socket`).
    pub(crate) send_waiting: AtomicUsize,
    /// Async senders registered a waker.
    pub(crate) send_wakers_waiting: AtomicBool,
    /// Frames a pipe may have queued before it stops counting as ready.
    pub(crate) send_buffer: AtomicUsize,
    /// When the I/O thread's current poll times out, in nanoseconds after `epoch`
    /// (`u64::MAX`: no timeout). A user thread arming an earlier timer wakes it.
    pub(crate) io_deadline: AtomicU64,
    pub(crate) epoch: Instant,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
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

    /// Ends every direct-read lease at once (see [`DirectRead`](crate::direct::DirectRead)), so
    /// the I/O thread resumes reading now: for receivers that wait for it (async, or several
    /// pipes).
    pub(crate) fn expire_leases(&self, core: &Core) {
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

/// What the I/O thread's poll watches on one pipe. Reading is paused while a receiver reads the
/// pipe directly, and writability is watched only while frames are queued: a writable-edge per
/// message the peer consumes would otherwise wake the I/O thread for nothing.
pub(crate) struct Interests {
    pub(crate) fd: RawFd,
    pub(crate) token: Token,
    /// A receiving thread reads the pipe itself.
    pub(crate) direct: bool,
    /// Frames wait in the send queue.
    pub(crate) write: bool,
    /// A receiving thread is inside a direct read right now.
    pub(crate) reader_active: bool,
    /// While `direct` and no reader is active: when the I/O thread takes reading back.
    pub(crate) lease_end: Option<Instant>,
    pub(crate) current: Option<Interest>,
}

impl Interests {
    /// Brings the registration in line with `direct` and `write`. Registering re-checks the
    /// stream's readiness, so an edge that happened while it was not watched is reported then.
    pub(crate) fn apply(&mut self, registry: &mio::Registry) {
        let want = match (!self.direct, self.write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        if want == self.current {
            return;
        }
        let source = &mut SourceFd(&self.fd);
        let done = match (self.current, want) {
            (None, Some(i)) => registry.register(source, self.token, i),
            (Some(_), Some(i)) => registry.reregister(source, self.token, i),
            (Some(_), None) => registry.deregister(source),
            (None, None) => Ok(()),
        };
        if done.is_ok() {
            self.current = want;
        }
    }
}

/// Requests from user threads to the I/O thread.
pub(crate) enum Command {
    Listen(ListenSource),
    Dial(u32, Address),
    ResumeReads,
    Shutdown,
}
