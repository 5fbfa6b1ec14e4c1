//! What TLS costs nano-transport: `tls+tcp://` against plain `tcp://`, both measured in this one
//! run with the same sockets, sizes and threads, so the ratio is the figure that counts.
//!
//! - REQ/REP 64 B round trip p50 (tls vs tcp).
//! - PUSH/PULL 64 B msg/s and 1 MiB GB/s (tls vs tcp).
//! - Dial to first pipe (TCP connect + TLS handshake + SP header) vs a plain tcp dial.
//! - Generating the startup certificate (ECDSA P-256), against one TLS dial of the same run
//!   (goal: 10 ms at most, in the record's `goal` field).
//!
//! Both ends run in this process on separate threads (the machine has 2 cores): it is the
//! relative cost of TLS that is measured here, not the cross-process latency of `transport`.

use std::time::{Duration, Instant};

use mirai_benches::{Goal, Samples, record, record_with_goal};
use nano_transport::tls::{ClientAuth, Identity, ServerAuth, TlsConfig};
use nano_transport::{Protocol, Socket};

const WARMUP: usize = 2_000;
const ROUNDS: usize = 20_000;
const SMALL: usize = 64;
const SMALL_COUNT: usize = 100_000;
const LARGE: usize = 1 << 20;
const LARGE_COUNT: usize = 500;
const DIALS: usize = 50;
const WAIT: Duration = Duration::from_secs(30);

/// One side of a transport under test: how to configure and which URL to listen on.
#[derive(Clone)]
struct Setup {
    listen: Option<TlsConfig>,
    dial: Option<TlsConfig>,
    url: &'static str,
}

fn setups() -> (Setup, Setup) {
    let id = Identity::generate(&["localhost"]).expect("certificate");
    let pin = id.fingerprint();
    let tls = Setup {
        listen: Some(
            TlsConfig::new()
                .with_listener(id, ClientAuth::None)
                .unwrap(),
        ),
        dial: Some(
            TlsConfig::new()
                .with_dialer(ServerAuth::Pinned(pin), None)
                .unwrap(),
        ),
        url: "tls+tcp://127.0.0.1:0",
    };
    let tcp = Setup {
        listen: None,
        dial: None,
        url: "tcp://127.0.0.1:0",
    };
    (tls, tcp)
}

/// A connected (listener, dialer) pair of sockets.
fn pair(s: &Setup, listen: Protocol, dial: Protocol) -> (Socket, Socket) {
    let l = Socket::new(listen).unwrap();
    if let Some(c) = &s.listen {
        l.set_tls(c.clone());
    }
    let url = l.listen(s.url).unwrap().local_url().to_owned();
    let d = Socket::new(dial).unwrap();
    if let Some(c) = &s.dial {
        d.set_tls(c.clone());
    }
    d.dial_blocking(&url, WAIT).unwrap();
    for s in [&l, &d] {
        s.set_recv_timeout(Some(WAIT));
        s.set_send_timeout(Some(WAIT));
    }
    (l, d)
}

fn reqrep(s: &Setup) -> Samples {
    let (rep, req) = pair(s, Protocol::Rep0, Protocol::Req0);
    let server = std::thread::spawn(move || {
        for _ in 0..WARMUP + ROUNDS {
            let m = rep.recv().unwrap();
            rep.send(&m).unwrap();
        }
    });
    let body = vec![7u8; SMALL];
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        req.send(&body).unwrap();
        req.recv().unwrap();
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    server.join().unwrap();
    Samples::new(samples)
}

/// Messages per second from the first message received to the last.
fn pushpull(s: &Setup, size: usize, count: usize) -> f64 {
    let (pull, push) = pair(s, Protocol::Pull0, Protocol::Push0);
    let sender = std::thread::spawn(move || {
        let body = vec![3u8; size];
        for _ in 0..count {
            push.send(&body).unwrap();
        }
        push
    });
    pull.recv().unwrap();
    let t = Instant::now();
    for _ in 1..count {
        pull.recv().unwrap();
    }
    let rate = (count - 1) as f64 / t.elapsed().as_secs_f64();
    drop(sender.join().unwrap());
    rate
}

fn dial_time(s: &Setup) -> Samples {
    let l = Socket::new(Protocol::Pull0).unwrap();
    if let Some(c) = &s.listen {
        l.set_tls(c.clone());
    }
    let url = l.listen(s.url).unwrap().local_url().to_owned();
    let mut samples = Vec::with_capacity(DIALS);
    for _ in 0..DIALS {
        let d = Socket::new(Protocol::Push0).unwrap();
        if let Some(c) = &s.dial {
            d.set_tls(c.clone());
        }
        let t = Instant::now();
        d.dial_blocking(&url, WAIT).unwrap();
        samples.push(t.elapsed());
    }
    Samples::new(samples)
}

fn main() {
    let mut gen_times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _ = Identity::generate(&["localhost"]).unwrap();
        gen_times.push(t.elapsed());
    }
    let gen_times = Samples::new(gen_times);

    let (tls, tcp) = setups();
    let (t, p) = (reqrep(&tls), reqrep(&tcp));
    record(
        "REQ/REP 64 B p50 tls+tcp",
        t.p50_us(),
        "us",
        "tcp p50",
        p.p50_us(),
    );
    record(
        "REQ/REP 64 B p99 tls+tcp",
        t.p99_us(),
        "us",
        "tcp p99",
        p.p99_us(),
    );
    let (t, p) = (
        pushpull(&tls, SMALL, SMALL_COUNT),
        pushpull(&tcp, SMALL, SMALL_COUNT),
    );
    record("PUSH/PULL 64 B tls+tcp", t, "msg/s", "tcp", p);
    let gbps = |msgs: f64| msgs * LARGE as f64 / 1e9;
    let (t, p) = (
        gbps(pushpull(&tls, LARGE, LARGE_COUNT)),
        gbps(pushpull(&tcp, LARGE, LARGE_COUNT)),
    );
    record("PUSH/PULL 1 MiB tls+tcp", t, "GB/s", "tcp", p);
    let (t, p) = (dial_time(&tls), dial_time(&tcp));
    record(
        "dial to first pipe p50 tls+tcp",
        t.p50_us(),
        "us",
        "tcp p50",
        p.p50_us(),
    );
    // Against what one handshake costs, measured above; the 10 ms budget is the goal.
    record_with_goal(
        "tls certificate generation (ECDSA P-256) p50",
        gen_times.p50_us() / 1e3,
        "ms",
        "dial to first pipe p50 tls+tcp",
        t.p50_us() / 1e3,
        Goal::value_at_most(10.0),
    );
}
