//! Misbehaving peers, played with raw `TcpStream`/`UnixStream`s against our listening sockets:
//! one test per wire rule. Each checks what happens to the bad connection (closed by us, or the
//! bad message dropped and the pipe kept) and that the socket keeps serving a good peer.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nano_transport::{Error, PipeEvent, Protocol, Socket};
use util::{Endpoint, Transport};

/// Bound on every wait.
const STEP: Duration = Duration::from_secs(5);

/// The 8-byte SP connection header for endpoint type `peer_type`.
fn header(peer_type: u16) -> [u8; 8] {
    let t = peer_type.to_be_bytes();
    [0x00, b'S', b'P', 0x00, t[0], t[1], 0x00, 0x00]
}

/// A raw stream to one of our listeners, speaking (or mangling) the SP wire by hand.
enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Raw {
    fn connect(url: &str) -> Self {
        let raw = if let Some(addr) = url.strip_prefix("tcp://") {
            Self::Tcp(TcpStream::connect(addr).expect("tcp connect"))
        } else if let Some(path) = url.strip_prefix("ipc://") {
            Self::Unix(UnixStream::connect(path).expect("ipc connect"))
        } else {
            panic!("raw peers speak tcp:// and ipc:// only, not {url}")
        };
        raw.set_timeout(STEP);
        raw
    }

    fn set_timeout(&self, t: Duration) {
        match self {
            Self::Tcp(s) => s.set_read_timeout(Some(t)).expect("timeout"),
            Self::Unix(s) => s.set_read_timeout(Some(t)).expect("timeout"),
        }
    }

    fn is_ipc(&self) -> bool {
        matches!(self, Self::Unix(_))
    }

    fn write(&mut self, bytes: &[u8]) {
        let r = match self {
            Self::Tcp(s) => s.write_all(bytes),
            Self::Unix(s) => s.write_all(bytes),
        };
        r.expect("raw write");
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) {
        let r = match self {
            Self::Tcp(s) => s.read_exact(buf),
            Self::Unix(s) => s.read_exact(buf),
        };
        r.expect("raw read");
    }

    /// Reads the 8-byte header our socket sends as soon as the connection is up.
    fn their_header(&mut self) -> [u8; 8] {
        let mut h = [0u8; 8];
        self.read_exact(&mut h);
        h
    }

    /// A correct handshake as `peer_type`; checks our header says `ours`.
    fn handshake(url: &str, peer_type: u16, ours: Protocol) -> Self {
        let mut raw = Self::connect(url);
        raw.write(&header(peer_type));
        assert_eq!(raw.their_header(), header(ours.id()), "our header");
        raw
    }

    /// One frame with the transport's framing: u64 BE length (tcp), `0x01` first on ipc.
    fn send_frame(&mut self, body: &[u8]) {
        let mut frame = Vec::new();
        if self.is_ipc() {
            frame.push(0x01);
        }
        frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
        frame.extend_from_slice(body);
        self.write(&frame);
    }

    fn recv_frame(&mut self) -> Vec<u8> {
        if self.is_ipc() {
            let mut kind = [0u8; 1];
            self.read_exact(&mut kind);
            assert_eq!(kind[0], 0x01, "ipc message type byte");
        }
        let mut len = [0u8; 8];
        self.read_exact(&mut len);
        let len = usize::try_from(u64::from_be_bytes(len)).expect("frame length");
        assert!(len < 1 << 20, "unexpectedly large frame of {len} bytes");
        let mut body = vec![0u8; len];
        self.read_exact(&mut body);
        body
    }

    /// Waits for our side to close the connection (EOF or reset); panics if it is still open
    /// after `STEP`. Returns how long it took, and any bytes that arrived before the close.
    fn expect_closed(&mut self) -> (Duration, Vec<u8>) {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return (start.elapsed(), got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    return (start.elapsed(), got);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("connection still open after {:?}", start.elapsed())
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Like [`expect_closed`](Self::expect_closed), and nothing may arrive before the close.
    fn expect_closed_silently(&mut self) -> Duration {
        let (took, got) = self.expect_closed();
        assert!(got.is_empty(), "got {got:?} before the close");
        took
    }

    /// Checks the connection stays open: nothing but a timeout within `wait`.
    fn expect_open(&mut self, wait: Duration) {
        self.set_timeout(wait);
        let mut buf = [0u8; 64];
        match self.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected an open, quiet connection, got {other:?}"),
        }
        self.set_timeout(STEP);
    }
}

/// Our socket listening on a fresh endpoint, answering every message with `re:` + body on a
/// background thread; closed and joined on drop.
struct Server {
    socket: Socket,
    url: String,
    thread: Option<JoinHandle<()>>,
    _endpoint: Endpoint,
}

impl Server {
    fn start(protocol: Protocol, transport: Transport, tweak: impl FnOnce(&Socket)) -> Self {
        let socket = Socket::new(protocol).expect("socket");
        tweak(&socket);
        let endpoint = match transport {
            Transport::Tcp => Endpoint::tcp_any(),
            t => Endpoint::new(t, "negative"),
        };
        let url = socket
            .listen(&endpoint.url)
            .expect("listen")
            .local_url()
            .to_owned();
        let worker = socket.clone();
        let thread = thread::spawn(move || {
            while let Ok(msg) = worker.recv() {
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&msg);
                if worker.send(&reply).is_err() {
                    return;
                }
            }
        });
        Self {
            socket,
            url,
            thread: Some(thread),
            _endpoint: endpoint,
        }
    }

    /// A REQ request from a raw peer with request id `id` is answered correctly.
    fn serves_a_good_req(&self) {
        let mut good = Raw::handshake(&self.url, 0x30, Protocol::Rep0);
        let id = 0x8000_1234_u32.to_be_bytes();
        good.send_frame(&[&id[..], b"hi"].concat());
        assert_eq!(
            good.recv_frame(),
            [&id[..], b"re:hi"].concat(),
            "reply to a good peer"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.socket.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A bad 8-byte header gets our header back, then the connection is closed, and the socket
/// still serves a good REQ peer afterwards.
fn rejects_header(bad: [u8; 8], transport: Transport) {
    let server = Server::start(Protocol::Rep0, transport, |_| {});
    let mut raw = Raw::connect(&server.url);
    raw.write(&bad);
    assert_eq!(
        raw.their_header(),
        header(Protocol::Rep0.id()),
        "we send our header at once"
    );
    raw.expect_closed_silently();
    server.serves_a_good_req();
}

#[test]
fn bad_magic_is_closed() {
    rejects_header(*b"GET / HT", Transport::Tcp);
    rejects_header(
        [0x00, b'S', b'Q', 0x00, 0x00, 0x30, 0x00, 0x00],
        Transport::Ipc,
    );
}

#[test]
fn bad_version_is_closed() {
    rejects_header(
        [0x00, b'S', b'P', 0x01, 0x00, 0x30, 0x00, 0x00],
        Transport::Tcp,
    );
    rejects_header(
        [0x00, b'S', b'P', 0x01, 0x00, 0x30, 0x00, 0x00],
        Transport::Ipc,
    );
}

#[test]
fn non_zero_reserved_bytes_are_closed() {
    rejects_header(
        [0x00, b'S', b'P', 0x00, 0x00, 0x30, 0x00, 0x01],
        Transport::Tcp,
    );
    rejects_header(
        [0x00, b'S', b'P', 0x00, 0x00, 0x30, 0x01, 0x00],
        Transport::Ipc,
    );
}

#[test]
fn wrong_peer_type_is_closed() {
    // PUSH, PAIR0 and REP itself are not REP's partner.
    for peer in [0x50, 0x10, 0x31] {
        rejects_header(header(peer), Transport::Tcp);
    }
    rejects_header(header(0x11), Transport::Ipc);
}

#[test]
fn silent_peer_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = Server::start(Protocol::Rep0, Transport::Tcp, |s| {
        s.set_handshake_timeout(timeout);
    });
    let mut raw = Raw::connect(&server.url);
    let start = Instant::now();
    assert_eq!(raw.their_header(), header(Protocol::Rep0.id()));
    raw.expect_closed_silently();
    let waited = start.elapsed();
    assert!(
        waited >= timeout.mul_f32(0.8),
        "closed after {waited:?}, before the {timeout:?} handshake timeout"
    );
    server.serves_a_good_req();
}

#[test]
fn half_a_header_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = Server::start(Protocol::Rep0, Transport::Ipc, |s| {
        s.set_handshake_timeout(timeout);
    });
    let mut raw = Raw::connect(&server.url);
    raw.write(&header(0x30)[..5]);
    let start = Instant::now();
    assert_eq!(raw.their_header(), header(Protocol::Rep0.id()));
    raw.expect_closed_silently();
    assert!(
        start.elapsed() >= timeout.mul_f32(0.5),
        "closed before the timeout"
    );
    server.serves_a_good_req();
}

/// The peak virtual memory of this process in KiB (`VmPeak`): a 1 TB allocation would show
/// here even where the kernel overcommits it lazily.
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak in /proc/self/status")
}

/// Asserts that the process's peak virtual memory grew by less than 1 GiB since `before`.
fn assert_no_huge_allocation(before: u64) {
    let grown = vm_peak_kib().saturating_sub(before);
    assert!(grown < 1 << 20, "peak virtual memory grew by {grown} KiB");
}

/// A 1 TB length prefix over the receive limit closes the connection at once, and nothing
/// close to the claim is ever allocated.
#[test]
fn oversized_length_prefix_is_closed_without_allocating() {
    let before = vm_peak_kib();
    for transport in [Transport::Tcp, Transport::Ipc] {
        let server = Server::start(Protocol::Rep0, transport, |s| s.set_recv_max_size(1 << 20));
        let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
        let mut frame = Vec::new();
        if raw.is_ipc() {
            frame.push(0x01);
        }
        frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
        frame.extend_from_slice(&[0x80, 0, 0, 1, b'x']);
        raw.write(&frame);
        let took = raw.expect_closed_silently();
        assert!(took < Duration::from_secs(2), "closed only after {took:?}");
        server.serves_a_good_req();
    }
    assert_no_huge_allocation(before);
}

/// A frame exactly at the limit is delivered; one byte more closes the pipe (checked on the
/// prefix: the body is never sent).
#[test]
fn receive_limit_is_inclusive() {
    let limit = 64usize;
    let server = Server::start(Protocol::Rep0, Transport::Tcp, |s| {
        s.set_recv_max_size(limit)
    });
    let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
    let id = 0x8000_0007_u32.to_be_bytes();
    let body = [&id[..], &[b'a'; 60][..]].concat();
    assert_eq!(body.len(), limit);
    raw.send_frame(&body);
    assert_eq!(
        raw.recv_frame(),
        [&id[..], b"re:", &[b'a'; 60][..]].concat()
    );
    raw.write(&((limit + 1) as u64).to_be_bytes());
    raw.expect_closed_silently();
    server.serves_a_good_req();
}

/// Without the default limit, a length prefix over 1 MiB (NNG's default too) closes the
/// connection at once: the socket neither allocates nor waits for what the peer claims.
#[test]
fn default_receive_limit_closes_a_claim_over_1_mib() {
    assert_eq!(nano_transport::DEFAULT_RECV_MAX_SIZE, 1 << 20);
    for transport in [Transport::Tcp, Transport::Ipc] {
        let server = Server::start(Protocol::Rep0, transport, |_| {});
        let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
        let mut prefix = Vec::new();
        if raw.is_ipc() {
            prefix.push(0x01);
        }
        prefix.extend_from_slice(&((1u64 << 20) + 1).to_be_bytes());
        raw.write(&prefix);
        raw.expect_closed_silently();
        server.serves_a_good_req();
    }
}

/// With the limit removed (`set_recv_max_size(0)`) a 1 TB claim is not allocated up front
/// either: memory follows the bytes that actually arrive, and the socket keeps serving.
#[test]
fn unlimited_size_claim_does_not_allocate_up_front() {
    let before = vm_peak_kib();
    let server = Server::start(Protocol::Rep0, Transport::Tcp, |s| s.set_recv_max_size(0));
    let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
    raw.write(&(1u64 << 40).to_be_bytes());
    raw.write(&[0x80, 0, 0, 1]);
    raw.write(&[0u8; 64 << 10]);
    server.serves_a_good_req();
    assert_no_huge_allocation(before);
    drop(raw);
    server.serves_a_good_req();
}

#[test]
fn ipc_frame_with_a_bad_type_byte_is_closed() {
    let server = Server::start(Protocol::Rep0, Transport::Ipc, |_| {});
    let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
    let mut frame = vec![0x02];
    frame.extend_from_slice(&6u64.to_be_bytes());
    frame.extend_from_slice(&[0x80, 0, 0, 1, b'h', b'i']);
    raw.write(&frame);
    raw.expect_closed_silently();
    server.serves_a_good_req();
}

/// A backtrace longer than the TTL (8 hops) is dropped silently; the pipe stays up and the
/// next good request on it is answered (and only that one).
#[test]
fn req_backtrace_over_ttl_is_dropped_and_pipe_kept() {
    for transport in [Transport::Tcp, Transport::Ipc] {
        let server = Server::start(Protocol::Rep0, transport, |_| {});
        let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
        let mut hops: Vec<u8> = (1..=8u32).flat_map(u32::to_be_bytes).collect();
        hops.extend_from_slice(&0x8000_0001_u32.to_be_bytes());
        hops.extend_from_slice(b"too far");
        raw.send_frame(&hops);
        // Within the limit: 7 hops plus the id is 8 words, answered with the stack echoed.
        let mut ok: Vec<u8> = (1..=7u32).flat_map(u32::to_be_bytes).collect();
        ok.extend_from_slice(&0x8000_0002_u32.to_be_bytes());
        let stack = ok.clone();
        ok.extend_from_slice(b"near");
        raw.send_frame(&ok);
        assert_eq!(raw.recv_frame(), [&stack[..], b"re:near"].concat());
        raw.expect_open(Duration::from_millis(200));
    }
}

/// A request whose body ends before a word with the top bit set is malformed: REP drops it
/// and, as NNG does, closes that pipe; the socket keeps serving other peers.
#[test]
fn malformed_req_backtrace_is_dropped() {
    let bodies: [&[u8]; 3] = [&[0x80, 0x00], &[0, 0, 0, 1, 0, 0, 0, 2], &[]];
    for body in bodies {
        let server = Server::start(Protocol::Rep0, Transport::Tcp, |_| {});
        let mut raw = Raw::handshake(&server.url, 0x30, Protocol::Rep0);
        raw.send_frame(body);
        // Closed without a reply: the echo thread never saw the request.
        raw.expect_closed_silently();
        server.serves_a_good_req();
    }
}

/// PAIR1: a hop count over the TTL is dropped with the pipe kept; one over 0xFF, or a body too
/// short for the count, closes the pipe.
#[test]
fn pair1_hop_count_over_the_limit_is_dropped() {
    for transport in [Transport::Tcp, Transport::Ipc] {
        let server = Server::start(Protocol::Pair1, transport, |_| {});
        let mut raw = Raw::handshake(&server.url, 0x11, Protocol::Pair1);
        raw.send_frame(&[0, 0, 0, 9, b'f', b'a', b'r']);
        raw.send_frame(&[0, 0, 0, 1, b'o', b'k']);
        // Our reply carries hop count 1; the dropped message never reached the echo thread.
        assert_eq!(raw.recv_frame(), [&[0, 0, 0, 1][..], b"re:ok"].concat());
        raw.expect_open(Duration::from_millis(200));
    }
    for bad in [&[0, 0, 1, 0, b'x'][..], &[0, 0, 1][..]] {
        let server = Server::start(Protocol::Pair1, Transport::Tcp, |_| {});
        let mut raw = Raw::handshake(&server.url, 0x11, Protocol::Pair1);
        raw.send_frame(bad);
        raw.expect_closed_silently();
        // PAIR1 (mono) takes a new peer once the bad one is gone.
        let mut good = Raw::handshake(&server.url, 0x11, Protocol::Pair1);
        good.send_frame(&[0, 0, 0, 1, b'h', b'i']);
        assert_eq!(good.recv_frame(), [&[0, 0, 0, 1][..], b"re:hi"].concat());
    }
}

/// PAIR0 (and mono PAIR1) keep their one peer: a second connection is closed.
#[test]
fn pair_rejects_a_second_peer() {
    for protocol in [Protocol::Pair0, Protocol::Pair1] {
        let server = Server::start(protocol, Transport::Tcp, |_| {});
        let mut first = Raw::handshake(&server.url, protocol.id(), protocol);
        // The second peer may get our header before the rejection, but nothing else.
        let mut second = Raw::connect(&server.url);
        second.write(&header(protocol.id()));
        let (_, got) = second.expect_closed();
        assert!(got.len() <= 8, "second peer got {got:?}");
        let body: &[u8] = if protocol == Protocol::Pair1 {
            &[0, 0, 0, 1, b'a']
        } else {
            b"a"
        };
        first.send_frame(body);
        let reply = first.recv_frame();
        assert!(
            reply.ends_with(b"re:a"),
            "first peer still served: {reply:?}"
        );
    }
}

/// A receiver blocked while the socket had one pipe must still get a message that arrives on
/// a pipe connected later (fan-in: PULL from several pushers, BUS, PAIR1 poly). A receiver
/// that waits on the only pipe's own readiness must also be woken when another pipe's message
/// is queued for it; otherwise the message waits until that receiver's deadline.
#[test]
fn message_on_a_later_pipe_wakes_a_blocked_receiver() {
    for protocol in [Protocol::Pull0, Protocol::Bus0] {
        let socket = Socket::new(protocol).expect("socket");
        let endpoint = Endpoint::tcp_any();
        let url = socket
            .listen(&endpoint.url)
            .expect("listen")
            .local_url()
            .to_owned();
        let peer_type = protocol.peer_id();
        let _first = Raw::handshake(&url, peer_type, protocol);
        assert!(util::wait_until(STEP, || socket.pipes().len() == 1));
        let receiver = socket.clone();
        let waiting = thread::spawn(move || {
            let start = Instant::now();
            let got = receiver.recv_timeout(STEP);
            (got.map(|m| m.to_vec()), start.elapsed())
        });
        thread::sleep(Duration::from_millis(100));
        let mut second = Raw::connect(&url);
        let mut bytes = header(peer_type).to_vec();
        bytes.extend_from_slice(&5u64.to_be_bytes());
        bytes.extend_from_slice(b"hello");
        second.write(&bytes);
        let (got, waited) = waiting.join().expect("receiver thread");
        assert_eq!(got.expect("recv").as_slice(), b"hello", "{protocol:?}");
        assert!(
            waited < Duration::from_secs(2),
            "{protocol:?}: the message waited {waited:?} while its pipe stayed open"
        );
        drop(second);
    }
}

/// Opens `protocol` listening on a fresh ipc endpoint; returns it with its URL and pipe events.
fn listening(
    protocol: Protocol,
    tweak: impl FnOnce(&Socket),
) -> (
    Socket,
    String,
    Endpoint,
    std::sync::mpsc::Receiver<PipeEvent>,
) {
    let socket = Socket::new(protocol).expect("socket");
    tweak(&socket);
    let events = socket.pipe_events();
    let endpoint = Endpoint::new(Transport::Ipc, "flood");
    let url = socket
        .listen(&endpoint.url)
        .expect("listen")
        .local_url()
        .to_owned();
    (socket, url, endpoint, events)
}

/// Waits for the flooding peer's pipe to be added and then removed: once removed, everything
/// it sent before closing has been read and put through the protocol's receive rules.
fn wait_flood_read(events: &std::sync::mpsc::Receiver<PipeEvent>) {
    assert!(matches!(events.recv_timeout(STEP), Ok(PipeEvent::Added(_))));
    assert!(matches!(
        events.recv_timeout(STEP),
        Ok(PipeEvent::Removed(_))
    ));
}

/// Everything queued in `socket` now, without waiting.
fn drain(socket: &Socket) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match socket.try_recv() {
            Ok(m) => got.push(m.to_vec()),
            Err(Error::WouldBlock | Error::Timeout) => return got,
            Err(e) => panic!("try_recv: {e}"),
        }
    }
}

/// A respondent answering the current survey over and over cannot grow the surveyor's queue:
/// responses beyond `set_recv_buffer` are dropped (as NNG's surveyor does), the first ones are
/// kept, and the surveyor keeps working with a well-behaved respondent.
#[test]
fn surveyor_drops_responses_beyond_its_queue_bound() {
    const BOUND: usize = 16;
    const FLOOD: u32 = 1000;
    let (surveyor, url, _endpoint, events) = listening(Protocol::Surveyor0, |s| {
        s.set_recv_buffer(BOUND);
        s.set_survey_time(Duration::from_secs(60));
    });
    let mut raw = Raw::handshake(&url, Protocol::Respondent0.id(), Protocol::Surveyor0);
    assert!(util::wait_until(STEP, || surveyor.pipes().len() == 1));
    surveyor.send(b"survey").expect("survey");
    let survey = raw.recv_frame();
    assert_eq!(&survey[4..], b"survey");
    let id = &survey[..4];
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        flood.push(0x01);
        flood.extend_from_slice(&8u64.to_be_bytes());
        flood.extend_from_slice(id);
        flood.extend_from_slice(&i.to_be_bytes());
    }
    raw.write(&flood);
    drop(raw);
    wait_flood_read(&events);
    let kept = drain(&surveyor);
    let expected: Vec<Vec<u8>> = (0..BOUND as u32)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    assert_eq!(
        kept, expected,
        "the first {BOUND} of {FLOOD} responses, no more"
    );

    let respondent = Socket::new(Protocol::Respondent0).expect("respondent");
    respondent.dial_blocking(&url, STEP).expect("dial");
    assert!(util::wait_until(STEP, || surveyor.pipes().len() == 1));
    surveyor.send(b"again").expect("survey");
    assert_eq!(&*respondent.recv_timeout(STEP).expect("survey"), b"again");
    respondent.send(b"answer").expect("respond");
    assert_eq!(&*surveyor.recv_timeout(STEP).expect("response"), b"answer");
}

/// A publisher of large messages cannot make SUB hold `recv_buffer` of them: SUB drops the
/// oldest to stay within the receive queue's byte bound (4 MiB) too, keeps the newest, and
/// still receives from a well-behaved publisher afterwards.
#[test]
fn sub_drops_oldest_to_stay_within_its_byte_bound() {
    const SIZE: usize = 64 << 10;
    const FLOOD: u32 = 128; // SUB's default message bound: only the bytes limit applies.
    let (sub, url, _endpoint, events) = listening(Protocol::Sub0, |s| {
        s.subscribe(b"").expect("subscribe");
    });
    let mut raw = Raw::handshake(&url, Protocol::Pub0.id(), Protocol::Sub0);
    let mut body = vec![0u8; SIZE];
    for i in 0..FLOOD {
        body[..4].copy_from_slice(&i.to_be_bytes());
        raw.send_frame(&body);
    }
    drop(raw);
    wait_flood_read(&events);
    let kept = drain(&sub);
    let bytes: usize = kept.iter().map(Vec::len).sum();
    assert!(
        bytes <= (4 << 20) + SIZE,
        "{} messages, {bytes} bytes queued",
        kept.len()
    );
    let ids: Vec<u32> = kept
        .iter()
        .map(|m| u32::from_be_bytes(m[..4].try_into().expect("4 bytes")))
        .collect();
    let newest: Vec<u32> = (FLOOD - ids.len() as u32..FLOOD).collect();
    assert_eq!(ids, newest, "the newest messages, in order");

    let publisher = Socket::new(Protocol::Pub0).expect("pub");
    publisher.dial_blocking(&url, STEP).expect("dial");
    assert!(util::wait_until(STEP, || sub.pipes().len() == 1));
    publisher.send(b"after").expect("publish");
    assert_eq!(&*sub.recv_timeout(STEP).expect("recv"), b"after");
}
