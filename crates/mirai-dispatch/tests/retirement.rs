//! How a departure is judged: a daemon that leaves by its own rules says so in-band
//! (`FromDaemon::Retiring`) and its `DaemonEvent::Left` carries the rule; every other departure
//! is a loss (`retired: None`), whatever the exit code. And once a launcher gives up starting
//! daemons (`strand`), tasks that find none connected resolve `Outcome::NoDaemons`.

mod util;

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::daemon::ExitReason;
use mirai_dispatch::protocol::{FromDaemon, ToDaemon};
use mirai_dispatch::{
    Config, DaemonEvent, DaemonExit, Dispatcher, DispatcherConfig, NoDaemons, Outcome, Task,
};
use util::Driver;
use util::shell::{
    DemoDaemon, PATIENCE, RawPeer, TOKEN, credential, eventually, unique, wait_event,
};

fn start(name: &str) -> (Dispatcher, Receiver<DaemonEvent>) {
    let url = format!("abstract://{}", unique(name));
    Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec())).expect("start")
}

/// Waits for launch `id`'s departure and returns whether (and why) it retired.
fn left(events: &Receiver<DaemonEvent>, id: u64) -> Option<ExitReason> {
    match wait_event(
        events,
        |e| matches!(e, DaemonEvent::Left { launch_id, .. } if *launch_id == id),
    ) {
        DaemonEvent::Left { retired, .. } => retired,
        _ => unreachable!(),
    }
}

fn joined(events: &Receiver<DaemonEvent>, id: u64) {
    wait_event(
        events,
        |e| matches!(e, DaemonEvent::Joined { launch_id, .. } if *launch_id == id),
    );
}

fn task<A: serde::Serialize>(function: &str, arg: &A) -> Task {
    Task::new(function, postcard::to_allocvec(arg).unwrap())
}

#[test]
fn an_idle_retirement_is_announced_while_a_task_exiting_with_the_same_code_is_a_loss() {
    let (d, events) = start("retire-idle");
    let mut idle = DemoDaemon::launch_with(d.url(), 1, &["--idletime-ms", "300"]);
    joined(&events, 1);
    assert_eq!(left(&events, 1), Some(ExitReason::IdleTime));
    assert_eq!(idle.wait_exit().code(), Some(ExitReason::IdleTime.code()));

    // Exit code 1 again, from task code this time: a loss.
    let mut victim = DemoDaemon::launch(d.url(), 2);
    joined(&events, 2);
    let id = d.submit(task("exit", &1i32), None).unwrap();
    assert_eq!(d.wait(id, Some(PATIENCE)), Some(Outcome::ConnectionLost));
    assert_eq!(left(&events, 2), None);
    assert_eq!(victim.wait_exit().code(), Some(1));
}

#[test]
fn maxtasks_and_walltime_retirements_name_their_rule() {
    let (d, events) = start("retire-rules");
    let mut once = DemoDaemon::launch_with(d.url(), 1, &["--maxtasks", "1"]);
    joined(&events, 1);
    let id = d.submit(Task::new("echo", b"x".to_vec()), None).unwrap();
    assert!(matches!(
        d.wait(id, Some(PATIENCE)),
        Some(Outcome::Value(_))
    ));
    assert_eq!(left(&events, 1), Some(ExitReason::MaxTasks));
    assert_eq!(once.wait_exit().code(), Some(3));

    let mut timed = DemoDaemon::launch_with(d.url(), 2, &["--walltime-ms", "300"]);
    joined(&events, 2);
    assert_eq!(left(&events, 2), Some(ExitReason::WallTime));
    assert_eq!(timed.wait_exit().code(), Some(2));
}

#[test]
fn a_daemon_killed_or_exiting_with_code_zero_is_lost() {
    let (d, events) = start("retire-lost");
    let mut killed = DemoDaemon::launch(d.url(), 1);
    joined(&events, 1);
    killed.0.kill().unwrap();
    assert_eq!(left(&events, 1), None);
    assert_eq!(killed.wait_exit().signal(), Some(9));

    // Code 0 is what a daemon whose host went away exits with; from a task it is a loss.
    let mut zero = DemoDaemon::launch(d.url(), 2);
    joined(&events, 2);
    let id = d.submit(task("exit", &0i32), None).unwrap();
    assert_eq!(d.wait(id, Some(PATIENCE)), Some(Outcome::ConnectionLost));
    assert_eq!(left(&events, 2), None);
    assert_eq!(zero.wait_exit().code(), Some(0));
}

#[test]
fn daemons_released_at_shutdown_are_reported_retired() {
    let (d, events) = start("retire-shutdown");
    let _daemon = DemoDaemon::launch(d.url(), 1);
    joined(&events, 1);
    d.shutdown();
    assert_eq!(left(&events, 1), Some(ExitReason::HostGone));
}

#[test]
fn a_retiring_daemon_gets_no_more_work_and_its_departure_keeps_the_queue() {
    let (d, events) = start("retire-raw");
    let mut peer = RawPeer::connect(d.url()).unwrap();
    assert!(matches!(
        peer.hello(1, &credential(1)),
        Some(ToDaemon::Init(_))
    ));
    joined(&events, 1);
    assert_eq!(d.status().connections, 1);
    peer.send(&FromDaemon::Retiring {
        reason: ExitReason::IdleTime,
    })
    .unwrap();
    assert!(
        eventually(PATIENCE, || d.status().connections == 0),
        "still counted after retiring"
    );
    let id = d.submit(Task::new("echo", b"x".to_vec()), None).unwrap();
    // Nothing but heartbeats reaches the retiring daemon.
    peer.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        match peer.read_message() {
            Some(ToDaemon::Heartbeat) => {}
            None => break,
            Some(other) => panic!("a retiring daemon was sent {other:?}"),
        }
    }
    drop(peer);
    assert_eq!(left(&events, 1), Some(ExitReason::IdleTime));
    let s = d.status();
    assert_eq!((s.awaiting, s.completed), (1, 0), "the task still waits");
    d.cancel(id, mirai_dispatch::CancelMode::Soft);
}

#[test]
fn stranded_tasks_fail_only_while_no_daemon_is_connected() {
    let why = NoDaemons::CrashLoop {
        failures: 6,
        last: DaemonExit::Code(1),
    };
    let mut dr = Driver::new(Config::default());
    let daemon = dr.connect();
    dr.drain();
    let now = dr.now;
    dr.core.strand(Some(why), now);
    assert_eq!(dr.core.status().no_daemons, Some(why));
    // A connected daemon still runs tasks.
    let running = dr.submit(1);
    let queued = dr.submit(1);
    assert_eq!(dr.sends(), [(daemon, running)]);
    // It goes: the running task is lost, the queued one cannot run anywhere now.
    let now = dr.now;
    dr.core.daemon_disconnected(daemon, now);
    assert_eq!(
        dr.resolved(),
        [
            (running, Outcome::ConnectionLost),
            (queued, Outcome::NoDaemons(why))
        ]
    );
    let later = dr.submit(1);
    assert_eq!(dr.resolved(), [(later, Outcome::NoDaemons(why))]);
    // The launcher starts daemons again: tasks wait for them.
    let now = dr.now;
    dr.core.strand(None, now);
    let waits = dr.submit(1);
    assert!(dr.resolved().is_empty());
    assert_eq!(dr.core.status().awaiting, 1);
    let daemon = dr.connect();
    assert_eq!(dr.sends(), [(daemon, waits)]);
}

#[test]
fn retiring_is_refused_from_an_unknown_daemon() {
    let mut dr = Driver::new(Config::default());
    let now = dr.now;
    assert!(
        dr.core
            .daemon_retiring(mirai_dispatch::DaemonId(9), now)
            .is_err()
    );
    let daemon = dr.connect();
    let now = dr.now;
    dr.core.daemon_retiring(daemon, now).unwrap();
    dr.core.daemon_retiring(daemon, now).unwrap();
    assert_eq!(dr.core.status().connections, 0, "counted out once");
}

#[test]
fn retiring_is_appended_to_the_wire_format_and_round_trips() {
    use mirai_dispatch::protocol::{DecodeError, Limits};
    for (reason, tag) in [
        (ExitReason::HostGone, 0),
        (ExitReason::IdleTime, 1),
        (ExitReason::WallTime, 2),
        (ExitReason::MaxTasks, 3),
    ] {
        let msg = FromDaemon::Retiring { reason };
        let mut frame = Vec::new();
        msg.encode(&mut frame).unwrap();
        // After the existing variants (hello 0, result 1, heartbeat 2): old peers' tags hold.
        assert_eq!(frame, [2, 0, 0, 0, 3, tag]);
        assert_eq!(
            FromDaemon::decode(&frame, &Limits::default()).unwrap(),
            (msg, &[][..])
        );
        frame.push(0);
        assert!(matches!(
            FromDaemon::decode(&frame, &Limits::default()),
            Err(DecodeError::UnexpectedPayload { .. })
        ));
    }
    assert!(FromDaemon::decode(&[2, 0, 0, 0, 3, 4], &Limits::default()).is_err());
}
