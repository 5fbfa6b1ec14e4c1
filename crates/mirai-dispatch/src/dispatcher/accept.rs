//! The listener: binding it, and accepting connections without letting the unauthenticated
//! ones exhaust us.
//!
//! Why each step:
//!
//! - **Local peers are checked by uid before anything else.** An abstract socket has no file
//!   permissions, and a socket file's mode cannot be set before it exists, so on `ipc://` and
//!   `abstract://` the kernel's record of who connected (`SO_PEERCRED`) decides: a process of
//!   another user is closed at once, before it is registered, sent our SP header or read, and
//!   logged (WARN) with its uid and pid.
//! - **Bounded admission.** At most [`DispatcherConfig::max_unauthenticated`] connections may
//!   wait for their hello; the oldest is closed when a new one would pass the cap (see
//!   [`crate::admission`]). At most [`ACCEPT_BATCH`] connections are accepted per turn of the
//!   loop, so the hellos of those already accepted are read between batches and a flood of
//!   new connections cannot push a daemon out before its hello is looked at.
//! - **Accept errors never stall the listener.** The listener is edge-triggered: an error that
//!   leaves connections in the backlog must not end with nobody coming back for them. Out of
//!   descriptors (`EMFILE`, `ENFILE`) or kernel memory, the oldest unauthenticated connection is
//!   closed and the accept retried; with none to close, the accept is retried after
//!   [`ACCEPT_RETRY`]. A connection aborted before its accept is skipped alone.
//!
//! [`DispatcherConfig::max_unauthenticated`]: super::DispatcherConfig::max_unauthenticated

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Token;
use nano_transport::conn::{Connection, Stream};
use nano_transport::peer::{PeerError, check_same_user};
#[cfg(feature = "tls")]
use nano_transport::tls::TlsConfig;
use nano_transport::{Address, Protocol};

use super::event_loop::{EventLoop, Peer, drop_unauthenticated};
use super::lane::Lane;
use super::{DaemonEvent, PRE_ADMISSION_LIMIT, StartError};
use crate::security::check_socket_dir;

/// Most connections accepted in one turn of the dispatcher loop; the loop comes back for the
/// rest at once, after reading the connections it has.
pub(super) const ACCEPT_BATCH: usize = 16;

/// How long to wait before accepting again when an accept failed and no unauthenticated
/// connection could be closed to make room.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(50);

pub(super) enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
    /// Accepted connections start the server side of TLS with this configuration.
    #[cfg(feature = "tls")]
    Tls(mio::net::TcpListener, TlsConfig),
}

/// What one accept attempt gave.
enum Accepted {
    /// A connection, with the peer's address on TCP.
    Stream(Stream, Option<SocketAddr>),
    /// Nothing more waits.
    Drained,
    /// A local connection of another user, closed at once.
    Foreign(PeerError),
    /// This connection failed alone (aborted, refused, no TLS): go on with the next.
    Skip,
    /// Out of descriptors or memory: room must be made before the next accept.
    NoRoom(io::Error),
    /// Another failure of the listener: try again shortly.
    Later(io::Error),
}

impl Listener {
    fn accept_one(&self) -> Accepted {
        let stream = match self {
            Self::Tcp(l) => l.accept().map(|(s, addr)| {
                let _ = s.set_nodelay(true);
                (Stream::Tcp(s), Some(addr))
            }),
            Self::Unix(l) => match l.accept() {
                // Before anything else: a process of another user is never registered, never
                // sent a byte and never read.
                Ok((s, _)) => match check_same_user(&s) {
                    Ok(()) => Ok((Stream::Unix(s), None)),
                    Err(e) => return Accepted::Foreign(e),
                },
                Err(e) => Err(e),
            },
            #[cfg(feature = "tls")]
            Self::Tls(l, config) => match l.accept() {
                Ok((s, addr)) => {
                    let _ = s.set_nodelay(true);
                    // The server side of TLS; its handshake advances with this connection's
                    // reads and flushes, before the SP headers are exchanged.
                    match config.accept(s) {
                        Ok(s) => Ok((Stream::Tls(s), Some(addr))),
                        // TLS could not start on this connection: skip it alone.
                        Err(_) => return Accepted::Skip,
                    }
                }
                Err(e) => Err(e),
            },
        };
        match stream {
            Ok((s, addr)) => Accepted::Stream(s, addr),
            Err(e) => classify(e),
        }
    }
}

/// Sorts an accept error by what the loop must do about it.
fn classify(e: io::Error) -> Accepted {
    use io::ErrorKind as K;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    const EPROTO: i32 = 71;
    match e.kind() {
        K::WouldBlock => Accepted::Drained,
        K::Interrupted | K::ConnectionAborted | K::ConnectionReset => Accepted::Skip,
        _ if matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)) => {
            Accepted::NoRoom(e)
        }
        // EPROTO, EPERM (a firewall) and the like concern one connection.
        K::PermissionDenied => Accepted::Skip,
        _ if e.raw_os_error() == Some(EPROTO) => Accepted::Skip,
        _ => Accepted::Later(e),
    }
}

/// Logs a local connection refused for its user.
fn refuse_local(e: &PeerError) {
    match e {
        PeerError::OtherUser { uid, pid, ours } => tracing::warn!(
            peer_uid = uid,
            peer_pid = pid,
            our_uid = ours,
            "refusing a local connection from another user"
        ),
        other => tracing::warn!(error = %other, "refusing a local connection"),
    }
}

impl EventLoop {
    /// Accepts up to [`ACCEPT_BATCH`] connections; leaves `listener_ready` set when more may
    /// wait (the loop then comes back without waiting for an event), or arms a retry.
    pub(super) fn accept(&mut self) {
        self.listener_ready = false;
        for _ in 0..ACCEPT_BATCH {
            let (stream, addr) = match self.listener.accept_one() {
                Accepted::Stream(s, addr) => (s, addr),
                Accepted::Drained => return,
                Accepted::Skip => continue,
                Accepted::Foreign(e) => {
                    refuse_local(&e);
                    if let PeerError::OtherUser { uid, pid, .. } = e {
                        self.shared.event(DaemonEvent::ForeignPeer { uid, pid });
                    }
                    continue;
                }
                Accepted::NoRoom(e) => {
                    // Make room by closing the oldest connection that has not authenticated,
                    // then try again; with nothing to close, come back later. Either way
                    // the connections left in the backlog are not forgotten.
                    if let Some(oldest) = self.admission.evict_oldest() {
                        drop_unauthenticated(oldest, "out of room to accept; oldest closed");
                        self.close(oldest);
                        continue;
                    }
                    self.retry_accept(&e);
                    return;
                }
                Accepted::Later(e) => {
                    self.retry_accept(&e);
                    return;
                }
            };
            self.register(stream, addr);
        }
        // The batch is full: more may wait, and no new edge would announce them.
        self.listener_ready = true;
    }

    /// Comes back to the listener after [`ACCEPT_RETRY`]: its backlog may hold connections
    /// no new event will announce.
    fn retry_accept(&mut self, e: &io::Error) {
        tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
        self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
    }

    /// Registers an accepted connection as unauthenticated, closing the oldest one if the cap
    /// is passed.
    fn register(&mut self, stream: Stream, addr: Option<SocketAddr>) {
        // Until its hello passes, a peer may send no more than a hello can be: it cannot
        // make us read (or buffer) a large frame before it has authenticated.
        let recv_limit = PRE_ADMISSION_LIMIT.min(self.full_recv_limit());
        let Ok(conn) = Connection::new(stream, Protocol::Pair1, recv_limit) else {
            return;
        };
        let token = Token(self.next_token);
        self.next_token += 1;
        let lanes = Arc::clone(&self.shared.lanes);
        let Ok(lane) = Lane::register(conn, token, self.poll.registry(), lanes) else {
            return;
        };
        let now = Instant::now();
        if let Some(oldest) = self.admission.added(token, now) {
            drop_unauthenticated(
                oldest,
                "too many unauthenticated connections; oldest closed",
            );
            self.close(oldest);
        }
        self.peers.insert(
            token,
            Peer {
                lane: Arc::new(lane),
                addr,
                daemon: None,
                last_rx: now,
                seen: 0,
                writable: false,
                refused: false,
            },
        );
        // The peer's header may already be waiting.
        self.ready.push(token);
    }
}

/// Binds `address`; returns the listener, the URL daemons dial, and the socket file to remove
/// at the end (`ipc://` only). `tls` is the listener configuration of a `tls+tcp://` address
/// (without the `tls` feature such an address is refused before this, by `listener_tls`).
pub(super) fn bind(
    address: &Address,
    url: &str,
    #[cfg(feature = "tls")] tls: Option<TlsConfig>,
) -> Result<(Listener, String, Option<PathBuf>), StartError> {
    let in_use = |e: io::Error| -> StartError {
        if e.kind() == io::ErrorKind::AddrInUse {
            nano_transport::Error::AddrInUse(url.to_owned()).into()
        } else {
            e.into()
        }
    };
    match address {
        Address::Tcp(sa) => {
            let l = mio::net::TcpListener::bind(*sa).map_err(in_use)?;
            let local = Address::Tcp(l.local_addr()?).to_url();
            Ok((Listener::Tcp(l), local, None))
        }
        Address::Ipc(path) => {
            // Another user who may replace files in the directory could put their own socket
            // in place of ours, and our daemons would present their credentials to it.
            check_socket_dir(path)?;
            let l = match mio::net::UnixListener::bind(path) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // A stale file from a dead dispatcher: nobody accepts on it, so take it over.
                    match std::os::unix::net::UnixStream::connect(path) {
                        Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                            std::fs::remove_file(path)?;
                            mio::net::UnixListener::bind(path).map_err(in_use)?
                        }
                        _ => return Err(in_use(e)),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            // Owner only. The file exists with the umask's mode between bind and this chmod
            // (a socket's mode cannot be set before it exists, and changing the process-wide
            // umask would race other threads); a process of another user that connects in
            // that window is closed by the peer check at accept, before a byte is exchanged.
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                let _ = std::fs::remove_file(path);
                return Err(e.into());
            }
            Ok((Listener::Unix(l), address.to_url(), Some(path.clone())))
        }
        Address::Abstract(name) => {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            let l = mio::net::UnixListener::bind_addr(&addr).map_err(in_use)?;
            Ok((Listener::Unix(l), address.to_url(), None))
        }
        #[cfg(feature = "tls")]
        Address::Tls { addr, .. } => {
            let tls = tls.ok_or(nano_transport::Error::State(
                "tls+tcp:// listeners need a TLS listener configuration",
            ))?;
            let l = mio::net::TcpListener::bind(*addr).map_err(in_use)?;
            let local = l.local_addr()?;
            let url = Address::Tls {
                addr: local,
                host: local.ip().to_string(),
            }
            .to_url();
            Ok((Listener::Tls(l, tls), url, None))
        }
        #[cfg(not(feature = "tls"))]
        Address::Tls { .. } => Err(crate::security::tls_disabled(url).into()),
    }
}
