//! The shared-memory path through the `mirai` facade, with real daemon processes: one 200 MB
//! `share_f64` region sent as a `SharedView` to 8 tasks on 2 daemons, against the same 8 tasks
//! sending the 200 MB `Vec<f64>` by value, both measured in this one run.
//!
//! - Queue bytes per task: the dispatcher's own byte accounting (`status().memory.used`, which
//!   reserves each task's encoded argument). Both daemons are first held by a gate task, so the
//!   8 tasks stay queued (or waiting ahead, still reserved) while the bytes are read. The view's
//!   figure is set against the by-value figure (the payload itself, encoded) and against the
//!   length of the region's identifier (what the name costs as text).
//! - Summed PSS of the daemons (`Pss:` of `/proc/PID/smaps_rollup`, idle baseline included)
//!   over one copy of the payload, after all 8 tasks read every element. Each task keeps its
//!   argument in its daemon until that daemon's next task replaces it, so the figure shows what
//!   the daemons hold while tasks use their arguments. For the view the host has dropped its
//!   `Shared` by then (name unlinked), so only the daemons map the pages, as in the mori-shm
//!   readers' bench. Near one copy means <= 1.1x.
//!
//! Every pool is dropped (its daemons reaped) and every region unlinked on the way out, a
//! panic included. This binary is its own daemon program: `main` first calls
//! `daemon_main_if_requested`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mirai::{Daemons, Mirai, Pool, Registry, SharedView, TaskFn, task};
use mirai_benches::record;

const MB: usize = 1_000_000;
const PAYLOAD: usize = 200 * MB;
const TASKS: usize = 8;
const DAEMONS: usize = 2;
const PATIENCE: Duration = Duration::from_secs(60);

/// What the daemon's last task read, kept until its next task replaces it.
static LAST_VIEW: Mutex<Option<SharedView>> = Mutex::new(None);
static LAST_VEC: Mutex<Option<Vec<f64>>> = Mutex::new(None);

fn sum_view(view: SharedView) -> (f64, u32) {
    let sum = view.as_f64().map_or(f64::NAN, |x| x.iter().sum());
    *LAST_VIEW.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
    (sum, std::process::id())
}

fn sum_vec(values: Vec<f64>) -> (f64, u32) {
    let sum = values.iter().sum();
    *LAST_VEC.lock().unwrap_or_else(|e| e.into_inner()) = Some(values);
    (sum, std::process::id())
}

/// Holds its daemon until the file at `path` is gone (at most [`PATIENCE`]).
fn hold(path: String) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    while std::path::Path::new(&path).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::process::id()
}

fn pid((): ()) -> u32 {
    std::process::id()
}

const SUM_VIEW: TaskFn<SharedView, (f64, u32)> = task!(sum_view);
const SUM_VEC: TaskFn<Vec<f64>, (f64, u32)> = task!(sum_vec);
const HOLD: TaskFn<String, u32> = task!(hold);
const PID: TaskFn<(), u32> = task!(pid);

/// The gate file [`hold`] waits on; removed when dropped, a panic included.
struct Gate(PathBuf);

impl Gate {
    fn close() -> Self {
        let path =
            std::env::temp_dir().join(format!("mirai-shm-bench-gate-{}", std::process::id()));
        std::fs::write(&path, b"").expect("create the gate file");
        Self(path)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn summed_pss(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| mirai_benches::pss(p)).sum()
}

fn start_pool() -> Pool {
    let pool = Daemons::new()
        .local(DAEMONS)
        .start()
        .expect("start the daemons");
    let deadline = Instant::now() + PATIENCE;
    while pool.status().connections < DAEMONS as u64 {
        assert!(Instant::now() < deadline, "daemons did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
    pool
}

/// One way of sending the payload, after its tasks resolved; the pool still runs.
struct Ran {
    pool: Pool,
    pids: Vec<u32>,
    /// Queue bytes (the dispatcher's reservation) per task.
    queue_per_task: f64,
    /// Summed PSS of the daemons before any task, in bytes.
    idle_pss: f64,
}

impl Ran {
    /// Summed PSS of the daemons now, in bytes; then the pool is dropped (daemons reaped).
    fn pss(self) -> f64 {
        let pss = summed_pss(&self.pids);
        drop(self.pool);
        pss
    }
}

/// Runs [`TASKS`] tasks on a fresh pool of [`DAEMONS`], each submitted by `submit`, with the
/// daemons held by a gate while the tasks are queued.
fn run(mut submit: impl FnMut(&Pool) -> Mirai<(f64, u32)>, expected: f64) -> Ran {
    let pool = start_pool();
    let pids = pool.local_pids();
    assert_eq!(pids.len(), DAEMONS);
    let idle_pss = summed_pss(&pids);

    let gate = Gate::close();
    let holds: Vec<Mirai<u32>> = (0..DAEMONS)
        .map(|_| {
            let path = gate.0.to_str().expect("utf-8 temp path").to_owned();
            pool.submit(&HOLD, path).expect("submit a hold")
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while pool.status().executing < DAEMONS as u64 {
        assert!(Instant::now() < deadline, "the holds did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = pool.status().memory.used;
    let handles: Vec<Mirai<(f64, u32)>> = (0..TASKS).map(|_| submit(&pool)).collect();
    let queued = pool.status().memory.used - before;
    drop(gate);
    let held: BTreeSet<u32> = holds
        .into_iter()
        .map(|mut h| h.wait_timeout(PATIENCE).expect("a hold"))
        .collect();
    assert_eq!(held.len(), DAEMONS, "each hold ran on its own daemon");

    let mut served = BTreeSet::new();
    for mut handle in handles {
        let (sum, pid) = handle.wait_timeout(PATIENCE).expect("a task");
        assert_eq!(sum, expected, "every task read every element");
        served.insert(pid);
    }
    assert_eq!(
        served,
        pids.iter().copied().collect(),
        "both daemons ran tasks"
    );
    // A daemon answers a task before it frees the frame that carried it; once each has
    // answered a later task, only what the tasks kept is left.
    let settled: BTreeSet<u32> = pool
        .everywhere(&PID, (), DAEMONS)
        .expect("a task on each daemon")
        .into_iter()
        .map(|mut h| h.wait_timeout(PATIENCE).expect("pid"))
        .collect();
    assert_eq!(settled, served, "each daemon answered a later task");
    Ran {
        pool,
        pids,
        queue_per_task: queued as f64 / TASKS as f64,
        idle_pss,
    }
}

fn main() {
    mirai::daemon_main_if_requested(
        &Registry::new()
            .with(&SUM_VIEW)
            .with(&SUM_VEC)
            .with(&HOLD)
            .with(&PID),
    );

    let data: Vec<f64> = (0..PAYLOAD / 8).map(|i| i as f64).collect();
    // Integers below 2^53: every partial sum is exact, in any order.
    let expected: f64 = data.iter().sum();

    let shared = mirai::share_f64(&data).expect("share 200 MB");
    let name_len = mirai::shared_name(&shared.view())
        .expect("a root is named")
        .len();
    let view = run(
        |pool| {
            pool.submit(&SUM_VIEW, shared.view())
                .expect("submit a view")
        },
        expected,
    );
    // Every task has attached: unlink the name and unmap the host's copy, so only the daemons
    // map the pages.
    drop(shared);
    let (view_queue, view_idle) = (view.queue_per_task, view.idle_pss);
    let view_pss = view.pss();
    let by_value = run(
        |pool| pool.submit(&SUM_VEC, data.clone()).expect("submit a Vec"),
        expected,
    );
    let (value_queue, value_idle) = (by_value.queue_per_task, by_value.idle_pss);
    let value_pss = by_value.pss();

    let payload = PAYLOAD as f64;
    println!(
        "idle daemons' summed PSS: {:.1} MB (view run), {:.1} MB (by-value run)",
        view_idle / 1e6,
        value_idle / 1e6
    );
    record(
        "share_f64 200 MB view, 8 tasks/2 daemons: queue B/task",
        view_queue,
        "B",
        "same tasks, Vec<f64> by value: B/task",
        value_queue,
    );
    record(
        "share_f64 200 MB view, 8 tasks/2 daemons: queue B/task",
        view_queue,
        "B",
        "length of the region's identifier",
        name_len as f64,
    );
    record(
        "share_f64 200 MB view, 8 tasks/2 daemons: daemons' PSS/size",
        view_pss / payload,
        "x",
        "same tasks, Vec<f64> by value: PSS/size",
        value_pss / payload,
    );
}
