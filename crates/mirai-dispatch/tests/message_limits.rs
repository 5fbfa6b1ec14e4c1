//! The message limit: the dispatcher refuses larger arguments at submit, hands it to each daemon
//! in the init message, and a daemon answers a larger result with its size instead of sending
//! it, staying connected.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use std::io::Write;

use mirai_dispatch::protocol::{FromDaemon, Limits, ResultStatus, ToDaemon};
use mirai_dispatch::{
    Config, DaemonEvent, Dispatcher, DispatcherConfig, Outcome, RejectReason, Task, TaskId,
};

mod util;
use util::shell::RawPeer;

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "pool-token-for-the-shell-tests-2f9c";
const LIMIT: u64 = 64 << 10;

/// A demo daemon process, killed and reaped whatever happens to the test.
struct Daemon(util::Reaped);

impl Daemon {
    fn spawn(url: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url])
            .env("MIRAI_DAEMON_TOKEN", TOKEN)
            .spawn()
            .expect("spawn the demo daemon");
        Self(util::Reaped(child))
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

fn start(limit: u64) -> (Dispatcher, Receiver<DaemonEvent>) {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = format!(
        "abstract://mirai-dispatch-limits-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut config = DispatcherConfig::new(url, TOKEN.as_bytes().to_vec())
        .with_core(Config::default().with_max_queued_bytes(1 << 30));
    config.limits = Limits::new(limit);
    Dispatcher::start(config).expect("start the dispatcher")
}

fn joined(events: &Receiver<DaemonEvent>) {
    let event = events.recv_timeout(PATIENCE).expect("a daemon event");
    assert!(matches!(event, DaemonEvent::Joined { .. }), "{event:?}");
}

#[test]
fn an_argument_over_the_limit_is_refused_at_submit_and_handed_back() {
    let (dispatcher, events) = start(LIMIT);
    let _daemon = Daemon::spawn(dispatcher.url());
    joined(&events);
    let over = LIMIT as usize + 1;
    let refused = dispatcher
        .submit(Task::new("echo", vec![3; over]), None)
        .unwrap_err();
    assert_eq!(
        refused.reason,
        RejectReason::MessageTooLarge {
            size: over as u64,
            limit: LIMIT
        }
    );
    assert_eq!(refused.task.payload.len(), over, "the task is handed back");
    let refused = dispatcher.try_submit(refused.task).unwrap_err();
    assert!(matches!(
        refused.reason,
        RejectReason::MessageTooLarge { .. }
    ));
    let refused = dispatcher.everywhere(refused.task, 1, None).unwrap_err();
    assert!(matches!(
        refused.reason,
        RejectReason::MessageTooLarge { .. }
    ));
    assert_eq!(dispatcher.status().submitted, 0, "nothing was queued");
    assert_eq!(dispatcher.status().memory.used, 0, "no bytes were reserved");

    // Exactly the limit goes both ways.
    let id = dispatcher
        .submit(Task::new("echo", vec![5; LIMIT as usize]), None)
        .unwrap();
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(&*v, &vec![5; LIMIT as usize][..]),
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[test]
fn a_result_over_the_limit_resolves_typed_and_the_daemon_serves_on() {
    let (dispatcher, events) = start(LIMIT);
    let mut daemon = Daemon::spawn(dispatcher.url());
    joined(&events);
    let id = dispatcher
        .submit(Task::new("zeros", (LIMIT + 1).to_le_bytes().to_vec()), None)
        .unwrap();
    assert_eq!(
        dispatcher.wait(id, Some(PATIENCE)),
        Some(Outcome::ResultTooLarge {
            size: LIMIT + 1,
            limit: LIMIT
        })
    );
    // Same connection, same process: it serves the next task.
    let id = dispatcher
        .submit(Task::new("zeros", LIMIT.to_le_bytes().to_vec()), None)
        .unwrap();
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(v.len() as u64, LIMIT),
        other => panic!("expected a value, got {other:?}"),
    }
    assert!(daemon.running());
    assert_eq!(dispatcher.status().connections, 1);
    assert_eq!(dispatcher.status().cumulative, 1, "never reconnected");
    assert!(
        events.try_recv().is_err(),
        "no daemon left or joined meanwhile"
    );
}

/// A result frame as a daemon on a local socket sends it: type byte, u64 length, PAIR1 header,
/// envelope, value.
fn result_frame(task: TaskId, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 1];
    FromDaemon::Result {
        task,
        status: ResultStatus::Ok,
        last: false,
    }
    .encode(&mut body)
    .unwrap();
    body.extend_from_slice(value);
    let mut frame = vec![1];
    frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A daemon that says hello by hand; returns it with the task it was then sent.
fn raw_daemon(dispatcher: &Dispatcher, events: &Receiver<DaemonEvent>) -> (RawPeer, TaskId) {
    let mut peer = RawPeer::connect(dispatcher.url()).unwrap();
    match peer.hello(0, TOKEN.as_bytes()) {
        // The handshake carries the pool's limit.
        Some(ToDaemon::Init(init)) => assert_eq!(init.max_message, LIMIT),
        other => panic!("expected an init, got {other:?}"),
    }
    joined(events);
    let id = dispatcher.submit(Task::new("echo", vec![1]), None).unwrap();
    match peer.read_message() {
        Some(ToDaemon::Task { task, .. }) => assert_eq!(task, id),
        other => panic!("expected the task, got {other:?}"),
    }
    (peer, id)
}

#[test]
fn the_dispatcher_takes_a_result_of_the_limit_and_closes_on_a_larger_one() {
    let (dispatcher, events) = start(LIMIT);
    let (mut peer, id) = raw_daemon(&dispatcher, &events);
    peer.stream
        .write_all(&result_frame(id, &vec![9; LIMIT as usize]))
        .unwrap();
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert_eq!(v.len() as u64, LIMIT),
        other => panic!("expected the value, got {other:?}"),
    }
    // One byte more is a protocol violation: the connection is closed and the task is lost.
    let id = dispatcher.submit(Task::new("echo", vec![2]), None).unwrap();
    assert!(matches!(
        peer.read_message(),
        Some(ToDaemon::Task { task, .. }) if task == id
    ));
    let _ = peer
        .stream
        .write_all(&result_frame(id, &vec![9; LIMIT as usize + 1]));
    assert_eq!(
        dispatcher.wait(id, Some(PATIENCE)),
        Some(Outcome::ConnectionLost)
    );
    peer.drain();
    assert_eq!(dispatcher.status().connections, 0);
}

#[test]
fn a_message_longer_to_cross_than_the_silence_limit_is_not_taken_for_silence() {
    // Heartbeats every 50 ms: 200 ms of silence means a lost peer, less than 512 MiB takes to
    // cross each way here, with the heartbeats queued behind it.
    let url = format!(
        "abstract://mirai-dispatch-limits-slow-{}",
        std::process::id()
    );
    let config = DispatcherConfig::new(url, TOKEN.as_bytes().to_vec())
        .with_heartbeat(Some(Duration::from_millis(50)));
    let (dispatcher, events) = Dispatcher::start(config).expect("start the dispatcher");
    let mut daemon = Daemon::spawn(dispatcher.url());
    joined(&events);
    let len = 512 << 20;
    let id = dispatcher
        .submit(Task::new("echo", vec![0xA5; len]), None)
        .unwrap();
    match dispatcher.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => assert!(*v == vec![0xA5; len][..]),
        other => panic!("expected the echo, got {other:?}"),
    }
    assert!(daemon.running());
    assert_eq!(dispatcher.status().cumulative, 1, "never reconnected");
    assert!(events.try_recv().is_err(), "no daemon left or joined");
}
