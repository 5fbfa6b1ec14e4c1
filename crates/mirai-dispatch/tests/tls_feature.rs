//! A `tls+tcp://` address with and without the `tls` feature: a dispatcher listening on it, or
//! a typed error that names the address on both sides (never a panic); local transports work
//! either way.

use std::time::Duration;

use mirai_dispatch::daemon::{DaemonConfig, DaemonError, Registry, serve};
use mirai_dispatch::{Dispatcher, DispatcherConfig};

const TOKEN: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn a_tls_address_listens_with_the_feature_and_is_a_typed_error_without_it() {
    let url = "tls+tcp://127.0.0.1:0";
    let started = Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec()));
    #[cfg(feature = "tls")]
    {
        let (dispatcher, _events) = started.expect("a tls+tcp dispatcher starts");
        assert!(dispatcher.url().starts_with("tls+tcp://127.0.0.1:"));
        assert!(dispatcher.tls_fingerprint().is_some());
    }
    #[cfg(not(feature = "tls"))]
    match started {
        Err(mirai_dispatch::StartError::Transport(nano_transport::Error::TlsDisabled {
            url: got,
        })) => {
            assert_eq!(got, url)
        }
        other => panic!("not refused as TlsDisabled: {:?}", other.map(|_| ())),
    }
    // A local dispatcher starts whatever the features.
    let local = format!(
        "abstract://mirai-dispatch-tls-feature-{}",
        std::process::id()
    );
    let (dispatcher, _events) = Dispatcher::start(DispatcherConfig::new(local, TOKEN.to_vec()))
        .expect("a local dispatcher starts");
    assert!(dispatcher.url().starts_with("abstract://"));
}

#[test]
fn a_daemon_dialing_a_tls_address_without_a_way_to_verify_it_is_a_typed_error() {
    // With the feature, a daemon needs a TLS dialer configuration (`DaemonConfig::tls`); without
    // it, the address itself is refused. Either way nothing is dialed.
    let url = "tls+tcp://127.0.0.1:1";
    let mut config = DaemonConfig::new(url, TOKEN.to_vec());
    config.connect_timeout = Duration::from_millis(100);
    match serve(&config, &Registry::new()) {
        #[cfg(not(feature = "tls"))]
        Err(DaemonError::Transport(nano_transport::Error::TlsDisabled { url: got })) => {
            assert_eq!(got, url)
        }
        #[cfg(feature = "tls")]
        Err(DaemonError::Transport(nano_transport::Error::State(why))) => {
            assert!(why.contains("TLS dialer configuration"), "{why}")
        }
        other => panic!("not refused: {other:?}"),
    }
}
