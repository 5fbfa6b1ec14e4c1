//! Security of the dispatcher's front door, against a real daemon process over `tls+tcp://`:
//! peers that do not authenticate (silent, wrong token, speaking out of turn, malformed,
//! oversized frames, plain TCP against a TLS listener, no client certificate under mutual TLS)
//! receive no task data and are disconnected, while the legitimate daemon keeps running its
//! tasks undisturbed.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::{FromDaemon, Hello, Limits, RefuseReason, ToDaemon, VERSION};
use mirai_dispatch::security::PolicyError;
use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig, Outcome, StartError, Task};
use nano_transport::tls::{ClientAuth, Fingerprint, Identity, ServerAuth, TlsConfig};
use nano_transport::{Error, PipeEvent, Protocol, Socket};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &[u8] = b"pool-token-7f3a-security";
/// Every task argument carries this, so any leak to a rogue peer is visible in its bytes.
const MARKER: &[u8] = b"SECRET-TASK-DATA";

/// A daemon process, killed and reaped whatever happens to the test.
struct Daemon {
    _child: util::Reaped,
}

impl Daemon {
    fn spawn(url: &str, token: &[u8], extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url])
            .args(["--launch-id", "1"])
            .env(
                "MIRAI_DAEMON_TOKEN",
                mirai_dispatch::secret::Secret::from(token)
                    .launch_credential(1)
                    .expose_str()
                    .unwrap(),
            )
            .args(extra)
            .spawn()
            .expect("spawn the demo daemon");
        Self {
            _child: util::Reaped(child),
        }
    }
}

fn start(config: DispatcherConfig) -> (Dispatcher, Receiver<DaemonEvent>) {
    Dispatcher::start(config).expect("start the dispatcher")
}

fn tls_config() -> DispatcherConfig {
    let mut c = DispatcherConfig::new("tls+tcp://127.0.0.1:0", TOKEN.to_vec());
    c.hello_timeout = Duration::from_secs(1);
    c
}

/// Starts the legitimate daemon, pinning the dispatcher's certificate, and waits for its join.
fn legit_daemon(d: &Dispatcher, events: &Receiver<DaemonEvent>, extra: &[&str]) -> Daemon {
    let pin = d
        .tls_fingerprint()
        .expect("a tls+tcp dispatcher has a fingerprint");
    let pin = pin.to_string();
    let mut args = vec!["--tls-pin", pin.as_str()];
    args.extend_from_slice(extra);
    let daemon = Daemon::spawn(d.url(), TOKEN, &args);
    let event = events.recv_timeout(PATIENCE).expect("a daemon event");
    assert!(
        matches!(event, DaemonEvent::Joined { launch_id: 1, .. }),
        "{event:?}"
    );
    daemon
}

fn secret_task(i: u32) -> (Task, Vec<u8>) {
    let mut arg = MARKER.to_vec();
    arg.extend_from_slice(&i.to_be_bytes());
    (Task::new("echo", arg.clone()), arg)
}

/// Submits `n` marked echo tasks and checks every answer.
fn run_tasks(d: &Dispatcher, n: u32) {
    let ids: Vec<_> = (0..n)
        .map(|i| {
            let (task, arg) = secret_task(i);
            (d.submit(task, None).expect("submit"), arg)
        })
        .collect();
    for (id, arg) in ids {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &arg[..]),
            other => panic!("task {id:?}: {other:?}"),
        }
    }
}

/// A rogue SP peer: it passes TLS (the fingerprint is public) but has no valid token.
struct Rogue {
    socket: Socket,
    events: Receiver<PipeEvent>,
}

impl Rogue {
    fn connect(url: &str, tls: Option<TlsConfig>) -> Self {
        let socket = Socket::new(Protocol::Pair1).unwrap();
        socket.set_send_timeout(Some(PATIENCE));
        // Redialing would hide the disconnect this test waits for.
        socket.set_reconnect(Duration::from_secs(3600), Duration::from_secs(3600));
        if let Some(tls) = tls {
            socket.set_tls(tls);
        }
        let events = socket.pipe_events();
        socket.dial_blocking(url, PATIENCE).expect("rogue dial");
        Self { socket, events }
    }

    fn pinned(d: &Dispatcher) -> Self {
        let pin = ServerAuth::Pinned(d.tls_fingerprint().unwrap());
        Self::connect(
            d.url(),
            Some(TlsConfig::new().with_dialer(pin, None).unwrap()),
        )
    }

    fn send(&self, msg: &FromDaemon, payload: &[u8]) {
        let mut frame = Vec::new();
        msg.encode(&mut frame).unwrap();
        frame.extend_from_slice(payload);
        self.socket.send(&frame).unwrap();
    }

    /// Everything received until the dispatcher closed the connection (which must happen
    /// within `within`).
    fn received_until_closed(&self, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            while let Ok(m) = self.socket.try_recv() {
                got.push(m.to_vec());
            }
            match self.events.recv_timeout(Duration::from_millis(20)) {
                Ok(PipeEvent::Removed(_)) => break,
                Ok(PipeEvent::Added(_)) | Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "the dispatcher kept the rogue connected (pipes {:?}, received {got:?})",
                self.socket.pipes()
            );
        }
        while let Ok(m) = self.socket.try_recv() {
            got.push(m.to_vec());
        }
        got
    }
}

/// Asserts a rogue got nothing but (optionally) a refusal: no init, no task, no marker byte.
fn assert_no_task_data(who: &str, got: &[Vec<u8>], refusal: Option<RefuseReason>) {
    for frame in got {
        assert!(
            !frame.windows(MARKER.len()).any(|w| w == MARKER),
            "{who} received task data"
        );
    }
    let decoded: Vec<ToDaemon> = got
        .iter()
        .map(|f| {
            ToDaemon::decode(f, &Limits::default())
                .expect("decodable")
                .0
        })
        .collect();
    let expected: Vec<ToDaemon> = refusal.into_iter().map(ToDaemon::Refused).collect();
    assert_eq!(decoded, expected, "{who}");
}

fn hello(token: &[u8]) -> FromDaemon {
    FromDaemon::Hello(Hello {
        version: VERSION,
        launch_id: 666,
        token: token.to_vec(),
    })
}

#[test]
fn unauthenticated_peers_get_no_task_data_and_work_goes_on() {
    let (d, events) = start(tls_config());
    let _daemon = legit_daemon(&d, &events, &[]);
    run_tasks(&d, 5);

    // Tasks in flight and queued while the rogues try their luck.
    let pending: Vec<_> = (100..140)
        .map(|i| {
            let (task, arg) = secret_task(i);
            (d.submit(task, None).unwrap(), arg)
        })
        .collect();
    let silent = Rogue::pinned(&d);
    let wrong = Rogue::pinned(&d);
    wrong.send(&hello(b"pool-token-0000"), &[]);
    let empty = Rogue::pinned(&d);
    empty.send(&hello(b""), &[]);
    let out_of_turn = Rogue::pinned(&d);
    out_of_turn.send(&FromDaemon::Heartbeat, &[]);
    let garbage = Rogue::pinned(&d);
    garbage.socket.send(&[0xff; 64]).unwrap();

    let refused = Some(RefuseReason::Token);
    assert_no_task_data(
        "wrong token",
        &wrong.received_until_closed(PATIENCE),
        refused,
    );
    assert_no_task_data(
        "empty token",
        &empty.received_until_closed(PATIENCE),
        refused,
    );
    let got = out_of_turn.received_until_closed(PATIENCE);
    assert_no_task_data("out of turn", &got, None);
    assert_no_task_data("garbage", &garbage.received_until_closed(PATIENCE), None);
    // The silent one is closed by the hello timeout (1 s here).
    let started = Instant::now();
    assert_no_task_data("silent", &silent.received_until_closed(PATIENCE), None);
    assert!(started.elapsed() < Duration::from_secs(5));

    for (id, arg) in pending {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &arg[..]),
            other => panic!("task {id:?} disturbed: {other:?}"),
        }
    }
    run_tasks(&d, 5);
    // Two refusals were reported, and only the real daemon ever joined.
    let seen: Vec<DaemonEvent> = events.try_iter().collect();
    let refusals = seen
        .iter()
        .filter(|e| {
            matches!(
                e,
                DaemonEvent::Refused {
                    claimed_launch_id: 666,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refusals, 2, "{seen:?}");
    assert!(
        !seen.iter().any(|e| matches!(e, DaemonEvent::Joined { .. })),
        "{seen:?}"
    );
    assert_eq!(d.status().connections, 1);
}

#[test]
fn oversized_frames_before_authentication_close_the_connection() {
    let mut config = tls_config();
    config.limits.max_message = 1 << 20;
    let (d, events) = start(config);
    let _daemon = legit_daemon(&d, &events, &[]);
    // A real frame over the limit.
    let big = Rogue::pinned(&d);
    let mut payload = MARKER.to_vec();
    payload.resize(2 << 20, 7);
    big.socket.send(&payload).unwrap();
    assert_no_task_data("oversized", &big.received_until_closed(PATIENCE), None);
    run_tasks(&d, 10);

    // A frame that merely claims 1 TiB, on a plain-tcp dispatcher the test allows explicitly.
    let mut plain = DispatcherConfig::new("tcp://127.0.0.1:0", TOKEN.to_vec()).with_plain_tcp(true);
    plain.limits.max_message = 1 << 20;
    let (p, _events) = start(plain);
    let addr = p.url().strip_prefix("tcp://").unwrap().to_owned();
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(&[0, b'S', b'P', 0, 0, 0x11, 0, 0]).unwrap();
    let mut header = [0u8; 8];
    raw.read_exact(&mut header).unwrap();
    assert_eq!(header, [0, b'S', b'P', 0, 0, 0x11, 0, 0]);
    raw.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
    raw.write_all(&[0u8; 100]).unwrap();
    let mut rest = Vec::new();
    match raw.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "the claimant got {} bytes", rest.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    run_tasks(&d, 5);
}

/// Before its hello passes, a peer may not send a frame larger than a hello, even one well
/// under the daemons' own limit: the dispatcher closes it on the length prefix instead of reading
/// (and buffering) the body until the hello deadline.
#[test]
fn a_frame_larger_than_a_hello_before_authentication_is_refused_on_its_length() {
    let mut plain = DispatcherConfig::new("tcp://127.0.0.1:0", TOKEN.to_vec()).with_plain_tcp(true);
    plain.limits.max_message = 1 << 20;
    plain.hello_timeout = Duration::from_secs(20);
    let (p, _events) = start(plain);
    let addr = p.url().strip_prefix("tcp://").unwrap().to_owned();
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(&[0, b'S', b'P', 0, 0, 0x11, 0, 0]).unwrap();
    let mut header = [0u8; 8];
    raw.read_exact(&mut header).unwrap();
    let started = Instant::now();
    // 100 KiB announced (a tenth of what an admitted daemon may send), 100 bytes of it sent.
    raw.write_all(&(100u64 << 10).to_be_bytes()).unwrap();
    raw.write_all(&[0u8; 100]).unwrap();
    let mut rest = Vec::new();
    match raw.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "the peer got {} bytes", rest.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed only after {:?}: the body was awaited",
        started.elapsed()
    );
}

#[test]
fn plain_tcp_needs_an_explicit_yes_and_never_reaches_a_tls_listener() {
    let refused = Dispatcher::start(DispatcherConfig::new("tcp://127.0.0.1:0", TOKEN.to_vec()));
    assert!(
        matches!(
            refused,
            Err(StartError::Policy(PolicyError::PlainTcp { .. }))
        ),
        "{refused:?}"
    );

    let (d, events) = start(tls_config());
    let _daemon = legit_daemon(&d, &events, &[]);
    let addr = d.url().strip_prefix("tls+tcp://").unwrap().to_owned();

    // An SP peer speaking plain TCP, with the right token: no SP header comes back, no join.
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(&[0, b'S', b'P', 0, 0, 0x11, 0, 0]).unwrap();
    let mut frame = Vec::new();
    hello(TOKEN).encode(&mut frame).unwrap();
    let mut framed = (frame.len() as u64 + 4).to_be_bytes().to_vec();
    framed.extend_from_slice(&1u32.to_be_bytes());
    framed.extend_from_slice(&frame);
    let _ = raw.write_all(&framed);
    let mut back = Vec::new();
    let _ = raw.read_to_end(&mut back);
    assert!(
        !back.windows(4).any(|w| w == [0, b'S', b'P', 0]),
        "a plain peer got an SP header"
    );
    assert!(!back.windows(MARKER.len()).any(|w| w == MARKER));

    // A plain nano-transport socket cannot get a pipe either.
    let plain = Socket::new(Protocol::Pair1).unwrap();
    let err = plain.dial_blocking(&format!("tcp://{addr}"), Duration::from_secs(2));
    assert!(err.is_err());

    run_tasks(&d, 10);
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, DaemonEvent::Joined { .. })),
        "a plain peer joined"
    );
    assert_eq!(d.status().connections, 1);
}

#[test]
fn mutual_tls_admits_only_the_pinned_daemon_certificate() {
    let daemon_id = Identity::generate(&["daemon"]).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let cert = dir.join("daemon.pem");
    let key = dir.join("daemon.key");
    std::fs::write(&cert, daemon_id.cert_pem()).unwrap();
    std::fs::write(&key, daemon_id.key_pem()).unwrap();

    let mut config = tls_config();
    config.tls_clients = ClientAuth::Pinned(vec![daemon_id.fingerprint()]);
    let (d, events) = start(config);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let _daemon = legit_daemon(&d, &events, &["--tls-cert", cert, "--tls-key", key]);
    run_tasks(&d, 5);

    // A peer with the right token but no client certificate gets no SP pipe at all.
    let pin: Fingerprint = d.tls_fingerprint().unwrap();
    let socket = Socket::new(Protocol::Pair1).unwrap();
    socket.set_tls(
        TlsConfig::new()
            .with_dialer(ServerAuth::Pinned(pin), None)
            .unwrap(),
    );
    let err = socket.dial_blocking(d.url(), Duration::from_secs(2));
    assert!(matches!(err, Err(Error::Timeout)), "{err:?}");
    let _ = socket.try_send(b"hello?");
    run_tasks(&d, 5);
    assert!(
        !events
            .try_iter()
            .any(|e| matches!(e, DaemonEvent::Joined { .. }))
    );
}
