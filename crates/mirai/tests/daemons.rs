//! Real daemon processes through the facade alone. This binary is its own daemon program:
//! `main` first calls `daemon_main_if_requested`, so the children it spawns serve tasks.

use std::time::{Duration, Instant};

use mirai::{Daemons, Error, Pool, Registry, SharedView, TaskFn, TaskOptions, task};

mod common;

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}
fn square(x: u64) -> u64 {
    x * x
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
/// Writes its daemon's process id to the file at `path` (so the test knows the task has
/// started, and where), then sleeps without looking at its cancel token.
fn mark_then_sleep((path, ms): (String, u64)) -> u64 {
    std::fs::write(&path, std::process::id().to_string()).expect("write the start mark");
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn fail(message: String) -> u8 {
    panic!("{message}")
}
fn sum(v: SharedView) -> f64 {
    v.as_f64().map_or(f64::NAN, |x| x.iter().sum())
}
fn pid((): ()) -> u32 {
    std::process::id()
}

const ADD: TaskFn<(i64, i64), i64> = task!(add);
const SQUARE: TaskFn<u64, u64> = task!(square);
const SLEEP_MS: TaskFn<u64, u64> = task!(sleep_ms);
const MARK_THEN_SLEEP: TaskFn<(String, u64), u64> = task!(mark_then_sleep);
const FAIL: TaskFn<String, u8> = task!(fail);
const SUM: TaskFn<SharedView, f64> = task!(sum);
const PID: TaskFn<(), u32> = task!(pid);

fn registry() -> Registry {
    Registry::new()
        .with(&ADD)
        .with(&SQUARE)
        .with(&SLEEP_MS)
        .with(&MARK_THEN_SLEEP)
        .with(&FAIL)
        .with(&PID)
        .with(&SUM)
}

const PATIENCE: Duration = Duration::from_secs(20);

/// A file a task creates when it starts, in a unique directory removed when the test ends
/// (even by panicking).
struct StartMark {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl StartMark {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        Self {
            file: dir.path().join(name),
            _dir: dir,
        }
    }
    fn path(&self) -> String {
        self.file.to_string_lossy().into_owned()
    }
    fn is_set(&self) -> bool {
        self.file.exists()
    }
    /// The process id of the daemon that wrote the mark.
    fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.file)
            .expect("read the start mark")
            .parse()
            .expect("a process id")
    }
    fn clear(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn kill_9(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

fn pool(n: usize) -> Pool {
    Daemons::new().local(n).start().expect("start the pool")
}

fn submit_returns_the_typed_result() {
    let pool = pool(1);
    let mut handle = pool.submit(&ADD, (40, 2)).unwrap();
    assert_eq!(handle.wait_timeout(PATIENCE).unwrap(), 42);
}

fn map_keeps_order_across_daemons() {
    let pool = pool(2);
    let out = pool.map(&SQUARE, 0..50u64).unwrap();
    assert_eq!(out, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
}

fn panics_come_back_as_task_errors() {
    let pool = pool(1);
    match pool.submit(&FAIL, "kaboom".to_string()).unwrap().wait() {
        Err(Error::Task { message, .. }) => assert_eq!(message, "kaboom"),
        other => panic!("expected a task error, got {other:?}"),
    }
    // The daemon survives its task's panic.
    assert_eq!(pool.submit(&ADD, (1, 1)).unwrap().wait().unwrap(), 2);
}

fn map_stops_at_the_first_error() {
    let pool = pool(1);
    let err = pool
        .map(&FAIL, ["a".to_string(), "b".to_string()])
        .unwrap_err();
    assert!(
        matches!(err, Error::Task { ref message, .. } if message == "a"),
        "{err:?}"
    );
}

fn try_submit_hands_the_argument_back_when_full() {
    let pool = Daemons::new().max_queued_bytes(8).start().unwrap(); // no daemons: nothing drains
    let first = pool.try_submit(&SLEEP_MS, 1).unwrap();
    let mut refused = None;
    for ms in 2..100u64 {
        if let Err((e, arg)) = pool.try_submit(&SLEEP_MS, ms) {
            refused = Some((e, arg, ms));
            break;
        }
    }
    let (e, arg, ms) = refused.expect("the cap refuses work");
    assert!(matches!(e, Error::Full), "{e:?}");
    assert_eq!(arg, ms);
    let err = pool.try_submit(&FAIL, "x".repeat(100)).unwrap_err().0;
    assert!(
        matches!(err, Error::TooLarge { capacity: 8, .. }),
        "{err:?}"
    );
    drop(pool);
    assert!(matches!(first.wait(), Err(Error::ShutDown)));
}

fn cancel_resolves_as_cancelled() {
    let pool = pool(1);
    let mut handle = pool.submit(&SLEEP_MS, 60_000).unwrap();
    handle.cancel();
    assert!(matches!(
        handle.wait_timeout(PATIENCE),
        Err(Error::Cancelled)
    ));
}

fn wait_timeout_and_try_result_do_not_block() {
    let pool = pool(1);
    let mut handle = pool.submit(&SLEEP_MS, 300).unwrap();
    assert!(handle.try_result().is_none());
    assert!(matches!(
        handle.wait_timeout(Duration::from_millis(10)),
        Err(Error::TimedOut)
    ));
    assert_eq!(handle.wait_timeout(PATIENCE).unwrap(), 300);
}

fn future_is_woken_by_completion() {
    let pool = pool(1);
    let handle = pool.submit(&ADD, (2, 3)).unwrap();
    assert_eq!(block_on(handle).unwrap(), 5);
}

fn everywhere_reaches_every_daemon() {
    let pool = pool(2);
    let deadline = Instant::now() + PATIENCE;
    while pool.status().connections < 2 {
        assert!(Instant::now() < deadline, "daemons did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<u32> = mirai::collect(pool.everywhere(&PID, (), 2).unwrap()).unwrap();
    let mut pids = pids;
    pids.sort_unstable();
    let mut local = pool.local_pids();
    local.sort_unstable();
    assert_eq!(pids, local);
}

fn dropping_the_pool_reaps_every_daemon() {
    let pool = pool(2);
    let pids = pool.local_pids();
    let pending = pool.submit(&SLEEP_MS, 60_000).unwrap();
    drop(pool);
    assert!(matches!(pending.wait(), Err(Error::ShutDown)));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "daemon {pid} outlived the pool"
        );
    }
}

fn shared_vector_crosses_by_name() {
    let pool = pool(2);
    let data: Vec<f64> = (0..100_000).map(f64::from).collect();
    let shared = mirai::share_f64(&data).unwrap();
    let name = mirai::shared_name(&shared).unwrap();
    assert!(postcard::to_allocvec(&shared.view()).unwrap().len() < name.len() + 8);
    let sums = pool.map(&SUM, (0..4).map(|_| shared.view())).unwrap();
    let expected: f64 = data.iter().sum();
    assert_eq!(sums, vec![expected; 4]);
}

fn race_returns_the_first_to_finish() {
    let pool = pool(2);
    let mut handles = vec![
        pool.submit(&SLEEP_MS, 3_000).unwrap(),
        pool.submit(&SLEEP_MS, 10).unwrap(),
    ];
    let (index, result) = mirai::race(&mut handles).unwrap();
    assert_eq!((index, result.unwrap()), (1, 10));
    assert_eq!(handles.len(), 1);
    handles[0].cancel();
}

fn maxtasks_retires_a_daemon() {
    let pool = Daemons::new().local(1).maxtasks(1).start().unwrap();
    assert_eq!(pool.submit(&ADD, (1, 2)).unwrap().wait().unwrap(), 3);
    let deadline = Instant::now() + PATIENCE;
    while pool.status().connections > 0 {
        assert!(
            Instant::now() < deadline,
            "the daemon stayed after maxtasks"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.status().cumulative, 1);
}

/// A minimal executor: parks the thread until the waker fires.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
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

fn hard_cancel_kills_and_replaces_the_daemon() {
    let pool = pool(1);
    let handle = pool.submit(&SLEEP_MS, 60_000).unwrap();
    common::eventually(PATIENCE, "the task runs", || pool.status().executing == 1);
    let before = pool.local_pids();
    assert_eq!(before.len(), 1);
    let start = Instant::now();
    handle.cancel_hard();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    common::eventually(PATIENCE, "the killed daemon is reaped", || {
        !common::process_exists(before[0])
    });
    common::eventually(PATIENCE, "a replacement is launched", || {
        pool.replaced() == 1 && pool.local_pids().len() == 1
    });
    assert_ne!(pool.local_pids(), before);
    // The replacement serves work, long before the cancelled task would have ended.
    let mut next = pool.submit(&ADD, (2, 2)).unwrap();
    assert_eq!(next.wait_timeout(PATIENCE).unwrap(), 4);
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// A result from a replacement daemon means the replacement is already counted: the count is
/// read at once after each task, with no wait, many times over.
fn a_replacement_is_counted_before_it_serves() {
    const ROUNDS: u64 = 200;
    let pool = pool(1);
    let started = Instant::now();
    for round in 1..=ROUNDS {
        let handle = pool.submit(&SLEEP_MS, 60_000).unwrap();
        common::eventually(PATIENCE, "the task runs", || pool.status().executing == 1);
        handle.cancel_hard();
        assert!(matches!(handle.wait(), Err(Error::Cancelled)));
        let mut next = pool.submit(&PID, ()).unwrap();
        let served_by = next.wait_timeout(PATIENCE).unwrap();
        assert_eq!(
            pool.replaced(),
            round,
            "round {round}: daemon {served_by} served a task before it was counted"
        );
    }
    assert!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
}

fn unanswered_cancel_kills_after_the_grace() {
    let pool = Daemons::new()
        .local(1)
        .cancel_grace(Duration::from_millis(200))
        .start()
        .unwrap();
    // The cancel must reach a task that has started: one the daemon has not started yet is
    // dropped and answered at once, and then nothing is stuck.
    let mark = StartMark::new("unanswered_cancel");
    let handle = pool
        .submit(&MARK_THEN_SLEEP, (mark.path(), 60_000))
        .unwrap();
    common::eventually(PATIENCE, "the task starts", || mark.is_set());
    let before = pool.local_pids()[0];
    handle.cancel();
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
    common::eventually(PATIENCE, "the stuck daemon is killed", || {
        !common::process_exists(before)
    });
    let mut next = pool.submit(&ADD, (3, 4)).unwrap();
    assert_eq!(next.wait_timeout(PATIENCE).unwrap(), 7);
    assert_eq!(pool.replaced(), 1);
}

/// A task with a retry runs again on the replacement of its killed daemon, and keeps its
/// argument for it; the retry is used up by one loss.
fn a_task_with_retries_runs_again_after_its_daemon_is_killed() {
    let pool = pool(1);
    let mark = StartMark::new("retried");
    let options = TaskOptions::new().retries(1);
    let mut handle = pool
        .submit_with(&MARK_THEN_SLEEP, (mark.path(), 300), options)
        .unwrap();
    common::eventually(PATIENCE, "the task starts", || mark.is_set());
    let victim = mark.pid();
    mark.clear();
    kill_9(victim);
    assert_eq!(handle.wait_timeout(PATIENCE).unwrap(), 300);
    assert!(mark.is_set(), "the task ran again");
    assert_eq!(pool.replaced(), 1);
    assert_eq!(pool.status().memory.used, 0);
}

/// Once its retries are used up, a task whose daemon is lost again resolves as lost.
fn a_task_whose_retries_run_out_is_lost() {
    let pool = pool(1);
    let mark = StartMark::new("retries_run_out");
    let options = TaskOptions::new().retries(1);
    let handle = pool
        .submit_with(&MARK_THEN_SLEEP, (mark.path(), 60_000), options)
        .unwrap();
    for _ in 0..2 {
        common::eventually(PATIENCE, "the task starts", || mark.is_set());
        let victim = mark.pid();
        mark.clear();
        kill_9(victim);
    }
    assert!(matches!(handle.wait(), Err(Error::ConnectionLost)));
    assert!(!mark.is_set(), "ran a third time");
}

fn a_daemon_killed_from_outside_is_replaced() {
    let pool = pool(2);
    common::eventually(PATIENCE, "daemons connect", || {
        pool.status().connections == 2
    });
    let victim = pool.local_pids()[0];
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    common::eventually(PATIENCE, "a replacement joins", || {
        pool.replaced() == 1 && pool.status().connections == 2
    });
    assert!(!pool.local_pids().contains(&victim));
    assert_eq!(pool.map(&SQUARE, 0..20u64).unwrap()[19], 361);
}

fn respawn_off_leaves_a_killed_daemon_dead() {
    let pool = Daemons::new().local(1).respawn(false).start().unwrap();
    common::eventually(PATIENCE, "the daemon connects", || {
        pool.status().connections == 1
    });
    let victim = pool.local_pids()[0];
    let handle = pool.submit(&SLEEP_MS, 60_000).unwrap();
    common::eventually(PATIENCE, "the task runs", || pool.status().executing == 1);
    std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(matches!(handle.wait(), Err(Error::ConnectionLost)));
    common::eventually(PATIENCE, "the dead daemon is reaped", || {
        pool.local_pids().is_empty() && !common::process_exists(victim)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.replaced(), 0);
    assert_eq!(pool.status().connections, 0);
}

fn retired_daemons_are_not_replaced() {
    let pool = Daemons::new().local(1).maxtasks(1).start().unwrap();
    assert_eq!(pool.submit(&ADD, (1, 2)).unwrap().wait().unwrap(), 3);
    common::eventually(PATIENCE, "the daemon retires", || {
        pool.local_pids().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pool.replaced(), 0);
    assert_eq!(pool.status().connections, 0);
}

fn run_timeout_resolves_as_timed_out() {
    let pool = pool(1);
    let handle = pool
        .submit_with_timeout(&SLEEP_MS, 60_000, Duration::from_millis(100))
        .unwrap();
    assert!(matches!(handle.wait(), Err(Error::TimedOut)));
    let mut next = pool.submit(&ADD, (5, 5)).unwrap();
    assert_eq!(next.wait_timeout(PATIENCE).unwrap(), 10);
}

/// Many handles awaited at once on a single-threaded tokio runtime: the runtime's thread parks
/// between wakes, so each completion must wake it (a missed wake hangs until the timeout).
fn futures_complete_under_tokio() {
    let pool = pool(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let handles: Vec<_> = (0..100i64)
            .map(|i| pool.submit(&ADD, (i, i)).unwrap())
            .collect();
        let mut sum = 0;
        let join = async {
            for h in handles {
                sum += h.await.unwrap();
            }
        };
        tokio::time::timeout(PATIENCE, join).await.unwrap();
        assert_eq!(sum, (0..100i64).map(|i| 2 * i).sum::<i64>());

        // A slow task does not block the runtime, and a timeout around it works.
        let slow = pool.submit(&SLEEP_MS, 2_000).unwrap();
        let fast = pool.submit(&SLEEP_MS, 20).unwrap();
        let ticker = async {
            let mut ticks = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
                if ticks == 5 {
                    return ticks;
                }
            }
        };
        tokio::select! {
            r = slow => panic!("the slow task won: {r:?}"),
            t = ticker => assert_eq!(t, 5),
        }
        assert_eq!(
            tokio::time::timeout(PATIENCE, fast).await.unwrap().unwrap(),
            20
        );
    });
}

/// Awaiting handle after handle must not start a thread each time: the wakes come from a
/// few reused threads (a thread per await would show 200 distinct ones).
fn awaiting_reuses_completion_threads() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake};
    struct Recording {
        main: std::thread::Thread,
        wakers: Mutex<HashSet<std::thread::ThreadId>>,
    }
    impl Wake for Recording {
        fn wake(self: Arc<Self>) {
            self.wakers
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            self.main.unpark();
        }
    }
    let pool = pool(1);
    let recording = Arc::new(Recording {
        main: std::thread::current(),
        wakers: Mutex::new(HashSet::new()),
    });
    let waker = Arc::clone(&recording).into();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..200 {
        let mut handle = std::pin::pin!(pool.submit(&SLEEP_MS, 1).unwrap());
        let value = loop {
            match handle.as_mut().poll(&mut cx) {
                Poll::Ready(v) => break v.unwrap(),
                Poll::Pending => std::thread::park(),
            }
        };
        assert_eq!(value, 1);
    }
    let distinct = recording.wakers.lock().unwrap().len();
    assert!(
        (1..=3).contains(&distinct),
        "{distinct} distinct threads woke 200 sequential awaits"
    );
}

/// Without the `tls` feature the same pool is refused at start with a typed error.
fn local_daemons_join_a_tls_pool_by_pinning() {
    let started = Daemons::new().local(2).url("tls+tcp://127.0.0.1:0").start();
    #[cfg(not(feature = "tls"))]
    assert!(
        matches!(&started, Err(mirai::Error::TlsDisabled { url }) if url == "tls+tcp://127.0.0.1:0"),
        "{:?}",
        started.map(|p| p.url().to_owned())
    );
    #[cfg(feature = "tls")]
    {
        let pool = started.expect("start a tls pool");
        assert!(pool.url().starts_with("tls+tcp://"));
        assert!(pool.tls_fingerprint().is_some());
        let out = pool.map(&SQUARE, 0..20u64).unwrap();
        assert_eq!(out, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    }
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "local_daemons_join_a_tls_pool_by_pinning",
            local_daemons_join_a_tls_pool_by_pinning,
        ),
        Test::new("maxtasks_retires_a_daemon", maxtasks_retires_a_daemon),
        Test::new(
            "race_returns_the_first_to_finish",
            race_returns_the_first_to_finish,
        ),
        Test::new(
            "shared_vector_crosses_by_name",
            shared_vector_crosses_by_name,
        ),
        Test::new(
            "submit_returns_the_typed_result",
            submit_returns_the_typed_result,
        ),
        Test::new(
            "map_keeps_order_across_daemons",
            map_keeps_order_across_daemons,
        ),
        Test::new(
            "panics_come_back_as_task_errors",
            panics_come_back_as_task_errors,
        ),
        Test::new("map_stops_at_the_first_error", map_stops_at_the_first_error),
        Test::new(
            "try_submit_hands_the_argument_back_when_full",
            try_submit_hands_the_argument_back_when_full,
        ),
        Test::new("cancel_resolves_as_cancelled", cancel_resolves_as_cancelled),
        Test::new(
            "wait_timeout_and_try_result_do_not_block",
            wait_timeout_and_try_result_do_not_block,
        ),
        Test::new(
            "future_is_woken_by_completion",
            future_is_woken_by_completion,
        ),
        Test::new(
            "everywhere_reaches_every_daemon",
            everywhere_reaches_every_daemon,
        ),
        Test::new(
            "dropping_the_pool_reaps_every_daemon",
            dropping_the_pool_reaps_every_daemon,
        ),
        Test::new(
            "hard_cancel_kills_and_replaces_the_daemon",
            hard_cancel_kills_and_replaces_the_daemon,
        ),
        Test::new(
            "a_replacement_is_counted_before_it_serves",
            a_replacement_is_counted_before_it_serves,
        ),
        Test::new(
            "unanswered_cancel_kills_after_the_grace",
            unanswered_cancel_kills_after_the_grace,
        ),
        Test::new(
            "a_task_with_retries_runs_again_after_its_daemon_is_killed",
            a_task_with_retries_runs_again_after_its_daemon_is_killed,
        ),
        Test::new(
            "a_task_whose_retries_run_out_is_lost",
            a_task_whose_retries_run_out_is_lost,
        ),
        Test::new(
            "a_daemon_killed_from_outside_is_replaced",
            a_daemon_killed_from_outside_is_replaced,
        ),
        Test::new(
            "retired_daemons_are_not_replaced",
            retired_daemons_are_not_replaced,
        ),
        Test::new(
            "respawn_off_leaves_a_killed_daemon_dead",
            respawn_off_leaves_a_killed_daemon_dead,
        ),
        Test::new(
            "run_timeout_resolves_as_timed_out",
            run_timeout_resolves_as_timed_out,
        ),
        Test::new("futures_complete_under_tokio", futures_complete_under_tokio),
        Test::new(
            "awaiting_reuses_completion_threads",
            awaiting_reuses_completion_threads,
        ),
    ]);
}
