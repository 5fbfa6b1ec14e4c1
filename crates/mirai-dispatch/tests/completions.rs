//! Outcomes reach exactly their own waiter, and outcomes nobody will take are never kept:
//! the dispatcher with real daemon processes over abstract Unix sockets.

mod util;

use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

use mirai_dispatch::{
    CancelMode, Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task,
};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "completions-pool-token";

/// A daemon process, killed and reaped whatever happens to the test.
struct Daemon {
    _child: util::Reaped,
}

impl Daemon {
    fn spawn(url: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url, "--launch-id", "1"])
            .env(
                "MIRAI_DAEMON_TOKEN",
                mirai_dispatch::secret::Secret::from(TOKEN)
                    .launch_credential(1)
                    .expose_str()
                    .unwrap(),
            )
            .spawn()
            .expect("spawn the demo daemon");
        Self {
            _child: util::Reaped(child),
        }
    }
}

fn start(core: Config) -> (Dispatcher, Receiver<DaemonEvent>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = format!(
        "abstract://mirai-completions-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let config = DispatcherConfig::new(url, TOKEN.as_bytes().to_vec()).with_core(core);
    Dispatcher::start(config).expect("start the dispatcher")
}

fn with_daemon(core: Config) -> (Dispatcher, Daemon) {
    let (dispatcher, events) = start(core);
    let daemon = Daemon::spawn(dispatcher.url());
    let event = events.recv_timeout(PATIENCE).expect("a daemon event");
    assert!(matches!(event, DaemonEvent::Joined { .. }), "got {event:?}");
    (dispatcher, daemon)
}

fn echo(bytes: usize) -> Task {
    Task::new("echo", vec![7u8; bytes])
}

/// A waker that counts its wake-ups and reports each on a channel.
struct Counting {
    index: usize,
    wakes: AtomicUsize,
    report: Mutex<Sender<usize>>,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let _ = self.report.lock().unwrap().send(self.index);
    }
}

fn counting(index: usize, report: &Sender<usize>) -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting {
        index,
        wakes: AtomicUsize::new(0),
        report: Mutex::new(report.clone()),
    });
    let waker = Waker::from(Arc::clone(&c));
    (c, waker)
}

#[test]
fn a_forgotten_outcome_arriving_later_is_discarded_and_never_counted() {
    let (dispatcher, _daemon) = with_daemon(Config::default().with_max_uncollected_bytes(1 << 20));
    let forgotten = dispatcher.submit(echo(1000), None).unwrap();
    dispatcher.forget(forgotten);
    // One daemon runs tasks in order: once this one is taken, the forgotten one has resolved.
    let after = dispatcher.submit(echo(10), None).unwrap();
    assert!(
        matches!(dispatcher.wait(after, Some(PATIENCE)), Some(Outcome::Value(v)) if v.len() == 10)
    );
    let status = dispatcher.status();
    assert_eq!(status.completed, 2);
    assert_eq!(status.memory.uncollected, 0, "a forgotten value counted");
    assert_eq!(dispatcher.retained(), 0, "a forgotten outcome was kept");
    assert_eq!(dispatcher.wait(forgotten, Some(Duration::ZERO)), None);
}

#[test]
fn forgetting_an_arrived_outcome_frees_it_at_once() {
    let (dispatcher, _daemon) = with_daemon(Config::default().with_max_uncollected_bytes(1 << 20));
    let kept = dispatcher.submit(echo(1000), None).unwrap();
    let after = dispatcher.submit(echo(10), None).unwrap();
    assert!(dispatcher.wait(after, Some(PATIENCE)).is_some());
    assert_eq!(
        dispatcher.retained(),
        1,
        "the first outcome waits for its handle"
    );
    assert_eq!(dispatcher.status().memory.uncollected, 1000);
    dispatcher.forget(kept);
    assert_eq!(dispatcher.retained(), 0);
    assert_eq!(dispatcher.status().memory.uncollected, 0);
}

#[test]
fn forgetting_does_not_cancel_a_queued_task() {
    let (dispatcher, events) = start(Config::default());
    let id = dispatcher.submit(echo(5), None).unwrap();
    dispatcher.forget(id);
    let status = dispatcher.status();
    assert_eq!(
        (status.awaiting, status.completed),
        (1, 0),
        "forget cancelled the task"
    );
    let _daemon = Daemon::spawn(dispatcher.url());
    assert!(matches!(
        events.recv_timeout(PATIENCE),
        Ok(DaemonEvent::Joined { .. })
    ));
    let after = dispatcher.submit(echo(1), None).unwrap();
    assert!(dispatcher.wait(after, Some(PATIENCE)).is_some());
    let status = dispatcher.status();
    assert_eq!((status.awaiting, status.completed), (0, 2));
    assert_eq!(dispatcher.retained(), 0);
}

#[test]
fn fire_and_forget_never_trips_the_uncollected_brake() {
    // Two uncollected 100-byte values would pause dispatch for good.
    let (dispatcher, _daemon) = with_daemon(Config::default().with_max_uncollected_bytes(150));
    for _ in 0..20 {
        let id = dispatcher.submit(echo(100), None).unwrap();
        dispatcher.forget(id);
    }
    let last = dispatcher.submit(echo(100), None).unwrap();
    assert!(matches!(
        dispatcher.wait(last, Some(PATIENCE)),
        Some(Outcome::Value(_))
    ));
    assert_eq!(dispatcher.status().memory.uncollected, 0);
    assert_eq!(dispatcher.retained(), 0);
}

#[test]
fn the_latest_waker_is_woken_once_and_the_earlier_not_at_all() {
    let (dispatcher, _events) = start(Config::default()); // no daemon: the task stays queued
    let id = dispatcher.submit(echo(1), None).unwrap();
    let (tx, rx) = mpsc::channel();
    let (first, first_waker) = counting(0, &tx);
    let (second, second_waker) = counting(1, &tx);
    assert!(dispatcher.poll_outcome(id, &first_waker).is_none());
    assert!(dispatcher.poll_outcome(id, &second_waker).is_none());
    assert!(dispatcher.cancel(id, CancelMode::Soft));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(1));
    assert_eq!(first.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(second.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        dispatcher.poll_outcome(id, &second_waker),
        Some(Outcome::Cancelled)
    );
    assert_eq!(dispatcher.retained(), 0);
}

#[test]
fn each_result_wakes_exactly_its_own_waker() {
    const N: usize = 64;
    let (dispatcher, _daemon) = with_daemon(Config::default());
    let (tx, rx) = mpsc::channel();
    let mut pending = Vec::new();
    for i in 0..N {
        let id = dispatcher.submit(echo(i), None).unwrap();
        let (count, waker) = counting(i, &tx);
        if dispatcher.poll_outcome(id, &waker).is_none() {
            pending.push((i, id, count, waker));
        }
    }
    assert!(
        !pending.is_empty(),
        "every result came back before its first poll"
    );
    let mut woken = Vec::new();
    for _ in 0..pending.len() {
        woken.push(rx.recv_timeout(PATIENCE).expect("a wake-up"));
    }
    // A sentinel behind them all: every wake above has been delivered by the time it returns.
    let sentinel = dispatcher.submit(echo(0), None).unwrap();
    assert!(dispatcher.wait(sentinel, Some(PATIENCE)).is_some());
    woken.sort_unstable();
    let expected: Vec<usize> = pending.iter().map(|p| p.0).collect();
    assert_eq!(woken, expected, "one wake per completed task");
    for (i, id, count, waker) in &pending {
        assert_eq!(
            count.wakes.load(Ordering::SeqCst),
            1,
            "task {i} woken more than once"
        );
        assert!(
            matches!(dispatcher.poll_outcome(*id, waker), Some(Outcome::Value(v)) if v.len() == *i)
        );
    }
    assert!(rx.try_recv().is_err(), "a stray wake-up");
    // Handles that got their value on the first poll took it then.
    assert_eq!(dispatcher.retained(), 0);
}
