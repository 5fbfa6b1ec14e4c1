//! The submission handle under real threads: blocking, deadlines, wake-ups and the exact cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mirai_dispatch::{Action, Config, Core, Host, RejectReason, Reply, Task, TaskId};
use proptest::prelude::*;

const PATIENCE: Duration = Duration::from_secs(30);

fn host(cap: u64) -> Host {
    Host::new(Core::new(Config::default().with_max_queued_bytes(cap)))
}

#[test]
fn a_blocked_submit_proceeds_when_dispatch_frees_bytes() {
    let host = host(10);
    host.try_submit(Task::new("f", vec![0; 10])).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let submitter = thread::spawn(move || tx.send(h.submit(Task::new("f", vec![0; 5]), None)));
    thread::sleep(Duration::from_millis(50));
    assert!(
        rx.try_recv().is_err(),
        "submit must wait while the budget is full"
    );
    assert_eq!(host.status().submitted, 1);
    // The dispatcher thread connects a daemon: the queued task leaves, its bytes are released.
    host.lock().daemon_connected(true, Instant::now());
    let second = rx.recv_timeout(PATIENCE).unwrap().unwrap();
    submitter.join().unwrap().unwrap();
    assert_eq!(second, TaskId(1));
    assert_eq!(host.status().memory.used, 5);
}

#[test]
fn a_deadline_bounds_the_wait_and_hands_the_task_back() {
    let host = host(4);
    host.try_submit(Task::new("f", vec![0; 4])).unwrap();
    let start = Instant::now();
    let refused = host
        .submit(
            Task::new("g", vec![1; 2]),
            Some(start + Duration::from_millis(20)),
        )
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(refused.reason, RejectReason::Full);
    assert_eq!(refused.task.function, "g");
}

#[test]
fn submissions_that_can_never_fit_do_not_wait() {
    let host = host(4);
    let refused = host.submit(Task::new("f", vec![0; 5]), None).unwrap_err();
    assert!(matches!(refused.reason, RejectReason::TooLarge { .. }));
    host.try_submit(Task::new("f", vec![0; 4])).unwrap();
    assert_eq!(
        host.try_submit(Task::new("f", vec![0; 1]))
            .unwrap_err()
            .reason,
        RejectReason::Full
    );
}

#[test]
fn shutdown_wakes_blocked_submitters() {
    let host = host(1);
    host.try_submit(Task::new("f", vec![0])).unwrap();
    let h = host.clone();
    let blocked = thread::spawn(move || h.submit(Task::new("f", vec![0]), None));
    thread::sleep(Duration::from_millis(20));
    host.shutdown();
    let refused = blocked.join().unwrap().unwrap_err();
    assert_eq!(refused.reason, RejectReason::ShutDown);
}

#[test]
fn host_calls_that_leave_work_notify_the_dispatcher_thread() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let host = Host::with_notify(Core::new(Config::default()), move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let id = host.try_submit(Task::new("f", vec![])).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "queued, nothing to send yet"
    );
    host.lock().daemon_connected(true, Instant::now());
    assert!(host.cancel(id, mirai_dispatch::CancelMode::Soft));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the cancel left actions");
}

#[derive(Debug, Clone)]
enum HostOp {
    TrySubmit(usize),
    Cancel(usize),
    Connect,
    Shutdown,
}

fn host_op() -> impl Strategy<Value = HostOp> {
    prop_oneof![
        8 => (0..14usize).prop_map(HostOp::TrySubmit),
        3 => (0..16usize).prop_map(HostOp::Cancel),
        2 => Just(HostOp::Connect),
        1 => Just(HostOp::Shutdown),
    ]
}

proptest! {
    /// `try_submit` refuses a full queue without the lock: its answers (accepted with the
    /// same id, or refused for the same reason) are the bare core's for every sequence of
    /// submissions, cancels (which release bytes), dispatches and a shutdown, with and without
    /// a message limit below the cap.
    #[test]
    fn try_submit_answers_as_the_core_does(
        ops in proptest::collection::vec(host_op(), 1..60),
        limit in proptest::option::of(4..12u64),
    ) {
        let mut config = Config::default().with_max_queued_bytes(10);
        if let Some(limit) = limit {
            config = config.with_max_message_bytes(limit);
        }
        let host = Host::new(Core::new(config.clone()));
        let mut core = Core::new(config);
        let mut ids = Vec::new();
        let now = Instant::now();
        for op in ops {
            match op {
                HostOp::TrySubmit(size) => {
                    let got = host.try_submit(Task::new("f", vec![0; size]));
                    let want = core.submit(Task::new("f", vec![0; size]), now);
                    match (got, want) {
                        (Ok(a), Ok(b)) => {
                            prop_assert_eq!(a, b);
                            ids.push(a);
                        }
                        (Err(a), Err(b)) => {
                            prop_assert_eq!(a.reason, b.reason);
                            prop_assert_eq!(a.task.payload.len(), size);
                        }
                        (got, want) => prop_assert!(false, "host {got:?}, core {want:?}"),
                    }
                }
                HostOp::Cancel(i) => {
                    if let Some(&id) = ids.get(i) {
                        let a = host.cancel(id, mirai_dispatch::CancelMode::Soft);
                        prop_assert_eq!(a, core.cancel(id, mirai_dispatch::CancelMode::Soft, now));
                    }
                }
                HostOp::Connect => {
                    host.lock().daemon_connected(true, now);
                    core.daemon_connected(true, now);
                }
                HostOp::Shutdown => {
                    host.shutdown();
                    core.shutdown(now);
                }
            }
            while core.poll_action().is_some() {}
            let mut guard = host.lock();
            while guard.poll_action().is_some() {}
            drop(guard);
            prop_assert_eq!(host.status().memory.used, core.status().memory.used);
        }
    }
}

/// Several host threads submit with `submit` and `try_submit` while a dispatcher thread runs
/// two daemons; the cap holds at every observation and every task resolves exactly once.
#[test]
fn concurrent_submitters_never_exceed_the_cap_and_every_task_resolves_once() {
    const CAP: u64 = 64;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 150;
    let host = host(CAP);
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = host.clone();
            thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..PER_THREAD {
                    let size = 1 + (t * 7 + i * 13) % 20;
                    let task = Task::new("f", vec![0; size]);
                    let id = if i % 3 == 0 {
                        match h.try_submit(task) {
                            Ok(id) => id,
                            Err(r) => h.submit(r.task, None).unwrap(),
                        }
                    } else {
                        h.submit(task, None).unwrap()
                    };
                    ids.push(id);
                }
                ids
            })
        })
        .collect();

    let total = THREADS * PER_THREAD;
    let mut resolved: HashMap<TaskId, usize> = HashMap::new();
    let mut running = Vec::new();
    {
        let mut core = host.lock();
        core.daemon_connected(true, Instant::now());
        core.daemon_connected(false, Instant::now());
    }
    let give_up = Instant::now() + PATIENCE;
    while resolved.len() < total {
        assert!(Instant::now() < give_up, "dispatch stalled");
        let mut core = host.lock();
        let now = Instant::now();
        for (daemon, task) in running.drain(..) {
            core.on_result(daemon, task, Reply::Value(vec![1].into()), false, now)
                .unwrap();
        }
        while let Some(action) = core.poll_action() {
            match action {
                Action::Send { daemon, task, .. } => running.push((daemon, task)),
                Action::Resolve { task, .. } => *resolved.entry(task).or_default() += 1,
                _ => {}
            }
        }
        let s = core.status();
        assert!(s.memory.used <= CAP, "used {} over the cap", s.memory.used);
        drop(core);
        thread::yield_now();
    }
    let mut ids: Vec<TaskId> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total);
    assert!(resolved.values().all(|&n| n == 1));
    assert!(ids.iter().all(|id| resolved.contains_key(id)));
    let s = host.status();
    assert!(s.memory.peak <= CAP);
    assert_eq!(s.completed, total as u64);
}

#[test]
fn wait_for_room_returns_when_bytes_are_released_and_on_shutdown() {
    let host = host(10);
    let queued = host.try_submit(Task::new("f", vec![0; 8])).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let waiter = thread::spawn(move || tx.send(h.wait_for_room(5, None)));
    thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "no room for 5 of 10 with 8 used");
    assert!(host.cancel(queued, mirai_dispatch::CancelMode::Soft));
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), Ok(()));
    waiter.join().unwrap().unwrap();
    assert_eq!(host.status().memory.used, 0, "room is not reserved");

    host.try_submit(Task::new("f", vec![0; 10])).unwrap();
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let waiter = thread::spawn(move || tx.send(h.wait_for_room(1, None)));
    thread::sleep(Duration::from_millis(50));
    host.shutdown();
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        Err(RejectReason::ShutDown)
    );
    waiter.join().unwrap().unwrap();
}

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Count>, std::task::Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Arc::clone(&count), std::task::Waker::from(count))
}

#[test]
fn a_room_future_is_woken_when_bytes_are_released_and_resolves_then() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let host = host(10);
    let first = host.try_submit(Task::new("f", vec![0; 8])).unwrap();
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut room = std::pin::pin!(host.room(5));
    assert!(room.as_mut().poll(&mut cx).is_pending());
    // Polled again before any release: still one registration, still pending.
    assert!(room.as_mut().poll(&mut cx).is_pending());
    host.try_submit(Task::new("f", vec![0; 1])).unwrap();
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "no bytes were released");
    assert!(host.cancel(first, mirai_dispatch::CancelMode::Soft));
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake per release");
    assert_eq!(room.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    // The room is not reserved: the task that fits is submitted by the caller.
    host.try_submit(Task::new("f", vec![0; 5])).unwrap();
    assert_eq!(host.status().memory.used, 6);
}

#[test]
fn a_room_future_ends_with_shutdown_too_large_at_once_and_unregisters_on_drop() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let host = host(10);
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        std::pin::pin!(host.room(11)).poll(&mut cx),
        Poll::Ready(Err(RejectReason::TooLarge {
            size: 11,
            capacity: 10
        }))
    ));
    let first = host.try_submit(Task::new("f", vec![0; 10])).unwrap();
    // A future dropped while pending is not woken later.
    {
        let mut dropped = std::pin::pin!(host.room(1));
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
    }
    assert!(host.cancel(first, mirai_dispatch::CancelMode::Soft));
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        0,
        "a dropped future was woken"
    );
    host.try_submit(Task::new("f", vec![0; 10])).unwrap();
    let mut room = std::pin::pin!(host.room(1));
    assert!(room.as_mut().poll(&mut cx).is_pending());
    host.shutdown();
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "shutdown wakes it");
    assert_eq!(
        room.as_mut().poll(&mut cx),
        Poll::Ready(Err(RejectReason::ShutDown))
    );
}

/// Many producers on their own threads, each awaiting room before every submit: the cap holds,
/// and every one finishes (no wake is lost between a check and a registration).
#[test]
fn room_futures_on_many_threads_lose_no_wake() {
    const PRODUCERS: usize = 4;
    const EACH: usize = 200;
    let host = host(16);
    let done = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let host = host.clone();
            let done = Arc::clone(&done);
            thread::spawn(move || {
                for _ in 0..EACH {
                    loop {
                        block_on(host.room(4)).unwrap();
                        if host.try_submit(Task::new("f", vec![0; 4])).is_ok() {
                            break;
                        }
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // The consumer: a daemon that answers each task at once.
    let mut core = host.lock();
    core.daemon_connected(true, Instant::now());
    drop(core);
    let deadline = Instant::now() + PATIENCE;
    let mut answered = 0;
    while answered < PRODUCERS * EACH {
        assert!(Instant::now() < deadline, "producers stalled at {answered}");
        let mut core = host.lock();
        assert!(core.status().memory.used <= 16);
        let mut sent = Vec::new();
        while let Some(action) = core.poll_action() {
            if let Action::Send { daemon, task, .. } = action {
                sent.push((daemon, task));
            }
        }
        for (daemon, task) in sent {
            core.on_result(
                daemon,
                task,
                Reply::Value(vec![].into()),
                false,
                Instant::now(),
            )
            .unwrap();
            answered += 1;
        }
        drop(core);
        thread::yield_now();
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), PRODUCERS);
}

/// Polls `future` on this thread until it resolves, parking between wakes.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}
