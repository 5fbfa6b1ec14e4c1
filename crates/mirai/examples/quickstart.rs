//! The main job in one page: local daemons behind a byte cap, a parallel map with a progress
//! bar, the cap refusing work with `try_submit`, one large dataset shared once and read by every
//! daemon, and the pool's counters. It finishes in seconds.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use std::time::Instant;

use mirai::{Daemons, Error, Registry, SharedView, TaskFn, task};

/// Counts the primes below `n`, slowly enough to be worth a daemon.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// The median of a chunk of measurements: the kind of batch a service queues.
fn median(mut chunk: Vec<f64>) -> f64 {
    chunk.sort_unstable_by(f64::total_cmp);
    chunk.get(chunk.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A stand-in for a long job.
fn nap(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

/// Sums a shared vector; the daemon maps the host's pages by name, nothing is copied.
fn shared_sum(v: SharedView) -> f64 {
    v.as_f64().map_or(f64::NAN, |x| x.iter().sum())
}

const COUNT_PRIMES: TaskFn<u64, u64> = task!(count_primes);
const MEDIAN: TaskFn<Vec<f64>, f64> = task!(median);
const SHARED_SUM: TaskFn<SharedView, f64> = task!(shared_sum);
const NAP: TaskFn<u64, u64> = task!(nap);

/// Queued task arguments may hold at most this many bytes: 4 MiB.
const CAP: u64 = 4 << 20;
/// Each queued chunk is 512 KiB of f64 (postcard writes an f64 as 8 bytes).
const CHUNK: usize = 64 << 10;

fn main() -> Result<(), Error> {
    let registry = Registry::new()
        .with(&COUNT_PRIMES)
        .with(&MEDIAN)
        .with(&SHARED_SUM)
        .with(&NAP);
    // In a daemon child this serves tasks and exits; in the host it returns at once.
    mirai::daemon_main_if_requested(&registry);

    let start = Instant::now();
    let daemons = 4;
    let pool = Daemons::new()
        .local(daemons)
        .max_queued_bytes(CAP)
        .seed(1)
        .start()?;
    println!(
        "{daemons} daemons on {}, queue capped at {CAP} bytes",
        pool.url()
    );

    // 1. A parallel map: results in order, a progress bar on a terminal.
    let counts = pool.map(&COUNT_PRIMES, (1..=64).map(|i| i * 5_000))?;
    println!(
        "map: {} tasks, primes below 320000: {}",
        counts.len(),
        counts.last().copied().unwrap_or(0)
    );

    // 2. Backpressure: while every daemon is busy with a long job, queue 512 KiB chunks
    //    without waiting until the cap says no. The refused chunk comes back to the caller,
    //    who can retry it later or answer "busy".
    let long_jobs = (0..daemons)
        .map(|_| pool.submit(&NAP, 300))
        .collect::<Result<Vec<_>, _>>()?;
    let chunk: Vec<f64> = (0..CHUNK).map(|i| ((i * 7919) % 1000) as f64).collect();
    let mut accepted = Vec::new();
    let (reason, refused) = loop {
        match pool.try_submit(&MEDIAN, chunk.clone()) {
            Ok(handle) => accepted.push(handle),
            Err((e, arg)) => break (e, arg),
        }
    };
    let queued_bytes = pool.status().memory.used;
    println!(
        "try_submit: {} chunks accepted, then refused one of {} values ({reason}) \
         with {queued_bytes} bytes queued",
        accepted.len(),
        refused.len()
    );
    mirai::collect(long_jobs)?;
    let medians = mirai::collect(accepted)?;
    // The refused chunk is ours again: now that the queue drained, it goes in.
    let retried = pool.submit(&MEDIAN, refused)?.wait()?;
    println!(
        "every median is {}; the refused chunk went in on retry: {retried}",
        medians.first().copied().unwrap_or(f64::NAN)
    );

    // 3. Share 80 MB once; each daemon maps it by name and reads all of it.
    let data: Vec<f64> = (0..10_000_000).map(f64::from).collect();
    let shared = mirai::share_f64(&data)?;
    let name = mirai::shared_name(&shared).unwrap_or_default();
    println!("shared {} MB once as {name}", (data.len() * 8) / 1_000_000);
    let sums = mirai::collect(pool.everywhere(&SHARED_SUM, shared.view(), daemons)?)?;
    let expected: f64 = data.iter().sum();
    println!(
        "all {} daemons read it: sums {}",
        sums.len(),
        if sums.iter().all(|&s| s == expected) {
            "agree with the host's"
        } else {
            "DIFFER from the host's"
        }
    );

    // 4. The counters.
    let s = pool.status();
    println!(
        "status: {} daemons, {} tasks completed of {} submitted, {} queued, \
         queue peak {} of {} bytes",
        s.connections,
        s.completed,
        s.submitted,
        s.awaiting,
        s.memory.peak,
        s.memory.capacity.unwrap_or(0)
    );
    println!("done in {:.2?}", start.elapsed());
    Ok(())
}
