//! The pool token's strength is checked at start, and what a daemon presents is its launch's own.

use mirai_dispatch::protocol::{HandshakeError, Hello, VERSION, check_hello};
use mirai_dispatch::secret::{MIN_TOKEN_LEN, Secret};
use mirai_dispatch::{Dispatcher, DispatcherConfig, StartError};

#[test]
fn a_token_shorter_than_sixteen_bytes_is_refused_at_start() {
    for len in [0, 1, 8, MIN_TOKEN_LEN - 1] {
        let config = DispatcherConfig::new("abstract://mirai-weak-token-test", vec![b'x'; len]);
        match Dispatcher::start(config) {
            Err(StartError::WeakToken { len: got }) => assert_eq!(got, len),
            other => panic!(
                "a {len}-byte token was not refused: {:?}",
                other.map(|_| ())
            ),
        }
    }
    let config = DispatcherConfig::new("abstract://mirai-weak-token-test", vec![b'x'; 16]);
    assert!(Dispatcher::start(config).is_ok(), "16 bytes are enough");
}

#[test]
fn a_launched_daemon_is_admitted_only_with_its_own_credential() {
    let token = Secret::generate().unwrap();
    let hello = |launch_id, presented: &Secret| Hello {
        version: VERSION,
        launch_id,
        token: presented.expose().to_vec(),
    };
    for id in [1, 2, 1 << 40, u64::MAX] {
        let own = token.launch_credential(id);
        assert_eq!(check_hello(&hello(id, &own), &token), Ok(()));
        // The pool token itself is not a launch credential,
        assert_eq!(
            check_hello(&hello(id, &token), &token),
            Err(HandshakeError::Token)
        );
        // nor is a neighbour's credential,
        let other = token.launch_credential(id ^ 1);
        assert_eq!(
            check_hello(&hello(id, &other), &token),
            Err(HandshakeError::Token)
        );
        // nor the same launch's credential under another pool's token.
        let stranger = Secret::generate().unwrap().launch_credential(id);
        assert_eq!(
            check_hello(&hello(id, &stranger), &token),
            Err(HandshakeError::Token)
        );
    }
    // A hand-started daemon (launch id 0) presents the pool token.
    assert_eq!(check_hello(&hello(0, &token), &token), Ok(()));
}

#[test]
fn the_token_never_shows_in_a_config_debug() {
    let token = Secret::generate().unwrap();
    let text = token.expose_str().unwrap().to_owned();
    let config = DispatcherConfig::new("abstract://mirai-debug-test", token);
    let shown = format!("{config:?}");
    assert!(!shown.contains(&text), "{shown}");
    let daemon = mirai_dispatch::daemon::DaemonConfig::new("abstract://x", text.as_str());
    let shown = format!("{daemon:?}");
    assert!(!shown.contains(&text), "{shown}");
}
