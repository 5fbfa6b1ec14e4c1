//! Endpoint addresses: `tcp://host:port`, `tls+tcp://host:port`, `ipc:///path` (alias `unix://`)
//! and Linux `abstract://name`, parsed once so dialers and listeners never re-parse strings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::Error;

/// A parsed endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP address (host names are resolved when parsing).
    Tcp(SocketAddr),
    /// A Unix-domain socket path (relative paths resolve against the working directory).
    Ipc(PathBuf),
    /// A Linux abstract-namespace name, without the leading NUL.
    Abstract(Vec<u8>),
    /// TCP with TLS (`tls+tcp://`): the resolved address and the host as written, which a
    /// dialer verifies (and sends as SNI) unless its TLS configuration names another.
    Tls {
        /// The resolved address.
        addr: SocketAddr,
        /// The host part of the URL, without brackets.
        host: String,
    },
}

impl Address {
    /// Parses a URL. `tcp://*:port` and `tcp://:port` mean every IPv4 interface.
    ///
    /// ```
    /// use nano_transport::Address;
    /// assert_eq!(
    ///     Address::parse("tcp://127.0.0.1:5555").unwrap(),
    ///     Address::Tcp("127.0.0.1:5555".parse().unwrap())
    /// );
    /// assert_eq!(Address::parse("abstract://a%00b").unwrap(), Address::Abstract(b"a\0b".to_vec()));
    /// assert!(Address::parse("udp://x").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, Error> {
        Self::parse_with(url, &|host, port| {
            (host, port).to_socket_addrs().map(Iterator::collect)
        })
    }

    /// [`parse`](Self::parse) with the host resolution of tcp-family URLs supplied by the
    /// caller (the fuzz targets and property tests resolve numeric addresses only, so they
    /// never touch the network).
    pub(crate) fn parse_with(url: &str, resolve: Resolver<'_>) -> Result<Self, Error> {
        let bad = |reason| Error::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        match scheme {
            "tcp" | "tcp4" | "tcp6" => Ok(Self::Tcp(host_port(url, scheme, rest, resolve)?.0)),
            "tls+tcp" | "tls+tcp4" | "tls+tcp6" => {
                let (addr, host) = host_port(url, scheme, rest, resolve)?;
                Ok(Self::Tls { addr, host })
            }
            "ipc" | "unix" => {
                if rest.is_empty() {
                    return Err(bad("empty path"));
                }
                // sun_path holds 108 bytes including the terminating NUL.
                if rest.len() > 107 {
                    return Err(bad("path longer than 107 bytes"));
                }
                Ok(Self::Ipc(PathBuf::from(rest)))
            }
            "abstract" => {
                let name = percent_decode(rest).ok_or_else(|| bad("bad %-escape"))?;
                if name.is_empty() {
                    return Err(bad("empty abstract name"));
                }
                if name.len() > 107 {
                    return Err(bad("abstract name longer than 107 bytes"));
                }
                Ok(Self::Abstract(name))
            }
            _ => Err(bad("unsupported transport")),
        }
    }

    /// The URL form of the address.
    ///
    /// ```
    /// use nano_transport::Address;
    /// assert_eq!(Address::parse("ipc:///tmp/x.ipc").unwrap().to_url(), "ipc:///tmp/x.ipc");
    /// ```
    pub fn to_url(&self) -> String {
        match self {
            Self::Tcp(a) => format!("tcp://{a}"),
            Self::Tls { addr, host } => {
                if host.parse::<std::net::IpAddr>().is_ok() || host == "0.0.0.0" {
                    format!("tls+tcp://{addr}")
                } else {
                    format!("tls+tcp://{host}:{}", addr.port())
                }
            }
            Self::Ipc(p) => format!("ipc://{}", p.display()),
            Self::Abstract(name) => {
                let mut s = String::from("abstract://");
                for &b in name {
                    if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                        s.push(char::from(b));
                    } else {
                        s.push_str(&format!("%{b:02X}"));
                    }
                }
                s
            }
        }
    }
}

/// Resolves a host and port to socket addresses.
pub(crate) type Resolver<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

/// A [`Resolver`] of numeric addresses only (no name service, no network).
pub(crate) fn numeric_only(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    host.parse::<std::net::IpAddr>()
        .map(|ip| vec![SocketAddr::new(ip, port)])
        .map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

/// Resolves the `host:port` of a tcp-family URL; returns the address and the host as written.
fn host_port(
    url: &str,
    scheme: &str,
    rest: &str,
    resolve: Resolver<'_>,
) -> Result<(SocketAddr, String), Error> {
    let bad = |reason| Error::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() || host == "*" {
        "0.0.0.0"
    } else {
        host
    };
    let addr = resolve(host, port)
        .map_err(|_| bad("cannot resolve host"))?
        .into_iter()
        .find(|a| {
            if scheme.ends_with('4') {
                a.is_ipv4()
            } else if scheme.ends_with('6') {
                a.is_ipv6()
            } else {
                true
            }
        })
        .ok_or_else(|| bad("cannot resolve host"))?;
    Ok((addr, host.to_owned()))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            Address::parse("tcp://*:0").unwrap(),
            Address::Tcp("0.0.0.0:0".parse().unwrap())
        );
        assert!(matches!(
            Address::parse("tcp://localhost:1"),
            Ok(Address::Tcp(_))
        ));
        assert_eq!(
            Address::parse("unix:///a").unwrap(),
            Address::Ipc("/a".into())
        );
        assert!(Address::parse("abstract://").is_err());
        assert!(Address::parse("abstract://%zz").is_err());
        assert!(Address::parse("tcp://1.2.3.4").is_err());
        assert!(Address::parse(&format!("ipc:///{}", "x".repeat(120))).is_err());
        assert_eq!(
            Address::parse("tls+tcp://127.0.0.1:7").unwrap(),
            Address::Tls {
                addr: "127.0.0.1:7".parse().unwrap(),
                host: "127.0.0.1".into()
            }
        );
        let named = Address::parse("tls+tcp://localhost:9").unwrap();
        assert_eq!(named.to_url(), "tls+tcp://localhost:9");
        assert!(Address::parse("tls+tcp://localhost").is_err());
        let a = Address::parse("abstract://n%00 1").unwrap();
        assert_eq!(Address::parse(&a.to_url()).unwrap(), a);
    }

    proptest::proptest! {
        /// Any abstract name of 1 to 107 bytes, and any ipc path, survives `to_url` and back.
        #[test]
        fn local_addresses_round_trip(
            name in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..=107),
            path in "[ -~]{1,107}",
        ) {
            let a = Address::Abstract(name);
            proptest::prop_assert_eq!(Address::parse(&a.to_url()).unwrap(), a);
            let p = Address::Ipc(PathBuf::from(&path));
            proptest::prop_assert_eq!(Address::parse(&p.to_url()).unwrap(), p);
        }

        /// Arbitrary text never panics the parser, and what it accepts re-parses the same
        /// (the shared check of the `url_parse` fuzz target).
        #[test]
        fn arbitrary_text_parses_or_is_refused(
            url in "(tcp|tcp4|tcp6|tls\\+tcp|ipc|unix|abstract|udp)?(://)?[ -~]{0,40}",
            addr in proptest::prelude::any::<SocketAddr>(),
        ) {
            crate::fuzzing::url_parse(url.as_bytes());
            crate::fuzzing::url_parse(format!("tcp://{addr}").as_bytes());
            crate::fuzzing::url_parse(format!("tls+tcp6://{addr}").as_bytes());
        }
    }
}
