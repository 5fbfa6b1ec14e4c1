//! The writing half of a connection: [`ConnSender`], its send queue and the vectored writes.
//!
//! A send first tries one vectored write of `frame header | protocol header | payload` straight
//! from the caller's buffer; only what the kernel does not take is copied into the queue (or, for
//! an owned [`SharedBody`], referenced), and the loop owner flushes the queue (coalescing many
//! queued frames into one `writev`) when the stream becomes writable.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use super::{ConnError, Stream};
use crate::proto::{FrameHeader, Framing};

/// The largest number of bytes handed to one `writev`, well below `INT_MAX` so messages over
/// 2 or 4 GiB go out in several calls instead of failing.
const MAX_WRITE: usize = 1 << 30;

/// How many queued frames one flush hands to a single `writev`.
const MAX_IOVECS: usize = 64;

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
pub(super) struct OutQueue {
    frames: VecDeque<QueuedFrame>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// A flush has taken the front frames out to write them without holding the lock: no
    /// sender may write directly meanwhile (its frame would overtake them).
    flushing: bool,
}

#[derive(Debug)]
pub(super) struct ConnShared {
    pub(super) stream: Stream,
    pub(super) framing: Framing,
    pub(super) out: Mutex<OutQueue>,
    /// Messages waiting in `out` (or taken out by a flush under way), readable without the lock
    /// (for "is this pipe ready").
    pub(super) queued: AtomicUsize,
    pub(super) failed: AtomicBool,
    /// Writability wait for [`ConnSender::send_blocking`], created on first use.
    pub(super) writable: Mutex<Option<(mio::Poll, mio::Events)>>,
    /// Bytes the reading half has read from the stream so far.
    pub(super) received: AtomicU64,
    /// The reading half is inside a read straight into a large body.
    pub(super) reading: AtomicBool,
}

/// The writing half of a connection; clone it freely, send from any thread.
#[derive(Debug, Clone)]
pub struct ConnSender {
    pub(super) shared: Arc<ConnShared>,
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
        // A flush has the last queued frames out for writing (one non-blocking `writev`): wait
        // for it, as for the lock it used to hold, rather than copy this frame into the queue.
        while out.flushing && out.frames.is_empty() {
            drop(out);
            std::thread::yield_now();
            out = self.lock_out();
        }
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

    /// Flushes until the queue is empty, waiting for the stream to drain in between, or until
    /// `deadline` passes; returns whether the queue is empty. For a loop owner closing the
    /// connection: frames still queued are written before the stream is shut down.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, Stream};
    ///
    /// let (a, _b) = mio::net::UnixStream::pair()?;
    /// let push = Connection::new(Stream::Unix(a), Protocol::Push0, 0)?;
    /// push.sender().send_later(&[b"last"])?;
    /// assert!(push.sender().flush_until(Instant::now() + Duration::from_secs(1))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_until(&self, deadline: Instant) -> Result<bool, ConnError> {
        loop {
            if self.flush()? {
                return Ok(true);
            }
            if !self.wait_writable(Some(deadline))? {
                return Ok(false);
            }
        }
    }

    /// The stream this sender writes to.
    pub fn stream(&self) -> &Stream {
        &self.shared.stream
    }

    /// How many bytes the connection's reading half has read from the stream so far (see
    /// [`Connection::bytes_received`](super::Connection::bytes_received)); readable from any
    /// thread, also while a read is under way, so another thread can tell that a large frame is
    /// still arriving.
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
    pub(super) fn send_raw(&self, bytes: &[u8]) -> Result<(), ConnError> {
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
