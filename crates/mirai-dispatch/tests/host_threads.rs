//! The submission handle under real threads: blocking, deadlines, wake-ups and the exact cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mirai_dispatch::{Action, Config, Core, Host, RejectReason, Reply, Task, TaskId};

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
