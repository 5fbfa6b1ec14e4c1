//! The byte streams a connection runs over (TCP, Unix-domain, TLS) behind one type, and the few
//! operations the connection needs from them.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::proto::Framing;

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

    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => (&*s).read(buf),
            Self::Unix(s) => (&*s).read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.read(buf),
        }
    }

    /// Reads at most `max` bytes appended to `buf`, into its spare capacity (which the caller
    /// reserved): the kernel writes the bytes straight into the message, nothing is zeroed first.
    pub(super) fn read_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
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

    pub(super) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
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
    pub(super) fn short_read_drains(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(_) => false,
            _ => true,
        }
    }

    /// Whether the stream itself holds output the kernel has not taken (TLS records encrypted
    /// from plaintext already accepted); plain streams never do.
    pub(super) fn has_pending(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.has_pending(),
            _ => false,
        }
    }

    /// Writes such output; `true` when none is left.
    pub(super) fn flush_pending(&self) -> io::Result<bool> {
        match self {
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.flush_pending(),
            _ => Ok(true),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Tcp(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.tcp().as_fd(),
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
