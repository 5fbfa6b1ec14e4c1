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

mod sender;
mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::Protocol;
use crate::proto::{
    FrameDecoder, FrameError, HANDSHAKE_LEN, HandshakeError, decode_handshake, encode_handshake,
};
use sender::ConnShared;
pub(crate) use sender::SMALL_FRAME;
pub use sender::{ConnSender, SendStatus, SharedBody};
pub use stream::Stream;

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

    /// Blocks until the stream has bytes to read (or reports its close or an error), for at
    /// most `timeout` (no limit with `None`); `false` when the time ran out. For a thread that
    /// reads this connection outside the mio loop, while the loop does not watch it for bytes:
    /// wait here, then call [`on_readable`](Self::on_readable) after
    /// [`note_readable`](Self::note_readable).
    ///
    /// ```
    /// use std::time::Duration;
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, Stream};
    ///
    /// let (a, b) = mio::net::UnixStream::pair()?;
    /// let ours = Connection::new(Stream::Unix(a), Protocol::Pair1, 0)?;
    /// assert!(!ours.wait_readable(Some(Duration::ZERO))?, "nothing sent to us yet");
    /// let _theirs = Connection::new(Stream::Unix(b), Protocol::Pair1, 0)?; // sends its header
    /// assert!(ours.wait_readable(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_readable(&self, timeout: Option<std::time::Duration>) -> io::Result<bool> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        let mut fds = [PollFd::new(self.stream(), PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(true),
            Err(e) => Err(e.into()),
        }
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
