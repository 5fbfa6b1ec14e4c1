//! Liveness with real processes: killed, frozen and idle daemons, hard cancel, a silent host, and
//! a killed host whose daemons must not survive it.
//!
//! Every process a test starts is killed and reaped by a guard, whether the test passes or not.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::{FromDaemon, Init, Limits, ToDaemon};
use mirai_dispatch::{
    CancelMode, Config, DaemonEvent, DaemonId, Dispatcher, DispatcherConfig, MISSED_BEATS, Outcome,
    Task,
};
use rustix::process::{Pid, Signal, kill_process};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "liveness-pool-token";

/// A child process, killed and reaped whatever happens to the test.
struct Proc(util::Reaped);

impl Proc {
    fn daemon(url: &str, launch_id: u64, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url])
            .args(["--launch-id", &launch_id.to_string()])
            .env(
                "MIRAI_DAEMON_TOKEN",
                mirai_dispatch::secret::Secret::from(TOKEN)
                    .launch_credential(launch_id)
                    .expose_str()
                    .unwrap(),
            )
            .args(extra)
            .spawn()
            .expect("spawn the demo daemon");
        Self(util::Reaped(child))
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.0.id() as i32).expect("a pid");
        kill_process(pid, signal).expect("signal the process");
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Processes that are not our children (a killed host's daemons): SIGKILLed on drop if alive.
struct Orphans(Vec<i32>);

impl Drop for Orphans {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = kill_process(Pid::from_raw(pid).expect("a pid"), Signal::KILL);
            }
        }
    }
}

/// Whether `pid` is a running (not exited, not zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn unique_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "abstract://mirai-liveness-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn start(heartbeat: Option<Duration>) -> (Dispatcher, Receiver<DaemonEvent>) {
    let config = DispatcherConfig::new(unique_url(), TOKEN.as_bytes().to_vec())
        .with_core(Config::default())
        .with_heartbeat(heartbeat);
    Dispatcher::start(config).expect("start the dispatcher")
}

fn next_event(events: &Receiver<DaemonEvent>) -> DaemonEvent {
    events.recv_timeout(PATIENCE).expect("a daemon event")
}

fn joined(events: &Receiver<DaemonEvent>) -> DaemonId {
    match next_event(events) {
        DaemonEvent::Joined { daemon, .. } => daemon,
        other => panic!("expected a join, got {other:?}"),
    }
}

fn task<A: serde::Serialize>(function: &str, arg: &A) -> Task {
    Task::new(function, postcard::to_allocvec(arg).unwrap())
}

fn echo_all(dispatcher: &Dispatcher, n: u8) {
    let ids: Vec<_> = (0..n)
        .map(|i| dispatcher.submit(Task::new("echo", vec![i]), None).unwrap())
        .collect();
    for (i, id) in ids.into_iter().enumerate() {
        match dispatcher.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &[i as u8]),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

#[test]
fn sigkill_of_a_busy_daemon_loses_its_task_and_the_queue_goes_on_elsewhere() {
    let (dispatcher, events) = start(None);
    // Joined one after the other, so the first is the one idle longest and gets the first task.
    let mut busy = Proc::daemon(dispatcher.url(), 1, &[]);
    joined(&events);
    let _other = Proc::daemon(dispatcher.url(), 2, &[]);
    joined(&events);
    let long = dispatcher
        .submit(task("sleep_ms", &60_000u64), None)
        .unwrap();
    // Queued behind the long task; they run on the other daemon.
    echo_all(&dispatcher, 5);
    busy.signal(Signal::KILL);
    busy.wait_exit(PATIENCE);
    assert_eq!(
        dispatcher.wait(long, Some(PATIENCE)),
        Some(Outcome::ConnectionLost)
    );
    assert!(matches!(
        next_event(&events),
        DaemonEvent::Left { launch_id: 1, .. }
    ));
    echo_all(&dispatcher, 20);
    let s = dispatcher.status();
    assert_eq!((s.connections, s.awaiting, s.executing), (1, 0, 0));
    assert_eq!((s.completed, s.submitted), (26, 26));
}

#[test]
fn hard_cancel_resolves_at_once_and_frees_the_slot_once_the_launcher_kills() {
    let (dispatcher, events) = start(None);
    let mut victim = Proc::daemon(dispatcher.url(), 5, &[]);
    let daemon = joined(&events);
    let long = dispatcher
        .submit(task("sleep_ms", &60_000u64), None)
        .unwrap();
    assert!(dispatcher.cancel(long, CancelMode::Hard));
    assert_eq!(
        dispatcher.wait(long, Some(Duration::ZERO)),
        Some(Outcome::Cancelled),
        "resolved at once, before the daemon is gone"
    );
    assert_eq!(
        next_event(&events),
        DaemonEvent::KillRequested {
            daemon,
            launch_id: 5
        }
    );
    // The daemon gets no more work while it waits to be killed.
    let next = dispatcher
        .submit(Task::new("echo", b"next".to_vec()), None)
        .unwrap();
    let s = dispatcher.status();
    assert_eq!((s.connections, s.executing, s.awaiting), (0, 0, 1));
    // The launcher's part: kill it (it may already have exited on the exit message) and replace.
    let _ = victim.0.kill();
    victim.wait_exit(PATIENCE);
    assert!(matches!(
        next_event(&events),
        DaemonEvent::Left { launch_id: 5, .. }
    ));
    let _replacement = Proc::daemon(dispatcher.url(), 6, &[]);
    match dispatcher.wait(next, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(&*v, b"next"),
        other => panic!("expected the echo, got {other:?}"),
    }
    let s = dispatcher.status();
    assert_eq!((s.connections, s.cumulative, s.completed), (1, 2, 2));
}

#[test]
fn an_idle_daemon_exits_after_its_idletime_and_leaves() {
    let (dispatcher, events) = start(None);
    let mut daemon = Proc::daemon(dispatcher.url(), 3, &["--idletime-ms", "300"]);
    joined(&events);
    echo_all(&dispatcher, 3);
    let t = Instant::now();
    assert_eq!(
        daemon.wait_exit(PATIENCE).code(),
        Some(1),
        "idletime exit code"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "left after {:?}, before its idle time",
        t.elapsed()
    );
    assert!(matches!(
        next_event(&events),
        DaemonEvent::Left { launch_id: 3, .. }
    ));
    assert_eq!(dispatcher.status().connections, 0);
}

#[test]
fn a_frozen_daemon_is_declared_lost_within_the_heartbeat_bound() {
    // Short enough to keep the test quick, long enough that a loaded machine does not starve
    // the healthy daemon past the limit.
    let beat = Duration::from_millis(100);
    let (dispatcher, events) = start(Some(beat));
    let frozen = Proc::daemon(dispatcher.url(), 1, &[]);
    joined(&events);
    let _other = Proc::daemon(dispatcher.url(), 2, &[]);
    joined(&events);
    // Heartbeats keep a busy daemon alive well past the bound.
    let busy = dispatcher
        .submit(
            task("sleep_ms", &(beat * MISSED_BEATS * 3).as_millis()),
            None,
        )
        .unwrap();
    assert!(matches!(
        dispatcher.wait(busy, Some(PATIENCE)),
        Some(Outcome::Value(_))
    ));
    // The busy task ran on daemon 1, so daemon 2 is idle longest: one echo puts daemon 1 first.
    echo_all(&dispatcher, 1);
    let long = dispatcher
        .submit(task("sleep_ms", &60_000u64), None)
        .unwrap();
    // The long task went to daemon 1; freeze it: its socket stays open.
    std::thread::sleep(Duration::from_millis(20));
    frozen.signal(Signal::STOP);
    let t = Instant::now();
    assert_eq!(
        dispatcher.wait(long, Some(PATIENCE)),
        Some(Outcome::ConnectionLost)
    );
    let took = t.elapsed();
    let bound = beat * (MISSED_BEATS + 1);
    assert!(
        took <= bound + Duration::from_millis(500),
        "lost after {took:?}, bound {bound:?}"
    );
    echo_all(&dispatcher, 3);
    drop(frozen);
}

#[test]
fn a_daemon_whose_host_falls_silent_exits() {
    use nano_transport::{Protocol, Socket};
    // A host that completes the handshake, asks for 50 ms heartbeats, then never speaks again
    // (nor closes the connection).
    let url = unique_url();
    let host = Socket::new(Protocol::Pair1).unwrap();
    host.listen(&url).unwrap();
    let mut daemon = Proc::daemon(&url, 1, &[]);
    let hello = host.recv_timeout(PATIENCE).expect("the hello");
    let (msg, _) = FromDaemon::decode(&hello, &Limits::default()).unwrap();
    assert!(matches!(msg, FromDaemon::Hello(_)));
    let mut init = Vec::new();
    ToDaemon::Init(Init {
        daemon: DaemonId(0),
        rng_stream: 0,
        max_message: 1 << 20,
        heartbeat_ms: 50,
        settings: Vec::new(),
    })
    .encode(&mut init)
    .unwrap();
    host.send(&init).unwrap();
    let t = Instant::now();
    // The daemon's heartbeats arrive while the host is silent.
    let beat = host.recv_timeout(PATIENCE).expect("a heartbeat");
    assert!(matches!(
        FromDaemon::decode(&beat, &Limits::default()),
        Ok((FromDaemon::Heartbeat, _))
    ));
    assert_eq!(daemon.wait_exit(PATIENCE).code(), Some(0), "host-gone exit");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(50 * u64::from(MISSED_BEATS) - 20)
            && took < Duration::from_secs(2),
        "exited after {took:?}"
    );
}

/// Starts a `mirai-demo-daemon host` with `n` daemons each running an hour of `function`, and
/// returns it with its daemons' pids (killed on drop if still alive).
fn host_with_busy_daemons(n: usize, function: &str) -> (Proc, Orphans) {
    let mut host = Proc(util::Reaped(
        Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["host", &unique_url(), &n.to_string(), function])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the host"),
    ));
    let stdout = host.0.stdout.take().expect("the host's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the host's pid line");
    let pids: Vec<i32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("unexpected host output {line:?}"))
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    let orphans = Orphans(pids);
    assert_eq!(orphans.0.len(), n);
    assert!(orphans.0.iter().all(|&p| alive(p)), "daemons run tasks");
    (host, orphans)
}

#[test]
fn killing_the_host_leaves_no_daemon_alive_after_two_seconds() {
    let (mut host, orphans) = host_with_busy_daemons(2, "sleep_ms");
    host.signal(Signal::KILL);
    host.wait_exit(PATIENCE);
    let t = Instant::now();
    while orphans.0.iter().any(|&p| alive(p)) {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a daemon outlived its host by 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn killing_the_host_ends_daemons_whose_tasks_never_look_at_their_token() {
    let (mut host, orphans) = host_with_busy_daemons(2, "late_check");
    // Let the tasks run past the watcher's first looks, as a long task would.
    std::thread::sleep(2 * mirai_dispatch::daemon::WATCH_TICK);
    host.signal(Signal::KILL);
    host.wait_exit(PATIENCE);
    let t = Instant::now();
    // The bound: the connection watched, then the grace after the cancel, then process exit.
    let bound = mirai_dispatch::daemon::HOST_GONE_GRACE + Duration::from_secs(3);
    while orphans.0.iter().any(|&p| alive(p)) {
        assert!(
            t.elapsed() < bound,
            "a daemon busy in a task that ignores its token outlived its host by {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_daemon_busy_in_a_task_that_ignores_its_token_exits_when_its_dispatcher_goes() {
    let (dispatcher, events) = start(Some(Duration::from_millis(200)));
    let mut daemon = Proc::daemon(dispatcher.url(), 1, &[]);
    joined(&events);
    let id = dispatcher
        .submit(task("late_check", &3_600_000u64), None)
        .unwrap();
    // Started, and running past the watcher's looks.
    std::thread::sleep(3 * mirai_dispatch::daemon::WATCH_TICK);
    assert_eq!(dispatcher.wait(id, Some(Duration::ZERO)), None);
    assert!(daemon.0.try_wait().unwrap().is_none(), "still running it");
    drop(dispatcher);
    let t = Instant::now();
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(5)).code(),
        Some(0),
        "host-gone exit code"
    );
    assert!(
        t.elapsed() >= mirai_dispatch::daemon::HOST_GONE_GRACE / 2,
        "exited after {:?}: the task had no grace",
        t.elapsed()
    );
}

#[test]
fn a_daemon_told_to_finish_its_task_outlives_its_host_until_the_task_ends() {
    // `finish-task` keeps its meaning: the task is not abandoned when the host goes.
    let (dispatcher, events) = start(Some(Duration::from_millis(200)));
    let mut daemon = Proc::daemon(dispatcher.url(), 1, &["--autoexit", "finish-task"]);
    joined(&events);
    dispatcher
        .submit(task("late_check", &3_600_000u64), None)
        .unwrap();
    std::thread::sleep(3 * mirai_dispatch::daemon::WATCH_TICK);
    drop(dispatcher);
    std::thread::sleep(mirai_dispatch::daemon::HOST_GONE_GRACE + Duration::from_secs(1));
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "a finish-task daemon gave up its task"
    );
}

#[test]
fn a_queue_timeout_armed_while_the_dispatcher_sleeps_fires_on_time() {
    // No heartbeats and no daemons: nothing else wakes the dispatcher thread.
    let (dispatcher, _events) = start(None);
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    let id = dispatcher
        .submit(
            Task::new("echo", vec![1]).with_queue_timeout(Duration::from_millis(100)),
            None,
        )
        .unwrap();
    assert_eq!(
        dispatcher.wait(id, Some(Duration::from_secs(5))),
        Some(Outcome::TimedOut)
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(1),
        "timed out after {took:?}"
    );
    assert_eq!(dispatcher.status().memory.used, 0);
}

#[test]
fn a_daemon_told_never_to_autoexit_redials_and_serves_the_next_host() {
    use nano_transport::{Protocol, Socket};
    let url = unique_url();
    // A first host that admits the daemon, then goes away (closes without an exit message).
    let first = Socket::new(Protocol::Pair1).unwrap();
    first.listen(&url).unwrap();
    let mut daemon = Proc::daemon(&url, 4, &["--autoexit", "never"]);
    let hello = first.recv_timeout(PATIENCE).expect("the hello");
    assert!(matches!(
        FromDaemon::decode(&hello, &Limits::default()),
        Ok((FromDaemon::Hello(_), _))
    ));
    let mut init = Vec::new();
    ToDaemon::Init(Init {
        daemon: DaemonId(0),
        rng_stream: 0,
        max_message: 1 << 20,
        heartbeat_ms: 0,
        settings: Vec::new(),
    })
    .encode(&mut init)
    .unwrap();
    first.send(&init).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    first.close();
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon stayed");
    // A new host at the same address gets the daemon.
    let config = DispatcherConfig::new(url, TOKEN.as_bytes().to_vec()).with_heartbeat(None);
    let (dispatcher, events) = Dispatcher::start(config).unwrap();
    assert!(matches!(
        next_event(&events),
        DaemonEvent::Joined { launch_id: 4, .. }
    ));
    echo_all(&dispatcher, 3);
    dispatcher.shutdown();
    assert_eq!(daemon.wait_exit(PATIENCE).code(), Some(0));
}
