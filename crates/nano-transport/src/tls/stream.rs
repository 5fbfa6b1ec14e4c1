//! A TLS session over a non-blocking mio TCP stream, shaped like the plain streams the
//! connection code already drives.
//!
//! rustls is a sans-IO state machine: bytes from the socket go in with `read_tls`, records to
//! send come out with `write_tls`, and nothing ever blocks. This shell keeps the session under a
//! mutex so the reading half (the I/O thread or a direct reader) and the writing half (any
//! sending thread) can share it, exactly as they share a plain socket, with no thread per
//! connection.
//!
//! Two rules keep the connection code's edge-triggered loop correct:
//! - a read fills the caller's buffer until the socket says "would block" or closes; the
//!   connection still reads once more after a short TLS read, because the records that
//!   completed it may also have carried the peer's close, which no later event would announce;
//! - a write accepts plaintext only when no earlier ciphertext is waiting; ciphertext the kernel
//!   did not take stays in the session and [`TlsStream::has_pending`] reports it, so the
//!   connection counts the pipe as having queued output and flushes it when writable.
//!
//! A read may have to write too (handshake flights, alerts). During the handshake the I/O
//! thread reads and watches writability while output is pending. Once a pipe is open, rustls
//! writes on its own only for TLS 1.3 key updates; if the socket is full at that moment, the
//! record goes out with the next send or flush.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use rustls::Connection;

use super::Fingerprint;

/// A TLS client or server session over a mio TCP stream.
#[derive(Debug)]
pub struct TlsStream {
    tcp: mio::net::TcpStream,
    /// Boxed: a rustls session is over a kilobyte, and plain streams share the enum.
    session: Box<Mutex<Session>>,
    /// Ciphertext waits in the session for the socket to become writable.
    pending: AtomicBool,
}

#[derive(Debug)]
struct Session {
    conn: Connection,
    /// The TCP stream reached end-of-file (or the peer sent close_notify).
    eof: bool,
}

impl TlsStream {
    pub(crate) fn new(tcp: mio::net::TcpStream, conn: Connection) -> Self {
        // A client's hello is queued at once; a blocked write here is retried on writability.
        let s = Self {
            tcp,
            session: Box::new(Mutex::new(Session { conn, eof: false })),
            pending: AtomicBool::new(true),
        };
        let _ = s.flush_pending();
        s
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &mio::net::TcpStream {
        &self.tcp
    }

    /// The fingerprint of the certificate the peer presented, once the handshake got that far.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        let s = self.lock();
        s.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of_der(c))
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes queued ciphertext until done or the socket would block; records whether some is
    /// left.
    fn write_out(&self, s: &mut Session) -> io::Result<()> {
        while s.conn.wants_write() {
            match s.conn.write_tls(&mut &self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending.store(false, Ordering::Release);
                    return Err(e);
                }
            }
        }
        self.pending.store(s.conn.wants_write(), Ordering::Release);
        Ok(())
    }

    /// Whether ciphertext waits for the socket to become writable.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Writes waiting ciphertext; `true` when none is left.
    pub fn flush_pending(&self) -> io::Result<bool> {
        let mut s = self.lock();
        self.write_out(&mut s)?;
        Ok(!s.conn.wants_write())
    }

    /// Reads decrypted bytes, filling `buf` until the socket would block (see the module docs).
    /// `Ok(0)` is the end of the stream.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut s = self.lock();
        let mut filled = 0;
        loop {
            match s.conn.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: NNG peers often just close the socket.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            if s.eof {
                return Ok(filled);
            }
            match s.conn.read_tls(&mut &self.tcp) {
                Ok(0) => s.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let processed = s.conn.process_new_packets();
            // Handshake flights, alerts and the plaintext queued during the handshake.
            let written = self.write_out(&mut s);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            written?;
        }
    }

    /// Encrypts and writes plaintext; returns how much was taken (see the module docs).
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut s = self.lock();
        self.write_out(&mut s)?;
        if s.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // rustls copies plaintext into its record buffer (bounded by its buffer limit), the one
        // copy TLS cannot avoid: records are encrypted from it.
        let taken = s.conn.writer().write_vectored(bufs)?;
        self.write_out(&mut s)?;
        if taken == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Sends close_notify (best effort) and shuts the TCP stream down.
    pub fn shutdown(&self) -> io::Result<()> {
        {
            let mut s = self.lock();
            s.conn.send_close_notify();
            let _ = self.write_out(&mut s);
        }
        self.tcp.shutdown(Shutdown::Both)
    }
}
