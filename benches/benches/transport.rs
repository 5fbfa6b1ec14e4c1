//! nano-transport against its floor and against pynng, all measured in this one run.
//!
//! - REQ/REP 64 B round trip p50 over ipc and tcp: ours vs the Unix-socket ping-pong floor
//!   (goal <= 1.5x) and pynng talking to pynng vs ours (goal >= 4x slower). Floors, ours
//!   and pynng take turns (5 turns of 4,000 round trips after 1,000 warm-up); each figure is
//!   the median of its turns' p50s.
//! - PUSH/PULL 64 B msg/s against a stream floor (a plain Unix or TCP socket carrying the same
//!   framed 64-byte records, written in batches as large as our sender's largest and read 64 KiB
//!   at a time, as our pipes read) and against pynng's (goals >= 1M msg/s over ipc, >= 500k over
//!   tcp, and >= 10x pynng); 1 MiB GB/s against the memcpy floor and pynng (goal >= 2x pynng);
//!   floor, ours and pynng take 3 turns each, medians reported. Goals are recorded in each
//!   record's `goal` field, never as its peer.
//!
//! Without pynng (`cargo xtask setup` installs it) the bench fails before measuring anything.
//!
//! As in the anchor measurements, client and server are separate processes: our servers are
//! this binary re-executed, pynng's are `benches/peers/pynng_bench.py`. The receiver times from
//! the first message to the last.
//!
//! Arguments after `--` select parts by substring of their names (`reqrep ipc`, `pushpull 64 B
//! tcp`, `pushpull 1 MiB ipc`, ...), e.g. `cargo bench -p mirai-benches --bench transport --
//! "1 MiB"`; the floors always run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mirai_benches::{Goal, Samples, record, record_with_goal};
use nano_transport::{Protocol, Socket};

/// Set in a re-executed child: `rep URL`, `push URL COUNT SIZE`, `tcp-echo ADDR` or
/// `stream-send ipc|tcp ADDR COUNT`.
const CHILD_ENV: &str = "MIRAI_BENCH_TRANSPORT_CHILD";

const WARMUP: usize = 1_000;
/// Timed round trips per latency figure, over all turns.
const ROUNDS: usize = 20_000;
/// Turns of the latency measurements (floors, ours, pynng each once per turn).
const LATENCY_REPS: usize = 5;
/// Turns of the throughput measurements (ours, pynng).
const THROUGHPUT_REPS: usize = 3;
const SMALL: usize = 64;
const SMALL_COUNT: usize = 200_000;
const LARGE: usize = 1 << 20;
const LARGE_COUNT: usize = 1_000;
const WAIT: Duration = Duration::from_secs(30);

fn main() {
    mirai_benches::serve_floor_child();
    serve_transport_child();

    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));

    let python = python();
    let scratch = Scratch::new();
    let memcpy = memcpy_gbps();
    let transports = ["ipc", "tcp"];

    // Latency: floors, ours and pynng take turns, LATENCY_REPS times, so a change in the
    // machine's load or in where the scheduler puts the processes (on these 2-vCPU VMs a
    // cross-CPU wake-up can cost 10x a same-CPU one) hits all of them alike; each figure is the
    // median of its per-turn p50s.
    let reqrep: Vec<&str> = transports
        .into_iter()
        .filter(|t| wanted(&format!("reqrep {t}")))
        .collect();
    if !reqrep.is_empty() {
        latency(&reqrep, &python, &scratch, "");
        // The same turns with every process on one CPU: see `mirai_benches::on_one_cpu`.
        mirai_benches::on_one_cpu(|| latency(&reqrep, &python, &scratch, " (one CPU)"));
    }

    // Throughput: ours and pynng take turns THROUGHPUT_REPS times; medians.
    for (size, count, label) in [(SMALL, SMALL_COUNT, "64 B"), (LARGE, LARGE_COUNT, "1 MiB")] {
        for t in transports {
            if !wanted(&format!("pushpull {label} {t}")) {
                continue;
            }
            let (mut ours, mut peer, mut floor) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..THROUGHPUT_REPS {
                if size == SMALL {
                    floor.push(stream_floor(t, &scratch, count));
                }
                ours.push(our_pushpull(&scratch.url(t, "pp"), size, count));
                peer.push(pynng_pushpull(&python, &scratch.url(t, "ppp"), size, count));
            }
            eprintln!(
                "PUSH/PULL {label} {t} msg/s, per turn: stream floor {floor:.0?}, ours {ours:.0?}, pynng {peer:.0?}"
            );
            let (ours, peer) = (median(&ours), median(&peer));
            if size == SMALL {
                let floor = median(&floor);
                let floor_name = format!("{} stream 64 B records (floor)", floor_label(t));
                record(&floor_name, floor, "msg/s", "self", floor);
                record(
                    &format!("nano-transport PUSH/PULL 64 B {t}"),
                    ours,
                    "msg/s",
                    &floor_name,
                    floor,
                );
                // The project's goals: 1M msg/s over ipc, 500k over tcp.
                let goal = if t == "ipc" { 1_000_000.0 } else { 500_000.0 };
                record_with_goal(
                    &format!("nano-transport PUSH/PULL 64 B {t}"),
                    ours,
                    "msg/s",
                    &format!("pynng PUSH/PULL 64 B {t}"),
                    peer,
                    Goal::value_at_least(goal),
                );
                record_with_goal(
                    &format!("pynng PUSH/PULL 64 B {t}"),
                    peer,
                    "msg/s",
                    &format!("nano-transport {t}"),
                    ours,
                    Goal::ratio_at_most(0.1),
                );
            } else {
                let gbps = |msgs: f64| msgs * LARGE as f64 / 1e9;
                record(
                    &format!("nano-transport PUSH/PULL 1 MiB {t}"),
                    gbps(ours),
                    "GB/s",
                    "memcpy floor",
                    memcpy,
                );
                record_with_goal(
                    &format!("pynng PUSH/PULL 1 MiB {t}"),
                    gbps(peer),
                    "GB/s",
                    &format!("nano-transport {t}"),
                    gbps(ours),
                    Goal::ratio_at_most(0.5),
                );
            }
        }
    }
}

/// The median of a few figures (the upper one of the middle two for an even count).
/// Floors, ours and pynng take turns, LATENCY_REPS times, so a change in the machine's load or
/// in where the scheduler puts the processes hits all of them alike; each figure is the median
/// of its per-turn p50s. `suffix` labels the records of a pinned pass.
fn latency(reqrep: &[&str], python: &Path, scratch: &Scratch, suffix: &str) {
    let rounds = ROUNDS / LATENCY_REPS;
    let (mut uds, mut tcp) = (Vec::new(), Vec::new());
    let mut ours = vec![Vec::new(); reqrep.len()];
    let mut peer = vec![Vec::new(); reqrep.len()];
    for rep in 0..LATENCY_REPS {
        uds.push(mirai_benches::uds_pingpong_floor(SMALL, WARMUP, rounds).p50_us());
        tcp.push(tcp_pingpong_floor(rounds).p50_us());
        for (i, t) in reqrep.iter().enumerate() {
            ours[i].push(our_reqrep(&scratch.url(t, "rr"), rounds).p50_us());
            peer[i].push(pynng_reqrep(python, &scratch.url(t, "prr"), rounds));
        }
        eprintln!(
            "turn {rep}{suffix}: uds floor {:.2} us, tcp floor {:.2} us, ours {:.2?} us, pynng {:.2?} us",
            uds[rep],
            tcp[rep],
            ours.iter().map(|v| v[rep]).collect::<Vec<_>>(),
            peer.iter().map(|v| v[rep]).collect::<Vec<_>>(),
        );
    }
    let (uds, tcp) = (median(&uds), median(&tcp));
    record(
        &format!("uds ping-pong 64 B p50 (floor){suffix}"),
        uds,
        "us",
        "self",
        uds,
    );
    record(
        &format!("tcp ping-pong 64 B p50 (floor){suffix}"),
        tcp,
        "us",
        "uds ping-pong floor p50",
        uds,
    );
    for (i, t) in reqrep.iter().enumerate() {
        let (ours, peer) = (median(&ours[i]), median(&peer[i]));
        record_with_goal(
            &format!("nano-transport REQ/REP 64 B p50 {t}{suffix}"),
            ours,
            "us",
            "uds ping-pong floor p50",
            uds,
            Goal::ratio_at_most(1.5),
        );
        if *t == "tcp" {
            record(
                &format!("nano-transport REQ/REP 64 B p50 tcp{suffix}"),
                ours,
                "us",
                "tcp ping-pong floor p50",
                tcp,
            );
        }
        record_with_goal(
            &format!("pynng REQ/REP 64 B p50 {t}{suffix}"),
            peer,
            "us",
            &format!("nano-transport {t}"),
            ours,
            Goal::ratio_at_least(4.0),
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn memcpy_gbps() -> f64 {
    let bytes = 256 << 20;
    bytes as f64 / mirai_benches::memcpy_fresh_floor(bytes) / 1e9
}

/// The interop virtualenv's python, with pynng importable; fails the bench naming
/// `cargo xtask setup` otherwise.
fn python() -> PathBuf {
    let python = mirai_benches::peer_python();
    mirai_benches::run_peer("pynng", Command::new(&python).args(["-c", "import pynng"]));
    python
}

/// A private temp directory for ipc socket files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("nt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench temp dir");
        Self(dir)
    }

    /// An ipc URL in the scratch dir, or a tcp URL whose port the listener picks.
    fn url(&self, transport: &str, name: &str) -> String {
        match transport {
            "ipc" => format!("ipc://{}", self.0.join(format!("{name}.ipc")).display()),
            _ => "tcp://127.0.0.1:0".to_owned(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reexec(spec: &str) -> Guard {
    let child = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn bench child");
    Guard(child)
}

/// In a re-executed child: serve as asked and exit.
fn serve_transport_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    match parts.as_slice() {
        ["rep", url] => {
            let rep = Socket::new(Protocol::Rep0).expect("rep");
            rep.dial_blocking(url, WAIT).expect("rep dial");
            while let Ok(msg) = rep.recv() {
                if rep.send(&msg).is_err() {
                    break;
                }
            }
        }
        ["push", url, count, size] => {
            let push = Socket::new(Protocol::Push0).expect("push");
            push.dial_blocking(url, WAIT).expect("push dial");
            let payload = vec![7u8; size.parse().expect("size")];
            for _ in 0..count.parse::<usize>().expect("count") {
                push.send(&payload).expect("push send");
            }
            // Stay until the puller has everything: frames may still be queued in this process.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        ["tcp-echo", addr] => {
            let mut s = TcpStream::connect(addr).expect("tcp floor connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; SMALL];
            while s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {}
        }
        ["stream-send", transport, addr, count] => {
            let count: usize = count.parse().expect("count");
            let mut s: Box<dyn Write> = if *transport == "ipc" {
                Box::new(UnixStream::connect(addr).expect("stream floor connect"))
            } else {
                let s = TcpStream::connect(addr).expect("stream floor connect");
                s.set_nodelay(true).expect("nodelay");
                Box::new(s)
            };
            let record = floor_record(transport);
            let mut batch = Vec::with_capacity(FLOOR_BATCH * record.len());
            let mut sent = 0;
            while sent < count {
                let n = FLOOR_BATCH.min(count - sent);
                batch.clear();
                for _ in 0..n {
                    batch.extend_from_slice(&record);
                }
                s.write_all(&batch).expect("stream floor write");
                sent += n;
            }
        }
        _ => panic!("bad {CHILD_ENV}: {spec}"),
    }
    std::process::exit(0);
}

/// 64-byte blocking ping-pong over loopback TCP (NODELAY, as NNG sets it) with a child
/// process, measured like the Unix-socket floor.
fn tcp_pingpong_floor(rounds: usize) -> Samples {
    let listener = TcpListener::bind("127.0.0.1:0").expect("tcp floor bind");
    let addr = listener.local_addr().expect("tcp floor addr");
    let _child = reexec(&format!("tcp-echo {addr}"));
    let (mut s, _) = listener.accept().expect("tcp floor accept");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; SMALL];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let t = Instant::now();
        s.write_all(&buf).expect("tcp floor write");
        s.read_exact(&mut buf).expect("tcp floor read");
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    Samples::new(samples)
}

/// How many records the stream floor's sender hands to one `write`: the most our PUSH sender
/// batches. A stream of small sends is queued for the socket's I/O thread, which writes
/// everything queued with one `writev`, and a sender waits once 128 messages (the default
/// `set_send_buffer`) are queued; the floor writes full batches every time.
const FLOOR_BATCH: usize = 128;

/// The label of a transport's stream floor record.
fn floor_label(transport: &str) -> &'static str {
    if transport == "ipc" { "unix" } else { "tcp" }
}

/// One 64-byte record with the transport's own SP framing (ipc: type byte 0x01 and a 64-bit
/// big-endian length; tcp: the length only), so the floor moves the same bytes as we do.
fn floor_record(transport: &str) -> Vec<u8> {
    let mut r = Vec::new();
    if transport == "ipc" {
        r.push(1);
    }
    r.extend_from_slice(&(SMALL as u64).to_be_bytes());
    r.extend_from_slice(&[7u8; SMALL]);
    r
}

/// The stream floor of PUSH/PULL 64 B: a child process writes `count` length-prefixed 64-byte
/// records ([`FLOOR_BATCH`] per `write`) to a plain Unix or TCP (NODELAY) socket; this process
/// reads 64 KiB at a time (as our pipes do) and walks the records in place, allocating nothing.
/// Records per second, first to last, like [`our_pushpull`].
fn stream_floor(transport: &str, scratch: &Scratch, count: usize) -> f64 {
    enum Listening {
        Unix(UnixListener, PathBuf),
        Tcp(TcpListener),
    }
    let (listening, addr) = if transport == "ipc" {
        let path = scratch.0.join("floor.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("stream floor bind");
        let addr = path.display().to_string();
        (Listening::Unix(l, path), addr)
    } else {
        let l = TcpListener::bind("127.0.0.1:0").expect("stream floor bind");
        let addr = l.local_addr().expect("stream floor addr").to_string();
        (Listening::Tcp(l), addr)
    };
    let _child = reexec(&format!("stream-send {transport} {addr} {count}"));
    let mut s: Box<dyn Read> = match &listening {
        Listening::Unix(l, _) => Box::new(l.accept().expect("stream floor accept").0),
        Listening::Tcp(l) => {
            let s = l.accept().expect("stream floor accept").0;
            s.set_nodelay(true).expect("nodelay");
            Box::new(s)
        }
    };
    let head = floor_record(transport).len() - SMALL;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut received = 0;
    let mut first = None;
    while received < count {
        // Walk the complete records in the buffer.
        while end - start >= head {
            let len_at = start + head - 8;
            let len = u64::from_be_bytes(buf[len_at..len_at + 8].try_into().expect("8 bytes"));
            let len = usize::try_from(len).expect("record length");
            if end - start < head + len {
                break;
            }
            start += head + len;
            received += 1;
            if first.is_none() {
                first = Some(Instant::now());
            }
        }
        if received == count {
            break;
        }
        buf.copy_within(start..end, 0);
        (start, end) = (0, end - start);
        let n = s.read(&mut buf[end..]).expect("stream floor read");
        assert!(
            n > 0,
            "stream floor: sender closed after {received} records"
        );
        end += n;
    }
    let secs = first.expect("first record").elapsed().as_secs_f64();
    if let Listening::Unix(_, path) = &listening {
        let _ = std::fs::remove_file(path);
    }
    (count - 1) as f64 / secs
}

/// Our REQ here, our REP in a child process.
fn our_reqrep(url: &str, rounds: usize) -> Samples {
    let req = Socket::new(Protocol::Req0).expect("req");
    req.set_recv_timeout(Some(WAIT));
    let url = req.listen(url).expect("listen").local_url().to_owned();
    let _child = reexec(&format!("rep {url}"));
    let payload = vec![7u8; SMALL];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let t = Instant::now();
        req.send(&payload).expect("send");
        let reply = req.recv().expect("recv");
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
        debug_assert_eq!(reply.len(), SMALL);
    }
    Samples::new(samples)
}

/// Our PULL here, our PUSH in a child process; messages per second, first to last. A stall
/// (nothing for 30 s) is reported on stderr and gives the rate of what did arrive.
fn our_pushpull(url: &str, size: usize, count: usize) -> f64 {
    let pull = Socket::new(Protocol::Pull0).expect("pull");
    pull.set_recv_timeout(Some(WAIT));
    let url = pull.listen(url).expect("listen").local_url().to_owned();
    let mut child = reexec(&format!("push {url} {count} {size}"));
    let first = pull.recv().expect("first message");
    assert_eq!(first.len(), size);
    let t = Instant::now();
    let mut received = 1;
    while received < count {
        match pull.recv() {
            Ok(_) => received += 1,
            Err(e) => {
                eprintln!(
                    "nano-transport PUSH/PULL {size} B {url}: stalled after {received} of {count} messages: {e}"
                );
                break;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    if let Some(stdin) = child.0.stdin.as_mut() {
        let _ = writeln!(stdin, "done");
    }
    (received - 1) as f64 / secs
}

/// Runs the pynng bench script; returns its JSON line.
fn pynng_script(python: &Path, args: &[String]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/pynng_bench.py");
    let mut child: Child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| mirai_benches::missing_peer("pynng", format_args!("{python:?}: {e}")));
    let stdout: ChildStdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("pynng bench output");
    let status = child.wait().expect("wait pynng bench");
    if !status.success() {
        mirai_benches::missing_peer("pynng", format_args!("pynng_bench.py exited with {status}"));
    }
    line
}

fn json_field(line: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(line).expect("pynng bench json");
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("pynng bench: no {key} in {line}"))
}

fn pynng_reqrep(python: &Path, url: &str, rounds: usize) -> f64 {
    let args = [
        "reqrep",
        url,
        &WARMUP.to_string(),
        &rounds.to_string(),
        &SMALL.to_string(),
    ];
    let line = pynng_script(python, &args.map(str::to_owned));
    json_field(&line, "p50_us")
}

fn pynng_pushpull(python: &Path, url: &str, size: usize, count: usize) -> f64 {
    let args = ["pushpull", url, &count.to_string(), &size.to_string()];
    let line = pynng_script(python, &args.map(str::to_owned));
    json_field(&line, "msgs_per_s")
}
