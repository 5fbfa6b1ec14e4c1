//! Who is at the other end of a local (`ipc://`, `abstract://`) connection.
//!
//! A Unix socket file can be given mode 0600, but an abstract socket has no permissions at all:
//! any process of the machine can connect to it. On a machine shared with other users (a login
//! node) that would let any of them read and answer what the listener sends, so local listeners
//! ask the kernel who connected (`SO_PEERCRED`, recorded at `connect(2)` and not forgeable by
//! the peer) and admit only processes of their own user before reading a byte.
//!
//! Every `ipc://` and `abstract://` listener of a [`Socket`](crate::Socket) does this by
//! default ([`LocalPeers::SameUser`]): a connection from another user is closed right after
//! `accept(2)`, before our SP header is sent or any of its bytes is read, and logged with
//! `tracing::warn!`. A service meant for other local users opts out with
//! [`Socket::set_local_peers`](crate::Socket::set_local_peers)`(`[`LocalPeers::AnyUser`]`)`.
//! `ipc://` socket files are also created with mode 0600, so other users (root aside) cannot
//! even connect to them.

use std::os::fd::AsFd;

/// Which local users an `ipc://` or `abstract://` listener admits.
///
/// ```
/// use nano_transport::peer::LocalPeers;
/// assert_eq!(LocalPeers::default(), LocalPeers::SameUser);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalPeers {
    /// Only processes running as our effective user id (checked with `SO_PEERCRED`); the
    /// default.
    #[default]
    SameUser,
    /// Any local process: for a service deliberately offered to other users of the machine,
    /// which then authenticates them itself. `ipc://` files are still created 0600; widen
    /// their mode yourself if other users must reach them.
    AnyUser,
}

/// A local peer that is not of our user, or whose credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer runs as another user.
    #[error("local peer (pid {pid}) runs as uid {uid}, not ours ({ours})")]
    OtherUser {
        /// The peer's user id.
        uid: u32,
        /// Its process id at connect time.
        pid: i32,
        /// Our effective user id.
        ours: u32,
    },
    /// `SO_PEERCRED` failed (not a Unix socket, or the socket is already gone).
    #[error("cannot read the local peer's credentials: {0}")]
    Credentials(String),
}

/// Admits the peer of a connected Unix socket only if it runs as our effective user.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// let (a, _b) = UnixStream::pair()?;
/// assert_eq!(nano_transport::peer::check_same_user(&a), Ok(()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn check_same_user(socket: impl AsFd) -> Result<(), PeerError> {
    let cred = rustix::net::sockopt::socket_peercred(socket)
        .map_err(|e| PeerError::Credentials(e.to_string()))?;
    let ours = rustix::process::geteuid().as_raw();
    let uid = cred.uid.as_raw();
    if uid == ours {
        Ok(())
    } else {
        Err(PeerError::OtherUser {
            uid,
            pid: cred.pid.as_raw_pid(),
            ours,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_without_a_peer_has_no_credentials() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            check_same_user(&listener),
            Err(PeerError::Credentials(_))
        ));
    }
}
