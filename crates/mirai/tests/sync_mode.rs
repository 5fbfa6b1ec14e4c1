//! Sync mode (`Daemons::sync`) against a real daemon pool: the same values, random streams, ids
//! and errors, through the same handle API, with every task run inside `submit` in this
//! process. This binary is its own daemon program (`main` first calls
//! `daemon_main_if_requested`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mirai::{Ctx, Daemons, Error, Pool, Registry, TaskFn, task, task_ctx};
use rand_core::Rng;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod common;

const SEED: u64 = 99;
const LIMIT: u64 = 4_096;

fn draw(ctx: &Ctx, n: usize) -> Vec<u64> {
    let mut rng = ctx.rng();
    (0..n).map(|_| rng.next_u64()).collect()
}

fn whoami(ctx: &Ctx, _: ()) -> (u64, u32, Option<u64>, bool) {
    (
        ctx.task_id(),
        ctx.attempt(),
        ctx.stream(),
        ctx.is_cancelled(),
    )
}

fn boom(n: u32) -> u32 {
    panic!("boom {n}")
}

fn add((a, b): (i64, i64)) -> i64 {
    a + b
}

fn blob(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

/// The trace the task runs in, as a task sees it.
fn trace_id(_: ()) -> Option<[u8; 16]> {
    mirai::trace::current().map(|context| context.trace_id())
}

/// Encodes to nothing but an error.
#[derive(Debug)]
struct Unsendable;

impl Serialize for Unsendable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("not sendable"))
    }
}

impl<'de> Deserialize<'de> for Unsendable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Self)
    }
}

/// Encodes as a unit, never decodes.
#[derive(Debug)]
struct Unreadable;

impl Serialize for Unreadable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Unreadable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("not readable"))
    }
}

fn make_unsendable(_: ()) -> Unsendable {
    Unsendable
}

fn make_unreadable(_: ()) -> Unreadable {
    Unreadable
}

fn take_unreadable(_: Unreadable) -> u8 {
    1
}

const DRAW: TaskFn<usize, Vec<u64>> = task_ctx!(draw);
const WHOAMI: TaskFn<(), (u64, u32, Option<u64>, bool)> = task_ctx!(whoami);
const BOOM: TaskFn<u32, u32> = task!(boom);
const ADD: TaskFn<(i64, i64), i64> = task!(add);
const BLOB: TaskFn<usize, Vec<u8>> = task!(blob);
const PID: TaskFn<(), u32> = task!(pid);
const TRACE_ID: TaskFn<(), Option<[u8; 16]>> = task!(trace_id);
const MAKE_UNSENDABLE: TaskFn<(), Unsendable> = task!(make_unsendable);
const MAKE_UNREADABLE: TaskFn<(), Unreadable> = task!(make_unreadable);
const TAKE_UNREADABLE: TaskFn<Unreadable, u8> = task!(take_unreadable);

fn registry() -> Registry {
    Registry::new()
        .with(&DRAW)
        .with(&WHOAMI)
        .with(&BOOM)
        .with(&ADD)
        .with(&BLOB)
        .with(&PID)
        .with(&TRACE_ID)
        .with(&MAKE_UNSENDABLE)
        .with(&MAKE_UNREADABLE)
        .with(&TAKE_UNREADABLE)
        .with(&TAKE_BYTES)
}

/// The same settings, with two daemons or in sync mode.
fn pools() -> (Pool, Pool) {
    let settings = || Daemons::new().seed(SEED).max_message_bytes(LIMIT);
    let daemons = settings().local(2).start().expect("start the daemon pool");
    let sync = settings().sync().start().expect("start the sync pool");
    (daemons, sync)
}

fn values_streams_and_ids_match_a_daemon_pool() {
    let (daemons, sync) = pools();
    let items = || (0..200).map(|i| i % 7);
    assert_eq!(
        sync.map(&DRAW, items()).unwrap(),
        daemons.map(&DRAW, items()).unwrap()
    );
    let ids = |pool: &Pool| pool.map(&WHOAMI, vec![(); 5]).unwrap();
    let seen = ids(&sync);
    assert_eq!(seen, ids(&daemons));
    assert_eq!(seen[0].0, 200, "ids continue after the 200 draws");
    assert!(
        seen.iter()
            .all(|&(_, attempt, stream, cancelled)| attempt == 0 && stream.is_some() && !cancelled)
    );
    assert_eq!(
        sync.submit(&ADD, (40, 2)).unwrap().wait().unwrap(),
        daemons.submit(&ADD, (40, 2)).unwrap().wait().unwrap()
    );
    // The task ran here, in this process, and no daemon was started.
    assert_eq!(
        sync.submit(&PID, ()).unwrap().wait().unwrap(),
        std::process::id()
    );
    assert!(sync.local_pids().is_empty());
    assert_ne!(
        daemons.submit(&PID, ()).unwrap().wait().unwrap(),
        std::process::id()
    );
    // `everywhere` runs once, on the one executor, with no stream, as on a daemon.
    let copies = mirai::collect(sync.everywhere(&WHOAMI, (), 1).unwrap()).unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].2, None);
}

/// `Error`'s display and variant, which is what callers match on.
fn shape<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::Task { message, backtrace }) => {
            assert!(!backtrace.is_empty() || !message.contains("boom"));
            format!("task error: {message}")
        }
        Err(e) => format!("{e:?}: {e}"),
    }
}

fn errors_match_a_daemon_pool() {
    let (daemons, sync) = pools();
    for pool in [&daemons, &sync] {
        // A panic carries its message and where it happened.
        match pool.submit(&BOOM, 7).unwrap().wait() {
            Err(Error::Task { message, backtrace }) => {
                assert_eq!(message, "boom 7");
                assert!(backtrace.contains("sync_mode.rs"), "{backtrace}");
            }
            other => panic!("a panic gave {other:?}"),
        }
    }
    let both = |f: &dyn Fn(&Pool) -> String| {
        let (d, s) = (f(&daemons), f(&sync));
        assert_eq!(s, d);
        s
    };
    let unsendable = both(&|p| shape(p.submit(&MAKE_UNSENDABLE, ()).unwrap().wait()));
    assert!(
        unsendable.contains("cannot encode the value"),
        "{unsendable}"
    );
    let unreadable = both(&|p| shape(p.submit(&MAKE_UNREADABLE, ()).unwrap().wait()));
    assert!(!unreadable.starts_with("ok"), "{unreadable}");
    let bad_arg = both(&|p| shape(p.submit(&TAKE_UNREADABLE, Unreadable).unwrap().wait()));
    assert!(bad_arg.contains("cannot decode the argument"), "{bad_arg}");
    let big = both(&|p| shape(p.submit(&BLOB, 2 * LIMIT as usize).unwrap().wait()));
    assert!(big.starts_with("ResultTooLarge"), "{big}");
    let too_big = vec![1u8; 2 * LIMIT as usize];
    let refused = both(&|p| shape(p.submit(&TAKE_BYTES, too_big.clone()).map(|_| ())));
    assert!(refused.starts_with("ArgumentTooLarge"), "{refused}");
    both(&|p| {
        let (e, back) = p.try_submit(&TAKE_BYTES, too_big.clone()).unwrap_err();
        assert_eq!(back, too_big, "the argument is handed back");
        shape::<()>(Err(e))
    });
    // A cancel after the task finished leaves its value.
    let late = both(&|p| {
        let mut h = p.submit(&ADD, (1, 1)).unwrap();
        common::eventually(std::time::Duration::from_secs(30), "resolved", || {
            h.is_resolved()
        });
        h.cancel();
        shape(h.wait())
    });
    assert_eq!(late, "ok 2");
}

fn take_bytes(b: Vec<u8>) -> usize {
    b.len()
}

const TAKE_BYTES: TaskFn<Vec<u8>, usize> = task!(take_bytes);

fn handles_poll_await_and_count_in_sync_mode() {
    let pool = Daemons::new().local(3).sync().start().unwrap();
    let mut handle = pool.submit(&ADD, (2, 3)).unwrap();
    assert!(handle.is_resolved(), "it ran inside submit");
    assert!(matches!(handle.try_result(), Some(Ok(5))));
    assert!(handle.try_result().is_none(), "taken");
    // Ready at the first poll.
    let mut future = pin!(pool.submit(&ADD, (3, 4)).unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sum = rt.block_on(async {
        let a = pool.submit_async(&ADD, (1, 1)).await?.await?;
        let b = pool.submit(&ADD, (2, 2))?.await?;
        Ok::<i64, Error>(a + b)
    });
    assert_eq!(sum.unwrap(), 6);
    let (index, first) = mirai::race(&mut vec![pool.submit(&ADD, (0, 1)).unwrap()]).unwrap();
    assert_eq!((index, first.unwrap()), (0, 1));
    let status = pool.status();
    assert_eq!(
        (
            status.submitted,
            status.completed,
            status.awaiting,
            status.executing
        ),
        (5, 5, 0, 0)
    );
    assert!(pool.local_pids().is_empty(), "sync mode starts no daemon");
    assert_eq!(pool.retained(), 0);
}

/// A task continues the trace it was submitted in, in process as on a daemon: it runs in the
/// same `execute` span.
fn a_task_runs_in_the_trace_it_was_submitted_in() {
    let (daemons, sync) = pools();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let options = mirai::TaskOptions::new().trace_parent(incoming);
    let want: mirai::trace::TraceParent = incoming.parse().unwrap();
    for pool in [&daemons, &sync] {
        let seen = pool.submit_with(&TRACE_ID, (), options).unwrap().wait();
        assert_eq!(seen.unwrap(), Some(want.trace_id()));
    }
    let bad = mirai::TaskOptions::new().trace_parent("00-not-a-trace");
    assert!(matches!(
        sync.submit_with(&TRACE_ID, (), bad),
        Err(Error::TraceParent(_))
    ));
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "values_streams_and_ids_match_a_daemon_pool",
            values_streams_and_ids_match_a_daemon_pool,
        ),
        Test::new("errors_match_a_daemon_pool", errors_match_a_daemon_pool),
        Test::new(
            "handles_poll_await_and_count_in_sync_mode",
            handles_poll_await_and_count_in_sync_mode,
        ),
        Test::new(
            "a_task_runs_in_the_trace_it_was_submitted_in",
            a_task_runs_in_the_trace_it_was_submitted_in,
        ),
        Test::new(
            "the_harness_reads_libtests_command_line",
            the_harness_reads_libtests_command_line,
        ),
    ]);
}

/// This binary run again with `args`: its exit status and stdout.
fn this_binary(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .expect("run this test binary");
    (out.status, String::from_utf8(out.stdout).unwrap())
}

/// The names `--list` prints with `args`, in order.
fn listed(args: &[&str]) -> Vec<String> {
    let (status, out) = this_binary(&[&["--list"], args].concat());
    assert!(status.success(), "--list {args:?}: {status}");
    out.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// The harness (shared by the binaries that are their own daemon program) reads libtest's
/// command line: a filter keeps the names containing it, `--skip` leaves tests out, `--exact`
/// matches whole names, and a run prints each test's name and result.
fn the_harness_reads_libtests_command_line() {
    let all = listed(&[]);
    assert_eq!(all.len(), 5, "{all:?}");
    let (values, errors) = (
        "values_streams_and_ids_match_a_daemon_pool",
        "errors_match_a_daemon_pool",
    );
    assert_eq!(listed(&["match_a_daemon"]), [values, errors]);
    // `--skip X` runs everything but X.
    let without_errors: Vec<String> = all.iter().filter(|n| *n != errors).cloned().collect();
    assert_eq!(listed(&["--skip", errors]), without_errors);
    assert_eq!(listed(&["--skip", "match_a_daemon"]).len(), all.len() - 2);
    // `--exact` compares whole names, for filters and skips alike.
    assert!(listed(&["--exact", "match_a_daemon"]).is_empty());
    assert_eq!(listed(&["--exact", errors]), [errors]);
    assert_eq!(listed(&["--exact", "--skip", "match_a_daemon"]), all);
    assert_eq!(listed(&["--exact", "--skip", values]).len(), all.len() - 1);
    // A run of one test by its exact name: its line, and the others counted as filtered out.
    let (status, out) = this_binary(&["--exact", errors]);
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("test {errors} ... ok")), "{out}");
    assert!(
        out.contains(&format!(
            "1 passed; 0 failed; 0 ignored; 0 measured; {} filtered out",
            all.len() - 1
        )),
        "{out}"
    );
}
