//! Task handles through the facade with real daemon processes: awaited handles wake exactly
//! their own task, and dropped handles never leave their result behind. This binary is its own
//! daemon program (`main` first calls `daemon_main_if_requested`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mirai::{Daemons, Error, Mirai, Pool, Registry, TaskFn, task};

mod common;

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn blob(n: usize) -> Vec<u8> {
    vec![1; n]
}

const ADD: TaskFn<(i64, i64), i64> = task!(add);
const SLEEP_MS: TaskFn<u64, u64> = task!(sleep_ms);
const BLOB: TaskFn<usize, Vec<u8>> = task!(blob);

fn registry() -> Registry {
    Registry::new().with(&ADD).with(&SLEEP_MS).with(&BLOB)
}

const PATIENCE: Duration = Duration::from_secs(30);

fn pool(n: usize) -> Pool {
    Daemons::new().local(n).start().expect("start the pool")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
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

fn poll_with<T: serde::de::DeserializeOwned>(
    handle: &mut Mirai<T>,
    waker: &Waker,
) -> Poll<Result<T, Error>> {
    Pin::new(handle).poll(&mut Context::from_waker(waker))
}

fn many_concurrent_awaits_complete_under_tokio() {
    const N: i64 = 300;
    let pool = Arc::new(pool(2));
    let sum = runtime().block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.submit(&ADD, (i, i)).unwrap().await.unwrap() })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..N).map(|i| 2 * i).sum::<i64>());
    assert_eq!(pool.retained(), 0);
}

fn dropping_a_pending_future_does_not_leak_or_cancel() {
    let pool = pool(1);
    // Connected first, so the task is sent (not queued) before the future is dropped.
    common::eventually(PATIENCE, "the daemon connects", || {
        pool.status().connections == 1
    });
    let rt = runtime();
    let timed_out = rt.block_on(async {
        let handle = pool.submit(&SLEEP_MS, 300).unwrap();
        tokio::time::timeout(Duration::from_millis(20), handle).await
    });
    assert!(timed_out.is_err(), "the task finished within 20 ms");
    // Not cancelled: the daemon finishes it before the next task (one daemon, FIFO).
    assert_eq!(pool.status().executing, 1);
    assert_eq!(pool.submit(&ADD, (1, 2)).unwrap().wait().unwrap(), 3);
    let status = pool.status();
    assert_eq!((status.completed, status.submitted), (2, 2));
    assert_eq!(pool.retained(), 0, "the dropped future's result was kept");
}

fn fire_and_forget_keeps_nothing() {
    let pool = pool(2);
    for _ in 0..200 {
        drop(pool.submit(&BLOB, 10_000).unwrap());
    }
    // Results that arrived before their drop are freed at once, later ones on arrival.
    let last: Vec<Mirai<Vec<u8>>> = (0..4).map(|_| pool.submit(&BLOB, 1).unwrap()).collect();
    for handle in last {
        assert_eq!(handle.wait().unwrap(), vec![1]);
    }
    // With two daemons some forgotten results may still be on their way: wait for them. A
    // result kept for a dropped handle would keep this above zero for good.
    common::eventually(PATIENCE, "no result is kept for a dropped handle", || {
        pool.status().completed == 204 && pool.retained() == 0
    });
}

fn the_latest_waker_is_woken_and_the_earlier_not() {
    let pool = Daemons::new().start().unwrap(); // no daemons: the task stays queued
    let mut handle = pool.submit(&ADD, (1, 2)).unwrap();
    let (tx, rx) = mpsc::channel();
    let (first, first_waker) = counting(0, &tx);
    let (second, second_waker) = counting(1, &tx);
    assert!(poll_with(&mut handle, &first_waker).is_pending());
    assert!(poll_with(&mut handle, &second_waker).is_pending());
    handle.cancel();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(1));
    assert_eq!(first.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(second.wakes.load(Ordering::SeqCst), 1);
    assert!(matches!(
        poll_with(&mut handle, &second_waker),
        Poll::Ready(Err(Error::Cancelled))
    ));
    assert_eq!(pool.retained(), 0);
}

fn one_wake_per_completed_task() {
    const N: usize = 100;
    let pool = pool(2);
    let (tx, rx) = mpsc::channel();
    let mut pending = Vec::new();
    for i in 0..N {
        let mut handle = pool.submit(&SLEEP_MS, 2).unwrap();
        let (count, waker) = counting(i, &tx);
        if poll_with(&mut handle, &waker).is_pending() {
            pending.push((handle, count, waker));
        }
    }
    assert!(
        pending.len() > N / 2,
        "most tasks were still running when first polled"
    );
    for _ in 0..pending.len() {
        rx.recv_timeout(PATIENCE).expect("a wake-up");
    }
    // A task queued behind them all: by the time it is back, every wake was delivered.
    assert_eq!(pool.submit(&ADD, (0, 0)).unwrap().wait().unwrap(), 0);
    assert!(rx.try_recv().is_err(), "more wake-ups than completed tasks");
    for (handle, count, waker) in &mut pending {
        assert_eq!(count.wakes.load(Ordering::SeqCst), 1);
        assert!(matches!(poll_with(handle, waker), Poll::Ready(Ok(2))));
    }
    assert_eq!(pool.retained(), 0);
}

/// With an uncollected-results cap, dispatch pauses while results wait for their handles and
/// resumes as they are taken: every result still arrives when they are collected.
fn uncollected_results_pause_dispatch_until_taken() {
    const TASKS: usize = 10;
    let pool = Daemons::new()
        .local(1)
        .max_uncollected_bytes(1)
        .start()
        .expect("start the pool");
    let mut handles: Vec<Mirai<Vec<u8>>> = (0..TASKS)
        .map(|_| pool.submit(&BLOB, 1_000).unwrap())
        .collect();
    common::eventually(PATIENCE, "a result arrives", || {
        pool.status().completed >= 1
    });
    // Without the cap all ten finish within milliseconds; with it, only the first and those
    // already sent ahead to the daemon can (none: nothing goes ahead of a daemon before a
    // first result shows its tasks are short, and that result pauses dispatch).
    std::thread::sleep(Duration::from_millis(300));
    let status = pool.status();
    assert!(status.completed <= 5, "{status:?}");
    assert!(status.memory.uncollected >= 1_000, "{status:?}");
    assert_eq!(status.memory.uncollected_capacity, Some(1));
    for handle in &mut handles {
        assert_eq!(handle.wait_timeout(PATIENCE).unwrap().len(), 1_000);
    }
    let status = pool.status();
    assert_eq!(
        (status.completed, status.memory.uncollected),
        (TASKS as u64, 0)
    );
}

/// `submit_async` on a full cap waits without blocking the executor's only thread: another task
/// on that thread frees the room, and the submission then completes.
fn submit_async_waits_for_room_without_blocking_the_executor() {
    // No daemons, so nothing drains the 3-byte queue: (1, 2) takes all three (a format byte
    // and one per number).
    let pool = Daemons::new().max_queued_bytes(3).start().unwrap();
    let first = pool.submit(&ADD, (1, 2)).unwrap();
    // The future owns what it needs ('static and Send): it can move to another thread.
    let second = pool.submit_async(&ADD, (3, 4));
    let (tx, rx) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async move {
            let producer = tokio::spawn(second);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let waited = !producer.is_finished();
            // Only reachable if the producer left this thread free.
            first.cancel();
            let second = producer.await.unwrap();
            (waited, second.is_ok())
        });
        tx.send(out).unwrap();
    });
    let (waited, submitted) = rx
        .recv_timeout(PATIENCE)
        .expect("the executor's thread stayed blocked");
    runner.join().unwrap();
    assert!(waited, "submitted while the cap was full");
    assert!(submitted);
    let status = pool.status();
    assert_eq!((status.submitted, status.awaiting), (2, 1));
    assert_eq!(status.memory.used, 3);
    // A task that can never fit is refused at once, as by `submit`.
    let rt = runtime();
    assert!(matches!(
        rt.block_on(pool.submit_async(&ADD, (300, 400))),
        Err(Error::TooLarge { .. })
    ));
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "many_concurrent_awaits_complete_under_tokio",
            many_concurrent_awaits_complete_under_tokio,
        ),
        Test::new(
            "dropping_a_pending_future_does_not_leak_or_cancel",
            dropping_a_pending_future_does_not_leak_or_cancel,
        ),
        Test::new(
            "fire_and_forget_keeps_nothing",
            fire_and_forget_keeps_nothing,
        ),
        Test::new(
            "the_latest_waker_is_woken_and_the_earlier_not",
            the_latest_waker_is_woken_and_the_earlier_not,
        ),
        Test::new("one_wake_per_completed_task", one_wake_per_completed_task),
        Test::new(
            "submit_async_waits_for_room_without_blocking_the_executor",
            submit_async_waits_for_room_without_blocking_the_executor,
        ),
        Test::new(
            "uncollected_results_pause_dispatch_until_taken",
            uncollected_results_pause_dispatch_until_taken,
        ),
    ]);
}
