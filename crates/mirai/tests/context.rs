//! Context-aware tasks (`task_ctx!`) on real daemon processes: reproducible random streams
//! whatever the daemons, fresh entropy without a seed, cooperative cancellation without a kill,
//! and the task's id and attempt number. This binary is its own daemon program (`main` first
//! calls `daemon_main_if_requested`).

use std::time::Duration;

use mirai::{Cancelled, Ctx, Daemons, Error, Pool, Registry, TaskFn, TaskOptions, task, task_ctx};
use mirai_dispatch::rng::stream_seed;
use rand_core::Rng;

mod common;

const NUMBERS: usize = 10;
const TASKS: u64 = 1_000;
const SEED: u64 = 20_260_406;
const PATIENCE: Duration = Duration::from_secs(60);

/// Ten numbers from the task's stream, and the attempt that drew them. With a path, the first
/// attempt writes its daemon's pid there and stalls, to be killed.
fn draw(ctx: &Ctx, (_, stall): (u64, Option<String>)) -> (u32, Vec<u64>) {
    if let Some(path) = stall.filter(|_| ctx.attempt() == 0) {
        std::fs::write(&path, std::process::id().to_string()).expect("write the pid");
        std::thread::sleep(PATIENCE);
    }
    let mut rng = ctx.rng();
    (
        ctx.attempt(),
        (0..NUMBERS).map(|_| rng.next_u64()).collect(),
    )
}

/// Spins until cancelled, checking its context every millisecond; writes `started` to `path`
/// first and `stopped` when it sees the cancel.
fn spin(ctx: &Ctx, path: String) -> Result<u64, Cancelled> {
    std::fs::write(&path, "started").expect("write the mark");
    loop {
        if let Err(cancelled) = ctx.check() {
            std::fs::write(&path, "stopped").expect("write the mark");
            return Err(cancelled);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the task knows of itself: id, attempt and stream seed.
fn whoami(ctx: &Ctx, _: ()) -> (u64, u32, Option<u64>) {
    (ctx.task_id(), ctx.attempt(), ctx.stream())
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

const DRAW: TaskFn<(u64, Option<String>), (u32, Vec<u64>)> = task_ctx!(draw);
const SPIN: TaskFn<String, Result<u64, Cancelled>> = task_ctx!(spin);
const WHOAMI: TaskFn<(), (u64, u32, Option<u64>)> = task_ctx!(whoami);
const PID: TaskFn<(), u32> = task!(pid);

fn registry() -> Registry {
    Registry::new()
        .with(&DRAW)
        .with(&SPIN)
        .with(&WHOAMI)
        .with(&PID)
}

fn seeded(daemons: usize) -> Pool {
    Daemons::new()
        .local(daemons)
        .seed(SEED)
        .start()
        .expect("start the pool")
}

/// The numbers of `TASKS` draws on `pool`, in submission order.
fn draws(pool: &Pool) -> Vec<Vec<u64>> {
    let out = pool
        .map(&DRAW, (0..TASKS).map(|i| (i, None)))
        .expect("the draws");
    assert!(out.iter().all(|(attempt, _)| *attempt == 0));
    out.into_iter().map(|(_, numbers)| numbers).collect()
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {pid}");
}

fn streams_are_the_same_with_1_2_and_4_daemons_and_a_killed_one() {
    // What each task must draw: its stream, computed here without any pool.
    let expected: Vec<Vec<u64>> = (0..TASKS)
        .map(|i| DRAW.call_with(&Ctx::local(SEED, i), (i, None)).1)
        .collect();
    assert_eq!(expected.len(), TASKS as usize);
    for daemons in [1, 2, 4] {
        let pool = seeded(daemons);
        assert_eq!(draws(&pool), expected, "{daemons} daemons");
    }

    // Two daemons, one killed while it runs task 300 (whose first attempt stalls).
    // In a unique directory removed on drop, so none is left behind by a failing test.
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let stall = scratch.path().join("stall");
    let path = stall.to_string_lossy().into_owned();
    let pool = seeded(2);
    let retry = TaskOptions::new().retries(2);
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let arg = (i, (i == 300).then(|| path.clone()));
            pool.submit_with(&DRAW, arg, retry).expect("submit")
        })
        .collect();
    let mut victim = None;
    common::eventually(PATIENCE, "task 300 stalls on a daemon", || {
        victim = std::fs::read_to_string(&stall)
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        victim.is_some()
    });
    let victim = victim.expect("the stalled daemon's pid");
    assert!(pool.local_pids().contains(&victim));
    kill(victim);
    let results = mirai::collect(handles).expect("every task, task 300 retried");
    for (i, (attempt, numbers)) in results.iter().enumerate() {
        assert_eq!(*attempt, u32::from(i == 300), "attempt of task {i}");
        assert_eq!(numbers, &expected[i], "task {i} after the kill");
    }
    // The supervisor notices the death on its own thread, maybe after the retry ran.
    common::eventually(PATIENCE, "the killed daemon is replaced", || {
        pool.replaced() >= 1
    });
}

fn unseeded_pools_draw_fresh_entropy() {
    let one_draw = |pool: &Pool| pool.submit(&DRAW, (0, None)).unwrap().wait().unwrap().1;
    let first = Daemons::new().local(1).start().unwrap();
    let second = Daemons::new().local(1).start().unwrap();
    let (a, b) = (one_draw(&first), one_draw(&second));
    assert_ne!(a, b, "two unseeded pools gave the same numbers");
    assert_ne!(
        a,
        one_draw(&first),
        "two tasks of one pool gave the same numbers"
    );
    // And neither is the stream a seeded pool would give its first task.
    let seeded_first = DRAW.call_with(&Ctx::local(0, 0), (0, None)).1;
    assert!(a != seeded_first && b != seeded_first);
}

fn a_cooperative_task_stops_at_cancel_without_a_kill() {
    let pool = Daemons::new().local(1).start().expect("start the pool");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let mark = scratch.path().join("spin");
    let read_mark = || std::fs::read_to_string(&mark).unwrap_or_default();
    let daemon = pool.submit(&PID, ()).unwrap().wait().unwrap();
    let spinning = pool
        .submit(&SPIN, mark.to_string_lossy().into_owned())
        .unwrap();
    common::eventually(PATIENCE, "the spin runs", || read_mark() == "started");
    spinning.cancel();
    assert!(matches!(spinning.wait(), Err(Error::Cancelled)));
    // The same daemon serves the next task: the spin saw the cancel and returned.
    let next = pool.submit(&PID, ()).unwrap();
    assert_eq!(next.wait_timeout_owned(), daemon);
    assert_eq!(read_mark(), "stopped", "the task saw its cancel");
    // Past the cancel grace (1 s), still no kill and no replacement.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(pool.replaced(), 0);
    assert_eq!(pool.local_pids(), [daemon]);
    assert!(common::alive(daemon));
    assert_eq!(pool.submit(&PID, ()).unwrap().wait().unwrap(), daemon);
}

/// `wait_timeout` for an owned handle, with the test's patience.
trait WaitPatiently<T> {
    fn wait_timeout_owned(self) -> T;
}

impl<T: serde::de::DeserializeOwned> WaitPatiently<T> for mirai::Mirai<T> {
    fn wait_timeout_owned(mut self) -> T {
        self.wait_timeout(PATIENCE).expect("resolved in time")
    }
}

fn tasks_see_their_id_attempt_and_stream() {
    let pool = seeded(2);
    let seen = pool.map(&WHOAMI, vec![(); 20]).unwrap();
    for (i, (id, attempt, stream)) in seen.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            (id, attempt, stream),
            (i, 0, Some(stream_seed(SEED, i))),
            "task {i}"
        );
    }
    // `everywhere` copies take ids but no stream, and do not shift later streams.
    let copies = mirai::collect(pool.everywhere(&WHOAMI, (), 2).unwrap()).unwrap();
    assert_eq!(copies.len(), 2);
    assert!(
        copies
            .iter()
            .all(|(id, _, stream)| *id >= 20 && stream.is_none())
    );
    let (id, _, stream) = pool.submit(&WHOAMI, ()).unwrap().wait().unwrap();
    assert_eq!((id, stream), (22, Some(stream_seed(SEED, 20))));
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    use common::Test;
    common::run(&[
        Test::new(
            "streams_are_the_same_with_1_2_and_4_daemons_and_a_killed_one",
            streams_are_the_same_with_1_2_and_4_daemons_and_a_killed_one,
        ),
        Test::new(
            "unseeded_pools_draw_fresh_entropy",
            unseeded_pools_draw_fresh_entropy,
        ),
        Test::new(
            "a_cooperative_task_stops_at_cancel_without_a_kill",
            a_cooperative_task_stops_at_cancel_without_a_kill,
        ),
        Test::new(
            "tasks_see_their_id_attempt_and_stream",
            tasks_see_their_id_attempt_and_stream,
        ),
    ]);
}
