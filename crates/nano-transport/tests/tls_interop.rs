//! `tls+tcp://` interop with real NNG peers: Debian's nngcat 1.5.2 (NNG on mbedTLS 2.28, so
//! TLS 1.2) and pynng (NNG 1.11), with us listening and us dialing, for REQ/REP and PUSH/PULL,
//! payloads compared byte for byte both ways.
//!
//! When we listen, the certificate is one we generate at startup and the peer trusts it as a
//! CA file (`--cacert`), dialing `localhost` (mbedTLS 2.28 cannot verify IP-address names).
//! When the peer listens, its certificate is signed by a test CA; we verify it either by pinning
//! its fingerprint or through the CA. The peers are required: these tests fail, never skip,
//! without them.

mod util;

use std::time::Duration;

use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
use nano_transport::{Protocol, Socket};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use util::{
    PeerProcess, TempFile, free_tcp_port, parse_nngcat_hex, run_parallel, wait_connectable,
    wait_until,
};

const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    OursListens,
    /// The peer listens and we pin its certificate's fingerprint.
    PeerListensPinned,
    /// The peer listens and we verify its certificate through the CA that signed it.
    PeerListensCa,
}

const SIDES: [Side; 3] = [
    Side::OursListens,
    Side::PeerListensPinned,
    Side::PeerListensCa,
];

/// Certificate material of one case, written where the peer can read it.
struct Certs {
    /// Our listener's generated identity and its certificate as a file for `--cacert`.
    ours: Identity,
    ours_file: TempFile,
    /// The peer's CA, leaf and key.
    ca: Identity,
    peer: Identity,
    peer_cert: TempFile,
    peer_key: TempFile,
}

fn certs() -> Certs {
    let ours = Identity::generate(&["localhost"]).unwrap();
    let ours_file = TempFile::new("our-cert", ours.cert_pem().as_bytes());
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca =
        Identity::from_pem(ca_cert.pem().as_bytes(), ca_key.serialize_pem().as_bytes()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let peer =
        Identity::from_pem(leaf.pem().as_bytes(), leaf_key.serialize_pem().as_bytes()).unwrap();
    let peer_cert = TempFile::new("peer-cert", peer.cert_pem().as_bytes());
    let peer_key = TempFile::new("peer-key", peer.key_pem().as_bytes());
    Certs {
        ours,
        ours_file,
        ca,
        peer,
        peer_cert,
        peer_key,
    }
}

/// Our socket connected over TLS to one peer process.
struct Link {
    ours: Socket,
    peer: PeerProcess,
    _certs: Certs,
}

/// Opens our socket, starts the peer (`start` gets the URL and the TLS arguments it needs),
/// and waits until our socket has a handshaken pipe.
fn link(
    ours: Protocol,
    side: Side,
    start: impl FnOnce(&str, &str, Vec<String>) -> PeerProcess,
) -> Link {
    let certs = certs();
    let sock = Socket::new(ours).expect("socket");
    sock.set_recv_timeout(Some(STEP));
    sock.set_send_timeout(Some(STEP));
    let peer = match side {
        Side::OursListens => {
            let tls = TlsConfig::new()
                .with_listener(certs.ours.clone(), ClientAuth::None)
                .unwrap();
            sock.set_tls(tls);
            let url = sock.listen("tls+tcp://127.0.0.1:0").expect("listen");
            let port = url.local_url().rsplit(':').next().unwrap().to_owned();
            let url = format!("tls+tcp://localhost:{port}");
            start(
                "--dial",
                &url,
                vec!["--cacert".into(), certs.ours_file.as_str().into()],
            )
        }
        Side::PeerListensPinned | Side::PeerListensCa => {
            let auth = if side == Side::PeerListensPinned {
                ServerAuth::Pinned(certs.peer.fingerprint())
            } else {
                ServerAuth::Roots(certs.ca.chain().to_vec())
            };
            sock.set_tls(TlsConfig::new().with_dialer(auth, None).unwrap());
            let port = free_tcp_port();
            let url = format!("tls+tcp://localhost:{port}");
            let peer = start(
                "--listen",
                &url,
                vec![
                    "--cert".into(),
                    certs.peer_cert.as_str().into(),
                    "--key".into(),
                    certs.peer_key.as_str().into(),
                ],
            );
            wait_connectable(&format!("tcp://127.0.0.1:{port}"), STEP);
            sock.dial_blocking(&url, STEP)
                .unwrap_or_else(|e| panic!("dial {url}: {e}; peer stderr: {}", peer.stderr_text()));
            peer
        }
    };
    assert!(
        wait_until(STEP, || !sock.pipes().is_empty()),
        "our socket never saw the pipe; peer stderr: {}",
        peer.stderr_text()
    );
    Link {
        ours: sock,
        peer,
        _certs: certs,
    }
}

fn nngcat(mode: &str, url: &str, tls: Vec<String>, extra: &[&str]) -> PeerProcess {
    let mut args: Vec<&str> = vec![mode, url];
    args.extend(tls.iter().map(String::as_str));
    args.extend_from_slice(extra);
    PeerProcess::nngcat(&args)
}

fn payload(tag: &str) -> Vec<u8> {
    let mut p = tag.as_bytes().to_vec();
    p.extend_from_slice(&[0x00, 0xff, 0x80, b'\n', b'"', b'\\']);
    // Large enough that NNG splits it over several TLS records.
    p.extend((0..40_000u32).map(|i| (i % 253) as u8));
    p
}

fn cases(family: &str) -> Vec<(String, Side)> {
    SIDES
        .into_iter()
        .map(|s| (format!("{family} {s:?}"), s))
        .collect()
}

#[test]
fn tls_req_rep_with_nngcat() {
    run_parallel(3, cases("req-rep"), |side| {
        let request = payload(&format!("req-{side:?}"));
        let reply = payload(&format!("rep-{side:?}"));
        // We are REQ; nngcat REP answers with its file.
        let file = TempFile::new("reply", &reply);
        let mut l = link(Protocol::Req0, side, |mode, url, tls| {
            nngcat(
                mode,
                url,
                tls,
                &["--rep0", "--file", file.as_str(), "--hex", "--count", "1"],
            )
        });
        l.ours.send(&request).expect("send request");
        assert_eq!(
            &*l.ours.recv().expect("recv reply"),
            &reply[..],
            "our REQ received"
        );
        let printed = parse_nngcat_hex(&l.peer.finish_ok(STEP));
        assert_eq!(printed, vec![request.clone()], "nngcat REP received");
        // We are REP; nngcat REQ sends its file.
        let file = TempFile::new("request", &request);
        let mut l = link(Protocol::Rep0, side, |mode, url, tls| {
            let args = [
                "--req0",
                "--file",
                file.as_str(),
                "--hex",
                "--recv-timeout",
                "5",
            ];
            nngcat(mode, url, tls, &args)
        });
        assert_eq!(
            &*l.ours.recv().expect("recv request"),
            &request[..],
            "our REP received"
        );
        l.ours.send(&reply).expect("send reply");
        let printed = parse_nngcat_hex(&l.peer.finish_ok(STEP));
        assert_eq!(printed, vec![reply], "nngcat REQ received");
    });
}

#[test]
fn tls_push_pull_with_nngcat() {
    run_parallel(3, cases("push-pull"), |side| {
        let first = payload(&format!("one-{side:?}"));
        let second = payload(&format!("two-{side:?}"));
        // We push to nngcat PULL.
        let mut l = link(Protocol::Push0, side, |mode, url, tls| {
            nngcat(mode, url, tls, &["--pull0", "--hex", "--count", "2"])
        });
        l.ours.send(&first).expect("send");
        l.ours.send(&second).expect("send");
        let printed = parse_nngcat_hex(&l.peer.finish_ok(STEP));
        assert_eq!(printed, vec![first.clone(), second], "nngcat PULL received");
        // We pull from nngcat PUSH sending its file twice.
        let file = TempFile::new("push", &first);
        let mut l = link(Protocol::Pull0, side, |mode, url, tls| {
            nngcat(
                mode,
                url,
                tls,
                &["--push0", "--file", file.as_str(), "--count", "2"],
            )
        });
        assert_eq!(&*l.ours.recv().expect("recv"), &first[..]);
        assert_eq!(&*l.ours.recv().expect("recv"), &first[..]);
        l.peer.finish_ok(STEP);
    });
}

/// Runs `tls_peer.py` with these arguments.
fn pynng(args: &[&str]) -> PeerProcess {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
        .join("tls_peer.py");
    let mut cmd = std::process::Command::new(util::python());
    cmd.arg(script).args(args);
    PeerProcess::spawn(&format!("pynng tls {}", args.join(" ")), cmd)
}

fn hex(bytes: &[u8]) -> String {
    util::hex(bytes)
}

/// Our listener with a generated certificate; returns the socket, the port and the certificate
/// file the peer trusts.
fn our_listener(p: Protocol, clients: ClientAuth) -> (Socket, String, TempFile) {
    let id = Identity::generate(&["localhost"]).unwrap();
    let file = TempFile::new("our-cert", id.cert_pem().as_bytes());
    let sock = Socket::new(p).unwrap();
    sock.set_recv_timeout(Some(STEP));
    sock.set_send_timeout(Some(STEP));
    sock.set_tls(TlsConfig::new().with_listener(id, clients).unwrap());
    let url = sock.listen("tls+tcp://127.0.0.1:0").unwrap();
    let port = url.local_url().rsplit(':').next().unwrap().to_owned();
    (sock, port, file)
}

#[test]
fn tls_with_pynng_both_ways() {
    let request = payload("pynng-req");
    let reply = payload("pynng-rep");

    // pynng REQ and PUSH dial our REP and PULL (by IP, verifying the name `localhost`).
    let (rep, port, cert) = our_listener(Protocol::Rep0, ClientAuth::None);
    let url = format!("tls+tcp://127.0.0.1:{port}");
    let ca = format!("ca={}", cert.as_str());
    let send = format!("send={}", hex(&request));
    let mut peer = pynng(&["req", "dial", &url, &ca, "name=localhost", &send, "recv"]);
    peer.expect("ready", STEP);
    assert_eq!(&*rep.recv().expect("our REP received"), &request[..]);
    rep.send(&reply).unwrap();
    assert_eq!(peer.msg(STEP), reply, "pynng REQ received");
    peer.done();

    let (pull, port, cert) = our_listener(Protocol::Pull0, ClientAuth::None);
    let url = format!("tls+tcp://127.0.0.1:{port}");
    let ca = format!("ca={}", cert.as_str());
    let mut peer = pynng(&[
        "push",
        "dial",
        &url,
        &ca,
        "name=localhost",
        &send,
        &send,
        "stdin",
    ]);
    peer.expect("ready", STEP);
    assert_eq!(&*pull.recv().unwrap(), &request[..]);
    assert_eq!(&*pull.recv().unwrap(), &request[..]);
    peer.write_line("");
    peer.done();

    // pynng REP and PULL listen with a CA-signed certificate; we dial, pinned and through the CA.
    for side in [Side::PeerListensPinned, Side::PeerListensCa] {
        let c = certs();
        let auth = if side == Side::PeerListensPinned {
            ServerAuth::Pinned(c.peer.fingerprint())
        } else {
            ServerAuth::Roots(c.ca.chain().to_vec())
        };
        let tls = TlsConfig::new().with_dialer(auth, None).unwrap();
        let cert = format!("cert={}", c.peer_cert.as_str());
        let key = format!("key={}", c.peer_key.as_str());

        let url = format!("tls+tcp://localhost:{}", free_tcp_port());
        let mut peer = pynng(&["rep", "listen", &url, &cert, &key, "echo", "stdin"]);
        peer.expect("ready", STEP);
        let req = Socket::new(Protocol::Req0).unwrap();
        req.set_recv_timeout(Some(STEP));
        req.set_tls(tls.clone());
        req.dial_blocking(&url, STEP).expect("dial pynng REP");
        req.send(&request).unwrap();
        assert_eq!(&*req.recv().unwrap(), &request[..], "{side:?}: echo");
        assert_eq!(peer.msg(STEP), request, "{side:?}: pynng REP received");
        peer.write_line("");
        peer.done();

        let url = format!("tls+tcp://localhost:{}", free_tcp_port());
        let mut peer = pynng(&["pull", "listen", &url, &cert, &key, "recv", "recv"]);
        peer.expect("ready", STEP);
        let push = Socket::new(Protocol::Push0).unwrap();
        push.set_send_timeout(Some(STEP));
        push.set_tls(tls);
        push.dial_blocking(&url, STEP).expect("dial pynng PULL");
        push.send(&request).unwrap();
        push.send(&reply).unwrap();
        assert_eq!(peer.msg(STEP), request, "{side:?}: pynng PULL received");
        assert_eq!(peer.msg(STEP), reply, "{side:?}: pynng PULL received");
        peer.done();
    }
}

#[test]
fn mutual_tls_with_pynng() {
    // pynng listens and requires a client certificate; it trusts exactly ours.
    let c = certs();
    let client = Identity::generate(&["daemon"]).unwrap();
    let client_file = TempFile::new("client-cert", client.cert_pem().as_bytes());
    let cert = format!("cert={}", c.peer_cert.as_str());
    let key = format!("key={}", c.peer_key.as_str());
    let ca = format!("ca={}", client_file.as_str());
    let url = format!("tls+tcp://localhost:{}", free_tcp_port());
    let mut peer = pynng(&[
        "pull",
        "listen",
        &url,
        &cert,
        &key,
        &ca,
        "client=required",
        "recv",
    ]);
    peer.expect("ready", STEP);
    let pin = ServerAuth::Pinned(c.peer.fingerprint());

    // Without a client certificate: no pipe, nothing delivered.
    let anonymous = Socket::new(Protocol::Push0).unwrap();
    anonymous.set_tls(TlsConfig::new().with_dialer(pin.clone(), None).unwrap());
    assert!(
        anonymous
            .dial_blocking(&url, Duration::from_millis(1500))
            .is_err()
    );
    let _ = anonymous.try_send(b"anonymous");

    let member = Socket::new(Protocol::Push0).unwrap();
    member.set_send_timeout(Some(STEP));
    member.set_tls(TlsConfig::new().with_dialer(pin, Some(client)).unwrap());
    member
        .dial_blocking(&url, STEP)
        .expect("dial with a client certificate");
    member.send(b"member").unwrap();
    assert_eq!(
        peer.msg(STEP),
        b"member",
        "only the member's message arrives"
    );
    peer.done();
}
