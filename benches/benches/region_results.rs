//! A 200 MB f64 result made on one local daemon and returned to the host, in this one run: as a
//! region (a task returning `mirai::Shared`: only the name crosses the socket, the host maps the
//! daemon's pages) and through the socket as `mirai::Array<f64>` (the fastest socket path: the
//! bytes travel beside the encoded value, no copy by the encoding).
//!
//! - The return (the goal's figure: the region path >= 5x faster): the same two timings for a
//!   result the daemon already holds (built and shared by an untimed task before), so only
//!   handing it over is measured, from submit until the host holds it and has read its first
//!   and last element.
//! - End to end, from submit until the host has read both ends, best of 3 after one warm-up,
//!   the paths alternating round by round: the region written in place (`share_with`), the
//!   region from a `Vec` (`share_f64`: the build, then a copy), and the socket (the same
//!   `Vec`, sent). For scale, a task that builds the vector and returns only its length (the
//!   build alone) and a memcpy of 200 MB into fresh memory are recorded too.
//! - Host peak: the host's peak RSS is reset, the task runs and the host reads every element of
//!   the result; the figure is the peak's growth against one copy of the payload measured the
//!   same way in this process (the peak growth of allocating and writing one 200 MB buffer),
//!   so its ratio counts copies (goal <= 1.05 for the region: the mapping is the one copy).
//!   The socket path is recorded beside it.
//!
//! The daemon is reaped and every region it made is removed on the way out, a panic included.
//! This binary is its own daemon program: `main` first calls `daemon_main_if_requested`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mirai::{Array, Daemons, Mirai, Pool, Registry, Shared, TaskFn, task};
use mirai_benches::{record, reset_peak_rss, vm_hwm, vm_rss};
use serde::de::DeserializeOwned;

const MB: usize = 1_000_000;
const PAYLOAD: usize = 200 * MB;
const ELEMENTS: u64 = (PAYLOAD / size_of::<f64>()) as u64;
/// The peer of the memory figures.
const ONE_COPY: &str = "one copy of the payload, measured";
/// Timed rounds after one warm-up; the best is reported.
const ROUNDS: usize = 3;
const PATIENCE: Duration = Duration::from_secs(120);

/// The result both paths return: `n` doubles `0, 1, 2, ...`.
fn build(n: u64) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

/// The result written straight into a new region (no `Vec`).
fn in_place(n: u64) -> Shared {
    mirai::share_with::<f64>(n as usize, |out| {
        for (i, x) in out.iter_mut().enumerate() {
            *x = i as f64;
        }
    })
    .expect("share the result on the daemon")
}

/// The result built as a `Vec`, then copied into a region.
fn as_region(n: u64) -> Shared {
    mirai::share_f64(&build(n)).expect("share the result on the daemon")
}

fn as_array(n: u64) -> Array<f64> {
    Array::from(build(n))
}

fn build_only(n: u64) -> u64 {
    std::hint::black_box(build(n)).len() as u64
}

/// A result the daemon already holds, both ways, for timing the return alone.
static KEPT_REGION: Mutex<Option<Shared>> = Mutex::new(None);
static KEPT_VEC: Mutex<Option<Vec<f64>>> = Mutex::new(None);

/// Builds the result and keeps it on the daemon as a region and as a vector.
fn keep(n: u64) -> u64 {
    let x = build(n);
    let shared = mirai::share_f64(&x).expect("share the result on the daemon");
    *KEPT_REGION.lock().expect("kept region") = Some(shared);
    *KEPT_VEC.lock().expect("kept vector") = Some(x);
    n
}

/// The kept region, taken: the host will own it.
fn kept_region((): ()) -> Shared {
    let kept = KEPT_REGION.lock().expect("kept region").take();
    kept.expect("a kept region")
}

/// The kept vector, taken.
fn kept_array((): ()) -> Array<f64> {
    let kept = KEPT_VEC.lock().expect("kept vector").take();
    Array::from(kept.expect("a kept vector"))
}

fn pid((): ()) -> u32 {
    std::process::id()
}

const IN_PLACE: TaskFn<u64, Shared> = task!(in_place);
const AS_REGION: TaskFn<u64, Shared> = task!(as_region);
const AS_ARRAY: TaskFn<u64, Array<f64>> = task!(as_array);
const BUILD_ONLY: TaskFn<u64, u64> = task!(build_only);
const PID: TaskFn<(), u32> = task!(pid);
const KEEP: TaskFn<u64, u64> = task!(keep);
const KEPT_REGION_TASK: TaskFn<(), Shared> = task!(kept_region);
const KEPT_ARRAY_TASK: TaskFn<(), Array<f64>> = task!(kept_array);

fn registry() -> Registry {
    Registry::new()
        .with(&IN_PLACE)
        .with(&AS_REGION)
        .with(&AS_ARRAY)
        .with(&BUILD_ONLY)
        .with(&PID)
        .with(&KEEP)
        .with(&KEPT_REGION_TASK)
        .with(&KEPT_ARRAY_TASK)
}

/// Removes the region files the daemon `.0` created when dropped (after the pool, so after the
/// daemon is gone), so a panic between its handing a region over and the host receiving it
/// leaves nothing in /dev/shm.
struct DaemonRegionsSwept(Option<u32>);

impl Drop for DaemonRegionsSwept {
    fn drop(&mut self) {
        let Some(daemon) = self.0 else { return };
        let prefix = format!("mori_{daemon:x}_");
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The result of a submitted task, or a panic saying which failed.
fn wait<R: DeserializeOwned>(what: &str, submitted: Result<Mirai<R>, mirai::Error>) -> R {
    submitted
        .unwrap_or_else(|e| panic!("submit {what}: {e}"))
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Checks the first and last element, as a reader of the result would look at it.
fn check_ends(what: &str, xs: &[f64]) {
    assert_eq!(xs.len() as u64, ELEMENTS, "{what}: the whole result");
    assert_eq!(
        (xs[0], xs[xs.len() - 1]),
        (0.0, (ELEMENTS - 1) as f64),
        "{what}: first and last element"
    );
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Runs [`PID`] on the pool's daemon: the daemon has finished (and freed) what came before.
fn settle(pool: &Pool, daemon: u32) {
    assert_eq!(
        wait("pid", pool.submit(&PID, ())),
        daemon,
        "the same daemon"
    );
}

/// Seconds from submit until the host holds the result and has read both ends; the result is
/// dropped (for a region: unlinked) after the clock stops.
fn time_region<A: serde::Serialize + 'static>(
    pool: &Pool,
    task: &TaskFn<A, Shared>,
    arg: A,
) -> f64 {
    let t = Instant::now();
    let shared = wait("region", pool.submit(task, arg));
    check_ends("region", shared.as_f64().expect("doubles"));
    t.elapsed().as_secs_f64()
}

fn time_array<A: serde::Serialize + 'static>(
    pool: &Pool,
    task: &TaskFn<A, Array<f64>>,
    arg: A,
) -> f64 {
    let t = Instant::now();
    let array = wait("array", pool.submit(task, arg));
    check_ends("array", &array);
    t.elapsed().as_secs_f64()
}

/// The host's peak RSS growth while `receive` runs and the host reads every element, in bytes.
fn host_peak(pool: &Pool, daemon: u32, receive: impl FnOnce() -> f64) -> f64 {
    settle(pool, daemon);
    let me = std::process::id();
    reset_peak_rss(me);
    let before = vm_rss(me);
    let sum = receive();
    let grown = vm_hwm(me) - before;
    let n = ELEMENTS as f64;
    assert_eq!(sum, n * (n - 1.0) / 2.0, "the host read every element");
    grown
}

fn main() {
    mirai::daemon_main_if_requested(&registry());

    let memcpy = mirai_benches::memcpy_fresh_floor(PAYLOAD);
    let mut swept = DaemonRegionsSwept(None);
    let pool = Daemons::new().local(1).start().expect("start the daemon");
    let daemon = wait("pid", pool.submit(&PID, ()));
    swept.0 = Some(daemon);
    assert_eq!(pool.local_pids(), vec![daemon], "one local daemon");

    let (mut in_place, mut region, mut array, mut build) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..=ROUNDS {
        in_place.push(time_region(&pool, &IN_PLACE, ELEMENTS));
        region.push(time_region(&pool, &AS_REGION, ELEMENTS));
        array.push(time_array(&pool, &AS_ARRAY, ELEMENTS));
        let t = Instant::now();
        assert_eq!(wait("build", pool.submit(&BUILD_ONLY, ELEMENTS)), ELEMENTS);
        build.push(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "200 MB result, s (warm-up first): in place {in_place:.3?}, region {region:.3?}, array {array:.3?}"
    );
    eprintln!("build only, s (warm-up first): {build:.3?}");
    let (in_place, region, array, build) = (
        best(&in_place[1..]),
        best(&region[1..]),
        best(&array[1..]),
        best(&build[1..]),
    );
    record(
        "region_results/result 200 MB written in place in a region",
        in_place,
        "s",
        "the same through the socket",
        array,
    );
    record(
        "region_results/result 200 MB written in place in a region",
        in_place,
        "s",
        "build 200 MB on the daemon only",
        build,
    );
    record(
        "region_results/result 200 MB built as a Vec, then shared",
        region,
        "s",
        "the same through the socket",
        array,
    );
    record(
        "region_results/result 200 MB through the socket",
        array,
        "s",
        "memcpy 200 MB into fresh memory",
        memcpy,
    );
    record(
        "region_results/build 200 MB on the daemon only",
        build,
        "s",
        "memcpy 200 MB into fresh memory",
        memcpy,
    );

    // The return alone: the daemon already holds the result (built by an untimed task).
    let (mut region, mut array) = (Vec::new(), Vec::new());
    for _ in 0..=ROUNDS {
        assert_eq!(wait("keep", pool.submit(&KEEP, ELEMENTS)), ELEMENTS);
        region.push(time_region(&pool, &KEPT_REGION_TASK, ()));
        array.push(time_array(&pool, &KEPT_ARRAY_TASK, ()));
    }
    eprintln!("200 MB held result, s (warm-up first): region {region:.3?}, array {array:.3?}");
    record(
        "region_results/held result 200 MB as a region",
        best(&region[1..]) * 1e3,
        "ms",
        "the same through the socket",
        best(&array[1..]) * 1e3,
    );

    let mb = |bytes: f64| bytes / MB as f64;
    let one_copy = mb(mirai_benches::one_copy_peak_growth(PAYLOAD));
    assert!(
        one_copy > 0.0,
        "one copy of the payload, measured: {one_copy} MB"
    );
    eprintln!("one copy of 200 MB, measured: {one_copy:.3} MB");
    let grown = host_peak(&pool, daemon, || {
        let shared = wait("region", pool.submit(&IN_PLACE, ELEMENTS));
        shared.as_f64().expect("doubles").iter().sum()
    });
    record(
        "region_results/host peak growth, region",
        mb(grown),
        "MB",
        ONE_COPY,
        one_copy,
    );
    let grown = host_peak(&pool, daemon, || {
        wait("array", pool.submit(&AS_ARRAY, ELEMENTS)).iter().sum()
    });
    record(
        "region_results/host peak growth, socket",
        mb(grown),
        "MB",
        ONE_COPY,
        one_copy,
    );
    drop(pool);
}
