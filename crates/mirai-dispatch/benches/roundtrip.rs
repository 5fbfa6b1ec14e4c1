//! Tasks through the real dispatcher and demo daemon processes, beside a floor and a peer
//! measured in the same run:
//!
//! - the floor: a blocking 64-byte ping-pong over a Unix stream socket with a child process
//!   (`mirai_benches::uds_pingpong_floor`, the `anchors.md` floor), in 5 blocks of 4,000
//!   interleaved with 5 blocks of our round trips (the median block p50 is the floor);
//! - the peer: Python's `ProcessPoolExecutor` (`benches/peers/ppe_bench.py`, run with the system
//!   interop virtualenv's `python3` that `cargo xtask setup` makes; without it the bench fails,
//!   naming that step).
//!
//! Figures:
//!
//! - round trip of one trivial task (submit, the daemon echoes 64 bytes, wait), one daemon: p50
//!   and p99 against the floor's p50, and p50 against the executor's p50; the floor's p50 against
//!   the executor's too, the bound for any design whose task costs two process wake-ups. Goals,
//!   all on one CPU: p50 at most 1.5 times the floor's p50, p99 at most 3 times;
//! - 20,000 trivial tasks on two daemons, all submitted then all collected: tasks/s against the
//!   floor's round trips/s and the executor's tasks/s with two workers (goal: at least 200,000);
//! - a runaway producer of 10 MB tasks into a 100 MB budget, one slow daemon: the host's peak
//!   RSS above its baseline (`/proc/self/status` VmHWM after resetting it) against the
//!   dispatcher's own peak of queued bytes (goal: at most cap + one task, in the record's `goal`
//!   field), in a child process of its own (see [`runaway_in_child`]): a producer that waits for
//!   room before building each payload, and one that builds it first (see
//!   [`runaway_producer`]).
//!
//! `MIRAI_DISPATCH_BENCH_ROUNDS` sets the number of timed round trips (default 5,000),
//! `MIRAI_DISPATCH_BENCH_ONLY=latency` runs the round trips alone, e.g. to profile a long run, and
//! `MIRAI_DISPATCH_BENCH_ONLY=throughput` the 20,000 tasks alone (printed, not recorded: the
//! record's peers are measured by the full run).

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_benches::{
    Goal, Samples, record, record_with_goal, serve_floor_child, uds_pingpong_floor,
};
use mirai_dispatch::{Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task};

const TOKEN: &[u8] = b"roundtrip-bench-pool-token";
const PATIENCE: Duration = Duration::from_secs(60);

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemons(url: &str, n: usize, events: &Receiver<DaemonEvent>) -> Vec<Reaped> {
    let children: Vec<Reaped> = (0..n)
        .map(|i| {
            Reaped(
                Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
                    .args(["--url", url, "--launch-id"])
                    .arg((i + 1).to_string())
                    .env(
                        "MIRAI_DAEMON_TOKEN",
                        mirai_dispatch::secret::Secret::from(TOKEN)
                            .launch_credential(i as u64 + 1)
                            .expose_str()
                            .unwrap(),
                    )
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

fn start(core: Config) -> (Dispatcher, Receiver<DaemonEvent>) {
    let url = format!("abstract://mirai-dispatch-bench-{}", std::process::id());
    let config = DispatcherConfig::new(url, TOKEN.to_vec()).with_core(core);
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

/// The executor's figures.
struct Peer {
    p50_us: f64,
    tasks_per_s: f64,
}

/// Runs the executor peer; a missing or failing Python fails the bench, naming
/// `cargo xtask setup`.
fn python_peer(rounds: usize, tasks: usize) -> Peer {
    const PEER: &str = "ProcessPoolExecutor (python3)";
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/peers/ppe_bench.py"
    );
    let out = mirai_benches::run_peer(
        PEER,
        Command::new(mirai_benches::peer_python())
            .arg(script)
            .arg(rounds.to_string())
            .arg(tasks.to_string()),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        mirai_benches::missing_peer(PEER, format_args!("ppe_bench.py printed {out:?}: {e}"))
    });
    let field = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| mirai_benches::missing_peer(PEER, format_args!("no {k} in {out:?}")))
    };
    Peer {
        p50_us: field("p50_us"),
        tasks_per_s: field("tasks_per_s"),
    }
}

/// A field of `/proc/self/status` in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("a VmRSS/VmHWM line")
}

/// The runaway producer: 10 MB tasks submitted as fast as the 100 MB budget lets them in,
/// while one daemon consumes them slowly (20 ms a task), so the queue stays full. Returns (peak RSS
/// above baseline, the dispatcher's peak of queued bytes, cap + one task) in MB.
///
/// A plain producer builds each payload before `submit` waits for room, so one payload sits in
/// its hands outside the budget: its peak is the cap plus that task plus what the allocator
/// adds to each 10 MB block (a page), i.e. at the bound. With `wait_first`, the producer calls
/// [`Dispatcher::wait_for_room`] before it builds the next payload, so it never holds one the
/// budget has no room for.
fn runaway_producer(wait_first: bool) -> (f64, f64, f64) {
    const TASK: usize = 10 << 20;
    const CAP: u64 = 100 << 20;
    const TASKS: usize = 60;
    let (d, events) = start(Config::default().with_max_queued_bytes(CAP));
    let children = daemons(d.url(), 1, &events);
    // Start the peak from here: everything before (the floor, earlier phases) is baseline.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let baseline = status_bytes("VmRSS");
    let ids: Vec<_> = (0..TASKS)
        .map(|i| {
            if wait_first {
                d.wait_for_room(TASK as u64, None).unwrap();
            }
            let payload = vec![i as u8; TASK];
            d.submit(Task::new("slow_len", payload), None).unwrap()
        })
        .collect();
    for id in ids {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &(TASK as u64).to_le_bytes()),
            other => panic!("expected a value, got {other:?}"),
        }
    }
    let peak = status_bytes("VmHWM");
    let status = d.status();
    assert_eq!(status.memory.peak, CAP, "the producer kept the queue full");
    d.shutdown();
    drop(children);
    let mb = |b: u64| b as f64 / f64::from(1u32 << 20);
    (
        mb(peak.saturating_sub(baseline)),
        mb(status.memory.peak),
        mb(CAP + TASK as u64),
    )
}

/// Runs [`runaway_producer`] in a fresh process of this binary, so its peak RSS is its own.
/// With `pinned`, glibc's mmap threshold is fixed: its default raises the threshold to the size
/// of the largest freed block, after which freed 10 MB payloads stay in the heap instead of going
/// back to the system (one task's worth of allocator retention, measured by the unpinned run).
fn runaway_in_child(pinned: bool, wait_first: bool) -> (f64, f64, f64) {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.env(RUNAWAY_ENV, if wait_first { "room" } else { "1" })
        .stdin(Stdio::null());
    if pinned {
        cmd.env("MALLOC_MMAP_THRESHOLD_", "131072");
    }
    let out = cmd.output().expect("run the runaway producer");
    assert!(out.status.success(), "runaway producer failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().expect("a figure"));
    (
        parts.next().expect("rss"),
        parts.next().expect("queued"),
        parts.next().expect("bound"),
    )
}

const RUNAWAY_ENV: &str = "MIRAI_DISPATCH_BENCH_RUNAWAY";

/// One daemon's round trips against the floor, measured in interleaved blocks: this machine's
/// wake-up latency changes within seconds (idle virtual CPUs wake slowly), and a ratio is only
/// meaningful between figures taken under the same conditions. Returns our samples and the
/// median of the floor's per-block p50s.
fn latency_pass(rounds: usize) -> (Samples, f64) {
    const BLOCKS: usize = 5;
    let (d, events) = start(Config::default());
    let children = daemons(d.url(), 1, &events);
    for _ in 0..1_000 {
        round_trip(&d);
    }
    let mut floor_p50s = Vec::with_capacity(BLOCKS);
    let mut ours = Vec::with_capacity(rounds);
    for _ in 0..BLOCKS {
        floor_p50s.push(uds_pingpong_floor(64, 200, 4_000).p50_us());
        ours.extend((0..rounds / BLOCKS).map(|_| round_trip(&d)));
    }
    d.shutdown();
    drop(children);
    floor_p50s.sort_by(f64::total_cmp);
    (Samples::new(ours), floor_p50s[BLOCKS / 2])
}

fn main() {
    serve_floor_child();
    if let Some(mode) = std::env::var_os(RUNAWAY_ENV) {
        let (rss, queued, bound) = runaway_producer(mode == "room");
        println!("{rss} {queued} {bound}");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("MIRAI_DISPATCH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000);

    let only = std::env::var("MIRAI_DISPATCH_BENCH_ONLY").ok();
    let only_latency = only.as_deref() == Some("latency");
    let only_throughput = only.as_deref() == Some("throughput");
    if only_throughput {
        let rate = throughput();
        println!("dispatch 20000 trivial tasks, 2 daemons: {rate:.0} tasks/s");
        return;
    }
    for (pinned, wait_first, name) in [
        (
            true,
            true,
            "dispatch runaway 10 MB producer, peak RSS over baseline",
        ),
        (
            true,
            false,
            "same, payload built before submit waits for room",
        ),
        (false, false, "same, and glibc default mmap threshold"),
    ]
    .into_iter()
    .filter(|_| !only_latency)
    {
        let (rss, queued, bound) = runaway_in_child(pinned, wait_first);
        // The peer is the dispatcher's own peak of queued bytes in the same run; the cap plus
        // one task is the goal, beside it.
        record_with_goal(
            name,
            rss,
            "MB",
            "peak queued task bytes (dispatcher's count)",
            queued,
            Goal::value_at_most(bound),
        );
    }

    let peer = (!only_latency).then(|| python_peer(rounds, 20_000));

    let (samples, floor_p50) = latency_pass(rounds);
    record(
        "dispatch task round trip p50, 1 daemon",
        samples.p50_us(),
        "us",
        "uds ping-pong 64 B p50 (floor)",
        floor_p50,
    );
    record(
        "dispatch task round trip p99, 1 daemon",
        samples.p99_us(),
        "us",
        "uds ping-pong 64 B p50 (floor)",
        floor_p50,
    );
    if let Some(p) = &peer {
        record(
            "dispatch task round trip p50, 1 daemon",
            samples.p50_us(),
            "us",
            "ProcessPoolExecutor p50, 1 worker",
            p.p50_us,
        );
        // What any design with two process wake-ups per task can reach against the executor
        // here: the floor is one such round trip with no work in it.
        record(
            "uds ping-pong 64 B p50 (floor)",
            floor_p50,
            "us",
            "ProcessPoolExecutor p50, 1 worker",
            p.p50_us,
        );
    }

    // The same with the host, its daemon, the floor and the peer on one CPU: on these 2-vCPU
    // VMs a wake-up of the other, idle vCPU costs 50-60 µs and the scheduler decides per pair
    // of processes whether they share a CPU, so unpinned latencies are bimodal for everyone
    // (see `mirai_benches::on_one_cpu`); pinned, each figure measures its own software path.
    mirai_benches::on_one_cpu(|| {
        let (samples, floor_p50) = latency_pass(rounds);
        record_with_goal(
            "dispatch task round trip p50, 1 daemon (one CPU)",
            samples.p50_us(),
            "us",
            "uds ping-pong 64 B p50 (floor, one CPU)",
            floor_p50,
            Goal::ratio_at_most(1.5),
        );
        record_with_goal(
            "dispatch task round trip p99, 1 daemon (one CPU)",
            samples.p99_us(),
            "us",
            "uds ping-pong 64 B p50 (floor, one CPU)",
            floor_p50,
            Goal::ratio_at_most(3.0),
        );
        if let Some(p) = (!only_latency).then(|| python_peer(rounds, 0)) {
            record_with_goal(
                "dispatch task round trip p50, 1 daemon (one CPU)",
                samples.p50_us(),
                "us",
                "ProcessPoolExecutor p50, 1 worker (one CPU)",
                p.p50_us,
                Goal::ratio_at_most(0.125),
            );
            record(
                "uds ping-pong 64 B p50 (floor, one CPU)",
                floor_p50,
                "us",
                "ProcessPoolExecutor p50, 1 worker (one CPU)",
                p.p50_us,
            );
        }
    });
    if only_latency {
        return;
    }

    let rate = throughput();
    record_with_goal(
        "dispatch 20000 trivial tasks, 2 daemons",
        rate,
        "tasks/s",
        "uds ping-pong round trips/s",
        1e6 / floor_p50,
        Goal::value_at_least(200_000.0),
    );
    if let Some(p) = &peer {
        record_with_goal(
            "dispatch 20000 trivial tasks, 2 daemons",
            rate,
            "tasks/s",
            "ProcessPoolExecutor, 2 workers",
            p.tasks_per_s,
            Goal::value_at_least(200_000.0),
        );
    }
}

/// 20,000 trivial tasks on two daemons, all submitted then all collected: tasks/s.
fn throughput() -> f64 {
    let (d, events) = start(Config::default());
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
    d.shutdown();
    drop(children);
    rate
}
