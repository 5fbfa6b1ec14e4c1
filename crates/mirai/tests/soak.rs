//! The long stress test, ignored by default and run by `cargo xtask soak`: 100,000 tasks while
//! daemons are SIGKILLed at random and tasks are cancelled (softly and hard) or time out at
//! random. Every task must resolve exactly once, within an overall deadline, completed values
//! must be right, and no daemon process or shared-memory region of ours may be left over.
//!
//! `MIRAI_SOAK_SEED` replays a run; `MIRAI_SOAK_TASKS` changes the count.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirai::{Daemons, Error, Mirai, Registry, SharedView, TaskFn, task};

mod common;

fn add((a, b): (u64, u64)) -> u64 {
    a.wrapping_mul(31).wrapping_add(b)
}
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn sum(v: SharedView) -> f64 {
    v.as_f64().map_or(f64::NAN, |x| x.iter().sum())
}

const ADD: TaskFn<(u64, u64), u64> = task!(add);
const NAP: TaskFn<u64, u64> = task!(nap);
const SUM: TaskFn<SharedView, f64> = task!(sum);

fn registry() -> Registry {
    Registry::new().with(&ADD).with(&NAP).with(&SUM)
}

/// xorshift64*: enough randomness to pick actions, and replayable from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

struct InFlight {
    handle: Mirai<u64>,
    expect: u64,
    /// Cancelled or given a timeout: a value is still fine if it finished first.
    may_stop: bool,
}

#[derive(Default, Debug)]
struct Tally {
    values: u64,
    cancelled: u64,
    timed_out: u64,
    lost: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.values + self.cancelled + self.timed_out + self.lost
    }

    fn settle(&mut self, r: Result<u64, Error>, want: u64, may_stop: bool) {
        match r {
            Ok(v) => {
                assert_eq!(v, want, "a completed task returned a wrong value");
                self.values += 1;
            }
            Err(Error::Cancelled) if may_stop => self.cancelled += 1,
            Err(Error::TimedOut) if may_stop => self.timed_out += 1,
            // The daemon running it was killed.
            Err(Error::ConnectionLost) => self.lost += 1,
            Err(e) => panic!("unexpected outcome: {e:?}"),
        }
    }
}

fn shm_files_of(pids: &HashSet<u32>) -> Vec<String> {
    let prefixes: Vec<String> = pids.iter().map(|p| format!("mori_{p:x}_")).collect();
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose parent is this process.
fn children_of_this_process() -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                        // Fields after the parenthesised name: state, ppid, ...
                        s.rsplit_once(')')
                            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                            .is_some_and(|ppid| ppid == me)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sets its flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

const DEADLINE: Duration = Duration::from_secs(600);
const WINDOW: usize = 2_000;
const STALL: Duration = Duration::from_secs(60);

fn soak_100k_tasks_with_kills_cancels_and_timeouts() {
    let seed: u64 = std::env::var("MIRAI_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let tasks: u64 = std::env::var("MIRAI_SOAK_TASKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("  seed {seed} (MIRAI_SOAK_SEED replays), {tasks} tasks");
    let start = Instant::now();
    let deadline = start + DEADLINE;
    let mut rng = Rng(seed);
    let seen_pids = Mutex::new(HashSet::from([std::process::id()]));
    let mut shared_names = Vec::new();
    let mut tally = Tally::default();
    let mut kills = 0u64;
    let pool = Daemons::new()
        .local(4)
        .max_queued_bytes(64 << 10)
        .cancel_grace(Duration::from_millis(100))
        .start()
        .expect("start the pool");
    let finished = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut rng = Rng(seed.rotate_left(17) | 1);
            let mut kills = 0u64;
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20 + rng.next() % 80));
                let pids = pool.local_pids();
                seen_pids.lock().unwrap().extend(&pids);
                if pids.is_empty() {
                    continue;
                }
                let victim = pids[(rng.next() % pids.len() as u64) as usize];
                let status = std::process::Command::new("kill")
                    .args(["-KILL", &victim.to_string()])
                    .status();
                kills += u64::from(status.is_ok_and(|s| s.success()));
            }
            kills
        });

        // Stops the killer however this thread leaves the scope, a failed assertion included
        // (the scope would otherwise wait for the killer forever).
        let _stop = Stop(&finished);
        let mut window: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW + 1);
        let settle_front = |window: &mut VecDeque<InFlight>, tally: &mut Tally| {
            let mut f = window.pop_front().expect("a task in flight");
            // No task naps longer than 45 ms: one unresolved for this long is lost, and the
            // soak fails with the dispatcher's view instead of hanging.
            let patience = STALL.min(deadline.saturating_duration_since(Instant::now()));
            let outcome = f.handle.wait_timeout(patience);
            assert!(
                !matches!(outcome, Err(Error::TimedOut)) || f.handle.is_resolved(),
                "a task did not resolve within {patience:?}: {:?}",
                pool.status()
            );
            tally.settle(outcome, f.expect, f.may_stop);
        };
        let mut shares = Vec::new();
        for i in 0..tasks {
            // Now and then, share a fresh vector and have a daemon sum it.
            if i % 10_000 == 0 {
                let data: Vec<f64> = (0..10_000).map(|k| f64::from(k) + i as f64).collect();
                let want: f64 = data.iter().sum();
                let shared = mirai::share_f64(&data).expect("share");
                shared_names.push(mirai::shared_name(&shared).expect("a name"));
                let handle = pool.submit(&SUM, shared.view()).expect("submit a sum");
                shares.push((shared, handle, want));
            }
            let (handle, expect, mut may_stop) = if rng.chance(10) {
                // A slow task, sometimes with a run timeout shorter than its nap.
                let ms = 5 + rng.next() % 40;
                if rng.chance(300) {
                    let h = pool
                        .submit_with_timeout(&NAP, ms, Duration::from_millis(ms / 2))
                        .expect("submit");
                    (h, ms, true)
                } else {
                    (pool.submit(&NAP, ms).expect("submit"), ms, false)
                }
            } else {
                let arg = (i, rng.next() % 1_000);
                (pool.submit(&ADD, arg).expect("submit"), add(arg), false)
            };
            if rng.chance(20) {
                handle.cancel();
                may_stop = true;
            }
            window.push_back(InFlight {
                handle,
                expect,
                may_stop,
            });
            // Cancel one already in flight (queued or running), softly or hard.
            if rng.chance(20) && !window.is_empty() {
                let k = (rng.next() % window.len() as u64) as usize;
                let f = &mut window[k];
                if rng.chance(100) {
                    f.handle.cancel_hard();
                } else {
                    f.handle.cancel();
                }
                f.may_stop = true;
            }
            if window.len() > WINDOW {
                settle_front(&mut window, &mut tally);
            }
        }
        while !window.is_empty() {
            settle_front(&mut window, &mut tally);
        }
        for (shared, handle, want) in shares {
            match handle.wait() {
                Ok(v) => assert_eq!(v, want, "a shared sum is wrong"),
                Err(Error::ConnectionLost) => {}
                Err(e) => panic!("a shared sum failed: {e:?}"),
            }
            drop(shared);
        }
        finished.store(true, Ordering::Relaxed);
        kills = killer.join().expect("the killer thread");
    });

    let status = pool.status();
    println!(
        "  {tally:?}, {kills} daemons killed, {} replaced, in {:.1?}",
        pool.replaced(),
        start.elapsed()
    );
    // Every task resolved exactly once: one outcome per handle, and the dispatcher agrees.
    assert_eq!(tally.total(), tasks);
    let sums = tasks.div_ceil(10_000);
    assert_eq!(status.submitted, tasks + sums);
    assert_eq!(status.completed, status.submitted, "{status:?}");
    assert_eq!((status.awaiting, status.executing), (0, 0), "{status:?}");
    assert!(status.memory.peak <= 64 << 10);
    assert!(
        tally.values > tasks / 2,
        "most tasks should complete: {tally:?}"
    );
    assert!(
        kills > 0 && tally.lost > 0,
        "the kills hit no task: {tally:?}"
    );
    assert!(tally.cancelled > 0 && tally.timed_out > 0, "{tally:?}");

    // The kills stopped: replacements bring the pool back to its four daemons.
    common::eventually(Duration::from_secs(30), "four daemons again", || {
        pool.local_pids().len() == 4 && pool.status().connections == 4
    });
    seen_pids.lock().unwrap().extend(pool.local_pids());
    drop(pool);
    let pids = seen_pids.into_inner().unwrap();
    let orphans: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| p != std::process::id() && common::process_exists(p))
        .chain(children_of_this_process())
        .collect();
    assert!(orphans.is_empty(), "daemons left behind: {orphans:?}");
    let left: Vec<String> = shm_files_of(&pids);
    assert!(left.is_empty(), "shared memory left behind: {left:?}");
    for name in shared_names {
        assert!(mirai::map_shared(&name).is_err(), "{name} still attaches");
    }
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    common::run(&[common::Test::ignored(
        "soak_100k_tasks_with_kills_cancels_and_timeouts",
        soak_100k_tasks_with_kills_cancels_and_timeouts,
    )]);
}
