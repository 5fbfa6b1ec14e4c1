//! How the pool judges a departure, through real daemon processes: a daemon whose task exits
//! (with any code) or aborts is lost and replaced, one that retires by its rules is not, and a
//! daemon program that cannot start makes waiting tasks fail with a typed error instead of
//! hanging. This binary is its own daemon program: `main` first calls
//! `daemon_main_if_requested`, so the children it spawns serve tasks.

use std::time::Duration;

use mirai::{DaemonExit, Daemons, Error, NoDaemons, Pool, Registry, TaskFn, TaskOptions, task};

mod common;

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}
fn exit(code: i32) -> u8 {
    std::process::exit(code)
}
fn abort((): ()) -> u8 {
    std::process::abort()
}

const ADD: TaskFn<(i64, i64), i64> = task!(add);
const EXIT: TaskFn<i32, u8> = task!(exit);
const ABORT: TaskFn<(), u8> = task!(abort);

fn registry() -> Registry {
    Registry::new().with(&ADD).with(&EXIT).with(&ABORT)
}

const PATIENCE: Duration = Duration::from_secs(30);

/// A pool of `n` daemons, all connected.
fn pool(n: usize) -> Pool {
    let pool = Daemons::new().local(n).start().expect("start the pool");
    common::eventually(PATIENCE, "the daemons connect", || {
        pool.status().connections == n as u64
    });
    pool
}

/// After a task lost its daemon: the pool is back at `n` daemons, one more replacement than
/// `replaced_before`, and runs the next task.
fn back_at_size(pool: &Pool, n: usize, replaced: u64) {
    common::eventually(PATIENCE, "the lost daemon is replaced", || {
        pool.replaced() == replaced
            && pool.local_pids().len() == n
            && pool.status().connections == n as u64
    });
    let mut next = pool.submit(&ADD, (40, 2)).unwrap();
    assert_eq!(next.wait_timeout(PATIENCE).unwrap(), 42);
    assert_eq!(pool.status().no_daemons, None);
}

/// A task exiting with `code` loses its daemon (a single one: the next task needs the
/// replacement).
fn exit_with(code: i32) {
    let pool = pool(1);
    let victim = pool.local_pids()[0];
    let mut handle = pool.submit(&EXIT, code).unwrap();
    assert!(matches!(
        handle.wait_timeout(PATIENCE),
        Err(Error::ConnectionLost)
    ));
    back_at_size(&pool, 1, 1);
    assert!(!pool.local_pids().contains(&victim));
}

/// Code 0 is also what a daemon exits with when its host is gone.
fn a_task_calling_exit_0_loses_its_daemon_which_is_replaced() {
    exit_with(0);
}

/// Code 1 is also idletime's.
fn a_task_calling_exit_1_loses_its_daemon_which_is_replaced() {
    exit_with(1);
}

/// Code 3 is also maxtasks'.
fn a_task_calling_exit_3_loses_its_daemon_which_is_replaced() {
    exit_with(3);
}

fn a_task_that_aborts_loses_its_daemon_which_is_replaced() {
    let pool = pool(2);
    let mut handle = pool.submit(&ABORT, ()).unwrap();
    assert!(matches!(
        handle.wait_timeout(PATIENCE),
        Err(Error::ConnectionLost)
    ));
    back_at_size(&pool, 2, 1);
}

/// A retry runs the task again on another daemon, which it loses too: two losses, two
/// replacements, one `ConnectionLost`.
fn a_retried_exiting_task_loses_a_daemon_per_attempt() {
    let pool = pool(2);
    let mut handle = pool
        .submit_with(&EXIT, 0, TaskOptions::new().retries(1))
        .unwrap();
    assert!(matches!(
        handle.wait_timeout(PATIENCE),
        Err(Error::ConnectionLost)
    ));
    back_at_size(&pool, 2, 2);
}

/// A daemon program that exits at once never joins: it is retried a bounded number of times,
/// then waiting tasks (and later ones) fail with the reason, and the status shows it.
fn a_daemon_program_that_exits_at_start_fails_waiting_tasks() {
    let pool = Daemons::new()
        .local(1)
        .program("/bin/false")
        .start()
        .expect("start the pool");
    let mut waiting = pool.submit(&ADD, (1, 2)).unwrap();
    let want = NoDaemons::CrashLoop {
        failures: 6,
        last: DaemonExit::Code(1),
    };
    match waiting.wait_timeout(PATIENCE) {
        Err(Error::NoDaemons { reason }) => assert_eq!(reason, want),
        other => panic!("expected no daemons, got {other:?}"),
    }
    assert_eq!(pool.status().no_daemons, Some(want));
    assert_eq!(pool.replaced(), 5, "five retries, then it gave up");
    assert!(pool.local_pids().is_empty());
    let mut later = pool.submit(&ADD, (3, 4)).unwrap();
    assert!(matches!(
        later.wait_timeout(PATIENCE),
        Err(Error::NoDaemons { .. })
    ));
    // No further attempts.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.replaced(), 5);
}

/// A daemon killed by a signal before it joins is retried (and this one joins).
fn a_signal_before_joining_is_retried() {
    let pool = Daemons::new().local(1).start().expect("start the pool");
    let first = pool.local_pids()[0];
    // Likely before it joined; if it already had, it is a loss and replaced all the same.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status();
    back_at_size(&pool, 1, 1);
}

fn an_idle_retirement_is_not_replaced() {
    let pool = Daemons::new()
        .local(1)
        .idletime(Duration::from_millis(200))
        .start()
        .expect("start the pool");
    common::eventually(PATIENCE, "the idle daemon retires", || {
        pool.local_pids().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.replaced(), 0);
    let status = pool.status();
    assert_eq!((status.connections, status.no_daemons), (0, None));
    // Retired, not broken: a task waits for a daemon rather than failing.
    let mut waiting = pool.submit(&ADD, (1, 2)).unwrap();
    assert!(matches!(
        waiting.wait_timeout(Duration::from_millis(300)),
        Err(Error::TimedOut)
    ));
}

fn a_walltime_retirement_is_not_replaced() {
    let pool = Daemons::new()
        .local(2)
        .walltime(Duration::from_millis(300))
        .start()
        .expect("start the pool");
    common::eventually(PATIENCE, "the daemons retire", || {
        pool.local_pids().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.replaced(), 0);
    assert_eq!(pool.status().connections, 0);
}

fn a_maxtasks_retirement_is_not_replaced_but_a_loss_beside_it_is() {
    let pool = Daemons::new()
        .local(2)
        .maxtasks(1)
        .start()
        .expect("start the pool");
    common::eventually(PATIENCE, "the daemons connect", || {
        pool.status().connections == 2
    });
    let mut sum = pool.submit(&ADD, (1, 1)).unwrap();
    let mut lost = pool.submit(&EXIT, 3).unwrap();
    assert_eq!(sum.wait_timeout(PATIENCE).unwrap(), 2);
    assert!(matches!(
        lost.wait_timeout(PATIENCE),
        Err(Error::ConnectionLost)
    ));
    // The retired daemon is gone for good; the lost one has a replacement.
    common::eventually(PATIENCE, "one replacement, one daemon", || {
        pool.replaced() == 1 && pool.local_pids().len() == 1 && pool.status().connections == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pool.replaced(), 1);
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "a_task_calling_exit_0_loses_its_daemon_which_is_replaced",
            a_task_calling_exit_0_loses_its_daemon_which_is_replaced,
        ),
        Test::new(
            "a_task_calling_exit_1_loses_its_daemon_which_is_replaced",
            a_task_calling_exit_1_loses_its_daemon_which_is_replaced,
        ),
        Test::new(
            "a_task_calling_exit_3_loses_its_daemon_which_is_replaced",
            a_task_calling_exit_3_loses_its_daemon_which_is_replaced,
        ),
        Test::new(
            "a_task_that_aborts_loses_its_daemon_which_is_replaced",
            a_task_that_aborts_loses_its_daemon_which_is_replaced,
        ),
        Test::new(
            "a_retried_exiting_task_loses_a_daemon_per_attempt",
            a_retried_exiting_task_loses_a_daemon_per_attempt,
        ),
        Test::new(
            "a_daemon_program_that_exits_at_start_fails_waiting_tasks",
            a_daemon_program_that_exits_at_start_fails_waiting_tasks,
        ),
        Test::new(
            "a_signal_before_joining_is_retried",
            a_signal_before_joining_is_retried,
        ),
        Test::new(
            "an_idle_retirement_is_not_replaced",
            an_idle_retirement_is_not_replaced,
        ),
        Test::new(
            "a_walltime_retirement_is_not_replaced",
            a_walltime_retirement_is_not_replaced,
        ),
        Test::new(
            "a_maxtasks_retirement_is_not_replaced_but_a_loss_beside_it_is",
            a_maxtasks_retirement_is_not_replaced_but_a_loss_beside_it_is,
        ),
    ]);
}
