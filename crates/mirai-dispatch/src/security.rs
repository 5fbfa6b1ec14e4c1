//! Which addresses a dispatcher may listen on, and why plain TCP needs an explicit yes.
//!
//! Task arguments and results are the user's data, and the join token travels in the daemon's
//! hello: over plain `tcp://` both cross the network in the clear, and anyone on the path can
//! read them or replay the token. So a dispatcher listens on `tcp://` only when the user asks
//! for it (e.g. behind an SSH tunnel); `tls+tcp://` is the default way to reach remote daemons.
//! `ipc://` and `abstract://` never leave the machine and need no encryption.

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

/// The TLS configuration of a listener on `url` when the address asks for TLS: the user's
/// `identity`, or one generated now, checking dialers as `clients` says. Returns it with the
/// fingerprint daemons pin; `None` for addresses without TLS.
#[cfg(feature = "shell")]
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
/// for daemons whose launch command carries it.
///
/// ```
/// let pin = format!("sha256:{}", "ab".repeat(32));
/// assert!(mirai_dispatch::security::pinned_dialer(&pin).is_ok());
/// assert!(mirai_dispatch::security::pinned_dialer("sha256:00").is_err());
/// ```
#[cfg(feature = "shell")]
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
