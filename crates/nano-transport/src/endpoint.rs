//! Binding listeners and connecting dialers, and who a local listener admits.
//!
//! Binding happens in the caller's thread (so errors come back from `Socket::listen` at once);
//! the bound [`ListenSource`] then goes to the I/O thread, which accepts on it and passes every
//! accepted local connection through [`admit`] before anything else happens to it.

use std::io as stdio;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
#[cfg(feature = "tls")]
use std::sync::Arc;

use crate::Error;
use crate::conn::Stream;
use crate::peer::{LocalPeers, check_same_user};
use crate::shared::Inner;
use crate::url::Address;

/// The mode of the socket files of `ipc://` listeners: only our user may connect.
pub(crate) const IPC_FILE_MODE: u32 = 0o600;

/// The `listen(2)` backlog of `ipc://` listeners (the kernel caps it at `somaxconn`).
const IPC_BACKLOG: i32 = 1024;

/// A bound listener, handed from `Socket::listen` to the I/O thread.
pub(crate) enum ListenSource {
    Tcp(mio::net::TcpListener),
    /// An `ipc://` (with its file, removed at close) or `abstract://` listener.
    Unix {
        listener: mio::net::UnixListener,
        path: Option<PathBuf>,
        /// Who may connect (checked on every accepted connection).
        peers: LocalPeers,
        /// The listener's URL, for the log line of a refused peer.
        url: String,
    },
    /// A TCP listener whose connections start a TLS session with this configuration.
    #[cfg(feature = "tls")]
    Tls(mio::net::TcpListener, Arc<rustls::ServerConfig>),
}

fn std_abstract(name: &[u8]) -> stdio::Result<std::os::unix::net::SocketAddr> {
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// Binds `addr` (in the caller's thread, so errors come back at once); returns the listener and
/// the URL to report.
pub(crate) fn bind(
    addr: &Address,
    url: &str,
    inner: &Inner,
) -> Result<(ListenSource, String), Error> {
    let in_use = |e: stdio::Error| {
        if e.kind() == stdio::ErrorKind::AddrInUse {
            Error::AddrInUse(url.to_owned())
        } else {
            Error::Io(e)
        }
    };
    let peers = inner.lock().opts.local_peers;
    match addr {
        Address::Tcp(sa) => {
            let l = mio::net::TcpListener::bind(*sa).map_err(in_use)?;
            let local = Address::Tcp(l.local_addr()?).to_url();
            Ok((ListenSource::Tcp(l), local))
        }
        Address::Ipc(path) => {
            let listener = match bind_ipc(path) {
                Ok(l) => l,
                Err(e) if e.kind() == stdio::ErrorKind::AddrInUse => {
                    // Stale socket file from a dead listener: nobody accepts on it, so take it
                    // over. Anything else at that path (a live listener, a regular file) stays.
                    let is_socket =
                        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
                    match std::os::unix::net::UnixStream::connect(path) {
                        Err(c) if is_socket && c.kind() == stdio::ErrorKind::ConnectionRefused => {
                            std::fs::remove_file(path)?;
                            bind_ipc(path).map_err(in_use)?
                        }
                        _ => return Err(Error::AddrInUse(url.to_owned())),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            let url = addr.to_url();
            let source = ListenSource::Unix {
                listener,
                path: Some(path.clone()),
                peers,
                url: url.clone(),
            };
            Ok((source, url))
        }
        Address::Abstract(name) => {
            let listener =
                mio::net::UnixListener::bind_addr(&std_abstract(name)?).map_err(in_use)?;
            let url = addr.to_url();
            let source = ListenSource::Unix {
                listener,
                path: None,
                peers,
                url: url.clone(),
            };
            Ok((source, url))
        }
        #[cfg(feature = "tls")]
        Address::Tls { addr: sa, .. } => {
            let server = inner
                .lock()
                .opts
                .tls
                .as_ref()
                .and_then(|t| t.server.clone());
            let server = server.ok_or(Error::State(
                "tls+tcp:// listeners need a TLS listener configuration (Socket::set_tls)",
            ))?;
            let l = mio::net::TcpListener::bind(*sa).map_err(in_use)?;
            let local = l.local_addr()?;
            let host = local.ip().to_string();
            let url = Address::Tls { addr: local, host }.to_url();
            Ok((ListenSource::Tls(l, server), url))
        }
        #[cfg(not(feature = "tls"))]
        Address::Tls { .. } => Err(Error::TlsDisabled {
            url: url.to_owned(),
        }),
    }
}

/// Binds a Unix socket file with mode [`IPC_FILE_MODE`].
///
/// `bind(2)` creates the file with `0777 & !umask`, and the umask is per process (changing it
/// here would race every other thread creating files), so the mode is set after `bind` with
/// `chmod`, but *before* `listen(2)`: until then the kernel refuses every `connect(2)` to the
/// file, so no other user can get in during the moment its mode is still the umask's. (Binding
/// under a temporary name and renaming would also work, but needs a second name that fits in
/// `sun_path` and a rename over whatever is at the final path.) Accepted connections are then
/// still checked with `SO_PEERCRED` (see [`admit`]), which holds even for a file whose mode a
/// user widens later.
fn bind_ipc(path: &Path) -> stdio::Result<mio::net::UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd: OwnedFd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    let listening = rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(IPC_FILE_MODE))
        .and_then(|()| rustix::net::listen(&fd, IPC_BACKLOG));
    if let Err(e) = listening {
        // The file is ours (bind just created it): do not leave it behind.
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    Ok(mio::net::UnixListener::from_std(
        std::os::unix::net::UnixListener::from(fd),
    ))
}

/// Whether an accepted local connection may proceed: with [`LocalPeers::SameUser`], only a
/// peer of our effective user. A refused peer is logged here; the caller drops (closes) its
/// stream before sending or reading anything.
pub(crate) fn admit(stream: &mio::net::UnixStream, peers: LocalPeers, url: &str) -> bool {
    match peers {
        LocalPeers::AnyUser => true,
        LocalPeers::SameUser => match check_same_user(stream) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(listener = url, error = %e, "refused a local connection");
                false
            }
        },
    }
}

pub(crate) fn connect(addr: &Address) -> stdio::Result<Stream> {
    Ok(match addr {
        // TLS starts once the TCP connection is up (see `IoLoop::secure`).
        Address::Tcp(sa) | Address::Tls { addr: sa, .. } => {
            Stream::Tcp(mio::net::TcpStream::connect(*sa)?)
        }
        Address::Ipc(path) => Stream::Unix(mio::net::UnixStream::connect(path)?),
        Address::Abstract(name) => {
            Stream::Unix(mio::net::UnixStream::connect_addr(&std_abstract(name)?)?)
        }
    })
}
