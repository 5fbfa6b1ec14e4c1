#![doc = include_str!("../README.md")]
//! Scalability Protocols (SP) sockets on mio, wire-compatible with NNG (nanonext, pynng, nngcat).
//!
//! # API summary
//!
//! - [`Socket::new`]`(`[`Protocol`]`)` opens a socket of one protocol: `Pair0`, `Pair1`, `Req0`,
//!   `Rep0`, `Push0`, `Pull0`, `Pub0`, `Sub0`, `Surveyor0`, `Respondent0`, `Bus0`. `Socket` is
//!   `Clone + Send + Sync` (clones share one socket; it closes when the last clone drops or on
//!   [`Socket::close`]).
//! - Endpoints: [`Socket::listen`]`(url) -> `[`Listener`] (use [`Listener::local_url`] after
//!   binding `tcp://127.0.0.1:0`), [`Socket::dial`]`(url)` (background, redials),
//!   [`Socket::dial_blocking`]`(url, timeout)` (waits for a handshaken pipe; `ProtocolMismatch`
//!   at once if the peer's header is refused, `Timeout` otherwise). URLs:
//!   `tcp://host:port`, `ipc:///path` (or `unix://`), `abstract://name` (Linux; `%xx` escapes),
//!   and with feature `tls`, `tls+tcp://host:port` after `Socket::set_tls` (see `tls`).
//! - Messages: [`Socket::send`]`(&[u8])`, [`Socket::try_send`], [`Socket::send_parts`]`(&[&[u8]])`
//!   (one message from several slices, one vectored write), [`Socket::send_vec`]`(Vec<u8>)` /
//!   [`Socket::try_send_vec`] / [`Socket::send_shared`]`(`[`conn::SharedBody`]`)` (the queue keeps
//!   the owned body instead of copying what the kernel did not take; a broadcast shares it),
//!   [`Socket::recv`]` -> `[`Message`],
//!   [`Socket::try_recv`], [`Socket::recv_timeout`], and executor-agnostic futures
//!   [`Socket::recv_async`] / [`Socket::send_async`]. A [`Message`] derefs to its payload (protocol
//!   header stripped), tells its [`Message::pipe`], and gives [`Message::into_vec`].
//! - Options: [`Socket::set_send_timeout`], [`Socket::set_recv_timeout`] (both `Option<Duration>`,
//!   default infinite), [`Socket::set_recv_max_size`] (default [`DEFAULT_RECV_MAX_SIZE`],
//!   1 MiB as in NNG; 0 = unlimited), [`Socket::set_local_peers`] (default: local listeners
//!   admit only our own uid), [`Socket::set_reconnect`]`(min, max)`, [`Socket::set_handshake_timeout`] (default 10 s),
//!   [`Socket::set_send_buffer`], [`Socket::set_recv_buffer`], [`Socket::set_max_ttl`].
//! - Feature `cli` (default): the `nano-cat` binary and its `clap` dependency; library users
//!   turn default features off and do not build clap.
//! - Protocol specifics: [`Socket::subscribe`] / [`Socket::unsubscribe`] (SUB),
//!   [`Socket::set_survey_time`] (SURVEYOR), [`Socket::set_resend_time`] (REQ),
//!   [`Socket::set_pair1_poly`] + [`Socket::send_to`]`(PipeId, &[u8])`,
//!   [`Socket::send_parts_to`], [`Socket::send_vec_to`] (PAIR1 poly),
//!   [`Socket::context`]` -> `[`Context`] (REQ/REP/RESPONDENT concurrent requests).
//! - Observability: [`Socket::pipe_events`]` -> mpsc::Receiver<`[`PipeEvent`]`>`
//!   (`Added(PipeId)` / `Removed(PipeId)`), [`Socket::pipes`].
//! - Errors: [`Error`] (`Timeout`, `WouldBlock`, `Closed`, `BadUrl`, `AddrInUse`,
//!   `ProtocolMismatch`, `TooLarge`, `State`, `NoSuchPipe`, `Io`).
//! - Building blocks for other event loops: [`conn::Connection`] (handshake + frame decoding over
//!   a mio [`conn::Stream`]; register its fd with `mio::unix::SourceFd`, call
//!   [`conn::Connection::on_readable`] on events) and [`conn::ConnSender`] (zero-copy vectored
//!   sends from any thread, [`conn::ConnSender::send_shared`] for owned bodies;
//!   [`conn::ConnSender::flush`] on writable events); the pure protocol
//!   logic (handshake, framing, headers, REQ/SURVEY state, routing) lives in [`proto`].
//! - Semantics worth knowing: sends block until a suitable pipe is ready (PUB, BUS and SURVEYOR
//!   never block; peers whose queue is full miss the message); a blocking send of a large message
//!   waits for the stream to drain instead of copying it; closing a socket first writes the
//!   messages still queued, waiting for its peers up to the send timeout (1 s without one);
//!   REQ resends after 60 s (or at once when its pipe is lost); a second PAIR0/PAIR1-mono peer
//!   is refused; a malformed header closes that pipe and a message over the TTL is dropped, as
//!   in NNG.
//!
//! # Design
//!
//! The protocol logic ([`proto`]) is a set of pure state machines fed bytes and time: the 8-byte
//! connection header, incremental frame decoding with a receive limit checked before allocating,
//! the REQ/REP backtrace, PAIR1 hop counts, SUB topic filters, survey ids and deadlines. A thin
//! shell drives them, with as few thread hand-offs as the hot path allows:
//!
//! - Each socket has one I/O thread owning a `mio::Poll`: it accepts, dials and redials, runs
//!   handshakes (with their timeout), reads pipes nobody else is reading, flushes send queues and
//!   fires timers.
//! - A send is written by the calling thread itself: one vectored write of
//!   `frame header | protocol header | payload` straight from the caller's buffer (frames up to
//!   256 bytes are gathered on the stack first: one contiguous piece is cheaper for the kernel),
//!   each syscall capped at 1 GiB so messages over 4 GiB work. A blocking send waits for the
//!   stream to drain rather than copy; otherwise only bytes the kernel does not take are copied
//!   into the pipe's queue (an owned body is queued by reference instead), which the I/O thread
//!   flushes many frames per `writev`. A stream of small sends (frames up to 256 bytes, each
//!   within 10 µs of the socket's previous send with no message received in between) is
//!   queued on purpose: the I/O thread writes all that is queued with one `writev` while the
//!   caller goes on, instead of one syscall per message. A send after a receive or a pause is
//!   written at once, so request/reply latency does not change.
//! - A blocking receive on a socket with one pipe reads that pipe itself (the I/O thread's read
//!   interest is paused for a short lease, so a request/reply loop costs one wake-up per
//!   message, as a plain blocking socket would). Otherwise the I/O thread reads, in batches, and
//!   hands messages over under one lock and one notification per batch.
//! - Frames are read into one allocation at the announced size (after the receive limit check;
//!   without a limit, bodies over 1 MiB grow as their bytes arrive), never zero-filled: the rest
//!   of a body over 64 KiB is read straight into the message's spare capacity; only the part
//!   that came in the same read as its header (and small frames, many per read) is copied once
//!   from the connection's read buffer.
//! - The receive queue is bounded in messages ([`Socket::set_recv_buffer`]) and in bytes
//!   (4 MiB): reading further ahead of the consumer would only move the backlog from the
//!   kernel's socket buffers into freshly faulted-in memory.
//!
//! A malformed header or wrong peer type drops that message or closes that pipe, as NNG does;
//! the socket keeps serving its other pipes.
//!
//! # Safe defaults against local and remote peers
//!
//! A peer is whoever reaches the endpoint, so the defaults assume it may be hostile:
//!
//! - **Local listeners admit only our own user.** An `abstract://` socket has no permissions
//!   at all: any process of the machine (on a shared login node, any of its users) can connect.
//!   Every accepted `ipc://` and `abstract://` connection is therefore checked with
//!   `SO_PEERCRED` right after `accept(2)`; one from another uid is closed before our SP header
//!   is sent or any of its bytes is read, and logged with `tracing::warn!`. `ipc://` socket
//!   files are created with mode 0600 (set before `listen(2)`, so no one connects in between).
//!   [`Socket::set_local_peers`]`(`[`LocalPeers::AnyUser`]`)` opts out, for services meant
//!   for other users. See [`peer`].
//! - **A finite receive limit: 1 MiB** ([`DEFAULT_RECV_MAX_SIZE`]), NNG's own default for
//!   `NNG_OPT_RECVMAXSZ` (NNG counts the protocol header too, and so do we). A frame's
//!   8-byte length prefix is the peer's claim; with no limit one peer could announce any size
//!   and have us reserve and keep reading toward it. A claim over the limit closes the pipe as
//!   soon as the prefix is read, before anything is allocated. Sockets that expect larger
//!   messages raise it with [`Socket::set_recv_max_size`] (0 removes it, for trusted peers).
//! - **Every queue a peer can fill is bounded.** PAIR, PULL, BUS, REP and RESPONDENT stop
//!   reading (back-pressure through the kernel's buffers) at [`Socket::set_recv_buffer`]
//!   messages or 4 MiB; SUB drops its oldest message and SURVEYOR drops new responses beyond
//!   the same bounds (as NNG's surveyor does: a survey's window is short, and a stalled pipe
//!   would only make answers late); REQ keeps at most one reply per context. Handshakes that
//!   never finish are closed after [`Socket::set_handshake_timeout`].
//!
//! ```
//! use std::time::Duration;
//! use nano_transport::{Protocol, Socket};
//! let pull = Socket::new(Protocol::Pull0)?;
//! let name = format!("abstract://doc-{}", std::process::id());
//! pull.listen(&name)?;
//! let push = Socket::new(Protocol::Push0)?;
//! push.dial_blocking(&name, Duration::from_secs(5))?;
//! push.send(b"job")?;
//! assert_eq!(&*pull.recv()?, b"job");
//! # Ok::<(), nano_transport::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod conn;
mod context;
mod deliver;
mod direct;
mod endpoint;
mod error;
mod io;
mod message;
pub mod peer;
pub mod proto;
mod route;
mod shared;
mod socket;
#[cfg(feature = "tls")]
pub mod tls;
mod url;

pub use context::{Context, RecvFuture, SendFuture};
pub use error::Error;
pub use message::Message;
pub use peer::LocalPeers;
pub use proto::{PipeId, Protocol};
pub use shared::PipeEvent;
pub use socket::{DEFAULT_RECV_MAX_SIZE, Listener, Socket};
pub use url::Address;

#[doc(hidden)]
pub mod fuzzing;
