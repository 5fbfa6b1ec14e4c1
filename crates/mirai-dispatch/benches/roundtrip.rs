//! Tasks through the real dispatcher and demo daemon processes, beside a floor measured in the
//! same run: a blocking 64-byte ping-pong over a Unix stream socket with a child process (the
//! `anchors.md` floor; this binary re-executes itself as the echo child).
//!
//! - Round trip of one trivial task (submit, daemon echoes 64 bytes, wait), one daemon: p50 and
//!   p99 against the floor's p50 (R mirai 2.7 with dispatcher: 380-392 µs; procspawn: 4x floor).
//! - 20,000 trivial tasks on two daemons, all submitted then all collected: tasks/s against the
//!   floor's round trips per second (R mirai 2.7: 3,810 tasks/s).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::{Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task};

const ECHO_ENV: &str = "MIRAI_DISPATCH_BENCH_ECHO";
const TOKEN: &[u8] = b"bench";
const PATIENCE: Duration = Duration::from_secs(60);

/// Prints one figure beside its floor and appends the JSON record (the workspace's format).
fn record(name: &str, value: f64, unit: &str, peer: &str, peer_value: f64) {
    let ratio = value / peer_value;
    println!(
        "{name:<48} {value:>12.3} {unit:<6} vs {peer:<28} {peer_value:>12.3}  ratio {ratio:.2}"
    );
    if let Ok(path) = std::env::var("MIRAI_BENCH_RECORDS") {
        let rec = serde_json::json!({
            "name": name, "value": value, "unit": unit,
            "peer": peer, "peer_value": peer_value, "ratio": ratio,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open bench records");
        writeln!(f, "{rec}").expect("write bench record");
    }
}

fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The echo side of the floor, when this binary was started as the floor's child.
fn serve_echo_child() {
    let Ok(path) = std::env::var(ECHO_ENV) else {
        return;
    };
    let mut s = UnixStream::connect(path).expect("echo child connect");
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
    std::process::exit(0);
}

/// 64-byte blocking ping-pong with a child process: sorted round-trip samples.
fn floor(warmup: usize, rounds: usize) -> Vec<Duration> {
    let dir = std::env::temp_dir().join(format!("mirai-dispatch-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("floor dir");
    let path = dir.join("floor.sock");
    let listener = UnixListener::bind(&path).expect("floor bind");
    let _child = Reaped(
        Command::new(std::env::current_exe().expect("current exe"))
            .env(ECHO_ENV, &path)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the echo child"),
    );
    let (mut s, _) = listener.accept().expect("floor accept");
    let _ = std::fs::remove_dir_all(&dir);
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let t = Instant::now();
        s.write_all(&buf).expect("floor write");
        s.read_exact(&mut buf).expect("floor read");
        if i >= warmup {
            samples.push(t.elapsed());
        }
    }
    samples.sort_unstable();
    samples
}

fn daemons(url: &str, n: usize, events: &Receiver<DaemonEvent>) -> Vec<Reaped> {
    let children: Vec<Reaped> = (0..n)
        .map(|i| {
            Reaped(
                Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
                    .args(["--url", url, "--token", "bench", "--launch-id"])
                    .arg((i + 1).to_string())
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("spawn a daemon"),
            )
        })
        .collect();
    for _ in 0..n {
        match events.recv_timeout(PATIENCE) {
            Ok(DaemonEvent::Joined { .. }) => {}
            other => panic!("expected a daemon to join, got {other:?}"),
        }
    }
    children
}

fn start() -> (Dispatcher, Receiver<DaemonEvent>) {
    let url = format!("abstract://mirai-dispatch-bench-{}", std::process::id());
    let config = DispatcherConfig::new(url, TOKEN.to_vec()).with_core(Config::default());
    Dispatcher::start(config).expect("start the dispatcher")
}

fn round_trip(d: &Dispatcher) -> Duration {
    let t = Instant::now();
    let id = d.submit(Task::new("echo", vec![7u8; 64]), None).unwrap();
    match d.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(_)) => t.elapsed(),
        other => panic!("expected a value, got {other:?}"),
    }
}

fn main() {
    serve_echo_child();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let floor = floor(1_000, 20_000);
    let floor_p50 = quantile_us(&floor, 0.5);

    let (d, events) = start();
    let children = daemons(d.url(), 1, &events);
    for _ in 0..1_000 {
        round_trip(&d);
    }
    let mut samples: Vec<Duration> = (0..5_000).map(|_| round_trip(&d)).collect();
    samples.sort_unstable();
    record(
        "dispatch task round trip p50, 1 daemon",
        quantile_us(&samples, 0.5),
        "us",
        "uds ping-pong 64 B p50 (floor)",
        floor_p50,
    );
    record(
        "dispatch task round trip p99, 1 daemon",
        quantile_us(&samples, 0.99),
        "us",
        "uds ping-pong 64 B p50 (floor)",
        floor_p50,
    );
    d.shutdown();
    drop(children);

    let (d, events) = start();
    let children = daemons(d.url(), 2, &events);
    let n = 20_000;
    let t = Instant::now();
    let ids: Vec<_> = (0..n)
        .map(|_| d.submit(Task::new("echo", vec![1u8; 8]), None).unwrap())
        .collect();
    for id in ids {
        assert!(matches!(
            d.wait(id, Some(PATIENCE)),
            Some(Outcome::Value(_))
        ));
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    record(
        "dispatch 20000 trivial tasks, 2 daemons",
        rate,
        "tasks/s",
        "uds ping-pong round trips/s",
        1e6 / floor_p50,
    );
    d.shutdown();
    drop(children);
}
