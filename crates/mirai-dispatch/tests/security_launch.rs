//! Per-launch credentials at the dispatcher's door: a peer without launch N's credential can do
//! nothing to launch N, a credential admits only its own launch id, and only once at a time;
//! refusals never report a launch id as if it were authentic. Also: the configuration's `Debug`
//! never shows the token.

mod util;

use std::sync::mpsc::Receiver;

use mirai_dispatch::protocol::{RefuseReason, ToDaemon};
use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig};
use util::shell::{DemoDaemon, RawPeer, TOKEN, credential, run_echo_tasks, unique, wait_event};

fn start(name: &str) -> (Dispatcher, Receiver<DaemonEvent>) {
    let url = format!("abstract://{}", unique(name));
    Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec())).expect("start")
}

fn assert_refused(got: Option<ToDaemon>, reason: RefuseReason) {
    assert_eq!(got, Some(ToDaemon::Refused(reason)));
}

#[test]
fn a_wrong_credential_claiming_launch_1_changes_nothing_for_launch_1() {
    let (d, events) = start("wrong-cred");
    // Wrong credentials claiming launch 1: the pool token itself, launch 2's, and garbage.
    for presented in [TOKEN.to_vec(), credential(2), b"0123456789abcdef".to_vec()] {
        let mut rogue = RawPeer::connect(d.url()).unwrap();
        assert_refused(rogue.hello(1, &presented), RefuseReason::Token);
        assert_eq!(rogue.drain(), 0, "more than a refusal was sent");
        // Reported as a claim, never as launch 1 failing or joining.
        let e = wait_event(&events, |_| true);
        assert_eq!(
            e,
            DaemonEvent::Refused {
                claimed_launch_id: 1,
                reason: RefuseReason::Token
            }
        );
    }
    // Launch 1's real daemon still joins and works.
    let _daemon = DemoDaemon::launch(d.url(), 1);
    let e = wait_event(&events, |_| true);
    assert!(
        matches!(e, DaemonEvent::Joined { launch_id: 1, .. }),
        "{e:?}"
    );
    run_echo_tasks(&d, 20);
}

#[test]
fn launch_1_credential_cannot_join_as_launch_2() {
    let (d, events) = start("cred-other-id");
    let mut thief = RawPeer::connect(d.url()).unwrap();
    assert_refused(thief.hello(2, &credential(1)), RefuseReason::Token);
    assert!(matches!(
        wait_event(&events, |_| true),
        DaemonEvent::Refused {
            claimed_launch_id: 2,
            reason: RefuseReason::Token
        }
    ));
    // Launch 2's own daemon joins afterwards.
    let _daemon = DemoDaemon::launch(d.url(), 2);
    let e = wait_event(&events, |_| true);
    assert!(
        matches!(e, DaemonEvent::Joined { launch_id: 2, .. }),
        "{e:?}"
    );
    assert_eq!(d.status().connections, 1);
}

#[test]
fn a_second_claim_of_a_joined_launch_is_refused_and_launch_0_may_repeat() {
    let (d, events) = start("second-claim");
    let mut daemon = DemoDaemon::launch(d.url(), 1);
    let first = wait_event(&events, |_| true);
    let DaemonEvent::Joined {
        daemon: first_id,
        launch_id: 1,
    } = first
    else {
        panic!("{first:?}");
    };
    // Someone holding launch 1's credential (a copy, a replay) claims it again.
    let mut second = RawPeer::connect(d.url()).unwrap();
    assert_refused(second.hello(1, &credential(1)), RefuseReason::LaunchInUse);
    assert_eq!(second.drain(), 0);
    assert_eq!(
        wait_event(&events, |_| true),
        DaemonEvent::Refused {
            claimed_launch_id: 1,
            reason: RefuseReason::LaunchInUse
        }
    );
    // The first holder is untouched: still joined, still working, never asked to go.
    assert!(daemon.running());
    run_echo_tasks(&d, 20);
    assert_eq!(d.status().connections, 1);
    assert!(
        !events.try_iter().any(|e| matches!(
            e,
            DaemonEvent::Left { .. } | DaemonEvent::KillRequested { .. }
        )),
        "the first daemon of launch 1 was disturbed ({first_id:?})"
    );

    // Launch id 0 (hand-started daemons with the pool token) may repeat.
    let mut a = RawPeer::connect(d.url()).unwrap();
    let mut b = RawPeer::connect(d.url()).unwrap();
    assert!(matches!(a.hello(0, TOKEN), Some(ToDaemon::Init(_))));
    assert!(matches!(b.hello(0, TOKEN), Some(ToDaemon::Init(_))));
    assert_eq!(d.status().connections, 3);

    // Once launch 1's daemon is gone, its credential admits again (a relaunch, a redial).
    drop(daemon);
    wait_event(&events, |e| {
        matches!(e, DaemonEvent::Left { launch_id: 1, .. })
    });
    let mut again = RawPeer::connect(d.url()).unwrap();
    assert!(matches!(
        again.hello(1, &credential(1)),
        Some(ToDaemon::Init(_))
    ));
}

#[test]
fn the_configuration_debug_never_shows_the_token() {
    let token = b"tok-3b8e1f0a9c7d6e5f-distinctive".to_vec();
    let config = DispatcherConfig::new("abstract://debug-redaction", token.clone())
        .with_tls_identity(nano_transport::tls::Identity::generate(&["localhost"]).unwrap());
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        let text = std::str::from_utf8(&token).unwrap();
        assert!(!shown.contains(text), "{shown}");
        assert!(!shown.contains("3b8e1f0a9c7d6e5f"), "{shown}");
        // Nor the bytes as a list of numbers.
        let as_list = format!("{:?}", &token[..4]);
        assert!(!shown.contains(&as_list[1..as_list.len() - 1]), "{shown}");
        // Nor the TLS private key.
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("abstract://debug-redaction"), "{shown}");
    }
}
