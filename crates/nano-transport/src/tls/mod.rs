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
