//! Who is at the other end of a local (`ipc://`, `abstract://`) connection.
//!
//! A Unix socket file can be given mode 0600, but an abstract socket has no permissions at all:
//! any process of the machine can connect to it. On a machine shared with other users (a login
//! node) that would let any of them read and answer what the listener sends, so local listeners
//! ask the kernel who connected (`SO_PEERCRED`, recorded at `connect(2)` and not forgeable by
//! the peer) and admit only processes of their own user before reading a byte.

use std::os::fd::AsFd;

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
