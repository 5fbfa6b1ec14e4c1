//! The `mirai` facade end to end, against its floor and Python's ProcessPoolExecutor, all
//! measured in this one run.
//!
//! - Round trip of one 64-byte task (`submit` + `wait`) on one local daemon: p50 against the
//!   Unix-socket ping-pong floor between two processes, and against `submit().result()` of a
//!   one-worker ProcessPoolExecutor.
//! - The same round trip awaited as a `Future` (`.await` on a minimal executor): what waking
//!   the task's waker costs, against the blocking wait.
//! - Batches of 256 tasks in flight on two daemons, each handle awaited with its own waker on
//!   one thread, against the same batches collected with blocking waits: what many pending
//!   awaits cost when results arrive.
//! - Throughput of `map` over 20,000 trivial tasks on two daemons, against
//!   `ProcessPoolExecutor(2).map` over as many (its default chunksize of 1: one task per message,
//!   as ours).
//!
//! This binary is its own daemon program: `main` first calls `daemon_main_if_requested`.

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use mirai::{Daemons, Mirai, Pool, Registry, TaskFn, task};
use mirai_benches::{Samples, record};

fn echo(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}
fn inc(x: u64) -> u64 {
    x + 1
}
const ECHO: TaskFn<Vec<u8>, Vec<u8>> = task!(echo);
const INC: TaskFn<u64, u64> = task!(inc);

const WARMUP: usize = 1_000;
const ROUNDS: usize = 10_000;
const MAP_TASKS: u64 = 20_000;
const BATCH: u64 = 256;
const BATCHES: u64 = 40;

/// Tasks per second through batches of [`BATCH`] in flight, awaited or waited for in order.
fn batches(pool: &Pool, awaited: bool) -> f64 {
    let t = Instant::now();
    for b in 0..BATCHES {
        let handles: Vec<Mirai<u64>> = (0..BATCH)
            .map(|i| pool.submit(&INC, b * BATCH + i).expect("submit"))
            .collect();
        let out = if awaited {
            await_each(handles)
        } else {
            handles
                .into_iter()
                .map(|h| h.wait().expect("inc"))
                .collect()
        };
        assert_eq!(out.last().copied(), Some(b * BATCH + BATCH));
    }
    (BATCH * BATCHES) as f64 / t.elapsed().as_secs_f64()
}

/// Polls every handle with its own waker on this thread, re-polling only those woken.
fn await_each(handles: Vec<Mirai<u64>>) -> Vec<u64> {
    struct Woken {
        queue: Mutex<Vec<usize>>,
        thread: std::thread::Thread,
    }
    struct One {
        index: usize,
        woken: Arc<Woken>,
    }
    impl Wake for One {
        fn wake(self: Arc<Self>) {
            self.woken.queue.lock().unwrap().push(self.index);
            self.woken.thread.unpark();
        }
    }
    let woken = Arc::new(Woken {
        queue: Mutex::new((0..handles.len()).collect()),
        thread: std::thread::current(),
    });
    let wakers: Vec<Waker> = (0..handles.len())
        .map(|index| {
            Waker::from(Arc::new(One {
                index,
                woken: Arc::clone(&woken),
            }))
        })
        .collect();
    let mut out = vec![0; handles.len()];
    let mut handles: Vec<Option<Mirai<u64>>> = handles.into_iter().map(Some).collect();
    let mut left = handles.len();
    while left > 0 {
        let ready = std::mem::take(&mut *woken.queue.lock().unwrap());
        if ready.is_empty() {
            std::thread::park();
            continue;
        }
        for i in ready {
            let Some(handle) = handles[i].as_mut() else {
                continue;
            };
            if let Poll::Ready(v) = Pin::new(handle).poll(&mut Context::from_waker(&wakers[i])) {
                out[i] = v.expect("inc");
                handles[i] = None;
                left -= 1;
            }
        }
    }
    out
}

fn round_trips(pool: &Pool, awaited: bool) -> Samples {
    let payload = vec![7u8; 64];
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..WARMUP + ROUNDS {
        let t = Instant::now();
        let handle = pool.submit(&ECHO, payload.clone()).expect("submit");
        let back = if awaited {
            block_on(handle)
        } else {
            handle.wait()
        }
        .expect("echo");
        let elapsed = t.elapsed();
        assert_eq!(back.len(), 64);
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    Samples::new(samples)
}

/// Parks the thread until the waker fires.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn wait_for_daemons(pool: &Pool, n: u64) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while pool.status().connections < n {
        assert!(Instant::now() < deadline, "daemons did not connect");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// (p50 round trip in us, map tasks/s) of ProcessPoolExecutor with `workers` processes; a
/// missing or failing Python fails the bench, naming `cargo xtask setup`.
fn ppe(workers: usize, rounds: usize) -> (f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/ppe_map_bench.py");
    let text = mirai_benches::run_peer(
        "ProcessPoolExecutor (python3)",
        Command::new(mirai_benches::peer_python()).args([
            script,
            &workers.to_string(),
            &MAP_TASKS.to_string(),
            &rounds.to_string(),
        ]),
    );
    let numbers: Vec<f64> = text
        .split_whitespace()
        .map_while(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [p50, rate, ..] => (p50, rate),
        _ => mirai_benches::missing_peer(
            "ProcessPoolExecutor (python3)",
            format_args!("ppe_map_bench.py printed {text:?}"),
        ),
    }
}

fn main() {
    mirai::daemon_main_if_requested(&Registry::new().with(&ECHO).with(&INC));
    mirai_benches::serve_floor_child();

    let floor = mirai_benches::uds_pingpong_floor(64, WARMUP, 20_000);

    let one = Daemons::new().local(1).start().expect("start one daemon");
    wait_for_daemons(&one, 1);
    let waited = round_trips(&one, false);
    let awaited = round_trips(&one, true);
    drop(one);

    let two = Daemons::new().local(2).start().expect("start two daemons");
    wait_for_daemons(&two, 2);
    let _ = two.map(&INC, 0..1_000).expect("warm-up map");
    let t = Instant::now();
    let out = two.map(&INC, 0..MAP_TASKS).expect("map");
    let ours_rate = MAP_TASKS as f64 / t.elapsed().as_secs_f64();
    assert_eq!(out.last().copied(), Some(MAP_TASKS));
    let batch_waited = batches(&two, false);
    let batch_awaited = batches(&two, true);
    drop(two);

    let (ppe_rt, _) = ppe(1, 2_000);
    let (_, ppe_rate) = ppe(2, 200);

    record(
        "mirai submit+wait 64 B p50 (1 daemon)",
        waited.p50_us(),
        "us",
        "uds ping-pong floor p50",
        floor.p50_us(),
    );
    record(
        "mirai submit+wait 64 B p50 (1 daemon)",
        waited.p50_us(),
        "us",
        "ProcessPoolExecutor(1) p50",
        ppe_rt,
    );
    record(
        "mirai submit+wait 64 B p99 (1 daemon)",
        waited.p99_us(),
        "us",
        "uds ping-pong floor p99",
        floor.p99_us(),
    );
    record(
        "mirai submit+.await 64 B p50 (1 daemon)",
        awaited.p50_us(),
        "us",
        "mirai submit+wait p50",
        waited.p50_us(),
    );
    record(
        "mirai 256 in flight, each .await (2 daemons)",
        batch_awaited,
        "task/s",
        "256 in flight, each wait",
        batch_waited,
    );
    record(
        "mirai map trivial tasks (2 daemons)",
        ours_rate,
        "task/s",
        "ProcessPoolExecutor(2).map",
        ppe_rate,
    );
}
