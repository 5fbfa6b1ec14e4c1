//! `tls+tcp://` between our own sockets: pinned and CA-verified servers, mutual TLS, refusals
//! (wrong pin, missing client certificate, plain TCP against TLS and back), and traffic large
//! enough that TLS records wait for the socket (the pending-ciphertext path).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
use nano_transport::{Error, Protocol, Socket};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use util::wait_until;

const STEP: Duration = Duration::from_secs(10);

fn socket(p: Protocol, tls: TlsConfig) -> Socket {
    let s = Socket::new(p).expect("socket");
    s.set_recv_timeout(Some(STEP));
    s.set_send_timeout(Some(STEP));
    s.set_tls(tls);
    s
}

fn listener(p: Protocol, tls: TlsConfig) -> (Socket, String) {
    let s = socket(p, tls);
    let url = s
        .listen("tls+tcp://127.0.0.1:0")
        .expect("listen")
        .local_url()
        .to_owned();
    assert!(url.starts_with("tls+tcp://127.0.0.1:"), "{url}");
    (s, url)
}

/// A CA and a leaf for `localhost` signed by it, as PEM identities.
fn ca_and_leaf() -> (Identity, Identity) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca =
        Identity::from_pem(ca_cert.pem().as_bytes(), ca_key.serialize_pem().as_bytes()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let leaf = Identity::from_pem(
        leaf_cert.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    (ca, leaf)
}

#[test]
fn req_rep_with_a_pinned_generated_certificate() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let pin = host.fingerprint();
    let (rep, url) = listener(
        Protocol::Rep0,
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    let req = socket(
        Protocol::Req0,
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(pin), None)
            .unwrap(),
    );
    req.dial_blocking(&url, STEP).expect("dial");
    for i in 0..50u32 {
        req.send(&i.to_be_bytes()).unwrap();
        let got = rep.recv().unwrap();
        assert_eq!(&*got, &i.to_be_bytes());
        rep.send(&[&got[..], b"!"].concat()).unwrap();
        assert_eq!(
            &*req.recv().unwrap(),
            &[&i.to_be_bytes()[..], b"!"].concat()[..]
        );
    }
}

#[test]
fn large_messages_both_ways_survive_back_pressure() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let pin = host.fingerprint();
    let (pull, url) = listener(
        Protocol::Pair1,
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    let push = socket(
        Protocol::Pair1,
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(pin), None)
            .unwrap(),
    );
    // Both ends receive 8 MiB messages, over the 1 MiB default.
    pull.set_recv_max_size(16 << 20);
    push.set_recv_max_size(16 << 20);
    push.dial_blocking(&url, STEP).unwrap();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sender = {
        let (push, big) = (push.clone(), big.clone());
        std::thread::spawn(move || {
            for _ in 0..4 {
                push.send(&big).unwrap();
            }
            for i in 0..2000u32 {
                push.send(&i.to_le_bytes()).unwrap();
            }
        })
    };
    for _ in 0..4 {
        let got = pull.recv().unwrap();
        assert!(
            got.len() == big.len() && *got == big[..],
            "8 MiB message corrupted"
        );
    }
    for i in 0..2000u32 {
        assert_eq!(&*pull.recv().unwrap(), &i.to_le_bytes());
    }
    sender.join().unwrap();
    // And the other way, from the listener.
    pull.send(&big).unwrap();
    assert!(*push.recv().unwrap() == big[..]);
}

#[test]
fn a_wrong_pin_never_connects() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let other = Identity::generate(&["localhost"]).unwrap();
    let (pull, url) = listener(
        Protocol::Pull0,
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    let push = socket(
        Protocol::Push0,
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(other.fingerprint()), None)
            .unwrap(),
    );
    let err = push.dial_blocking(&url, Duration::from_millis(1500));
    assert!(matches!(err, Err(Error::Timeout)), "{err:?}");
    assert!(pull.pipes().is_empty() && push.pipes().is_empty());
    assert!(matches!(push.try_send(b"x"), Err(Error::WouldBlock)));
}

#[test]
fn ca_verified_server_by_name() {
    let (ca, leaf) = ca_and_leaf();
    let (rep, url) = listener(
        Protocol::Rep0,
        TlsConfig::new()
            .with_listener(leaf, ClientAuth::None)
            .unwrap(),
    );
    let port = url.rsplit(':').next().unwrap();
    let roots = ServerAuth::Roots(ca.chain().to_vec());
    // By the certificate's name: accepted.
    let req = socket(
        Protocol::Req0,
        TlsConfig::new().with_dialer(roots.clone(), None).unwrap(),
    );
    req.dial_blocking(&format!("tls+tcp://localhost:{port}"), STEP)
        .expect("dial by name");
    req.send(b"named").unwrap();
    assert_eq!(&*rep.recv().unwrap(), b"named");
    // By an IP address the certificate does not name: refused.
    let wrong = socket(
        Protocol::Req0,
        TlsConfig::new().with_dialer(roots, None).unwrap(),
    );
    let err = wrong.dial_blocking(&url, Duration::from_millis(1500));
    assert!(matches!(err, Err(Error::Timeout)), "{err:?}");
}

#[test]
fn mutual_tls_requires_the_pinned_client_certificate() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let daemon = Identity::generate(&["daemon"]).unwrap();
    let stranger = Identity::generate(&["daemon"]).unwrap();
    let pin = host.fingerprint();
    let (pull, url) = listener(
        Protocol::Pull0,
        TlsConfig::new()
            .with_listener(host, ClientAuth::Pinned(vec![daemon.fingerprint()]))
            .unwrap(),
    );
    let dial = |id: Option<Identity>| {
        socket(
            Protocol::Push0,
            TlsConfig::new()
                .with_dialer(ServerAuth::Pinned(pin), id)
                .unwrap(),
        )
    };
    let short = Duration::from_millis(1500);
    let anonymous = dial(None);
    assert!(matches!(
        anonymous.dial_blocking(&url, short),
        Err(Error::Timeout)
    ));
    let wrong = dial(Some(stranger));
    assert!(matches!(
        wrong.dial_blocking(&url, short),
        Err(Error::Timeout)
    ));
    // A refused client may believe its TLS 1.3 handshake finished; nothing it sends arrives.
    let _ = anonymous.try_send(b"anonymous");
    let _ = wrong.try_send(b"stranger");
    let good = dial(Some(daemon));
    good.dial_blocking(&url, STEP).expect("pinned client");
    good.send(b"member").unwrap();
    assert_eq!(&*pull.recv().unwrap(), b"member");
    assert!(matches!(
        pull.recv_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
}

#[test]
fn plain_tcp_and_tls_do_not_mix() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let pin = host.fingerprint();
    let (pull, url) = listener(
        Protocol::Pull0,
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    // A plain SP peer: its header is not a TLS ClientHello, so the listener drops it.
    let addr = url.strip_prefix("tls+tcp://").unwrap();
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(STEP)).unwrap();
    raw.write_all(&[0, b'S', b'P', 0, 0, 0x50, 0, 0]).unwrap();
    raw.write_all(&[0, 0, 0, 0, 0, 0, 0, 4, b'p', b'l', b'a', b'n'])
        .unwrap();
    let mut buf = [0u8; 64];
    // The listener answers with at most a TLS alert, never an SP header, then closes.
    let mut got = Vec::new();
    while let Ok(n) = raw.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        !got.starts_with(&[0, b'S', b'P', 0]),
        "SP header leaked: {got:?}"
    );
    assert!(matches!(
        pull.recv_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    // A plain socket dialing a TLS listener never gets a pipe either.
    let plain = Socket::new(Protocol::Push0).unwrap();
    let err = plain.dial_blocking(&format!("tcp://{addr}"), Duration::from_millis(1500));
    assert!(err.is_err(), "plain dial to a TLS listener succeeded");
    // A TLS dialer against a plain listener fails the same way.
    let plain_pull = Socket::new(Protocol::Pull0).unwrap();
    let plain_url = plain_pull
        .listen("tcp://127.0.0.1:0")
        .unwrap()
        .local_url()
        .to_owned();
    let tls_push = socket(
        Protocol::Push0,
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(pin), None)
            .unwrap(),
    );
    let tls_url = plain_url.replace("tcp://", "tls+tcp://");
    assert!(
        tls_push
            .dial_blocking(&tls_url, Duration::from_millis(1500))
            .is_err()
    );
    assert!(wait_until(Duration::from_millis(200), || plain_pull
        .pipes()
        .is_empty()));
}

#[test]
fn tls_urls_need_a_configuration() {
    let s = Socket::new(Protocol::Pull0).unwrap();
    assert!(matches!(
        s.listen("tls+tcp://127.0.0.1:0"),
        Err(Error::State(_))
    ));
    assert!(matches!(
        s.dial("tls+tcp://127.0.0.1:9"),
        Err(Error::State(_))
    ));
    // A listener-only configuration cannot dial.
    let host = Identity::generate(&["localhost"]).unwrap();
    s.set_tls(
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    assert!(matches!(
        s.dial("tls+tcp://127.0.0.1:9"),
        Err(Error::State(_))
    ));
}

/// Message `i` of sender `t`: a size that varies from 1 byte to 200 KB, and bytes that encode
/// both, so any reordering within a sender, loss or corruption shows.
fn message(t: u8, i: u32) -> Vec<u8> {
    let size = 8
        + (i.wrapping_mul(2_654_435_761) % 200_000) as usize * usize::from(i.is_multiple_of(7))
        + (i % 97) as usize;
    let mut m = Vec::with_capacity(size);
    m.push(t);
    m.extend_from_slice(&i.to_be_bytes());
    m.extend((m.len()..size).map(|j| (j as u32 ^ i ^ u32::from(t)) as u8));
    m
}

#[test]
fn concurrent_senders_share_one_tls_session_without_loss_or_reordering() {
    let host = Identity::generate(&["localhost"]).unwrap();
    let pin = host.fingerprint();
    let (pull, url) = listener(
        Protocol::Pull0,
        TlsConfig::new()
            .with_listener(host, ClientAuth::None)
            .unwrap(),
    );
    // A small receive queue, so the sockets spend time under back-pressure.
    pull.set_recv_buffer(8);
    let push = socket(
        Protocol::Push0,
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(pin), None)
            .unwrap(),
    );
    push.dial_blocking(&url, STEP).unwrap();
    const THREADS: u8 = 4;
    const EACH: u32 = 1_000;
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let push = push.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    push.send(&message(t, i)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; THREADS as usize];
    for _ in 0..u32::from(THREADS) * EACH {
        let got = pull.recv().expect("every message arrives");
        let t = got[0];
        let i = u32::from_be_bytes(got[1..5].try_into().unwrap());
        assert_eq!(i, next[usize::from(t)], "sender {t} out of order");
        assert!(
            *got == message(t, i)[..],
            "sender {t} message {i} corrupted"
        );
        next[usize::from(t)] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
}
