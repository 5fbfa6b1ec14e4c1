//! A caller waiting for a result reads its daemon's connection itself (the connection's lease and
//! borrow), with real daemon processes and hand-made peers: nothing is lost or resolved twice
//! when many threads do it at once, a result nobody waits for is still read, a daemon whose
//! messages only callers read is not taken for silent, and what a caller reads is judged as
//! strictly as what the dispatcher thread reads.
//!
//! Every process a test starts is killed and reaped by a guard, whether the test passes or not.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::ToDaemon;
use mirai_dispatch::{
    CancelMode, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task, TaskId,
};
use util::shell::{DemoDaemon, PATIENCE, RawPeer, TOKEN, credential, eventually, wait_event};

fn start(heartbeat: Option<Duration>) -> (Dispatcher, Receiver<DaemonEvent>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = format!(
        "abstract://mirai-caller-reads-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let config = DispatcherConfig::new(url, TOKEN.to_vec()).with_heartbeat(heartbeat);
    Dispatcher::start(config).expect("start the dispatcher")
}

fn joined(events: &Receiver<DaemonEvent>) {
    wait_event(events, |e| matches!(e, DaemonEvent::Joined { .. }));
}

/// A task that sleeps a minute without looking at its cancel token.
fn long_task(d: &Dispatcher) -> TaskId {
    let minute = postcard::to_allocvec(&60_000u64).unwrap();
    d.submit(Task::new("sleep_ms", minute), None).unwrap()
}

/// Waits for `id` on a thread of its own (at most `timeout`); the outcome and how long it took.
fn wait_in_thread(
    d: &Arc<Dispatcher>,
    id: TaskId,
    timeout: Duration,
) -> std::thread::JoinHandle<(Option<Outcome>, Duration)> {
    let d = Arc::clone(d);
    std::thread::spawn(move || {
        let t = Instant::now();
        (d.wait(id, Some(timeout)), t.elapsed())
    })
}

#[test]
fn round_trips_from_many_threads_each_get_their_own_value_once() {
    let (d, events) = start(None);
    let _daemons: Vec<DemoDaemon> = (1..=2).map(|id| DemoDaemon::launch(d.url(), id)).collect();
    joined(&events);
    joined(&events);
    let d = Arc::new(d);
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 500;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let d = Arc::clone(&d);
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let arg = [t.to_le_bytes(), i.to_le_bytes()].concat();
                    let id = d.submit(Task::new("echo", arg.clone()), None).unwrap();
                    match d.wait(id, Some(PATIENCE)) {
                        Some(Outcome::Value(v)) => assert_eq!(&*v, &arg[..]),
                        other => panic!("thread {t}, round {i}: {other:?}"),
                    }
                    // Taken once: nothing is left to take.
                    assert_eq!(d.wait(id, Some(Duration::ZERO)), None);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a caller thread");
    }
    let status = d.status();
    assert_eq!(status.submitted, u64::from(THREADS * ROUNDS));
    assert_eq!(status.completed, status.submitted);
    assert_eq!(status.executing, 0);
    assert_eq!(d.retained(), 0, "an outcome or a waker stayed behind");
}

#[test]
fn a_result_nobody_waits_for_is_read_when_the_lease_runs_out() {
    let (d, events) = start(None);
    let _daemon = DemoDaemon::launch(d.url(), 1);
    joined(&events);
    // Warm: the daemon is idle, and the last waiter kept its connection leased.
    util::shell::run_echo_tasks(&d, 3);
    let id = d.submit(Task::new("echo", vec![1, 2, 3]), None).unwrap();
    // Nobody waits or polls: only the dispatcher thread, once the lease has run out, reads the
    // result, and the core counts the task completed.
    assert!(
        eventually(PATIENCE, || d.status().completed == 4),
        "the result stayed unread: {:?}",
        d.status()
    );
    assert_eq!(d.status().executing, 0);
    assert_eq!(
        d.wait(id, Some(Duration::ZERO)),
        Some(Outcome::Value(vec![1, 2, 3].into()))
    );
}

#[test]
fn a_result_a_future_polls_for_is_read_by_the_dispatcher_thread() {
    let (d, events) = start(None);
    let _daemon = DemoDaemon::launch(d.url(), 1);
    joined(&events);
    util::shell::run_echo_tasks(&d, 3);
    let woken = Arc::new(Woken::default());
    let waker = std::task::Waker::from(Arc::clone(&woken));
    for round in 0..50u8 {
        let id = d.submit(Task::new("echo", vec![round]), None).unwrap();
        // The first poll ends the submitter's lease: the dispatcher thread reads the result
        // and wakes the future (no thread waits on the connection here).
        let before = woken.0.load(Ordering::SeqCst);
        let mut outcome = d.poll_outcome(id, &waker);
        if outcome.is_none() {
            assert!(
                eventually(PATIENCE, || woken.0.load(Ordering::SeqCst) > before),
                "round {round}: the future was never woken"
            );
            outcome = d.poll_outcome(id, &waker);
        }
        assert_eq!(outcome, Some(Outcome::Value(vec![round].into())));
    }
}

#[derive(Default)]
struct Woken(AtomicU32);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_daemon_whose_messages_only_callers_read_is_not_taken_for_silent() {
    // Four missed beats of 25 ms: a daemon unheard for 100 ms is dropped.
    let heartbeat = Duration::from_millis(25);
    let (d, events) = start(Some(heartbeat));
    let _daemon = DemoDaemon::launch(d.url(), 1);
    joined(&events);
    // Round trips back to back for many silence limits: the callers read every message the
    // daemon sends, its heartbeats included (the connection stays leased from one round trip
    // to the next), and the dispatcher thread must count them as the daemon's word.
    let until = Instant::now() + heartbeat * 40;
    let mut n = 0u32;
    while Instant::now() < until {
        let id = d
            .submit(Task::new("echo", n.to_le_bytes().to_vec()), None)
            .unwrap();
        assert_eq!(
            d.wait(id, Some(PATIENCE)),
            Some(Outcome::Value(n.to_le_bytes().to_vec().into()))
        );
        n += 1;
    }
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, DaemonEvent::Left { .. }),
            "the daemon was dropped: {event:?}"
        );
    }
    assert_eq!(d.status().connections, 1);
}

#[test]
fn a_waiter_sees_its_task_cancelled_by_another_thread() {
    let (d, events) = start(None);
    let _daemon = DemoDaemon::launch(d.url(), 1);
    joined(&events);
    util::shell::run_echo_tasks(&d, 2);
    let d = Arc::new(d);
    let id = long_task(&d);
    let waiter = wait_in_thread(&d, id, PATIENCE);
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.cancel(id, CancelMode::Soft));
    let (outcome, took) = waiter.join().expect("the waiter");
    assert_eq!(outcome, Some(Outcome::Cancelled));
    assert!(took < PATIENCE, "the waiter waited out its patience");
    // The daemon serves on.
    util::shell::run_echo_tasks(&d, 2);
}

#[test]
fn a_waiter_on_a_daemon_that_dies_hears_of_the_loss_and_the_pool_serves_on() {
    let (d, events) = start(None);
    let mut first = DemoDaemon::launch(d.url(), 1);
    joined(&events);
    util::shell::run_echo_tasks(&d, 2);
    let d = Arc::new(d);
    let id = d
        .submit(Task::new("pid", postcard::to_allocvec(&()).unwrap()), None)
        .unwrap();
    let first_pid = match d.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => postcard::from_bytes::<u32>(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first_pid, first.0.id());
    let id = long_task(&d);
    let waiter = wait_in_thread(&d, id, PATIENCE);
    std::thread::sleep(Duration::from_millis(100));
    // Killed while a caller may be waiting on its connection: the close reaches the dispatcher
    // thread, which resolves the task (a started task is not run twice).
    first.0.kill().expect("kill the daemon");
    let (outcome, _) = waiter.join().expect("the waiter");
    assert_eq!(outcome, Some(Outcome::ConnectionLost));
    wait_event(&events, |e| matches!(e, DaemonEvent::Left { .. }));
    let _second = DemoDaemon::launch(d.url(), 2);
    joined(&events);
    util::shell::run_echo_tasks(&d, 2);
}

#[test]
fn a_malformed_message_a_waiter_reads_drops_the_daemon() {
    let (d, events) = start(None);
    let mut peer = RawPeer::connect(d.url()).expect("connect");
    assert!(matches!(
        peer.hello(1, &credential(1)),
        Some(ToDaemon::Init(_))
    ));
    joined(&events);
    let id = d.submit(Task::new("echo", vec![9]), None).unwrap();
    assert!(matches!(peer.read_message(), Some(ToDaemon::Task { .. })));
    let d = Arc::new(d);
    let waiter = wait_in_thread(&d, id, Duration::from_secs(5));
    // Well within the waiter's first read of the connection (it reads for up to 50 ms).
    std::thread::sleep(Duration::from_millis(10));
    // A well-framed message that is not our protocol.
    use std::io::Write;
    let body = [0u8, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
    let mut frame = vec![1];
    frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    frame.extend_from_slice(&body);
    peer.stream.write_all(&frame).expect("write");
    wait_event(&events, |e| matches!(e, DaemonEvent::Left { .. }));
    // The dispatcher closed the connection.
    peer.drain();
    let _ = waiter.join().expect("the waiter returns");
}
