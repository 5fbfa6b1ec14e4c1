//! The connection's own tests: both halves over real socket pairs.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::*;

fn pair() -> (Stream, Stream) {
    let (a, b) = mio::net::UnixStream::pair().unwrap();
    (Stream::Unix(a), Stream::Unix(b))
}

fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match c.on_readable(usize::MAX, &mut |b| {
            got.push(b);
            true
        }) {
            Ok(ReadProgress::Drained) => return got,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn handshake_then_frames_both_ways() {
    let (a, b) = pair();
    let mut req = Connection::new(a, Protocol::Req0, 0).unwrap();
    let mut rep = Connection::new(b, Protocol::Rep0, 0).unwrap();
    assert!(drain(&mut req).is_empty());
    assert!(drain(&mut rep).is_empty());
    assert_eq!((req.peer_type(), rep.peer_type()), (Some(0x31), Some(0x30)));
    let big = vec![3u8; 300_000];
    let sent = req.sender().send(&[&[0x80, 0, 0, 1], &big]).unwrap();
    let mut got = Vec::new();
    if sent == SendStatus::Queued {
        while !req.sender().flush().unwrap() {
            got.extend(drain(&mut rep));
        }
    }
    got.extend(drain(&mut rep));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..4], &[0x80, 0, 0, 1]);
    assert!(got[0][4..] == big[..]);
}

#[test]
fn queued_frames_keep_order_and_shared_bodies_arrive_whole() {
    let (a, b) = pair();
    let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
    let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
    assert!(drain(&mut push).is_empty());
    assert!(drain(&mut pull).is_empty());
    // Larger than any send buffer the kernel grants (UNIX_SEND_BUFFER at most).
    let first: Vec<u8> = (0..12_000_000u32).map(|i| i as u8).collect();
    let shared: SharedBody = Arc::new(
        (0..2_000_000u32)
            .map(|i| (i / 7) as u8)
            .collect::<Vec<u8>>(),
    );
    // The first frame overflows the socket buffer (its rest is copied into the queue); the
    // second is queued whole behind it, its body by reference.
    assert_eq!(push.sender().send(&[&first]).unwrap(), SendStatus::Queued);
    let status = push.sender().send_shared(&[b"hd"], &shared, None).unwrap();
    assert_eq!(status, SendStatus::Queued);
    assert_eq!(Arc::strong_count(&shared), 2);
    assert_eq!(push.sender().queued(), 2);
    let mut got = Vec::new();
    while !push.sender().flush().unwrap() {
        got.extend(drain(&mut pull));
    }
    got.extend(drain(&mut pull));
    assert_eq!(Arc::strong_count(&shared), 1, "released once written");
    assert_eq!(got.len(), 2);
    assert!(got[0] == first);
    assert_eq!(&got[1][..2], b"hd");
    assert!(got[1][2..] == *(*shared).as_ref());
}

#[test]
fn a_frame_of_several_shared_bodies_arrives_whole_when_queued_midway() {
    let (a, b) = pair();
    let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
    let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
    assert!(drain(&mut push).is_empty());
    assert!(drain(&mut pull).is_empty());
    let bodies: Vec<SharedBody> = (0..3u8)
        .map(|k| {
            let body: SharedBody = Arc::new(
                (0..5_000_000u32)
                    .map(|i| (i % 251) as u8 ^ k)
                    .collect::<Vec<u8>>(),
            );
            body
        })
        .collect();
    // 15 MB overflows the socket buffer (UNIX_SEND_BUFFER at most): the kernel takes part of
    // the first body, the rest of the frame waits in the queue by reference.
    let status = push
        .sender()
        .send_shared_parts(&[b"env"], &bodies, None)
        .unwrap();
    assert_eq!(status, SendStatus::Queued);
    assert!(bodies.iter().all(|b| Arc::strong_count(b) == 2));
    let mut got = Vec::new();
    while !push.sender().flush().unwrap() {
        got.extend(drain(&mut pull));
    }
    got.extend(drain(&mut pull));
    assert!(
        bodies.iter().all(|b| Arc::strong_count(b) == 1),
        "released once written"
    );
    assert_eq!(got.len(), 1);
    let mut want = b"env".to_vec();
    for body in &bodies {
        want.extend_from_slice((**body).as_ref());
    }
    assert!(got[0] == want);
}

#[test]
fn frames_queued_for_later_keep_their_place_before_direct_sends() {
    let (a, b) = pair();
    let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
    let mut pull = Connection::new(b, Protocol::Pull0, 0).unwrap();
    assert!(drain(&mut push).is_empty());
    assert!(drain(&mut pull).is_empty());
    let tx = push.sender();
    for i in 0..1000u32 {
        tx.send_later(&[&i.to_le_bytes()]).unwrap();
    }
    // Too large to be queued for later: sent at once, but behind the queued frames.
    let big = vec![5u8; 1000];
    assert_eq!(tx.send_later(&[&big]).unwrap(), SendStatus::Queued);
    // A direct send must not overtake them either.
    assert_eq!(tx.send(&[b"last"]).unwrap(), SendStatus::Queued);
    assert_eq!(tx.queued(), 1002);
    assert!(tx.flush().unwrap());
    assert_eq!(tx.queued(), 0);
    let got = drain(&mut pull);
    assert_eq!(got.len(), 1002);
    for (i, body) in got[..1000].iter().enumerate() {
        assert_eq!(body[..], (i as u32).to_le_bytes());
    }
    assert!(got[1000] == big);
    assert_eq!(got[1001], b"last");
}

#[test]
fn wrong_peer_is_refused() {
    let (a, b) = pair();
    let mut push = Connection::new(a, Protocol::Push0, 0).unwrap();
    let _rep = Connection::new(b, Protocol::Rep0, 0).unwrap();
    let err = push.on_readable(1, &mut |_| true).unwrap_err();
    assert!(matches!(
        err,
        ConnError::Handshake(HandshakeError::PeerMismatch { .. })
    ));
}

#[test]
fn oversize_frame_closes() {
    let (a, b) = pair();
    let mut pull = Connection::new(a, Protocol::Pull0, 10).unwrap();
    let push = Connection::new(b, Protocol::Push0, 0).unwrap();
    assert!(drain(&mut pull).is_empty());
    push.sender().send(&[&[1; 10]]).unwrap();
    push.sender().send(&[&[1; 11]]).unwrap();
    let mut got = 0;
    let err = loop {
        match pull.on_readable(usize::MAX, &mut |_| {
            got += 1;
            true
        }) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(got, 1);
    assert!(matches!(
        err,
        ConnError::Frame(FrameError::TooLarge {
            size: 11,
            limit: 10
        })
    ));
}

/// The peer's last frame and its close reach the kernel before the poll: the one
/// edge-triggered event announces both, the frame's read is short, and no later event comes.
/// Reading as an event loop does (stop at a short read unless the event reported the close)
/// must still end in `Closed`.
#[test]
fn a_close_behind_the_last_frame_is_seen_from_the_same_event() {
    for transport in ["unix", "tcp"] {
        let (a, b) = match transport {
            "unix" => pair(),
            _ => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                let (s, _) = l.accept().unwrap();
                c.set_nonblocking(true).unwrap();
                s.set_nonblocking(true).unwrap();
                (
                    Stream::Tcp(mio::net::TcpStream::from_std(c)),
                    Stream::Tcp(mio::net::TcpStream::from_std(s)),
                )
            }
        };
        let mut ours = Connection::new(a, Protocol::Pair1, 0).unwrap();
        let mut theirs = Connection::new(b, Protocol::Pair1, 0).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let fd = ours.stream().as_raw_fd();
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(0),
                mio::Interest::READABLE,
            )
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut wait = |poll: &mut mio::Poll, ours: &mut Connection| {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(500)))
                .unwrap();
            let closed = events.iter().any(|e| e.is_read_closed());
            if !events.is_empty() {
                ours.note_readable();
            }
            if closed {
                ours.note_read_closed();
            }
            !events.is_empty()
        };
        assert!(wait(&mut poll, &mut ours), "{transport}: the peer's header");
        assert_eq!(
            ours.on_readable(8, &mut |_| true).unwrap(),
            ReadProgress::HandshakeDone
        );
        assert!(drain(&mut ours).is_empty());
        // The peer reads our header: it closes with nothing unread (a clean close, no reset).
        assert!(drain(&mut theirs).is_empty());
        theirs.sender().send(&[b"last"]).unwrap();
        theirs.stream().shutdown().unwrap();
        drop(theirs);
        assert!(wait(&mut poll, &mut ours), "{transport}: frame and close");
        let mut got = Vec::new();
        let mut end = None;
        while ours.may_have_more() {
            match ours.on_readable(8, &mut |b| {
                got.push(b);
                true
            }) {
                Ok(_) => {}
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        assert_eq!(got, [b"last".to_vec()], "{transport}");
        assert!(
            matches!(end, Some(ConnError::Closed)),
            "{transport}: the close went unnoticed ({end:?}); another event came: {}",
            wait(&mut poll, &mut ours)
        );
    }
}
