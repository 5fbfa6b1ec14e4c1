//! `tls+tcp://`: the SP connection header and TCP framing inside a TLS stream, as NNG's TLS
//! transport does (feature `tls`).
//!
//! TLS adds nothing to the SP bytes: TCP connect, TLS handshake, then exactly what `tcp://`
//! carries. The handshake runs inside the socket's mio loop ([`TlsStream`] drives rustls with
//! `read_tls`/`write_tls`), so a TLS pipe costs no thread; the SP handshake timeout covers the
//! TLS handshake too.
//!
//! Certificates come from the user (PEM files or memory, [`Identity::from_pem`]) or are
//! generated at startup ([`Identity::generate`], ECDSA P-256, milliseconds). A generated
//! certificate has no CA, so a dialer pins its [`Fingerprint`] ([`ServerAuth::Pinned`]) and the
//! fingerprint travels in the daemon's launch command. Listeners may also require client
//! certificates ([`ClientAuth`]).
//!
//! ```
//! use std::time::Duration;
//! use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
//! use nano_transport::{Protocol, Socket};
//!
//! let host = Identity::generate(&["localhost"])?;
//! let pin = host.fingerprint();
//! let rep = Socket::new(Protocol::Rep0)?;
//! rep.set_tls(TlsConfig::new().with_listener(host, ClientAuth::None)?);
//! let url = rep.listen("tls+tcp://127.0.0.1:0")?.local_url().to_owned();
//!
//! let req = Socket::new(Protocol::Req0)?;
//! req.set_tls(TlsConfig::new().with_dialer(ServerAuth::Pinned(pin), None)?);
//! req.dial_blocking(&url, Duration::from_secs(5))?;
//! req.send(b"ping")?;
//! assert_eq!(&*rep.recv()?, b"ping");
//! rep.send(b"pong")?;
//! assert_eq!(&*req.recv()?, b"pong");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod identity;
mod stream;
mod verify;

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;

pub use config::{ClientAuth, ServerAuth, TlsConfig, TlsError};
pub use identity::{
    Fingerprint, Identity, IdentityError, MAX_CHAIN, MAX_PEM, certificates_from_pem, key_from_pem,
};
pub use stream::TlsStream;

impl TlsConfig {
    /// Starts the server side of TLS on a TCP stream accepted by the caller's own mio
    /// loop (for loops that drive [`Connection`](crate::conn::Connection)s themselves rather
    /// than through a [`Socket`](crate::Socket)). Wrap the result in
    /// [`Stream::Tls`](crate::conn::Stream::Tls): the TLS handshake then runs inside the
    /// connection's reads and flushes, before the SP header exchange, exactly as on a socket's
    /// own listener. Fails if this configuration has no listener side.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use nano_transport::Protocol;
    /// use nano_transport::conn::{Connection, Stream};
    /// use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
    ///
    /// let host = Identity::generate(&["localhost"])?;
    /// let dial = TlsConfig::new().with_dialer(ServerAuth::Pinned(host.fingerprint()), None)?;
    /// let listen = TlsConfig::new().with_listener(host, ClientAuth::None)?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    /// let (server, _) = listener.accept()?;
    /// client.set_nonblocking(true)?;
    /// server.set_nonblocking(true)?;
    /// let client = dial.connect(mio::net::TcpStream::from_std(client), "localhost")?;
    /// let server = listen.accept(mio::net::TcpStream::from_std(server))?;
    /// let mut a = Connection::new(Stream::Tls(client), Protocol::Pair1, 0)?;
    /// let mut b = Connection::new(Stream::Tls(server), Protocol::Pair1, 0)?;
    /// // Drive both ends until the TLS and SP handshakes are done.
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// while !(a.is_open() && b.is_open()) {
    ///     assert!(Instant::now() < deadline);
    ///     for c in [&mut a, &mut b] {
    ///         c.sender().flush()?;
    ///         c.note_readable();
    ///         c.on_readable(1, &mut |_| true)?;
    ///     }
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept(&self, tcp: mio::net::TcpStream) -> io::Result<TlsStream> {
        let server = self
            .server
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS listener configuration"))?;
        accept(tcp, server)
    }

    /// Starts the client side of TLS on a connected (or connecting) TCP stream, verifying
    /// the listener as the dialer side says, against `host` unless
    /// [`with_server_name`](TlsConfig::with_server_name) named another; the counterpart of
    /// [`accept`](TlsConfig::accept), whose example shows both. Fails if this configuration has
    /// no dialer side or `host` is not a valid server name.
    pub fn connect(&self, tcp: mio::net::TcpStream, host: &str) -> io::Result<TlsStream> {
        connect(tcp, self, host)
    }
}

/// Starts the server side of a session on an accepted stream.
pub(crate) fn accept(
    tcp: mio::net::TcpStream,
    config: &Arc<rustls::ServerConfig>,
) -> io::Result<TlsStream> {
    let conn = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    Ok(TlsStream::new(tcp, conn.into()))
}

/// Starts the client side of a session on a connecting stream; `host` is the URL's host unless
/// the configuration names the server.
pub(crate) fn connect(
    tcp: mio::net::TcpStream,
    config: &TlsConfig,
    host: &str,
) -> io::Result<TlsStream> {
    let client = config
        .client
        .as_ref()
        .ok_or_else(|| io::Error::other("no TLS dialer configuration"))?;
    let name = config.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_owned()).map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::clone(client), name).map_err(io::Error::other)?;
    Ok(TlsStream::new(tcp, conn.into()))
}
