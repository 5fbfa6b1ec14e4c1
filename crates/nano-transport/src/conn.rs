//! One SP connection over a mio stream: the handshake, the frame codec and the outgoing queue.
//!
//! [`Connection`] is the reading half, owned by whoever drives the mio loop; [`ConnSender`] is the
//! writing half, cheap to clone and usable from any thread. A send first tries one vectored
//! write of `frame header | protocol header | payload` straight from the caller's buffer; only
//! what the kernel does not take is copied into the queue (or, for an owned [`SharedBody`],
//! referenced), and the loop owner flushes the queue (coalescing many queued frames into one
//! `writev`) when the stream becomes writable. Received bodies are read into one allocation at
//! their announced size, straight into its spare capacity once they outgrow the shared read
//! buffer. This split lets another crate run its own mio loop over these connections.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use crate::Protocol;
use crate::proto::{
    FrameDecoder, FrameError, FrameHeader, Framing, HANDSHAKE_LEN, HandshakeError,
    decode_handshake, encode_handshake,
};

/// The largest number of bytes handed to one `writev`, well below `INT_MAX` so messages over
/// 2 or 4 GiB go out in several calls instead of failing.
const MAX_WRITE: usize = 1 << 30;

/// How many queued frames one flush hands to a single `writev`.
const MAX_IOVECS: usize = 64;

/// The send buffer asked for on Unix-domain connections (the kernel's default is 208 KiB).
///
/// A Unix stream moves at most its sender's buffer per wakeup of the reader, and a wakeup of the
/// other process costs tens of microseconds where it runs on another (virtual) CPU. At 208 KiB a
/// 200 MB message takes about a thousand wakeups each way, which cost more than the copying; at
/// 4 MiB it takes fifty, and one PUSH/PULL of 200 MB took half the time in the same bench
/// (docs/benchmarks.md, "Large payloads"). Small messages do not notice: the buffer is a limit,
/// not an allocation. TCP keeps the kernel's autotuning, which a fixed size would switch off.
pub const UNIX_SEND_BUFFER: usize = 4 << 20;

/// The size of the per-connection read buffer; bodies larger than this are read straight into
/// the message's own allocation.
const READ_BUF: usize = 64 * 1024;

/// A connected byte stream of one of the supported transports.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (frames without a type byte).
    Tcp(mio::net::TcpStream),
    /// A Unix-domain connection, by path or abstract name (frames with the 0x01 type byte).
    Unix(mio::net::UnixStream),
    /// A TLS session over TCP (TCP framing inside TLS).
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsStream),
}

impl Stream {
    /// The framing this transport uses.
    pub fn framing(&self) -> Framing {
        match self {
            Self::Tcp(_) => Framing::Tcp,
            Self::Unix(_) => Framing::Ipc,
            #[cfg(feature = "tls")]
            Self::Tls(_) => Framing::Tcp,
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).read(buf),
            Self::Unix(s) => (&*s).read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.read(buf),
        }
    }

    /// Reads at most `max` bytes appended to `buf`, into its spare capacity (which the caller
    /// reserved): the kernel writes the bytes straight into the message, nothing is zeroed first.
    fn read_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let fd = match self {
            Self::Tcp(s) => Some(s.as_fd()),
            Self::Unix(s) => Some(s.as_fd()),
            // TLS plaintext comes out of rustls's buffer, not the kernel: read it through the
            // initialized window below.
            #[cfg(feature = "tls")]
            Self::Tls(_) => None,
        };
        if let Some(fd) = fd.filter(|_| buf.capacity() - buf.len() <= max) {
            Ok(rustix::io::read(fd, rustix::buffer::spare_capacity(buf))?)
        } else {
            // The allocator gave more than asked (not reached with the standard allocator), or
            // the stream is TLS; bound the read to this frame through an initialized window.
            let start = buf.len();
            buf.resize(start + max, 0);
            let read = self.read(&mut buf[start..]);
            buf.truncate(start + *read.as_ref().unwrap_or(&0));
            read
        }
    }

    /// Shuts both directions down: the peer sees the close at once, and a thread blocked
    /// waiting to read this stream wakes up to end-of-stream.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.shutdown(),
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).write_vectored(bufs),
            Self::Unix(s) => (&*s).write_vectored(bufs),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write_vectored(bufs),
        }
    }

    /// Whether a read that returned less than asked for proves the stream has nothing more
    /// until its next readiness event. Not for TLS: the bytes that completed the last record
    /// may have brought the peer's close (close_notify, FIN) too, which only the next read
    /// reports, and no further event will announce it.
    fn short_read_drains(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(_) => false,
            _ => true,
        }
    }

    /// Whether the stream itself holds output the kernel has not taken (TLS records encrypted
    /// from plaintext already accepted); plain streams never do.
    fn has_pending(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.has_pending(),
            _ => false,
        }
    }

    /// Writes such output; `true` when none is left.
    fn flush_pending(&self) -> io::Result<bool> {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.flush_pending(),
            _ => Ok(true),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.tcp().as_raw_fd(),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer closed the stream.
    #[error("connection closed by peer")]
    Closed,
    /// The peer's connection header was refused.
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// A frame was refused (bad type byte, over the receive limit).
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// What [`Connection::on_readable`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadProgress {
    /// Everything available was read; wait for the next readable event.
    Drained,
    /// The handshake just completed; the peer's endpoint type is known. Call again to read frames.
    HandshakeDone,
    /// The message budget ran out (or the consumer asked to stop) with data possibly left;
    /// call again later without waiting for an event.
    Yielded,
}

/// Whether a send went out entirely or left bytes queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The whole frame is in the kernel.
    Written,
    /// Part or all of the frame is queued; the loop owner must [`flush`](ConnSender::flush) it
    /// when the stream is writable (wake the loop if another thread sent).
    Queued,
}

/// A message body the send queue can keep without copying it: any owned, shareable bytes
/// (`Arc::new(vec)` moves a `Vec<u8>` in without touching its bytes; a broadcast shares one body
/// among all its pipes).
///
/// ```
/// use std::sync::Arc;
/// use nano_transport::conn::SharedBody;
/// let body: SharedBody = Arc::new(vec![1u8, 2, 3]);
/// assert_eq!((*body).as_ref(), &[1, 2, 3]);
/// ```
pub type SharedBody = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// One entry of the send queue: copied bytes (frame and protocol headers, the unwritten rest of
/// a borrowed payload, or several whole small frames queued back to back by
/// [`ConnSender::send_later`]), then any shared bodies, kept without a copy, of which the first
/// `skip` bytes were already written. `msgs` is how many messages it completes.
struct QueuedFrame {
    head: Vec<u8>,
    tail: Vec<SharedBody>,
    skip: usize,
    msgs: usize,
}

impl QueuedFrame {
    /// The unwritten bytes of the shared bodies, in order.
    fn tail(&self) -> impl Iterator<Item = &[u8]> {
        let mut skip = self.skip;
        self.tail.iter().filter_map(move |body| {
            let bytes = (**body).as_ref();
            let from = skip.min(bytes.len());
            skip -= from;
            let rest = &bytes[from..];
            (!rest.is_empty()).then_some(rest)
        })
    }

    fn len(&self) -> usize {
        self.head.len() + self.tail().map(<[u8]>::len).sum::<usize>()
    }
}

impl std::fmt::Debug for QueuedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedFrame")
            .field("len", &self.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct OutQueue {
    frames: VecDeque<QueuedFrame>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// A flush has taken the front frames out to write them without holding the lock: no
    /// sender may write directly meanwhile (its frame would overtake them).
    flushing: bool,
}

#[derive(Debug)]
struct ConnShared {
    stream: Stream,
    framing: Framing,
    out: Mutex<OutQueue>,
    /// Messages waiting in `out` (or taken out by a flush under way), readable without the lock
    /// (for "is this pipe ready").
    queued: AtomicUsize,
    failed: AtomicBool,
    /// Writability wait for [`ConnSender::send_blocking`], created on first use.
    writable: Mutex<Option<(mio::Poll, mio::Events)>>,
    /// Bytes the reading half has read from the stream so far.
    received: AtomicU64,
    /// The reading half is inside a read straight into a large body.
    reading: AtomicBool,
}

/// The writing half of a connection; clone it freely, send from any thread.
#[derive(Debug, Clone)]
pub struct ConnSender {
    shared: Arc<ConnShared>,
}

/// How many slices one frame is written from without allocating an iovec list.
const INLINE_PARTS: usize = 6;

/// Frames up to this size are gathered into one buffer before their write.
pub(crate) const SMALL_FRAME: usize = 256;

/// How large one queue entry of back-to-back small frames grows before the next one starts
/// (see [`ConnSender::send_later`]).
const COALESCE_BYTES: usize = 64 * 1024;

impl ConnSender {
    /// Sends one message whose body is the concatenation of `parts` (typically the protocol
    /// header and the caller's payload, or a payload in several pieces), framed for this
    /// transport, in one vectored write straight from the caller's buffers.
    ///
    /// Writes directly when nothing is queued. What the kernel does not take is copied into the
    /// queue: the caller's buffers are borrowed only for this call, so under back-pressure that
    /// copy is unavoidable (use [`send_shared`](Self::send_shared) to hand the body over
    /// instead, or [`send_blocking`](Self::send_blocking) to wait for the stream to drain).
    pub fn send(&self, parts: &[&[u8]]) -> Result<SendStatus, ConnError> {
        self.send_until(parts, &[], None)
    }

    /// Like [`send`](Self::send), but when the kernel takes only part of the frame, waits (up to
    /// `deadline`, `None` for no limit) for the stream to drain and writes the rest from the
    /// caller's buffer too: large messages then go out without any copy. Only what is left when
    /// the deadline passes is copied into the queue (a frame cannot be abandoned half-written).
    /// While it waits, other senders on this connection wait for it.
    pub fn send_blocking(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<SendStatus, ConnError> {
        self.send_until(parts, &[], Some(deadline))
    }

    /// Sends `parts` (protocol headers, copied if they must be queued) followed by `body`,
    /// which the queue keeps by reference when the kernel does not take it all: no payload byte
    /// is ever copied. `wait` as for [`send_blocking`](Self::send_blocking) (`None`: do not wait
    /// for the stream to drain).
    pub fn send_shared(
        &self,
        parts: &[&[u8]],
        body: &SharedBody,
        wait: Option<Option<Instant>>,
    ) -> Result<SendStatus, ConnError> {
        self.send_until(parts, std::slice::from_ref(body), wait)
    }

    /// Like [`send_shared`](Self::send_shared) with a body in several pieces (a message's
    /// envelope and the large buffers it carries, each owned elsewhere): one frame whose body is
    /// `parts` then every one of `bodies`, in order. None of the bodies' bytes is copied, queued
    /// or not.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, SendStatus, SharedBody, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let push = Connection::new(Stream::Unix(a), Protocol::Push0, 0)?;
    /// let one: SharedBody = Arc::new(vec![1u8; 3]);
    /// let two: SharedBody = Arc::new(vec![2u8; 2]);
    /// let status = push.sender().send_shared_parts(&[b"hd"], &[one, two], None)?;
    /// assert!(matches!(status, SendStatus::Written | SendStatus::Queued));
    /// # drop(b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_shared_parts(
        &self,
        parts: &[&[u8]],
        bodies: &[SharedBody],
        wait: Option<Option<Instant>>,
    ) -> Result<SendStatus, ConnError> {
        self.send_until(parts, bodies, wait)
    }

    /// Queues one small frame (up to 256 bytes with its header) for the loop owner's next
    /// [`flush`](Self::flush) instead of writing it now, behind whatever is queued already.
    /// Frames queued this way back to back share one buffer, so a flush writes many of them
    /// with one `writev` (and the peer reads them in one piece): for a stream of small
    /// messages, the syscall a direct send makes per message is most of its cost. The caller
    /// must make sure the loop owner flushes (wake it). Larger frames are sent as by
    /// [`send`](Self::send).
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, SendStatus, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let push = Connection::new(Stream::Unix(a), Protocol::Push0, 0)?;
    /// let mut pull = Connection::new(Stream::Unix(b), Protocol::Pull0, 0)?;
    /// for i in 0..3u8 {
    ///     assert_eq!(push.sender().send_later(&[&[i; 8]])?, SendStatus::Queued);
    /// }
    /// assert_eq!(push.sender().queued(), 3);
    /// assert!(push.sender().flush()?); // one write for the three frames
    /// let mut got = Vec::new();
    /// while got.len() < 3 {
    ///     pull.on_readable(8, &mut |b| { got.push(b); true })?;
    /// }
    /// assert_eq!(got, [[0u8; 8], [1; 8], [2; 8]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_later(&self, parts: &[&[u8]]) -> Result<SendStatus, ConnError> {
        let body_len: usize = parts.iter().map(|p| p.len()).sum();
        let header = FrameHeader::new(self.shared.framing, body_len as u64);
        let total = header.as_bytes().len() + body_len;
        if total > SMALL_FRAME {
            return self.send(parts);
        }
        let mut out = self.lock_out();
        let fits = |f: &QueuedFrame| f.tail.is_empty() && f.head.len() + total <= COALESCE_BYTES;
        let frame = match out.frames.back_mut().filter(|f| fits(f)) {
            Some(f) => f,
            None => {
                out.frames.push_back(QueuedFrame {
                    head: Vec::with_capacity(4096),
                    tail: Vec::new(),
                    skip: 0,
                    msgs: 0,
                });
                out.frames.back_mut().expect("just pushed")
            }
        };
        frame.head.extend_from_slice(header.as_bytes());
        for p in parts {
            frame.head.extend_from_slice(p);
        }
        frame.msgs += 1;
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        Ok(SendStatus::Queued)
    }

    fn send_until(
        &self,
        parts: &[&[u8]],
        shared: &[SharedBody],
        wait: Option<Option<Instant>>,
    ) -> Result<SendStatus, ConnError> {
        let shared_len: usize = shared.iter().map(|b| (**b).as_ref().len()).sum();
        let body_len = parts.iter().map(|p| p.len()).sum::<usize>() + shared_len;
        let header = FrameHeader::new(self.shared.framing, body_len as u64);
        // header | parts.. | shared bodies.., as slices into the callers' buffers (a list of
        // pointers, not of bytes, when there are many parts).
        let mut inline: [&[u8]; INLINE_PARTS] = [&[]; INLINE_PARTS];
        let mut many: Vec<&[u8]> = Vec::new();
        let pieces = std::iter::once(header.as_bytes())
            .chain(parts.iter().copied())
            .chain(shared.iter().map(|b| (**b).as_ref()))
            .filter(|p| !p.is_empty());
        let all: &[&[u8]] = if parts.len() + shared.len() < INLINE_PARTS {
            let mut n = 0;
            for p in pieces {
                inline[n] = p;
                n += 1;
            }
            &inline[..n]
        } else {
            many.extend(pieces);
            &many
        };
        // A small frame is gathered into one stack buffer first: the kernel takes one
        // contiguous piece faster than a walk over several tiny iovecs (measurable on tcp, where
        // each iovec is copied and checksummed separately), and these bytes are few.
        let mut small = [0u8; SMALL_FRAME];
        let total = header.as_bytes().len() + body_len;
        let gathered: [&[u8]; 1];
        let all: &[&[u8]] = if total <= SMALL_FRAME && all.len() > 1 {
            let mut n = 0;
            for p in all {
                small[n..n + p.len()].copy_from_slice(p);
                n += p.len();
            }
            gathered = [&small[..n]];
            &gathered
        } else {
            all
        };
        let mut out = self.lock_out();
        let direct = out.frames.is_empty() && !out.flushing;
        let written = if direct {
            match write_slices(&self.shared.stream, all, 0) {
                Ok(w) => w,
                Err(e) => {
                    self.shared.failed.store(true, Ordering::Release);
                    return Err(e.into());
                }
            }
        } else {
            0
        };
        let mut written = written;
        if let (Some(deadline), true) = (wait, direct) {
            while written < total && self.wait_writable(deadline)? {
                written += write_slices(&self.shared.stream, all, written).inspect_err(|_| {
                    self.shared.failed.store(true, Ordering::Release);
                })?;
            }
        }
        if written == total {
            // TLS: the frame is encrypted but some records may still wait for the socket.
            if self.shared.stream.has_pending() {
                return Ok(SendStatus::Queued);
            }
            return Ok(SendStatus::Written);
        }
        // The kernel buffer is full: keep the unwritten rest until the stream drains. A shared
        // body is kept by reference; borrowed bytes must be copied (this is the only copy of
        // payload bytes, and only under back-pressure).
        let copied_end = total - shared_len;
        let mut head = Vec::with_capacity(copied_end.saturating_sub(written));
        let mut skip = written;
        let mut left = copied_end.saturating_sub(written);
        for s in all {
            if left == 0 {
                break;
            }
            if skip >= s.len() {
                skip -= s.len();
            } else {
                let piece = &s[skip..s.len().min(skip + left)];
                head.extend_from_slice(piece);
                left -= piece.len();
                skip = 0;
            }
        }
        out.frames.push_back(QueuedFrame {
            head,
            tail: shared.to_vec(),
            skip: written.saturating_sub(copied_end),
            msgs: 1,
        });
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        Ok(SendStatus::Queued)
    }

    /// Waits until the stream may take more bytes; `false` once `deadline` has passed.
    fn wait_writable(&self, deadline: Option<Instant>) -> Result<bool, ConnError> {
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => Some(t),
                _ => return Ok(false),
            },
            None => None,
        };
        let mut guard = self
            .shared
            .writable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            // A poll of its own, used only by the sender holding the queue lock, so no other
            // waiter can consume this stream's edges.
            let poll = mio::Poll::new()?;
            let fd = self.shared.stream.as_raw_fd();
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(0),
                mio::Interest::WRITABLE,
            )?;
            *guard = Some((poll, mio::Events::with_capacity(1)));
        }
        let (poll, events) = guard.as_mut().expect("initialised above");
        match poll.poll(events, timeout) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes queued bytes, many frames per `writev`; returns whether the queue is now empty.
    pub fn flush(&self) -> Result<bool, ConnError> {
        let result = self.flush_inner();
        if result.is_err() {
            self.shared.failed.store(true, Ordering::Release);
        }
        result
    }

    fn flush_inner(&self) -> Result<bool, ConnError> {
        loop {
            let mut out = match self.shared.out.try_lock() {
                Ok(out) => out,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                // A blocking sender is writing its frame and waits for writability itself;
                // frames queued behind it are flushed when it is done (their senders wake the
                // loop).
                Err(TryLockError::WouldBlock) => return Ok(false),
            };
            if out.flushing {
                return Ok(false);
            }
            if out.frames.is_empty() {
                break;
            }
            // Take the front frames out and write them without the lock, so senders queueing
            // behind them (`send_later`) do not wait for the syscall.
            let n = out.frames.len().min(MAX_IOVECS);
            let mut batch: VecDeque<QueuedFrame> = out.frames.drain(..n).collect();
            let mut offset = std::mem::take(&mut out.offset);
            out.flushing = true;
            drop(out);
            let mut slices: Vec<&[u8]> = Vec::with_capacity(2 * MAX_IOVECS);
            for f in &batch {
                if !f.head.is_empty() {
                    slices.push(&f.head);
                }
                slices.extend(f.tail());
            }
            let result = write_slices(&self.shared.stream, &slices, offset);
            drop(slices);
            let mut out = self.lock_out();
            out.flushing = false;
            let written = result?;
            let mut left = offset + written;
            offset = 0;
            let mut done = 0;
            while let Some(front) = batch.front() {
                let len = front.len();
                if left >= len {
                    left -= len;
                    done += front.msgs;
                    batch.pop_front();
                } else {
                    offset = left;
                    break;
                }
            }
            self.shared.queued.fetch_sub(done, Ordering::SeqCst);
            if batch.is_empty() {
                continue;
            }
            // The stream would block: what is left goes back in front of what was queued since.
            while let Some(f) = batch.pop_back() {
                out.frames.push_front(f);
            }
            out.offset = offset;
            return Ok(false);
        }
        Ok(self.shared.stream.flush_pending()?)
    }

    /// The stream this sender writes to.
    pub fn stream(&self) -> &Stream {
        &self.shared.stream
    }

    /// How many bytes the connection's reading half has read from the stream so far (see
    /// [`Connection::bytes_received`]); readable from any thread, also while a read is under way,
    /// so another thread can tell that a large frame is still arriving.
    pub fn bytes_received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Whether the reading half is inside a read of a large body right now. Such a read copies
    /// for as long as the peer keeps the stream fed (a Unix-stream read does not return while
    /// bytes keep coming), so [`bytes_received`](Self::bytes_received) may stand still for the
    /// whole of it: a thread judging the peer's silence counts this as hearing from it.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, Stream};
    /// let (a, _b) = mio::net::UnixStream::pair()?;
    /// let conn = Connection::new(Stream::Unix(a), Protocol::Pair1, 0)?;
    /// assert!(!conn.sender().is_reading());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_reading(&self) -> bool {
        self.shared.reading.load(Ordering::Acquire)
    }

    /// How many frames wait in the queue.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst) + usize::from(self.shared.stream.has_pending())
    }

    /// Marks the connection as broken (a protocol rule was violated by the peer, or a read
    /// failed outside the loop owner); the loop owner should close it.
    pub fn mark_failed(&self) {
        self.shared.failed.store(true, Ordering::Release);
    }

    /// Whether a write from another thread failed (the loop owner should close the connection).
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    fn lock_out(&self) -> MutexGuard<'_, OutQueue> {
        self.shared.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues raw bytes (the connection header) and tries to write them.
    fn send_raw(&self, bytes: &[u8]) -> Result<(), ConnError> {
        let mut out = self.lock_out();
        out.frames.push_back(QueuedFrame {
            head: bytes.to_vec(),
            tail: Vec::new(),
            skip: 0,
            msgs: 1,
        });
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        drop(out);
        self.flush().map(|_| ())
    }
}

/// Writes the concatenation of `slices`, skipping its first `skip` bytes, until done or the
/// stream would block; returns the bytes written. Each call is capped at [`MAX_WRITE`].
fn write_slices(stream: &Stream, slices: &[&[u8]], skip: usize) -> io::Result<usize> {
    let total: usize = slices.iter().map(|s| s.len()).sum::<usize>() - skip;
    let mut done = 0;
    let mut iov: Vec<IoSlice<'_>> = Vec::new();
    let mut fixed: [IoSlice<'_>; 8] = [IoSlice::new(&[]); 8];
    while done < total {
        let mut skip_left = skip + done;
        let mut budget = MAX_WRITE;
        let mut count = 0;
        iov.clear();
        for s in slices {
            if skip_left >= s.len() {
                skip_left -= s.len();
                continue;
            }
            let piece = &s[skip_left..];
            skip_left = 0;
            let piece = &piece[..piece.len().min(budget)];
            budget -= piece.len();
            if slices.len() <= fixed.len() {
                fixed[count] = IoSlice::new(piece);
            } else {
                iov.push(IoSlice::new(piece));
            }
            count += 1;
            if budget == 0 {
                break;
            }
        }
        let bufs: &[IoSlice<'_>] = if slices.len() <= fixed.len() {
            &fixed[..count]
        } else {
            &iov
        };
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[derive(Debug)]
enum ReadState {
    Handshake {
        got: [u8; HANDSHAKE_LEN],
        filled: usize,
    },
    Open {
        decoder: FrameDecoder,
        buf: Box<[u8]>,
        start: usize,
        end: usize,
    },
}

/// The reading half of a connection plus its handshake; owned by the thread that polls it.
///
/// Create it once the stream is connected: it queues our 8-byte header at once (both sides send
/// without waiting), then [`on_readable`](Self::on_readable) reads exactly the peer's 8 bytes,
/// validates them, and from then on decodes frames.
#[derive(Debug)]
pub struct Connection {
    sender: ConnSender,
    own: Protocol,
    limit: u64,
    peer: Option<u16>,
    state: ReadState,
    maybe_more: bool,
    /// A readiness event reported the peer's close (see [`Connection::note_read_closed`]).
    peer_closed: bool,
}

impl Connection {
    /// Wraps a connected stream for a socket of protocol `own`; `recv_limit` is the largest
    /// accepted message body (0: no limit but the wire's). Sends our connection header.
    pub fn new(stream: Stream, own: Protocol, recv_limit: u64) -> Result<Self, ConnError> {
        if let Stream::Unix(s) = &stream {
            // Best effort: the kernel caps it at `net.core.wmem_max`, and a smaller buffer only
            // costs speed.
            let _ = socket2::SockRef::from(s).set_send_buffer_size(UNIX_SEND_BUFFER);
        }
        let framing = stream.framing();
        let sender = ConnSender {
            shared: Arc::new(ConnShared {
                stream,
                framing,
                out: Mutex::default(),
                queued: AtomicUsize::new(0),
                failed: AtomicBool::new(false),
                writable: Mutex::new(None),
                received: AtomicU64::new(0),
                reading: AtomicBool::new(false),
            }),
        };
        sender.send_raw(&encode_handshake(own))?;
        Ok(Self {
            sender,
            own,
            limit: recv_limit,
            peer: None,
            state: ReadState::Handshake {
                got: [0; HANDSHAKE_LEN],
                filled: 0,
            },
            maybe_more: true,
            peer_closed: false,
        })
    }

    /// Changes the largest accepted message body for every frame whose length prefix has not
    /// been read yet: e.g. a small limit until the peer has authenticated, then the full one,
    /// so an unauthenticated peer cannot make us read a large frame.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{ConnError, Connection, ReadProgress, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let mut ours = Connection::new(Stream::Unix(a), Protocol::Pair1, 1 << 20)?;
    /// let mut theirs = Connection::new(Stream::Unix(b), Protocol::Pair1, 0)?;
    /// assert_eq!(ours.on_readable(8, &mut |_| true)?, ReadProgress::HandshakeDone);
    /// assert_eq!(theirs.on_readable(8, &mut |_| true)?, ReadProgress::HandshakeDone);
    /// ours.set_recv_limit(16);
    /// let body = [0u8; 1000];
    /// theirs.sender().send(&[&body[..]])?;
    /// ours.note_readable();
    /// assert!(matches!(ours.on_readable(8, &mut |_| true), Err(ConnError::Frame(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_recv_limit(&mut self, limit: u64) {
        self.limit = limit;
        if let ReadState::Open { decoder, .. } = &mut self.state {
            decoder.set_limit(limit);
        }
    }

    /// The writing half.
    pub fn sender(&self) -> &ConnSender {
        &self.sender
    }

    /// The stream, e.g. to register it with a `mio::Registry` through `mio::unix::SourceFd`.
    pub fn stream(&self) -> &Stream {
        &self.sender.shared.stream
    }

    /// The peer's endpoint type once the handshake is done.
    pub fn peer_type(&self) -> Option<u16> {
        self.peer
    }

    /// Whether data may be waiting that no future readiness event will announce: the last
    /// [`on_readable`](Self::on_readable) stopped before the stream said "would block", or
    /// [`note_readable`](Self::note_readable) was called since. With edge-triggered polling,
    /// wait for an event only when this is `false`.
    pub fn may_have_more(&self) -> bool {
        self.maybe_more
    }

    /// Records that a readiness event for this stream was consumed (so reading must happen
    /// before waiting again).
    pub fn note_readable(&mut self) {
        self.maybe_more = true;
    }

    /// Records that a readiness event reported the peer's close (mio's
    /// `Event::is_read_closed`), and that it must be read. A read that returns less than asked
    /// for normally proves the stream empty until its next event; but when the peer's last
    /// frame and its close arrived before the event was taken, that one event announced both,
    /// and only another read reports the close. From now on reads go on until the stream says
    /// "would block" or reports the close.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{ConnError, Connection, ReadProgress, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let mut ours = Connection::new(Stream::Unix(a), Protocol::Pair1, 0)?;
    /// let mut theirs = Connection::new(Stream::Unix(b), Protocol::Pair1, 0)?;
    /// assert_eq!(ours.on_readable(8, &mut |_| true)?, ReadProgress::HandshakeDone);
    /// assert_eq!(theirs.on_readable(8, &mut |_| true)?, ReadProgress::HandshakeDone);
    /// // The peer's last frame and its close, both in the kernel before we look.
    /// theirs.sender().send(&[b"last"])?;
    /// drop(theirs);
    /// ours.note_readable();
    /// ours.note_read_closed();
    /// let mut got = Vec::new();
    /// let end = ours.on_readable(8, &mut |b| { got.push(b); true });
    /// assert_eq!(got, [b"last".to_vec()]);
    /// assert!(matches!(end, Err(ConnError::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn note_read_closed(&mut self) {
        self.peer_closed = true;
        self.maybe_more = true;
    }

    /// How many bytes were read from the stream so far (headers and partial frames included):
    /// a sign of life from the peer while a large frame is still arriving.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let mut ours = Connection::new(Stream::Unix(a), Protocol::Pair1, 0)?;
    /// let _theirs = Connection::new(Stream::Unix(b), Protocol::Pair1, 0)?;
    /// assert_eq!(ours.bytes_received(), 0);
    /// ours.on_readable(8, &mut |_| true)?; // their 8-byte connection header
    /// assert_eq!(ours.bytes_received(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bytes_received(&self) -> u64 {
        self.sender.bytes_received()
    }

    /// Whether the handshake has completed.
    pub fn is_open(&self) -> bool {
        self.peer.is_some()
    }

    /// Reads what the stream has: first the handshake, then frames, handing each complete body to
    /// `deliver` (which returns `false` to stop early). At most `max_msgs` bodies per call.
    pub fn on_readable(
        &mut self,
        max_msgs: usize,
        deliver: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<ReadProgress, ConnError> {
        let progress = self.read_some(max_msgs, deliver);
        self.maybe_more = !matches!(progress, Ok(ReadProgress::Drained));
        progress
    }

    fn read_some(
        &mut self,
        max_msgs: usize,
        deliver: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<ReadProgress, ConnError> {
        let stream = &self.sender.shared.stream;
        let received = &self.sender.shared.received;
        let reading = &self.sender.shared.reading;
        // Whether a short read proves the stream empty until its next event.
        let short_drains = stream.short_read_drains() && !self.peer_closed;
        match &mut self.state {
            ReadState::Handshake { got, filled } => {
                while *filled < HANDSHAKE_LEN {
                    match stream.read(&mut got[*filled..]) {
                        Ok(0) => return Err(ConnError::Closed),
                        Ok(n) => {
                            *filled += n;
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(ReadProgress::Drained);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                self.peer = Some(decode_handshake(self.own, got)?);
                self.state = ReadState::Open {
                    decoder: FrameDecoder::new(stream.framing(), self.limit),
                    buf: vec![0; READ_BUF].into_boxed_slice(),
                    start: 0,
                    end: 0,
                };
                Ok(ReadProgress::HandshakeDone)
            }
            ReadState::Open {
                decoder,
                buf,
                start,
                end,
            } => {
                let mut delivered = 0;
                // A read that returned less than asked for emptied the kernel buffer; with
                // edge-triggered polling, any later bytes raise a new event, so there is no need
                // for one more read just to see "would block". Not so when the event that woke
                // us also announced the peer's close (see `note_read_closed`), nor for TLS.
                let mut drained = false;
                loop {
                    while *start < *end {
                        if delivered >= max_msgs {
                            return Ok(ReadProgress::Yielded);
                        }
                        let (used, body) = decoder.push(&buf[*start..*end])?;
                        *start += used;
                        if let Some(body) = body {
                            delivered += 1;
                            if !deliver(body) {
                                return Ok(ReadProgress::Yielded);
                            }
                        }
                    }
                    *start = 0;
                    *end = 0;
                    if delivered >= max_msgs {
                        return Ok(ReadProgress::Yielded);
                    }
                    if drained {
                        return Ok(ReadProgress::Drained);
                    }
                    // A large body in progress: read straight into its spare capacity (no
                    // zero-filling, no bounce through `buf`).
                    if let Some((body, room)) =
                        decoder.body_buffer().filter(|(_, r)| *r >= READ_BUF)
                    {
                        // A Unix-stream read copies for as long as the writer keeps the socket
                        // fed: one read into a large body may take a long while, during which
                        // the byte count cannot move; the flag says a read is under way.
                        reading.store(true, Ordering::Release);
                        let read = stream.read_append(body, room);
                        reading.store(false, Ordering::Release);
                        match read {
                            Ok(0) => return Err(ConnError::Closed),
                            Ok(n) => {
                                received.fetch_add(n as u64, Ordering::Relaxed);
                                drained = n < room && short_drains;
                                if let Some(body) = decoder.body_appended() {
                                    delivered += 1;
                                    if !deliver(body) {
                                        return Ok(ReadProgress::Yielded);
                                    }
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Ok(ReadProgress::Drained);
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e.into()),
                        }
                        continue;
                    }
                    match stream.read(buf) {
                        Ok(0) => return Err(ConnError::Closed),
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                            drained = n < buf.len() && short_drains;
                            *end = n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(ReadProgress::Drained);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, Stream) {
        let (a, b) = mio::net::UnixStream::pair().unwrap();
        (Stream::Unix(a), Stream::Unix(b))
    }

    fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        loop {
            match c.on_readable(usize::MAX, &mut |b| {
                got.push(b);
                true
            }) {
                Ok(ReadProgress::Drained) => return got,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn handshake_then_frames_both_ways() {
        let (a, b) = pair();
        let mut req = Connection::new(a, Protocol::Req0, 0).unwrap();
        let mut rep = Connection::new(b, Protocol::Rep0, 0).unwrap();
        assert!(drain(&mut req).is_empty());
        assert!(drain(&mut rep).is_empty());
        assert_eq!((req.peer_type(), rep.peer_type()), (Some(0x31), Some(0x30)));
        let big = vec![3u8; 300_000];
        let sent = req.sender().send(&[&[0x80, 0, 0, 1], &big]).unwrap();
        let mut got = Vec::new();
        if sent == SendStatus::Queued {
            while !req.sender().flush().unwrap() {
                got.extend(drain(&mut rep));
            }
        }
        got.extend(drain(&mut rep));
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0][..4], &[0x80, 0, 0, 1]);
        assert!(got[0][4..] == big[..]);
    }

    #[test]
    fn queued_frames_keep_order_and_shared_bodies_arrive_whole() {
        let (a, b) = pair();
        let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
        let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
        assert!(drain(&mut push).is_empty());
        assert!(drain(&mut pull).is_empty());
        // Larger than any send buffer the kernel grants (UNIX_SEND_BUFFER at most).
        let first: Vec<u8> = (0..12_000_000u32).map(|i| i as u8).collect();
        let shared: SharedBody = Arc::new(
            (0..2_000_000u32)
                .map(|i| (i / 7) as u8)
                .collect::<Vec<u8>>(),
        );
        // The first frame overflows the socket buffer (its rest is copied into the queue); the
        // second is queued whole behind it, its body by reference.
        assert_eq!(push.sender().send(&[&first]).unwrap(), SendStatus::Queued);
        let status = push.sender().send_shared(&[b"hd"], &shared, None).unwrap();
        assert_eq!(status, SendStatus::Queued);
        assert_eq!(Arc::strong_count(&shared), 2);
        assert_eq!(push.sender().queued(), 2);
        let mut got = Vec::new();
        while !push.sender().flush().unwrap() {
            got.extend(drain(&mut pull));
        }
        got.extend(drain(&mut pull));
        assert_eq!(Arc::strong_count(&shared), 1, "released once written");
        assert_eq!(got.len(), 2);
        assert!(got[0] == first);
        assert_eq!(&got[1][..2], b"hd");
        assert!(got[1][2..] == *(*shared).as_ref());
    }

    #[test]
    fn a_frame_of_several_shared_bodies_arrives_whole_when_queued_midway() {
        let (a, b) = pair();
        let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
        let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
        assert!(drain(&mut push).is_empty());
        assert!(drain(&mut pull).is_empty());
        let bodies: Vec<SharedBody> = (0..3u8)
            .map(|k| {
                let body: SharedBody = Arc::new(
                    (0..5_000_000u32)
                        .map(|i| (i % 251) as u8 ^ k)
                        .collect::<Vec<u8>>(),
                );
                body
            })
            .collect();
        // 15 MB overflows the socket buffer (UNIX_SEND_BUFFER at most): the kernel takes part of
        // the first body, the rest of the frame waits in the queue by reference.
        let status = push
            .sender()
            .send_shared_parts(&[b"env"], &bodies, None)
            .unwrap();
        assert_eq!(status, SendStatus::Queued);
        assert!(bodies.iter().all(|b| Arc::strong_count(b) == 2));
        let mut got = Vec::new();
        while !push.sender().flush().unwrap() {
            got.extend(drain(&mut pull));
        }
        got.extend(drain(&mut pull));
        assert!(
            bodies.iter().all(|b| Arc::strong_count(b) == 1),
            "released once written"
        );
        assert_eq!(got.len(), 1);
        let mut want = b"env".to_vec();
        for body in &bodies {
            want.extend_from_slice((**body).as_ref());
        }
        assert!(got[0] == want);
    }

    #[test]
    fn frames_queued_for_later_keep_their_place_before_direct_sends() {
        let (a, b) = pair();
        let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
        let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
        assert!(drain(&mut push).is_empty());
        assert!(drain(&mut pull).is_empty());
        let tx = push.sender();
        for i in 0..1000u32 {
            tx.send_later(&[&i.to_le_bytes()]).unwrap();
        }
        // Too large to be queued for later: sent at once, but behind the queued frames.
        let big = vec![5u8; 1000];
        assert_eq!(tx.send_later(&[&big]).unwrap(), SendStatus::Queued);
        // A direct send must not overtake them either.
        assert_eq!(tx.send(&[b"last"]).unwrap(), SendStatus::Queued);
        assert_eq!(tx.queued(), 1002);
        assert!(tx.flush().unwrap());
        assert_eq!(tx.queued(), 0);
        let got = drain(&mut pull);
        assert_eq!(got.len(), 1002);
        for (i, body) in got[..1000].iter().enumerate() {
            assert_eq!(body[..], (i as u32).to_le_bytes());
        }
        assert!(got[1000] == big);
        assert_eq!(got[1001], b"last");
    }

    #[test]
    fn wrong_peer_is_refused() {
        let (a, b) = pair();
        let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
        let _rep = Connection::new(b, Protocol::Rep0, 0).unwrap();
        let err = push.on_readable(1, &mut |_| true).unwrap_err();
        assert!(matches!(
            err,
            ConnError::Handshake(HandshakeError::PeerMismatch { .. })
        ));
    }

    #[test]
    fn oversize_frame_closes() {
        let (a, b) = pair();
        let mut pull = Connection::new(a, Protocol::Pull0, 10).unwrap();
        let push = Connection::new(b, Protocol::Push0, 0).unwrap();
        assert!(drain(&mut pull).is_empty());
        push.sender().send(&[&[1; 10]]).unwrap();
        push.sender().send(&[&[1; 11]]).unwrap();
        let mut got = 0;
        let err = loop {
            match pull.on_readable(usize::MAX, &mut |_| {
                got += 1;
                true
            }) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(got, 1);
        assert!(matches!(
            err,
            ConnError::Frame(FrameError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
    }

    /// The peer's last frame and its close reach the kernel before the poll: the one
    /// edge-triggered event announces both, the frame's read is short, and no later event comes.
    /// Reading as an event loop does (stop at a short read unless the event reported the close)
    /// must still end in `Closed`.
    #[test]
    fn a_close_behind_the_last_frame_is_seen_from_the_same_event() {
        for transport in ["unix", "tcp"] {
            let (a, b) = match transport {
                "unix" => pair(),
                _ => {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                    let (s, _) = l.accept().unwrap();
                    c.set_nonblocking(true).unwrap();
                    s.set_nonblocking(true).unwrap();
                    (
                        Stream::Tcp(mio::net::TcpStream::from_std(c)),
                        Stream::Tcp(mio::net::TcpStream::from_std(s)),
                    )
                }
            };
            let mut ours = Connection::new(a, Protocol::Pair1, 0).unwrap();
            let mut theirs = Connection::new(b, Protocol::Pair1, 0).unwrap();
            let mut poll = mio::Poll::new().unwrap();
            let fd = ours.stream().as_raw_fd();
            poll.registry()
                .register(
                    &mut mio::unix::SourceFd(&fd),
                    mio::Token(0),
                    mio::Interest::READABLE,
                )
                .unwrap();
            let mut events = mio::Events::with_capacity(4);
            let mut wait = |poll: &mut mio::Poll, ours: &mut Connection| {
                poll.poll(&mut events, Some(std::time::Duration::from_millis(500)))
                    .unwrap();
                let closed = events.iter().any(|e| e.is_read_closed());
                if !events.is_empty() {
                    ours.note_readable();
                }
                if closed {
                    ours.note_read_closed();
                }
                !events.is_empty()
            };
            assert!(wait(&mut poll, &mut ours), "{transport}: the peer's header");
            assert_eq!(
                ours.on_readable(8, &mut |_| true).unwrap(),
                ReadProgress::HandshakeDone
            );
            assert!(drain(&mut ours).is_empty());
            // The peer reads our header: it closes with nothing unread (a clean close, no reset).
            assert!(drain(&mut theirs).is_empty());
            theirs.sender().send(&[b"last"]).unwrap();
            theirs.stream().shutdown().unwrap();
            drop(theirs);
            assert!(wait(&mut poll, &mut ours), "{transport}: frame and close");
            let mut got = Vec::new();
            let mut end = None;
            while ours.may_have_more() {
                match ours.on_readable(8, &mut |b| {
                    got.push(b);
                    true
                }) {
                    Ok(_) => {}
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(got, [b"last".to_vec()], "{transport}");
            assert!(
                matches!(end, Some(ConnError::Closed)),
                "{transport}: the close went unnoticed ({end:?}); another event came: {}",
                wait(&mut poll, &mut ours)
            );
        }
    }
}
