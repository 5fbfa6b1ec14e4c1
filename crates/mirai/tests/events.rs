//! What a pool tells about its daemons, through real daemon processes: the event queue
//! (joins with the pid, departures with their reason and replacement, refused peers), the
//! per-daemon rows (counts, current task), and setups that daemons joining later run before
//! their first task. This binary is its own daemon program: `main` first calls
//! `daemon_main_if_requested`, so the children it spawns serve tasks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use mirai::{
    DaemonExit, DaemonPhase, Daemons, Error, Events, LeaveReason, PoolEvent, RefuseReason,
    Registry, TaskFn, TaskOptions, task,
};

mod common;

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
static LOADED: AtomicI64 = AtomicI64::new(0);
fn load(x: i64) {
    LOADED.store(x, Ordering::Relaxed);
}
fn loaded((): ()) -> i64 {
    LOADED.load(Ordering::Relaxed)
}
fn fail(x: i64) {
    panic!("setup {x} failed")
}

const ADD: TaskFn<(i64, i64), i64> = task!(add);
const NAP: TaskFn<u64, u64> = task!(nap);
const LOAD: TaskFn<i64, ()> = task!(load);
const LOADED_NOW: TaskFn<(), i64> = task!(loaded);
const FAIL: TaskFn<i64, ()> = task!(fail);

fn registry() -> Registry {
    Registry::new()
        .with(&ADD)
        .with(&NAP)
        .with(&LOAD)
        .with(&LOADED_NOW)
        .with(&FAIL)
}

const PATIENCE: Duration = Duration::from_secs(30);

/// The next event, within [`PATIENCE`].
fn next(events: &Events) -> PoolEvent {
    events
        .recv_timeout(PATIENCE)
        .expect("an event within the patience")
}

/// The next event, which must be a join: its launch id and pid.
fn joined(events: &Events) -> (u64, Option<u32>) {
    match next(events) {
        PoolEvent::Joined { launch_id, pid } => (launch_id, pid),
        other => panic!("expected a join, got {other:?}"),
    }
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// A daemon that retires after its one task is reported joined (with its pid) and then gone
/// by the maxtasks rule, without a replacement.
fn a_join_and_a_maxtasks_retirement_are_reported() {
    let pool = Daemons::new().local(1).maxtasks(1).start().expect("start");
    let events = pool.events();
    let (launch_id, pid) = joined(&events);
    assert_eq!(pid, pool.local_pids().first().copied());
    assert!(pid.is_some());
    assert_eq!(pool.submit(&ADD, (1, 2)).unwrap().wait().unwrap(), 3);
    assert_eq!(
        next(&events),
        PoolEvent::Left {
            launch_id,
            reason: LeaveReason::MaxTasks,
            replaced_by: None,
        }
    );
    assert_eq!(events.try_recv(), None);
    assert_eq!(events.dropped(), 0);
}

/// A daemon killed from outside is lost: the event names the signal and the replacement,
/// whose join follows with the new pid.
fn a_daemon_killed_from_outside_is_reported_lost_and_replaced() {
    let pool = Daemons::new().local(1).start().expect("start");
    let events = pool.events();
    let (first, pid) = joined(&events);
    kill(pid.expect("a local daemon's pid"));
    let replacement = match next(&events) {
        PoolEvent::Left {
            launch_id,
            reason,
            replaced_by,
        } => {
            assert_eq!(launch_id, first);
            assert_eq!(
                reason,
                LeaveReason::Lost {
                    exit: Some(DaemonExit::Signal(9))
                }
            );
            replaced_by.expect("replaced")
        }
        other => panic!("expected a departure, got {other:?}"),
    };
    assert_ne!(replacement, first);
    let (launch_id, new_pid) = joined(&events);
    assert_eq!(launch_id, replacement);
    assert_eq!(new_pid, pool.local_pids().first().copied());
    assert_ne!(new_pid, pid);
    assert_eq!(pool.replaced(), 1);
}

/// A hard cancel kills the daemon: the departure says so, with the replacement.
fn a_hard_cancel_is_reported_as_a_kill() {
    let pool = Daemons::new().local(1).start().expect("start");
    let events = pool.events();
    let (first, _) = joined(&events);
    let handle = pool.submit(&NAP, 60_000).unwrap();
    common::eventually(PATIENCE, "the nap runs", || {
        pool.daemons()
            .first()
            .is_some_and(|d| d.current_task.is_some())
    });
    handle.cancel_hard();
    match next(&events) {
        PoolEvent::Left {
            launch_id,
            reason: LeaveReason::Killed,
            replaced_by: Some(replacement),
        } => {
            assert_eq!(launch_id, first);
            let (joined_id, _) = joined(&events);
            assert_eq!(joined_id, replacement);
        }
        other => panic!("expected a kill, got {other:?}"),
    }
    assert!(matches!(handle.wait(), Err(Error::Cancelled)));
}

/// A daemon dialling with a wrong token is refused at its hello, and the pool says so with
/// the launch id it claimed.
fn a_wrong_token_dial_is_reported_refused() {
    let pool = Daemons::new().start().expect("start");
    let events = pool.events();
    let intruder = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MIRAI_DAEMON_URL", pool.url())
        .env("MIRAI_DAEMON_TOKEN", "not-the-token-of-this-pool")
        .env("MIRAI_DAEMON_LAUNCH_ID", "7")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the intruder");
    let mut intruder = common::KilledOnDrop(intruder);
    assert_eq!(
        next(&events),
        PoolEvent::Refused {
            claimed_launch_id: 7,
            reason: RefuseReason::Token,
        }
    );
    // Refused, it exits by itself; nothing joined.
    common::eventually(PATIENCE, "the refused daemon exits", || {
        matches!(intruder.0.try_wait(), Ok(Some(_)))
    });
    assert_eq!(pool.status().connections, 0);
    assert!(pool.daemons().is_empty());
}

/// A process of another user that connects to the pool's local socket is closed before a
/// byte is exchanged, and the pool names its uid.
fn a_foreign_user_is_reported() {
    let user = common::ThrowawayUser::create("ev");
    let pool = Daemons::new().start().expect("start");
    let events = pool.events();
    let name = pool.url().strip_prefix("abstract://").expect("abstract");
    let report = user.python(DIAL, &[name]);
    assert_eq!(report.trim(), "closed 0", "{report}");
    match next(&events) {
        PoolEvent::ForeignPeer { uid, pid } => {
            assert_eq!(uid, user.uid());
            assert!(pid > 0);
        }
        other => panic!("expected a foreign peer, got {other:?}"),
    }
    assert_eq!(pool.status().connections, 0);
}

/// Connects to an abstract name and reads until the close (or 10 s): `closed N` with the
/// bytes received.
const DIAL: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect("\0" + sys.argv[1])
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print("closed", len(got))
"#;

/// A pool's rows: one per daemon, with its pid, join time, task counts and current task.
fn daemon_rows_count_tasks_and_show_the_current_one() {
    let before = Instant::now();
    let pool = Daemons::new().local(1).start().expect("start");
    common::eventually(PATIENCE, "the daemon joins", || {
        pool.status().connections == 1
    });
    for i in 0..3 {
        assert_eq!(pool.submit(&ADD, (i, 1)).unwrap().wait().unwrap(), i + 1);
    }
    let rows = pool.daemons();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.pid, pool.local_pids().first().copied());
    assert_eq!(row.address, None, "a local transport has no address");
    assert!(row.connected_since >= before && row.connected_since <= Instant::now());
    assert_eq!((row.tasks_assigned, row.tasks_completed), (3, 3));
    assert_eq!((row.current_task, row.busy_since), (None, None));
    assert_eq!(row.phase, DaemonPhase::Active);
    assert!(!row.setting_up);
    let launch_id = row.launch_id;

    let _nap = pool.submit(&NAP, 60_000).unwrap();
    common::eventually(PATIENCE, "the nap is sent", || {
        pool.daemons()[0].tasks_assigned == 4
    });
    let row = &pool.daemons()[0];
    assert_eq!(row.launch_id, launch_id);
    assert_eq!((row.tasks_assigned, row.tasks_completed), (4, 3));
    assert!(row.current_task.is_some());
    assert!(row.busy_since.is_some_and(|t| t >= row.connected_since));
}

/// Remote daemons show their address.
fn a_tcp_daemon_row_shows_its_address() {
    let pool = Daemons::new()
        .url("tcp://127.0.0.1:0")
        .allow_plain_tcp(true)
        .local(1)
        .start()
        .expect("start");
    common::eventually(PATIENCE, "the daemon joins", || {
        pool.status().connections == 1
    });
    let address = pool.daemons()[0].address.expect("a tcp daemon's address");
    assert!(address.ip().is_loopback());
    assert_ne!(address.port(), 0);
}

/// A persistent setup runs on the daemons connected now and, after a kill, on the replacement
/// before its first ordinary task (which was already waiting when it joined).
fn a_replacement_runs_the_persistent_setup_before_its_first_task() {
    let pool = Daemons::new().local(1).start().expect("start");
    let events = pool.events();
    let (_, pid) = joined(&events);
    let now = pool.everywhere_persistent(&LOAD, 42).unwrap();
    assert_eq!(now.len(), 1);
    mirai::collect(now).unwrap();
    assert_eq!(pool.submit(&LOADED_NOW, ()).unwrap().wait().unwrap(), 42);

    kill(pid.unwrap());
    // Submitted at once: it may reach the dying daemon (then it is retried) or wait for the
    // replacement; either way the replacement has loaded before it runs the task.
    let waiting = pool
        .submit_with(&LOADED_NOW, (), TaskOptions::new().retries(2))
        .unwrap();
    assert_eq!(waiting.wait().unwrap(), 42);
    assert_eq!(pool.replaced(), 1);
    let row = &pool.daemons()[0];
    assert_eq!(row.pid, pool.local_pids().first().copied());
    assert_ne!(row.pid, pid);
    assert_eq!(
        (row.tasks_assigned, row.tasks_completed),
        (2, 2),
        "the setup, then the task"
    );
}

/// Cleared, the setup no longer runs on daemons that join; plain `everywhere` never did.
fn a_cleared_or_plain_setup_does_not_reach_a_replacement() {
    let pool = Daemons::new().local(1).start().expect("start");
    common::eventually(PATIENCE, "the daemon joins", || {
        pool.status().connections == 1
    });
    mirai::collect(pool.everywhere(&LOAD, 7, 1).unwrap()).unwrap();
    mirai::collect(pool.everywhere_persistent(&LOAD, 42).unwrap()).unwrap();
    pool.clear_persistent();
    kill(pool.local_pids()[0]);
    common::eventually(PATIENCE, "the replacement joins", || {
        pool.replaced() == 1 && pool.status().connections == 1
    });
    let fresh = pool
        .submit_with(&LOADED_NOW, (), TaskOptions::new().retries(2))
        .unwrap();
    assert_eq!(fresh.wait().unwrap(), 0);
}

/// A setup that fails on a replacement is reported with its message; the daemon serves on.
fn a_setup_failing_on_a_replacement_is_reported() {
    let pool = Daemons::new().local(1).start().expect("start");
    let events = pool.events();
    let (_, pid) = joined(&events);
    let now = pool.everywhere_persistent(&FAIL, 5).unwrap();
    assert!(matches!(mirai::collect(now), Err(Error::Task { .. })));
    kill(pid.unwrap());
    let replacement = match next(&events) {
        PoolEvent::Left { replaced_by, .. } => replaced_by.expect("replaced"),
        other => panic!("expected a departure, got {other:?}"),
    };
    assert_eq!(joined(&events).0, replacement);
    match next(&events) {
        PoolEvent::SetupFailed { launch_id, message } => {
            assert_eq!(launch_id, replacement);
            assert!(message.contains("setup 5 failed"), "{message}");
        }
        other => panic!("expected a failed setup, got {other:?}"),
    }
    assert_eq!(pool.submit(&ADD, (2, 2)).unwrap().wait().unwrap(), 4);
}

/// Setups accumulate and run in order on a daemon that joins.
fn setups_run_in_order_on_a_late_daemon() {
    let pool = Daemons::new().start().expect("start");
    assert!(pool.everywhere_persistent(&LOAD, 1).unwrap().is_empty());
    assert!(pool.everywhere_persistent(&LOAD, 2).unwrap().is_empty());
    let waiting = pool.submit(&LOADED_NOW, ()).unwrap();
    // A daemon started by hand with the pool token joins late.
    let late = std::process::Command::new(std::env::current_exe().unwrap())
        .env("MIRAI_DAEMON_URL", pool.url())
        .env("MIRAI_DAEMON_TOKEN", pool.token())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a daemon by hand");
    let _late = common::KilledOnDrop(late);
    assert_eq!(waiting.wait().unwrap(), 2, "the second setup ran last");
    let row = &pool.daemons()[0];
    assert_eq!(
        (row.launch_id, row.pid),
        (0, None),
        "not one the pool started"
    );
    assert_eq!(row.tasks_completed, 3);
}

/// A pool whose events nobody reads keeps only the latest ones.
fn unread_events_are_bounded() {
    let pool = Daemons::new().start().expect("start");
    let url = pool.url().to_owned();
    // More refusals than the queue holds, each from a connection with a wrong token.
    let n = mirai::EVENT_CAPACITY + 10;
    let mut refused = 0;
    for _ in 0..n {
        if dial_wrong_token(&url) {
            refused += 1;
        }
    }
    assert_eq!(refused, n);
    let events = pool.events();
    common::eventually(PATIENCE, "every refusal is counted", || {
        events.dropped() == 10
    });
    let mut kept = 0;
    while let Some(event) = events.try_recv() {
        assert!(matches!(event, PoolEvent::Refused { .. }), "{event:?}");
        kept += 1;
    }
    assert_eq!(kept, mirai::EVENT_CAPACITY);
}

/// Opens a connection to an `abstract://` pool, sends an SP header and a hello with a wrong
/// token (as an `abstract://` frame: type byte, u64 length, PAIR1 header, message), and waits
/// for the close; `true` if the pool closed it.
fn dial_wrong_token(url: &str) -> bool {
    use mirai_dispatch::protocol::{FromDaemon, Hello, VERSION};
    use std::io::{Read, Write};
    use std::os::linux::net::SocketAddrExt;
    const SP_HEADER: [u8; 8] = [0, b'S', b'P', 0, 0, 0x11, 0, 0];
    let name = url.strip_prefix("abstract://").expect("an abstract url");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let mut s = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut body = vec![0, 0, 0, 1];
    FromDaemon::Hello(Hello {
        version: VERSION,
        launch_id: 0,
        token: b"wrong-token-wrong-token".to_vec(),
    })
    .encode(&mut body)
    .unwrap();
    let mut frame = SP_HEADER.to_vec();
    frame.push(1);
    frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    frame.extend_from_slice(&body);
    s.write_all(&frame).unwrap();
    let mut sink = Vec::new();
    s.read_to_end(&mut sink).is_ok()
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "a_join_and_a_maxtasks_retirement_are_reported",
            a_join_and_a_maxtasks_retirement_are_reported,
        ),
        Test::new(
            "a_daemon_killed_from_outside_is_reported_lost_and_replaced",
            a_daemon_killed_from_outside_is_reported_lost_and_replaced,
        ),
        Test::new(
            "a_hard_cancel_is_reported_as_a_kill",
            a_hard_cancel_is_reported_as_a_kill,
        ),
        Test::new(
            "a_wrong_token_dial_is_reported_refused",
            a_wrong_token_dial_is_reported_refused,
        ),
        Test::new("a_foreign_user_is_reported", a_foreign_user_is_reported),
        Test::new(
            "daemon_rows_count_tasks_and_show_the_current_one",
            daemon_rows_count_tasks_and_show_the_current_one,
        ),
        Test::new(
            "a_tcp_daemon_row_shows_its_address",
            a_tcp_daemon_row_shows_its_address,
        ),
        Test::new(
            "a_replacement_runs_the_persistent_setup_before_its_first_task",
            a_replacement_runs_the_persistent_setup_before_its_first_task,
        ),
        Test::new(
            "a_cleared_or_plain_setup_does_not_reach_a_replacement",
            a_cleared_or_plain_setup_does_not_reach_a_replacement,
        ),
        Test::new(
            "a_setup_failing_on_a_replacement_is_reported",
            a_setup_failing_on_a_replacement_is_reported,
        ),
        Test::new(
            "setups_run_in_order_on_a_late_daemon",
            setups_run_in_order_on_a_late_daemon,
        ),
        Test::new("unread_events_are_bounded", unread_events_are_bounded),
    ]);
}
