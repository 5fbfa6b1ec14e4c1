//! The connection itself: dialing, both handshakes, and one message in or out.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use nano_transport::conn::{ConnSender, Connection, ReadProgress, SendStatus, Stream};
use nano_transport::proto::{MAX_TTL_DEFAULT, pair1_hops};
#[cfg(feature = "tls")]
use nano_transport::tls::TlsConfig;
use nano_transport::{Address, Protocol};

use bytes::Bytes;

use super::{CONN, DaemonConfig, DaemonError, PAIR1_HEADER, READ_BATCH};
use crate::protocol::{FromDaemon, Hello, Init, Limits, MAX_ENVELOPE, ToDaemon, VERSION};

/// The limits the dispatcher's init message sets for this connection.
pub(super) fn limits_of(init: &Init) -> Limits {
    Limits::new(init.max_message)
}

/// What may be received before the init message: an init or a refusal, neither of which
/// carries a payload (so an envelope, its length prefix and the PAIR1 header).
const PRE_INIT_LIMIT: u64 = (MAX_ENVELOPE + 4 + PAIR1_HEADER.len()) as u64;

/// The receive limit once the init message set `limits`: the largest task frame.
fn recv_limit(limits: &Limits) -> u64 {
    limits.max_frame().saturating_add(PAIR1_HEADER.len() as u64)
}

/// Dials until connected (or `connect_timeout`), then runs both handshakes.
pub(super) fn connect(
    address: &Address,
    config: &DaemonConfig,
    poll: &mut Poll,
    old: Option<RawFd>,
) -> Result<(Connection, Init, Vec<Vec<u8>>), DaemonError> {
    if let Some(fd) = old {
        let _ = poll.registry().deregister(&mut SourceFd(&fd));
    }
    #[cfg(feature = "tls")]
    let tls = match (address, &config.tls) {
        (Address::Tls { host, .. }, Some(tls)) if tls.has_dialer() => Some((tls, host.as_str())),
        (Address::Tls { .. }, _) => {
            return Err(nano_transport::Error::State(
                "tls+tcp:// needs a TLS dialer configuration (DaemonConfig::tls)",
            )
            .into());
        }
        _ => None,
    };
    #[cfg(not(feature = "tls"))]
    if let Address::Tls { .. } = address {
        return Err(crate::security::tls_disabled(&config.url).into());
    }
    let deadline = Instant::now() + config.connect_timeout;
    let stream = loop {
        match dial(
            address,
            #[cfg(feature = "tls")]
            tls,
        ) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // Until the init message says the pool's limit, nothing larger than an init is accepted;
    // the read below stops right after the init, before the next frame's length is read, so a
    // first task that came with it is held to the limit the init set.
    let mut conn = Connection::new(stream, Protocol::Pair1, PRE_INIT_LIMIT)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let fd = conn.stream().as_raw_fd();
    // Writability too while handshaking: a TLS handshake flight the kernel did not take at once
    // is flushed when the socket drains.
    poll.registry().register(
        &mut SourceFd(&fd),
        CONN,
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let hello = FromDaemon::Hello(Hello {
        version: VERSION,
        launch_id: config.launch_id,
        token: config.token.expose().to_vec(),
    });
    let mut events = Events::with_capacity(8);
    let mut said_hello = false;
    loop {
        let mut bodies = Vec::new();
        let progress = conn.on_readable(READ_BATCH, &mut |b| {
            let answered = matches!(
                decode(&b, &Limits::new(0)),
                Some((ToDaemon::Init(_) | ToDaemon::Refused(_), _))
            );
            bodies.push(b);
            !answered
        });
        // A refusal may arrive together with the close that follows it: the bodies read before
        // an error are looked at first, so the daemon learns why it was turned away.
        let closed = match progress {
            Ok(p) => Ok(p),
            Err(e) if bodies.is_empty() => return Err(io::Error::other(e.to_string()).into()),
            Err(e) => Err(e),
        };
        if closed.is_ok() && conn.is_open() && !said_hello {
            send(conn.sender(), &hello, &[])?;
            said_hello = true;
        }
        if closed.is_ok() && conn.sender().queued() > 0 {
            conn.sender()
                .flush()
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let mut bodies = bodies.into_iter();
        while let Some(body) = bodies.next() {
            match decode(&body, &Limits::new(0)) {
                // What followed the init in the same read (a first task) is kept; nothing
                // does today, as the read stops at the init.
                Some((ToDaemon::Init(init), _)) => {
                    conn.set_recv_limit(recv_limit(&limits_of(&init)));
                    poll.registry()
                        .reregister(&mut SourceFd(&fd), CONN, Interest::READABLE)?;
                    return Ok((conn, init, bodies.collect()));
                }
                Some((ToDaemon::Refused(reason), _)) => return Err(DaemonError::Refused(reason)),
                _ => {}
            }
        }
        let progress = closed.map_err(|e| io::Error::other(e.to_string()))?;
        if progress != ReadProgress::Drained {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DaemonError::NoInit(config.connect_timeout));
        }
        if let Err(e) = poll.poll(&mut events, Some(left))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e.into());
        }
        note_events(&mut conn, &events);
    }
}

/// Records what a wait's events said about the connection: it must be read, and whether the
/// host's close came with them (see [`Connection::note_read_closed`]).
pub(super) fn note_events(conn: &mut Connection, events: &Events) {
    conn.note_readable();
    if events
        .iter()
        .any(|e| e.token() == CONN && e.is_read_closed())
    {
        conn.note_read_closed();
    }
}

/// Connects a stream to `address`; over `tls+tcp://` (with `tls`, the dialer configuration and
/// the host to verify) the client side of TLS starts at once, and its handshake then advances
/// with the connection's reads, before the SP headers are exchanged.
fn dial(
    address: &Address,
    #[cfg(feature = "tls")] tls: Option<(&TlsConfig, &str)>,
) -> io::Result<Stream> {
    Ok(match address {
        Address::Tcp(sa) => {
            let s = TcpStream::connect(sa)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            Stream::Tcp(mio::net::TcpStream::from_std(s))
        }
        #[cfg(feature = "tls")]
        Address::Tls { addr, .. } => {
            let (config, host) =
                tls.ok_or_else(|| io::Error::other("no TLS dialer configuration"))?;
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            Stream::Tls(config.connect(mio::net::TcpStream::from_std(s), host)?)
        }
        // Refused before the first dial (`connect`); never reached.
        #[cfg(not(feature = "tls"))]
        Address::Tls { .. } => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "tls+tcp:// needs the `tls` feature",
            ));
        }
        Address::Ipc(path) => {
            let s = UnixStream::connect(path)?;
            listener_is_ours(&s)?;
            s.set_nonblocking(true)?;
            Stream::Unix(mio::net::UnixStream::from_std(s))
        }
        Address::Abstract(name) => {
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            let s = UnixStream::connect_addr(&addr)?;
            listener_is_ours(&s)?;
            s.set_nonblocking(true)?;
            Stream::Unix(mio::net::UnixStream::from_std(s))
        }
    })
}

/// A local listener of another user is not our dispatcher, whatever its name: one that took
/// the name of a dispatcher that went away (abstract names are anyone's to take) would
/// otherwise receive this daemon's credential and could send it tasks. Checked with
/// `SO_PEERCRED` before a byte is written; the dial is then retried until the connect timeout,
/// as for a listener that is not there.
fn listener_is_ours(stream: &UnixStream) -> io::Result<()> {
    nano_transport::peer::check_same_user(stream)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))
}

/// Decodes a body from the dispatcher: its PAIR1 header, then the message.
pub(super) fn decode<'a>(body: &'a [u8], limits: &Limits) -> Option<(ToDaemon, &'a [u8])> {
    pair1_hops(body, MAX_TTL_DEFAULT).ok()?;
    ToDaemon::decode(&body[PAIR1_HEADER.len()..], limits).ok()
}

/// Writes one message, `PAIR1 header + envelope` and the payload's pieces as separate slices
/// (one vectored write, no payload byte copied), waiting for the stream to drain if it must
/// (the watcher shuts a silent host's stream, which ends a wait that would otherwise last).
pub(super) fn send(
    sender: &ConnSender,
    msg: &FromDaemon,
    payload: &[Bytes],
) -> Result<(), DaemonError> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&PAIR1_HEADER);
    msg.encode(&mut head)?;
    let failed = |e: nano_transport::conn::ConnError| io::Error::other(e.to_string());
    let status = match payload {
        // The common cases, without a list to allocate.
        [] => sender.send_blocking(&[&head], None),
        [one] => sender.send_blocking(&[&head, one], None),
        many => {
            let slices: Vec<&[u8]> = std::iter::once(&head[..])
                .chain(many.iter().map(|p| &p[..]))
                .collect();
            sender.send_blocking(&slices, None)
        }
    }
    .map_err(failed)?;
    if status == SendStatus::Queued {
        // A heartbeat was queued ahead (the dispatcher had stopped reading): nobody else
        // flushes this connection, so push everything out before going back to sleep. A
        // silent host's stream is shut by the watcher, which ends this loop with an error.
        while !sender.flush().map_err(failed)? {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}
