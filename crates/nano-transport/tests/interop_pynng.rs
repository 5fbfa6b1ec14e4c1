//! Interop with pynng (NNG 1.11): every protocol over tcp, ipc and abstract, with us listening
//! and us dialing, payloads compared byte for byte in both directions.
//!
//! pynng runs `tests/peers/peer.py` as a child process; each case gets its own endpoint, and
//! the cases of one protocol family run in parallel threads. The peer is required: without
//! `cargo xtask setup` these tests fail, they are never skipped.

mod util;

use std::time::Duration;

use nano_transport::{Protocol, Socket};
use util::{Endpoint, PeerProcess, Transport, hex, run_parallel, wait_until};

/// Bound on every wait of a case step.
const STEP: Duration = Duration::from_secs(10);

/// Cases of one family run this many at a time (each is mostly waiting on a child process).
const PARALLEL: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    WeListen,
    WeDial,
}

const SIDES: [Side; 2] = [Side::WeListen, Side::WeDial];

/// Our socket connected to one pynng peer.
struct Link {
    ours: Socket,
    peer: PeerProcess,
    _endpoint: Endpoint,
}

/// Opens our socket (`tweak` sets options before connecting), starts `peer.py` with the peer's
/// protocol and steps on the other end, and waits until both sides have the pipe.
fn link(
    ours: Protocol,
    peer_proto: &str,
    transport: Transport,
    side: Side,
    steps: &[String],
    tweak: impl FnOnce(&Socket),
) -> Link {
    let sock = Socket::new(ours).expect("socket");
    sock.set_recv_timeout(Some(STEP));
    sock.set_send_timeout(Some(STEP));
    tweak(&sock);
    let endpoint = match transport {
        Transport::Tcp => Endpoint::tcp_any(),
        t => Endpoint::new(t, peer_proto),
    };
    let mut args: Vec<&str> = vec![peer_proto];
    let peer = match side {
        Side::WeListen => {
            let url = sock
                .listen(&endpoint.url)
                .expect("listen")
                .local_url()
                .to_owned();
            args.extend(["dial", &url]);
            args.extend(steps.iter().map(String::as_str));
            let mut peer = PeerProcess::pynng(&args);
            peer.ready();
            peer
        }
        Side::WeDial => {
            args.extend(["listen", &endpoint.url]);
            args.extend(steps.iter().map(String::as_str));
            let mut peer = PeerProcess::pynng(&args);
            let url = peer.ready();
            sock.dial_blocking(&url, STEP)
                .expect("dial the pynng listener");
            peer
        }
    };
    assert!(
        wait_until(STEP, || !sock.pipes().is_empty()),
        "our socket never saw the pipe"
    );
    Link {
        ours: sock,
        peer,
        _endpoint: endpoint,
    }
}

/// A payload with bytes that break naive text handling, distinct per case and direction.
fn payload(tag: &str) -> Vec<u8> {
    let mut p = tag.as_bytes().to_vec();
    p.extend_from_slice(&[0x00, 0xff, 0x80, b'\n', b'"']);
    p
}

fn step(name: &str, bytes: &[u8]) -> String {
    format!("{name}={}", hex(bytes))
}

/// Every transport and side, named for failure reports.
fn cases(family: &str) -> Vec<(String, (Transport, Side))> {
    Transport::ALL
        .into_iter()
        .flat_map(|t| SIDES.map(move |s| (format!("{family} {t:?} {s:?}"), (t, s))))
        .collect()
}

/// Symmetric protocols (PAIR0, PAIR1, BUS): we send, the peer answers, both payloads checked.
fn symmetric(ours: Protocol, peer_proto: &'static str) {
    run_parallel(PARALLEL, cases(peer_proto), move |(t, side)| {
        let ping = payload(&format!("ping-{t:?}-{side:?}"));
        let pong = payload(&format!("pong-{t:?}-{side:?}"));
        let steps = [
            "pipes=1".to_owned(),
            "recv".into(),
            step("send", &pong),
            "stdin".into(),
        ];
        let mut l = link(ours, peer_proto, t, side, &steps, |_| {});
        l.ours.send(&ping).expect("send");
        assert_eq!(l.peer.msg(STEP), ping, "peer received");
        assert_eq!(&*l.ours.recv().expect("recv"), &pong[..], "we received");
        l.peer.write_line("end");
        l.peer.done();
    });
}

#[test]
fn pair0_with_pynng() {
    symmetric(Protocol::Pair0, "pair0");
}

#[test]
fn pair1_with_pynng() {
    symmetric(Protocol::Pair1, "pair1");
}

#[test]
fn bus_with_pynng() {
    symmetric(Protocol::Bus0, "bus");
}

#[test]
fn req_rep_with_pynng() {
    let mut all = cases("we-req");
    all.extend(cases("we-rep"));
    run_parallel(PARALLEL, all, |(t, side)| {
        let request = payload(&format!("req-{t:?}-{side:?}"));
        let reply = payload(&format!("rep-{t:?}-{side:?}"));
        // We are REQ against a pynng REP.
        let steps = ["recv".to_owned(), step("send", &reply), "stdin".into()];
        let mut l = link(Protocol::Req0, "rep", t, side, &steps, |_| {});
        l.ours.send(&request).expect("send request");
        assert_eq!(l.peer.msg(STEP), request, "pynng REP received");
        assert_eq!(
            &*l.ours.recv().expect("recv reply"),
            &reply[..],
            "our REQ received"
        );
        l.peer.write_line("end");
        l.peer.done();
        // We are REP against a pynng REQ.
        let steps = [step("send", &request), "recv".into()];
        let mut l = link(Protocol::Rep0, "req", t, side, &steps, |_| {});
        assert_eq!(
            &*l.ours.recv().expect("recv request"),
            &request[..],
            "our REP received"
        );
        l.ours.send(&reply).expect("send reply");
        assert_eq!(l.peer.msg(STEP), reply, "pynng REQ received");
        l.peer.done();
    });
}

#[test]
fn push_pull_with_pynng() {
    run_parallel(PARALLEL, cases("push-pull"), |(t, side)| {
        let first = payload(&format!("one-{t:?}-{side:?}"));
        let second = payload(&format!("two-{t:?}-{side:?}"));
        // We push to a pynng PULL.
        let steps = ["recv".to_owned(), "recv".into()];
        let mut l = link(Protocol::Push0, "pull", t, side, &steps, |_| {});
        l.ours.send(&first).expect("send");
        l.ours.send(&second).expect("send");
        assert_eq!(l.peer.msg(STEP), first);
        assert_eq!(l.peer.msg(STEP), second);
        l.peer.done();
        // We pull from a pynng PUSH.
        let steps = [step("send", &first), step("send", &second), "stdin".into()];
        let mut l = link(Protocol::Pull0, "push", t, side, &steps, |_| {});
        assert_eq!(&*l.ours.recv().expect("recv"), &first[..]);
        assert_eq!(&*l.ours.recv().expect("recv"), &second[..]);
        l.peer.write_line("end");
        l.peer.done();
    });
}

#[test]
fn pub_sub_with_pynng() {
    run_parallel(PARALLEL, cases("pub-sub"), |(t, side)| {
        let skipped = payload("x/skip");
        let wanted = payload(&format!("t/{t:?}-{side:?}"));
        // We publish to a pynng SUB subscribed to "t/": it must get only the matching message.
        let steps = [step("sub", b"t/"), "recv".into(), "stdin".into()];
        let mut l = link(Protocol::Pub0, "sub", t, side, &steps, |_| {});
        l.ours.send(&skipped).expect("publish");
        l.ours.send(&wanted).expect("publish");
        assert_eq!(l.peer.msg(STEP), wanted, "pynng SUB received");
        l.peer.write_line("end");
        l.peer.done();
        // We subscribe to "t/" and pynng publishes once our pipe is up.
        let steps = [
            "pipes=1".to_owned(),
            "stdin".into(),
            step("send", &skipped),
            step("send", &wanted),
            "stdin".into(),
        ];
        let mut l = link(Protocol::Sub0, "pub", t, side, &steps, |s| {
            s.subscribe(b"t/").expect("subscribe");
        });
        l.peer.write_line("publish");
        assert_eq!(
            &*l.ours.recv().expect("recv"),
            &wanted[..],
            "our SUB received"
        );
        assert!(
            l.ours.try_recv().is_err(),
            "the non-matching message was filtered"
        );
        l.peer.write_line("end");
        l.peer.done();
    });
}

#[test]
fn surveyor_respondent_with_pynng() {
    run_parallel(PARALLEL, cases("survey"), |(t, side)| {
        let survey = payload(&format!("survey-{t:?}-{side:?}"));
        let answer = payload(&format!("answer-{t:?}-{side:?}"));
        // We survey a pynng RESPONDENT.
        let steps = ["recv".to_owned(), step("send", &answer), "stdin".into()];
        let mut l = link(Protocol::Surveyor0, "respondent", t, side, &steps, |s| {
            s.set_survey_time(STEP);
        });
        l.ours.send(&survey).expect("send survey");
        assert_eq!(l.peer.msg(STEP), survey, "pynng RESPONDENT received");
        assert_eq!(
            &*l.ours.recv().expect("recv answer"),
            &answer[..],
            "our SURVEYOR received"
        );
        l.peer.write_line("end");
        l.peer.done();
        // We answer a pynng SURVEYOR.
        let steps = [
            "survey=10000".to_owned(),
            "pipes=1".into(),
            step("send", &survey),
            "recv".into(),
        ];
        let mut l = link(Protocol::Respondent0, "surveyor", t, side, &steps, |_| {});
        assert_eq!(
            &*l.ours.recv().expect("recv survey"),
            &survey[..],
            "our RESPONDENT received"
        );
        l.ours.send(&answer).expect("send answer");
        assert_eq!(l.peer.msg(STEP), answer, "pynng SURVEYOR received");
        l.peer.done();
    });
}

/// PAIR1 poly (mirai's dispatcher mode): our listener serves two pynng PAIR1 dialers and answers
/// each on its own pipe.
#[test]
fn pair1_poly_serves_two_pynng_dialers() {
    let all: Vec<_> = Transport::ALL
        .into_iter()
        .map(|t| (format!("pair1-poly {t:?}"), t))
        .collect();
    run_parallel(PARALLEL, all, |t| {
        let sock = Socket::new(Protocol::Pair1).expect("socket");
        sock.set_pair1_poly(true);
        sock.set_recv_timeout(Some(STEP));
        let endpoint = match t {
            Transport::Tcp => Endpoint::tcp_any(),
            t => Endpoint::new(t, "poly"),
        };
        let url = sock
            .listen(&endpoint.url)
            .expect("listen")
            .local_url()
            .to_owned();
        let mut peers: Vec<PeerProcess> = (0..2)
            .map(|i| {
                let hello = payload(&format!("hello-{i}"));
                let steps = [step("send", &hello), "recv".into()];
                let mut args = vec!["pair1", "dial", url.as_str()];
                args.extend(steps.iter().map(String::as_str));
                let mut p = PeerProcess::pynng(&args);
                p.ready();
                p
            })
            .collect();
        for _ in 0..2 {
            let msg = sock.recv().expect("recv hello");
            let text = String::from_utf8_lossy(&msg).into_owned();
            let i = if text.starts_with("hello-0") { 0 } else { 1 };
            assert_eq!(&*msg, &payload(&format!("hello-{i}"))[..]);
            sock.send_to(msg.pipe(), &payload(&format!("reply-{i}")))
                .expect("send_to");
        }
        for (i, p) in peers.iter_mut().enumerate() {
            assert_eq!(p.msg(STEP), payload(&format!("reply-{i}")), "dialer {i}");
            p.done();
        }
    });
}

/// Message `i` of a large-message run, as `peer.py` builds it: byte `j` is `(i + j) % 251`.
fn pattern(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((i + j) % 251) as u8).collect()
}

/// Frames far larger than one socket read (1 MiB, and an odd size just over 64 KiB) flow both
/// ways without stalling or corruption: 100 messages from pynng PUSH to our PULL, then from our
/// PUSH to pynng PULL, every byte checked.
#[test]
fn large_messages_with_pynng() {
    const COUNT: usize = 100;
    let mut all = Vec::new();
    for t in Transport::ALL {
        for size in [1 << 20, (64 << 10) + 3] {
            all.push((format!("large {t:?} {size}"), (t, size)));
        }
    }
    run_parallel(2, all, |(t, size)| {
        let run = format!("{COUNT}:{size}");
        let steps = [format!("sendn={run}"), "stdin".into()];
        let mut l = link(Protocol::Pull0, "push", t, Side::WeListen, &steps, |_| {});
        for i in 0..COUNT {
            let msg = l
                .ours
                .recv()
                .unwrap_or_else(|e| panic!("message {i} of {COUNT}: {e}"));
            assert!(
                msg.len() == size && *msg == pattern(i, size)[..],
                "message {i} differs"
            );
        }
        l.peer.write_line("end");
        l.peer.done();
        let steps = [format!("recvn={run}")];
        let mut l = link(Protocol::Push0, "pull", t, Side::WeDial, &steps, |_| {});
        for i in 0..COUNT {
            l.ours.send(&pattern(i, size)).expect("send");
        }
        assert_eq!(l.peer.expect("ok", STEP), COUNT.to_string());
        l.peer.done();
    });
}

/// The reference for the pynng cases above: the same large-message run between two of our own
/// sockets (PUSH on a thread, PULL here), which must not stall either.
#[test]
fn large_messages_between_our_own_sockets() {
    const COUNT: usize = 300;
    let all: Vec<_> = [Transport::Ipc, Transport::Tcp]
        .into_iter()
        .map(|t| (format!("ours large {t:?}"), t))
        .collect();
    run_parallel(2, all, |t| {
        let size = 1 << 20;
        let pull = Socket::new(Protocol::Pull0).expect("pull");
        pull.set_recv_timeout(Some(STEP));
        let endpoint = match t {
            Transport::Tcp => Endpoint::tcp_any(),
            t => Endpoint::new(t, "large"),
        };
        let url = pull
            .listen(&endpoint.url)
            .expect("listen")
            .local_url()
            .to_owned();
        let push = Socket::new(Protocol::Push0).expect("push");
        push.set_send_timeout(Some(STEP));
        push.dial_blocking(&url, STEP).expect("dial");
        let patterns: Vec<Vec<u8>> = (0..251).map(|i| pattern(i, size)).collect();
        let sender = std::thread::spawn({
            let patterns = patterns.clone();
            move || {
                for i in 0..COUNT {
                    push.send(&patterns[i % 251]).expect("send");
                }
                push
            }
        });
        for i in 0..COUNT {
            let msg = pull
                .recv()
                .unwrap_or_else(|e| panic!("message {i} of {COUNT}: {e}"));
            assert!(*msg == patterns[i % 251][..], "message {i} differs");
        }
        drop(sender.join().expect("sender"));
    });
}

/// mirai's topology the other way round: a pynng PAIR1 poly listener (nanonext's dispatcher
/// mode) serving two of our PAIR1 dialers, answering each on its own pipe.
#[test]
fn pair1_dialers_served_by_a_pynng_poly_listener() {
    let all: Vec<_> = Transport::ALL
        .into_iter()
        .map(|t| (format!("poly listener {t:?}"), t))
        .collect();
    run_parallel(PARALLEL, all, |t| {
        let endpoint = match t {
            Transport::Tcp => Endpoint::tcp_any(),
            t => Endpoint::new(t, "polyl"),
        };
        let mut peer =
            PeerProcess::pynng(&["pair1poly", "listen", &endpoint.url, "echopipe=2", "stdin"]);
        let url = peer.ready();
        let dialers: Vec<Socket> = (0..2)
            .map(|_| {
                let s = Socket::new(Protocol::Pair1).expect("socket");
                s.set_recv_timeout(Some(STEP));
                s.dial_blocking(&url, STEP).expect("dial the poly listener");
                s
            })
            .collect();
        for (i, s) in dialers.iter().enumerate() {
            let hello = payload(&format!("daemon-{i}"));
            s.send(&hello).expect("send");
            assert_eq!(peer.msg(STEP), hello, "listener received from dialer {i}");
            assert_eq!(
                &*s.recv().expect("recv"),
                &hello[..],
                "dialer {i} got its echo"
            );
        }
        peer.write_line("end");
        peer.done();
    });
}
