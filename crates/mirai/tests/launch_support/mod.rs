//! What the launch tests share: the daemon entry point (the test binary itself, run with the
//! harness arguments below), a dispatcher to dial, and a task that reports where it ran.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use mirai::launch::{Join, Program};
use mirai::{Registry, TaskFn, task};
use mirai_dispatch::{Dispatcher, DispatcherConfig, Outcome, Task};

/// Where a task ran: its process id and the environment variables that tell how it started.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Whereabouts {
    pub pid: u32,
    pub url: Option<String>,
    pub launch_id: Option<String>,
    pub ssh_connection: Option<String>,
    pub slurm_array_task_id: Option<String>,
}

fn where_am_i((): ()) -> Whereabouts {
    let var = |k: &str| std::env::var(k).ok();
    Whereabouts {
        pid: std::process::id(),
        url: var("MIRAI_DAEMON_URL"),
        launch_id: var("MIRAI_DAEMON_LAUNCH_ID"),
        ssh_connection: var("SSH_CONNECTION"),
        slurm_array_task_id: var("SLURM_ARRAY_TASK_ID"),
    }
}

pub const WHERE_AM_I: TaskFn<(), Whereabouts> = task!(where_am_i);

fn square(x: u64) -> u64 {
    x * x
}

/// A plain typed task, for the pool tests.
pub const SQUARE: TaskFn<u64, u64> = task!(square);

/// Called by the `daemon_entry` test of each file: serves tasks and exits when this process
/// was started as a daemon; fails otherwise.
pub fn daemon_entry() {
    mirai::daemon_main_if_requested(&Registry::new().with(&WHERE_AM_I).with(&SQUARE));
    panic!("daemon_entry only runs as a launched daemon");
}

/// This test binary as the daemon program: the harness runs only `daemon_entry`.
pub fn this_program() -> Program {
    Program::current()
        .unwrap()
        .arg("--exact")
        .arg("daemon_entry")
        .arg("--ignored")
        .arg("--test-threads=1")
        .arg("--nocapture")
}

/// A dispatcher on a loopback TCP port, and what a daemon needs to join it.
pub fn dispatcher() -> (Dispatcher, Join) {
    let token = format!("launch-test-{}", std::process::id());
    // Plain tcp on loopback, allowed explicitly: the ssh launcher's reverse tunnel carries it.
    let (d, _events) = Dispatcher::start(
        DispatcherConfig::new("tcp://127.0.0.1:0", token.clone().into_bytes()).with_plain_tcp(true),
    )
    .expect("start dispatcher");
    let join = Join::new(d.url(), token).idletime(Duration::from_secs(60));
    (d, join)
}

/// Runs `where_am_i` on some daemon of `d` and returns its answer, failing after `patience`.
pub fn ask(d: &Dispatcher, patience: Duration) -> Whereabouts {
    let id = d
        .submit(
            Task::new(WHERE_AM_I.name(), postcard::to_allocvec(&()).unwrap()),
            None,
        )
        .expect("submit");
    match d.wait(id, Some(patience)) {
        Some(Outcome::Value(bytes)) => postcard::from_bytes(bytes.as_slice()).expect("decode"),
        other => panic!("no answer from a launched daemon within {patience:?}: {other:?}"),
    }
}

/// Whether process `pid` is running (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

/// Waits up to `patience` for process `pid` to end; whether it did.
pub fn ends_within(pid: u32, patience: Duration) -> bool {
    let t = std::time::Instant::now();
    while alive(pid) {
        if t.elapsed() > patience {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs `where_am_i` once on every daemon of `pool` (at least `n` of them, waiting for them
/// to join), failing after `patience`.
pub fn ask_everywhere(pool: &mirai::Pool, n: usize, patience: Duration) -> Vec<Whereabouts> {
    pool.everywhere(&WHERE_AM_I, (), n)
        .expect("everywhere")
        .into_iter()
        .map(|mut h| {
            h.wait_timeout(patience)
                .unwrap_or_else(|e| panic!("no answer from a launched daemon: {e}"))
        })
        .collect()
}

/// Kills process `pid` (a daemon this test launched) if it still runs after the dispatcher
/// went away, so no daemon outlives its test even when it fails to exit by itself.
pub struct Reap(pub Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !ends_within(pid, Duration::from_secs(5)) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
