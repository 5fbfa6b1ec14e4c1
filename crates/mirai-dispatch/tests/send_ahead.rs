//! Send-ahead with real daemon processes: a task sent to a busy daemon never stays stuck behind
//! a long task while another daemon idles, whether or not the long task looks at its cancel
//! token, and it survives its daemon's death because it had not started.
//!
//! Every process a test starts is killed and reaped by a guard, whether the test passes or not.

mod util;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use mirai_dispatch::{
    CancelMode, Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task, TaskId,
};

const TOKEN: &str = "send-ahead-pool-token";
/// Far longer than anything here should take, far shorter than the long tasks.
const PATIENCE: Duration = Duration::from_secs(20);
/// The long task's length: the task behind it must not wait for it.
const LONG_MS: u64 = 120_000;

/// A daemon process, killed and reaped whatever happens to the test.
struct Proc(util::Reaped);

impl Proc {
    fn daemon(url: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url])
            .env("MIRAI_DAEMON_TOKEN", TOKEN)
            .spawn()
            .expect("spawn the demo daemon");
        Self(util::Reaped(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn start(heartbeat: Duration) -> (Dispatcher, Receiver<DaemonEvent>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = format!(
        "abstract://mirai-send-ahead-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let config = DispatcherConfig::new(url, TOKEN.as_bytes().to_vec())
        // Every task here counts as short, so what is sent ahead does not depend on this
        // machine's speed.
        .with_core(Config::default().with_send_ahead(Some(Duration::from_secs(60))))
        .with_heartbeat(Some(heartbeat));
    Dispatcher::start(config).expect("start the dispatcher")
}

fn joined(events: &Receiver<DaemonEvent>) {
    match events.recv_timeout(PATIENCE).expect("a daemon event") {
        DaemonEvent::Joined { .. } => {}
        other => panic!("expected a join, got {other:?}"),
    }
}

fn task<A: serde::Serialize>(function: &str, arg: &A) -> Task {
    Task::new(function, postcard::to_allocvec(arg).unwrap())
}

/// Runs one task on the only daemon, so it has a (short) task on record.
fn warm(dispatcher: &Dispatcher) -> u32 {
    let id = dispatcher.submit(task("pid", &()), None).unwrap();
    pid_of(dispatcher, id)
}

fn pid_of(dispatcher: &Dispatcher, id: TaskId) -> u32 {
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => postcard::from_bytes(&v).expect("a pid"),
        other => panic!("expected a pid, got {other:?}"),
    }
}

/// One daemon runs `long` with a `pid` task sent ahead of it; a second daemon joins and idles.
/// The `pid` task must run on the second daemon, long before `long` could end.
fn moves_to_the_idle_daemon(long: Task, heartbeat: Duration) {
    let (dispatcher, events) = start(heartbeat);
    let busy = Proc::daemon(dispatcher.url());
    joined(&events);
    assert_eq!(warm(&dispatcher), busy.pid());
    let long = dispatcher.submit(long, None).unwrap();
    let behind = dispatcher.submit(task("pid", &()), None).unwrap();
    let s = dispatcher.status();
    assert_eq!(
        (s.executing, s.awaiting),
        (2, 0),
        "sent ahead to the busy daemon"
    );
    let idle = Proc::daemon(dispatcher.url());
    joined(&events);
    assert_eq!(pid_of(&dispatcher, behind), idle.pid());
    let s = dispatcher.status();
    assert_eq!(
        (s.executing, s.completed),
        (1, 2),
        "the long task still runs (the warm-up and the moved task done)"
    );
    assert!(dispatcher.cancel(long, CancelMode::Hard));
}

#[test]
fn a_task_behind_a_long_task_that_looks_at_its_token_moves_to_a_daemon_that_falls_idle() {
    moves_to_the_idle_daemon(task("sleep_ms", &LONG_MS), Duration::from_secs(1));
}

#[test]
fn a_task_behind_a_long_task_that_never_looks_at_its_token_moves_after_a_heartbeat() {
    // `late_check` sleeps without looking at its token: the daemon's watcher reads the
    // connection once the task has run through a heartbeat.
    moves_to_the_idle_daemon(task("late_check", &LONG_MS), Duration::from_millis(200));
}

#[test]
fn a_task_waiting_ahead_on_a_killed_daemon_runs_on_the_next_one() {
    let (dispatcher, events) = start(Duration::from_secs(1));
    let mut busy = Proc::daemon(dispatcher.url());
    joined(&events);
    assert_eq!(warm(&dispatcher), busy.pid());
    let long = dispatcher.submit(task("sleep_ms", &LONG_MS), None).unwrap();
    let behind = dispatcher.submit(task("pid", &()), None).unwrap();
    assert_eq!(dispatcher.status().executing, 2);
    busy.0.kill().expect("SIGKILL the busy daemon");
    busy.0.wait().expect("reap it");
    assert_eq!(
        dispatcher.wait(long, Some(PATIENCE)),
        Some(Outcome::ConnectionLost)
    );
    assert_eq!(
        dispatcher.status().awaiting,
        1,
        "the task ahead had not started: queued again, not lost"
    );
    let next = Proc::daemon(dispatcher.url());
    assert_eq!(pid_of(&dispatcher, behind), next.pid());
}
