//! The main job in one page: local daemons behind a byte cap, a parallel map, the cap refusing
//! work, one dataset shared once and read by every daemon, and the counters.
//!
//! `cargo run --release --example quickstart`

use std::time::Duration;

use mirai::{Daemons, Error, Registry, SharedView, TaskFn, task};

/// Counts the primes below `n`, slowly enough to be worth a daemon.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// Sums a shared vector the daemon maps by name.
fn shared_sum(v: SharedView) -> f64 {
    v.as_f64().map_or(f64::NAN, |x| x.iter().sum())
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

const COUNT_PRIMES: TaskFn<u64, u64> = task!(count_primes);
const SHARED_SUM: TaskFn<SharedView, f64> = task!(shared_sum);
const NAP: TaskFn<u64, u64> = task!(nap);

fn main() -> Result<(), Error> {
    let registry = Registry::new()
        .with(&COUNT_PRIMES)
        .with(&SHARED_SUM)
        .with(&NAP);
    // In a daemon child this serves tasks and exits; in the host it returns at once.
    mirai::daemon_main_if_requested(&registry);

    let daemons = 4;
    let pool = Daemons::new()
        .local(daemons)
        .max_queued_bytes(256)
        .seed(1)
        .start()?;
    println!("dispatcher at {} with {daemons} daemons", pool.url());

    let counts = pool.map(&COUNT_PRIMES, (1..=32).map(|i| i * 2_000))?;
    println!(
        "primes below 64000: {}",
        counts.last().copied().unwrap_or(0)
    );

    // Fill the 256-byte cap with naps nobody collects yet, until try_submit refuses.
    let mut held = Vec::new();
    let refused = loop {
        match pool.try_submit(&NAP, 20) {
            Ok(handle) => held.push(handle),
            Err((e, arg)) => break (e, arg),
        }
    };
    println!(
        "try_submit refused nap({}) after {} queued tasks: {}",
        refused.1,
        held.len(),
        refused.0
    );
    mirai::collect(held)?;

    let data: Vec<f64> = (0..1_000_000).map(f64::from).collect();
    let shared = mirai::share_f64(&data).map_err(|e| Error::Start(e.to_string()))?;
    println!(
        "shared {} MB as {}",
        (data.len() * 8) >> 20,
        mirai::shared_name(&shared).unwrap_or_default()
    );
    let sums = mirai::collect(pool.everywhere(&SHARED_SUM, shared.view(), daemons)?)?;
    println!("every daemon summed it: {sums:?}");

    println!("{:#?}", pool.status());
    Ok(())
}
