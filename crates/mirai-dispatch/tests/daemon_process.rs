//! The dispatcher and real daemon processes over abstract Unix sockets.

mod util;

use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::{
    CancelMode, Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task,
};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "daemon-process-pool-token";

/// A daemon process, killed and reaped whatever happens to the test.
struct Daemon(util::Reaped);

impl Daemon {
    fn spawn(url: &str, token: &str, launch_id: u64, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url])
            .args(["--launch-id", &launch_id.to_string()])
            .env(
                "MIRAI_DAEMON_TOKEN",
                mirai_dispatch::secret::Secret::from(token)
                    .launch_credential(launch_id)
                    .expose_str()
                    .unwrap(),
            )
            .args(extra)
            .spawn()
            .expect("spawn the demo daemon");
        Self(util::Reaped(child))
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn unique_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "abstract://mirai-dispatch-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn start(core: Config) -> (Dispatcher, Receiver<DaemonEvent>) {
    let config = DispatcherConfig::new(unique_url(), TOKEN.as_bytes().to_vec()).with_core(core);
    Dispatcher::start(config).expect("start the dispatcher")
}

fn joined(events: &Receiver<DaemonEvent>) -> DaemonEvent {
    let event = events.recv_timeout(PATIENCE).expect("a daemon event");
    assert!(
        matches!(event, DaemonEvent::Joined { .. }),
        "expected a join, got {event:?}"
    );
    event
}

fn task<A: serde::Serialize>(function: &str, arg: &A) -> Task {
    Task::new(function, postcard::to_allocvec(arg).unwrap())
}

fn value<T: serde::de::DeserializeOwned>(outcome: Option<Outcome>) -> T {
    match outcome {
        Some(Outcome::Value(v)) => postcard::from_bytes(&v).expect("decode the value"),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn a_real_daemon_runs_tasks_reports_errors_and_survives_cancellation() {
    let (dispatcher, events) = start(Config::default().with_max_queued_bytes(1 << 20));
    let mut daemon = Daemon::spawn(dispatcher.url(), TOKEN, 7, &[]);
    assert_eq!(
        joined(&events),
        DaemonEvent::Joined {
            daemon: mirai_dispatch::DaemonId(0),
            launch_id: 7
        }
    );

    let id = dispatcher
        .submit(task("add", &(2i64, 40i64)), None)
        .unwrap();
    assert_eq!(value::<i64>(dispatcher.wait(id, Some(PATIENCE))), 42);

    let id = dispatcher.submit(task("panic", &"boom"), None).unwrap();
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::TaskError(e)) => {
            assert_eq!(e.message, "boom");
            assert!(e.backtrace.contains("panicked at"), "{}", e.backtrace);
        }
        other => panic!("expected a task error, got {other:?}"),
    }

    let id = dispatcher.submit(task("no_such_fn", &()), None).unwrap();
    assert!(matches!(
        dispatcher.wait(id, Some(PATIENCE)),
        Some(Outcome::TaskError(_))
    ));

    // A long task is cancelled while it runs; the daemon stays and runs the next one.
    let long = dispatcher
        .submit(task("sleep_ms", &60_000u64), None)
        .unwrap();
    let next = dispatcher
        .submit(Task::new("echo", b"after".to_vec()), None)
        .unwrap();
    assert!(dispatcher.cancel(long, CancelMode::Soft));
    assert_eq!(
        dispatcher.wait(long, Some(PATIENCE)),
        Some(Outcome::Cancelled)
    );
    match dispatcher.wait(next, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(&*v, b"after"),
        other => panic!("expected the echo, got {other:?}"),
    }
    let s = dispatcher.status();
    assert_eq!((s.connections, s.completed, s.submitted), (1, 5, 5));

    // Shutdown tells the daemon to exit.
    dispatcher.shutdown();
    assert_eq!(daemon.wait_exit().code(), Some(0));
}

#[test]
fn maxtasks_marks_the_last_result_and_later_tasks_wait_for_a_new_daemon() {
    let (dispatcher, events) = start(Config::default());
    let mut first = Daemon::spawn(dispatcher.url(), TOKEN, 1, &["--maxtasks", "2"]);
    joined(&events);
    let ids: Vec<_> = (0..3u8)
        .map(|i| dispatcher.submit(Task::new("echo", vec![i]), None).unwrap())
        .collect();
    for (i, id) in ids[..2].iter().enumerate() {
        match dispatcher.wait(*id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &[i as u8]),
            other => panic!("expected a value, got {other:?}"),
        }
    }
    assert_eq!(first.wait_exit().code(), Some(3), "maxtasks exit code");
    assert_eq!(
        dispatcher.wait(ids[2], Some(Duration::from_millis(50))),
        None
    );
    assert_eq!(dispatcher.status().awaiting, 1);
    assert_eq!(dispatcher.status().connections, 0);

    let _second = Daemon::spawn(dispatcher.url(), TOKEN, 2, &[]);
    match dispatcher.wait(ids[2], Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(&*v, &[2]),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn a_daemon_with_the_wrong_token_is_refused() {
    let (dispatcher, events) = start(Config::default());
    let mut intruder = Daemon::spawn(dispatcher.url(), "guess", 9, &[]);
    let event = events.recv_timeout(PATIENCE).expect("an event");
    assert_eq!(
        event,
        DaemonEvent::Refused {
            claimed_launch_id: 9,
            reason: mirai_dispatch::protocol::RefuseReason::Token
        }
    );
    assert_eq!(intruder.wait_exit().code(), Some(10));
    assert_eq!(dispatcher.status().cumulative, 0);
}

#[test]
fn killed_daemons_lose_their_tasks_unless_a_retry_is_left() {
    let (dispatcher, events) = start(Config::default());
    let mut victims = [
        Daemon::spawn(dispatcher.url(), TOKEN, 1, &[]),
        Daemon::spawn(dispatcher.url(), TOKEN, 2, &[]),
    ];
    joined(&events);
    joined(&events);
    let lost = dispatcher
        .submit(task("sleep_ms", &60_000u64), None)
        .unwrap();
    let retried = dispatcher
        .submit(task("sleep_ms", &1_000u64).with_retries(1), None)
        .unwrap();
    assert_eq!(dispatcher.status().executing, 2);
    for v in &mut victims {
        v.0.kill().unwrap();
        v.wait_exit();
    }
    assert_eq!(
        dispatcher.wait(lost, Some(PATIENCE)),
        Some(Outcome::ConnectionLost)
    );
    let deadline = Instant::now() + PATIENCE;
    while dispatcher.status().connections > 0 {
        assert!(Instant::now() < deadline, "the second loss was not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        dispatcher.status().awaiting,
        1,
        "the retryable task is queued again"
    );
    let _survivor = Daemon::spawn(dispatcher.url(), TOKEN, 3, &[]);
    assert_eq!(
        value::<u64>(dispatcher.wait(retried, Some(PATIENCE))),
        1_000
    );
}

#[test]
fn everywhere_reaches_each_daemon_once_and_a_run_timeout_frees_the_daemon() {
    let (dispatcher, events) = start(Config::default().with_seed(7));
    let daemons = [
        Daemon::spawn(dispatcher.url(), TOKEN, 1, &[]),
        Daemon::spawn(dispatcher.url(), TOKEN, 2, &[]),
    ];
    joined(&events);
    joined(&events);
    let ids = dispatcher.everywhere(task("pid", &()), 1, None).unwrap();
    assert_eq!(ids.len(), 2);
    let mut pids: Vec<u32> = ids
        .into_iter()
        .map(|id| value(dispatcher.wait(id, Some(PATIENCE))))
        .collect();
    pids.sort_unstable();
    let mut expected: Vec<u32> = daemons.iter().map(|d| d.0.id()).collect();
    expected.sort_unstable();
    assert_eq!(pids, expected);

    // Seeded tasks carry their stream whichever daemon runs them.
    let id = dispatcher.submit(task("seed", &()), None).unwrap();
    assert_eq!(
        value::<Option<u64>>(dispatcher.wait(id, Some(PATIENCE))),
        Some(mirai_dispatch::rng::stream_seed(7, 0))
    );

    let slow = task("sleep_ms", &60_000u64).with_run_timeout(Duration::from_millis(100));
    let slow = dispatcher.submit(slow, None).unwrap();
    assert_eq!(
        dispatcher.wait(slow, Some(PATIENCE)),
        Some(Outcome::TimedOut)
    );
    let ids: Vec<_> = (0..4)
        .map(|_| dispatcher.submit(task("add", &(1i64, 1i64)), None).unwrap())
        .collect();
    for id in ids {
        assert_eq!(value::<i64>(dispatcher.wait(id, Some(PATIENCE))), 2);
    }
    let deadline = Instant::now() + PATIENCE;
    while dispatcher.status().idle < 2 {
        assert!(
            Instant::now() < deadline,
            "the timed-out daemon was not freed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_trace_context_reaches_the_task_on_the_daemon() {
    let (dispatcher, events) = start(Config::default());
    let _daemon = Daemon::spawn(dispatcher.url(), TOKEN, 1, &[]);
    joined(&events);
    let parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec();
    let id = dispatcher
        .submit(task("trace", &()).with_trace(parent.clone()), None)
        .unwrap();
    assert_eq!(
        value::<Option<Vec<u8>>>(dispatcher.wait(id, Some(PATIENCE))),
        Some(parent)
    );
    let id = dispatcher.submit(task("trace", &()), None).unwrap();
    assert_eq!(
        value::<Option<Vec<u8>>>(dispatcher.wait(id, Some(PATIENCE))),
        None
    );
}

#[test]
fn a_cancel_that_arrived_before_the_task_looked_is_seen_when_it_looks() {
    let (dispatcher, events) = start(Config::default());
    let _daemon = Daemon::spawn(dispatcher.url(), TOKEN, 1, &[]);
    joined(&events);
    let late = dispatcher
        .submit(task("late_check", &300u64), None)
        .unwrap();
    let next = dispatcher
        .submit(Task::new("echo", b"next".to_vec()), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(dispatcher.cancel(late, CancelMode::Soft));
    match dispatcher.wait(next, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(&*v, b"next"),
        other => panic!("expected the echo, got {other:?}"),
    }
    // Freed once the task first looked (after its 300 ms), not after its minute of waiting.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "daemon freed after {:?}",
        t.elapsed()
    );
}

#[test]
fn large_payloads_cross_both_ways_intact_within_a_tight_budget() {
    const MB: usize = 1 << 20;
    // Room for two 3 MB tasks: the others wait until a payload has been written out.
    let (dispatcher, events) = start(Config::default().with_max_queued_bytes(6 * MB as u64));
    let _daemons = [
        Daemon::spawn(dispatcher.url(), TOKEN, 1, &[]),
        Daemon::spawn(dispatcher.url(), TOKEN, 2, &[]),
    ];
    joined(&events);
    joined(&events);
    let payloads: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            (0..3 * MB)
                .map(|j| (j as u8).wrapping_mul(31) ^ i)
                .collect()
        })
        .collect();
    let ids: Vec<_> = payloads
        .iter()
        .map(|p| {
            dispatcher
                .submit(Task::new("echo", p.clone()), None)
                .unwrap()
        })
        .collect();
    for (id, sent) in ids.into_iter().zip(&payloads) {
        match dispatcher.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert!(&*v == sent.as_slice(), "payload corrupted"),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    let s = dispatcher.status();
    assert_eq!(s.memory.used, 0);
    assert!(s.memory.peak <= 6 * MB as u64);
    assert_eq!((s.completed, s.submitted), (8, 8));
}
