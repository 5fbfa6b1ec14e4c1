//! The dispatcher core's own costs, each beside a floor measured in the same run.
//!
//! - `try_submit` on a full budget (the refusal path a busy producer hits in a loop; R's
//!   `try_mirai()` takes 70-370 µs) against an uncontended mutex lock and compare, the least any
//!   mutex-guarded gate can cost; goal: at most 5 times that floor (the refusal reads the room
//!   the last lock holder left, without taking the lock).
//! - Core throughput: submit + dispatch + result for one task, against a send and receive on a
//!   `std::sync::mpsc` channel, the cheapest hand-off a dispatcher could use instead.
//!
//! Criterion prints its usual statistics; each figure is also recorded (median of batches) as
//! `{name, value, unit, peer, peer_value, ratio}`, appended to `$MIRAI_BENCH_RECORDS`.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use mirai_benches::{Goal, record, record_with_goal};
use mirai_dispatch::{Action, Config, Core, Host, Reply, Task};

/// Median over 21 batches of `n` calls, in nanoseconds per call.
fn median_ns(n: u32, mut f: impl FnMut()) -> f64 {
    let mut batches: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed()
        })
        .collect();
    batches.sort_unstable();
    batches[10].as_secs_f64() * 1e9 / f64::from(n)
}

fn full_host() -> Host {
    let host = Host::new(Core::new(Config::default().with_max_queued_bytes(1024)));
    host.try_submit(Task::new("f", vec![0; 1024])).unwrap();
    host
}

/// One refused `try_submit`; the task comes back for the next call.
fn refuse(host: &Host, task: &mut Option<Task>) {
    let t = task.take().expect("task");
    let back = host.try_submit(t).unwrap_err();
    *task = Some(back.task);
}

fn mutex_floor(m: &Mutex<u64>) {
    let g = m.lock().unwrap();
    black_box(*g >= 1024);
}

/// Submit one task to a core with one idle daemon, send it, answer it.
fn round(core: &mut Core, daemon: mirai_dispatch::DaemonId, now: Instant) {
    let id = core.submit(Task::new("f", vec![0; 64]), now).unwrap();
    while let Some(a) = core.poll_action() {
        black_box(&a);
    }
    core.on_result(daemon, id, Reply::Value(Vec::new().into()), false, now)
        .unwrap();
    while let Some(a) = core.poll_action() {
        if let Action::Resolve { outcome, .. } = a {
            black_box(outcome);
        }
    }
}

fn channel_floor(tx: &std::sync::mpsc::Sender<Task>, rx: &std::sync::mpsc::Receiver<Task>) {
    tx.send(Task::new("f", vec![0; 64])).unwrap();
    black_box(rx.recv().unwrap());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();

    let host = full_host();
    let mut task = Some(Task::new("f", vec![0; 16]));
    let m = Mutex::new(0u64);
    c.bench_function("try_submit when full", |b| {
        b.iter(|| refuse(&host, &mut task))
    });
    c.bench_function("floor: mutex lock + compare", |b| {
        b.iter(|| mutex_floor(&m))
    });

    let now = Instant::now();
    let mut core = Core::new(Config::default().with_max_queued_bytes(1 << 20));
    let daemon = core.daemon_connected(true, now);
    while core.poll_action().is_some() {}
    let (tx, rx) = std::sync::mpsc::channel();
    c.bench_function("core submit+dispatch+result", |b| {
        b.iter(|| round(&mut core, daemon, now))
    });
    c.bench_function("floor: mpsc send+recv of a task", |b| {
        b.iter(|| channel_floor(&tx, &rx))
    });
    c.final_summary();

    let refused = median_ns(100_000, || refuse(&host, &mut task));
    let floor = median_ns(100_000, || mutex_floor(&m));
    record_with_goal(
        "dispatch try_submit when full",
        refused,
        "ns",
        "mutex lock floor",
        floor,
        Goal::ratio_at_most(5.0),
    );
    let per_task = median_ns(20_000, || round(&mut core, daemon, now));
    let chan = median_ns(20_000, || channel_floor(&tx, &rx));
    record(
        "dispatch core submit+dispatch+result",
        per_task,
        "ns",
        "mpsc send+recv floor",
        chan,
    );
}
