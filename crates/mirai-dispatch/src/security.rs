//! Which addresses a dispatcher may listen on, and how each kind is protected.
//!
//! The threat model is a shared machine (a login node with hundreds of users) and the networks
//! between it and its daemons:
//!
//! - **Plain TCP needs an explicit yes.** Task arguments and results are the user's data, and
//!   a daemon's credential travels in its hello: over plain `tcp://` both cross the network in
//!   the clear, and anyone on the path can read them or replay the credential. So a dispatcher
//!   listens on `tcp://` only when the user asks for it (e.g. behind an SSH tunnel);
//!   `tls+tcp://` is the default way to reach remote daemons.
//! - **Local transports admit only our own user.** `ipc://` and `abstract://` never leave the
//!   machine and need no encryption, but every local user can reach them: an abstract socket
//!   has no permissions at all. So the dispatcher asks the kernel who connected (`SO_PEERCRED`)
//!   and closes a process of another uid before reading or writing a byte (logged at WARN with
//!   its uid and pid). On top of that an `ipc://` socket file is made mode 0600 right after
//!   it is bound (the peer check covers the instant before), and a dispatcher refuses to listen
//!   in a directory where another user could replace its socket file
//!   ([`check_socket_dir`]): our daemons would then hand their credentials to that user's
//!   socket. A directory of our own with mode 0700 is the safe choice.
//! - **Everything before the hello is bounded** (see the dispatcher's admission): each
//!   connection's time, its frame size, and the number of such connections.

/// Why a listen address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A plain TCP address without the explicit opt-in.
    #[error(
        "{url}: plain tcp:// sends the join token and task data unencrypted; listen on \
         tls+tcp:// instead, or allow plain tcp explicitly (e.g. behind an SSH tunnel)"
    )]
    PlainTcp {
        /// The refused address.
        url: String,
    },
    /// An `ipc://` socket in a directory another user could replace it in.
    #[error(
        "{dir}: {why}; another user could replace the socket there and receive our daemons' \
         credentials; use a directory of your own (mode 0700)"
    )]
    UnsafeSocketDir {
        /// The socket's directory.
        dir: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// How a listen address is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only processes of this machine can connect (`ipc://`, `unix://`, `abstract://`).
    Local,
    /// Network peers connect over TLS (`tls+tcp://`).
    Encrypted,
    /// Network peers connect in the clear (`tcp://`).
    Plain,
}

/// Classifies a listen address by its scheme (anything unknown counts as plain network).
///
/// ```
/// use mirai_dispatch::security::{exposure, Exposure};
/// assert_eq!(exposure("abstract://pool"), Exposure::Local);
/// assert_eq!(exposure("tls+tcp://0.0.0.0:5555"), Exposure::Encrypted);
/// assert_eq!(exposure("tcp://0.0.0.0:5555"), Exposure::Plain);
/// ```
pub fn exposure(url: &str) -> Exposure {
    let scheme = url.split_once("://").map_or(url, |(s, _)| s);
    match scheme {
        "ipc" | "unix" | "abstract" => Exposure::Local,
        "tls+tcp" | "tls+tcp4" | "tls+tcp6" => Exposure::Encrypted,
        _ => Exposure::Plain,
    }
}

/// Refuses a plain network address unless `allow_plain_tcp`.
///
/// ```
/// use mirai_dispatch::security::check_listen_url;
/// assert!(check_listen_url("tls+tcp://127.0.0.1:0", false).is_ok());
/// assert!(check_listen_url("abstract://pool", false).is_ok());
/// assert!(check_listen_url("tcp://127.0.0.1:0", false).is_err());
/// assert!(check_listen_url("tcp://127.0.0.1:0", true).is_ok());
/// ```
pub fn check_listen_url(url: &str, allow_plain_tcp: bool) -> Result<(), PolicyError> {
    if exposure(url) == Exposure::Plain && !allow_plain_tcp {
        return Err(PolicyError::PlainTcp {
            url: url.to_owned(),
        });
    }
    Ok(())
}

/// Refuses to put a socket file at `path` when someone other than us (or root) could replace
/// it: its directory must be owned by our effective user or root, and must not be writable by
/// all users unless it has the sticky bit (as `/tmp` does: there others cannot remove our
/// file). Group-writable directories are allowed: on systems with a private group per user
/// that is the usual mode of a user's own directories; a shared group is out of scope.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use mirai_dispatch::security::{check_socket_dir, PolicyError};
/// let dir = std::env::temp_dir().join(format!("socket-dir-doc-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
/// assert_eq!(check_socket_dir(&dir.join("pool.sock")), Ok(()));
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
/// let open = check_socket_dir(&dir.join("pool.sock"));
/// assert!(matches!(open, Err(PolicyError::UnsafeSocketDir { .. })), "{open:?}");
/// std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
/// assert_eq!(check_socket_dir(&dir.join("pool.sock")), Ok(()));
/// std::fs::remove_dir(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "shell")]
pub fn check_socket_dir(path: &std::path::Path) -> Result<(), PolicyError> {
    use std::os::unix::fs::MetadataExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let unsafe_dir = |why: String| PolicyError::UnsafeSocketDir {
        dir: dir.clone(),
        why,
    };
    // A directory we cannot look at is left to bind's own error.
    let Ok(meta) = std::fs::metadata(&dir) else {
        return Ok(());
    };
    let ours = rustix::process::geteuid().as_raw();
    if meta.uid() != ours && meta.uid() != 0 {
        return Err(unsafe_dir(format!("owned by uid {}", meta.uid())));
    }
    let mode = meta.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(format!(
            "writable by all users without the sticky bit (mode {:o})",
            mode & 0o7777
        )));
    }
    Ok(())
}

/// The error for a `tls+tcp://` address in a build without the `tls` feature.
#[cfg(all(feature = "shell", not(feature = "tls")))]
pub(crate) fn tls_disabled(url: &str) -> nano_transport::Error {
    nano_transport::Error::TlsDisabled {
        url: url.to_owned(),
    }
}

/// Without the `tls` feature: refuses a `tls+tcp://` address
/// ([`nano_transport::Error::TlsDisabled`]) before anything is bound.
#[cfg(all(feature = "shell", not(feature = "tls")))]
pub(crate) fn listener_tls(url: &str) -> Result<(), nano_transport::Error> {
    match exposure(url) {
        Exposure::Encrypted => Err(tls_disabled(url)),
        _ => Ok(()),
    }
}

/// The TLS configuration of a listener on `url` when the address asks for TLS: the user's
/// `identity`, or one generated now, checking dialers as `clients` says. Returns it with the
/// fingerprint daemons pin; `None` for addresses without TLS.
#[cfg(feature = "tls")]
pub(crate) fn listener_tls(
    url: &str,
    identity: Option<nano_transport::tls::Identity>,
    clients: nano_transport::tls::ClientAuth,
) -> Result<
    Option<(
        nano_transport::tls::TlsConfig,
        nano_transport::tls::Fingerprint,
    )>,
    nano_transport::tls::TlsError,
> {
    use nano_transport::tls::{Identity, TlsConfig};
    if exposure(url) != Exposure::Encrypted {
        return Ok(None);
    }
    let identity = match identity {
        Some(id) => id,
        None => Identity::generate(&["localhost"])?,
    };
    let fingerprint = identity.fingerprint();
    Ok(Some((
        TlsConfig::new().with_listener(identity, clients)?,
        fingerprint,
    )))
}

/// A dialer configuration that accepts exactly the dispatcher certificate with this
/// fingerprint (as printed by [`Dispatcher::tls_fingerprint`](crate::Dispatcher::tls_fingerprint)),
/// for daemons whose launch command carries it. Feature `tls`.
///
/// ```
/// let pin = format!("sha256:{}", "ab".repeat(32));
/// assert!(mirai_dispatch::security::pinned_dialer(&pin).is_ok());
/// assert!(mirai_dispatch::security::pinned_dialer("sha256:00").is_err());
/// ```
#[cfg(feature = "tls")]
pub fn pinned_dialer(
    fingerprint: &str,
) -> Result<nano_transport::tls::TlsConfig, nano_transport::tls::TlsError> {
    use nano_transport::tls::{Fingerprint, ServerAuth, TlsConfig};
    let pin = Fingerprint::parse(fingerprint)?;
    TlsConfig::new().with_dialer(ServerAuth::Pinned(pin), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tcp_spelling_is_plain() {
        for url in [
            "tcp://h:1",
            "tcp4://h:1",
            "tcp6://[::1]:1",
            "ws://h:1",
            "nonsense",
        ] {
            assert_eq!(exposure(url), Exposure::Plain, "{url}");
            assert!(check_listen_url(url, false).is_err(), "{url}");
        }
        for url in ["tls+tcp4://h:1", "tls+tcp6://[::1]:1"] {
            assert_eq!(exposure(url), Exposure::Encrypted, "{url}");
        }
        assert_eq!(exposure("ipc:///x"), Exposure::Local);
        assert_eq!(exposure("unix:///x"), Exposure::Local);
    }
}
