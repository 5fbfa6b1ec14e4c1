//! Ordered maps with a bounded window, on real daemon processes: a million items through
//! `Pool::map_iter` with the host's memory bounded, the first error stopping submission, the
//! `Stream` form under tokio, and progress bars that count every result. This binary is its
//! own daemon program (`main` first calls `daemon_main_if_requested`).

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use mirai::{Daemons, Error, Pool, Registry, TaskFn, TaskOptions, task};
use serde::{Deserialize, Serialize};

mod common;

fn inc(x: u64) -> u64 {
    x + 1
}

/// Fails (panics) on item `bad`.
fn fail_at((i, bad): (u64, u64)) -> u64 {
    assert!(i != bad, "item {i} fails");
    i
}

/// One item of the start-recording task: it notes that it started (a file named by its index
/// in `dir`), sleeps, then returns its index or fails.
#[derive(Serialize, Deserialize)]
struct Job {
    dir: String,
    index: u64,
    sleep_ms: u64,
    fail: bool,
}

fn record(job: Job) -> u64 {
    std::fs::write(Path::new(&job.dir).join(job.index.to_string()), b"").expect("note the start");
    std::thread::sleep(Duration::from_millis(job.sleep_ms));
    assert!(!job.fail, "item {} fails", job.index);
    job.index
}

fn len(bytes: Vec<u8>) -> usize {
    bytes.len()
}

const INC: TaskFn<u64, u64> = task!(inc);
const LEN: TaskFn<Vec<u8>, usize> = task!(len);
const FAIL_AT: TaskFn<(u64, u64), u64> = task!(fail_at);
const RECORD: TaskFn<Job, u64> = task!(record);

fn registry() -> Registry {
    Registry::new()
        .with(&INC)
        .with(&LEN)
        .with(&FAIL_AT)
        .with(&RECORD)
}

const PATIENCE: Duration = Duration::from_secs(60);

/// A pool of `n` local daemons, all connected.
fn pool(n: usize) -> Pool {
    let pool = Daemons::new().local(n).start().expect("start the pool");
    common::eventually(PATIENCE, "the daemons connect", || {
        pool.status().connections == n as u64
    });
    pool
}

/// A scratch directory with a unique name, removed when dropped (even by a failing test).
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mirai-{name}-"))
            .tempdir()
            .expect("create the scratch directory");
        Self(dir)
    }

    fn job(&self, index: u64, sleep_ms: u64, fail: bool) -> Job {
        Job {
            dir: self.0.path().to_string_lossy().into_owned(),
            index,
            sleep_ms,
            fail,
        }
    }

    /// The indices of the tasks that started.
    fn started(&self) -> BTreeSet<u64> {
        std::fs::read_dir(self.0.path())
            .expect("read the scratch directory")
            .map(|e| {
                let name = e.expect("an entry").file_name();
                name.to_string_lossy().parse().expect("an index")
            })
            .collect()
    }
}

/// Waits until no task of `pool` is queued or running, so every task that will ever start has.
fn settle(pool: &Pool) {
    common::eventually(PATIENCE, "the pool goes idle", || {
        let s = pool.status();
        s.executing == 0 && s.awaiting == 0
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The next item of a stream (what `StreamExt::next` does).
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

fn a_million_items_stream_in_order_with_the_host_memory_bounded() {
    const N: u64 = 1_000_000;
    const BOUND: u64 = 32 << 20;
    let pool = pool(2);
    // Warm up (allocator arenas, dispatcher buffers) before the peak is reset.
    let warm: Vec<u64> = pool.map_iter(&INC, 0..10_000).map(Result::unwrap).collect();
    assert_eq!(warm.len(), 10_000);
    let results = pool.map_iter(&INC, 0..N);
    assert_eq!(results.in_flight_limit(), 64, "32 per daemon, at least 64");
    common::reset_peak_rss("self");
    let base = common::status_bytes("self", "VmRSS");
    let start = Instant::now();
    let mut expected = 0;
    for result in results {
        expected += 1;
        assert_eq!(result.expect("a result"), expected, "in input order");
    }
    let elapsed = start.elapsed();
    let growth = common::peak_rss("self").saturating_sub(base);
    assert_eq!(expected, N, "every item came out");
    println!(
        "  {N} items on 2 daemons in {elapsed:.1?}: peak RSS growth {:.2} MiB (bound {} MiB)",
        growth as f64 / f64::from(1 << 20),
        BOUND >> 20
    );
    // Submitting them all holds a million handles and queued tasks: about 500 bytes each
    // (measured with 200,000 items: 98 MiB), near 500 MiB. The window holds 64.
    assert!(growth < BOUND, "peak RSS grew by {growth} bytes");
    let status = pool.status();
    assert_eq!(status.completed, 10_000 + N);
    assert_eq!(pool.retained(), 0, "no outcome left behind");
}

fn no_task_starts_beyond_the_window_after_the_first_error() {
    const K: u64 = 8;
    const BAD: u64 = 50;
    let pool = pool(2);
    let scratch = Scratch::new("window");
    // The failing item is slow, so the other daemon would run far ahead if it could.
    let jobs = (0..10_000).map(|i| scratch.job(i, if i == BAD { 300 } else { 0 }, i == BAD));
    let mut results = pool.map_iter(&RECORD, jobs).in_flight(K as usize);
    for i in 0..BAD {
        assert_eq!(results.next().expect("a result").expect("a value"), i);
    }
    match results.next() {
        Some(Err(Error::Task { message, .. })) => assert!(message.contains("item 50 fails")),
        other => panic!("expected the task error of item {BAD}, got {other:?}"),
    }
    assert!(results.next().is_none(), "nothing after the first error");
    drop(results);
    settle(&pool);
    let started = scratch.started();
    println!("  started: 0..={} (window {K})", started.last().unwrap());
    assert!(
        (0..=BAD).all(|i| started.contains(&i)),
        "every item up to the error ran"
    );
    // When the error is seen the window is at most [BAD, BAD + K): nothing past it starts.
    assert!(
        started.iter().all(|&i| i < BAD + K),
        "started past the window: {:?}",
        started.range(BAD + K..).collect::<Vec<_>>()
    );
    assert_eq!(pool.retained(), 0);
}

fn map_stops_at_the_first_error_within_its_default_window() {
    const BAD: u64 = 40;
    let pool = pool(2);
    let scratch = Scratch::new("map-window");
    let limit = pool.map_iter(&RECORD, std::iter::empty()).in_flight_limit() as u64;
    let jobs = (0..10_000).map(|i| scratch.job(i, if i == BAD { 300 } else { 0 }, i == BAD));
    match pool.map(&RECORD, jobs) {
        Err(Error::Task { message, .. }) => assert!(message.contains("item 40 fails")),
        other => panic!("expected the task error of item {BAD}, got {other:?}"),
    }
    settle(&pool);
    let started = scratch.started();
    println!(
        "  started: 0..={} (window {limit})",
        started.last().unwrap()
    );
    assert!(started.iter().all(|&i| i < BAD + limit), "{started:?}");
    assert!((0..=BAD).all(|i| started.contains(&i)));
}

fn an_error_behind_a_slow_task_stops_submission_when_it_arrives() {
    const K: u64 = 8;
    let pool = pool(2);
    let scratch = Scratch::new("out-of-order");
    // Item 0 runs a second on one daemon; item 1 fails at once on the other. Were the error
    // seen only in its turn, the window would refill as item 0 comes out and item 8 would run.
    let jobs = (0..1_000).map(|i| scratch.job(i, if i == 0 { 1_000 } else { 0 }, i == 1));
    let results: Vec<_> = pool.map_iter(&RECORD, jobs).in_flight(K as usize).collect();
    assert_eq!(
        results.len(),
        2,
        "item 0, then the error of item 1: {results:?}"
    );
    assert_eq!(results[0].as_ref().expect("item 0 succeeds"), &0);
    assert!(
        matches!(&results[1], Err(Error::Task { message, .. }) if message.contains("item 1 fails"))
    );
    settle(&pool);
    let started = scratch.started();
    assert!(
        started.iter().all(|&i| i < K),
        "started after the error: {started:?}"
    );
}

fn the_first_error_in_input_order_wins_whatever_the_timing() {
    let pool = pool(2);
    let scratch = Scratch::new("first-error");
    // Item 3 fails after 300 ms, item 5 at once: the output is items 0..3, then item 3's error.
    let jobs = (0..100).map(|i| {
        let sleep_ms = if i == 3 { 300 } else { 0 };
        scratch.job(i, sleep_ms, i == 3 || i == 5)
    });
    let results: Vec<_> = pool.map_iter(&RECORD, jobs).in_flight(16).collect();
    assert_eq!(results.len(), 4, "{results:?}");
    for (i, r) in results[..3].iter().enumerate() {
        assert_eq!(*r.as_ref().expect("a value"), i as u64);
    }
    assert!(
        matches!(&results[3], Err(Error::Task { message, .. }) if message.contains("item 3 fails"))
    );
}

fn the_stream_gives_the_same_results_under_tokio() {
    const N: u64 = 20_000;
    let pool = pool(2);
    let iterated: Vec<u64> = pool.map_iter(&INC, 0..N).map(Result::unwrap).collect();
    // Moved into a spawned task: the stream owns what it needs.
    let stream = pool.map_stream(&INC, 0..N).in_flight(32);
    let rt = runtime();
    let streamed = rt
        .block_on(async move {
            tokio::spawn(async move {
                let mut stream = stream;
                let mut out = Vec::new();
                while let Some(result) = next(&mut stream).await {
                    out.push(result.expect("a result"));
                }
                assert!(futures_core::FusedStream::is_terminated(&stream));
                assert!(next(&mut stream).await.is_none(), "fused");
                out
            })
            .await
        })
        .expect("the task");
    assert_eq!(streamed, (1..=N).collect::<Vec<_>>());
    assert_eq!(streamed, iterated);

    // And at an error: the same output as the iterator's.
    let items = || (0..1_000).map(|i| (i, 700));
    let iterated: Vec<_> = pool.map_iter(&FAIL_AT, items()).collect();
    let streamed = rt.block_on(async {
        let mut stream = pool.map_stream(&FAIL_AT, items());
        let mut out = Vec::new();
        while let Some(result) = next(&mut stream).await {
            out.push(result);
        }
        out
    });
    assert_eq!(streamed.len(), 701);
    assert_eq!(iterated.len(), 701);
    for (i, (s, t)) in streamed.iter().zip(&iterated).enumerate().take(700) {
        assert_eq!(
            (s.as_ref().unwrap(), t.as_ref().unwrap()),
            (&(i as u64), &(i as u64))
        );
    }
    assert!(matches!(streamed[700], Err(Error::Task { .. })));
    assert!(matches!(iterated[700], Err(Error::Task { .. })));
    settle(&pool);
    assert_eq!(pool.retained(), 0);
}

fn the_window_waits_for_room_under_the_byte_cap() {
    const CAP: u64 = 200;
    let pool = Daemons::new()
        .local(2)
        .max_queued_bytes(CAP)
        .start()
        .expect("start the pool");
    // 40-byte items: about four fit under the cap, far fewer than the window's 64.
    let items = || (0..2_000).map(|i| vec![0u8; 40 + i % 3]);
    let expected: Vec<usize> = (0..2_000).map(|i| 40 + i % 3).collect();
    let iterated: Vec<usize> = pool.map_iter(&LEN, items()).map(Result::unwrap).collect();
    assert_eq!(iterated, expected);
    let streamed = runtime().block_on(async {
        let mut stream = pool.map_stream(&LEN, items());
        let mut out = Vec::new();
        while let Some(result) = next(&mut stream).await {
            out.push(result.expect("a result"));
        }
        out
    });
    assert_eq!(streamed, expected);
    let memory = pool.status().memory;
    // Held to the cap, and the cap (not the window) was what held submission back.
    assert!(
        memory.peak <= CAP && memory.peak > CAP - 2 * 43,
        "{memory:?}"
    );

    // An item that can never fit takes its place in the output as the error.
    let items = (0..1_000).map(|i| vec![0u8; if i == 500 { 300 } else { 40 }]);
    let results: Vec<_> = pool.map_iter(&LEN, items).collect();
    assert_eq!(results.len(), 501);
    assert!(results[..500].iter().all(|r| matches!(r, Ok(40))));
    assert!(
        matches!(results[500], Err(Error::TooLarge { .. })),
        "{:?}",
        results[500]
    );
}

fn task_options_reach_every_task_of_the_window() {
    let pool = pool(2);
    let scratch = Scratch::new("options");
    // Item 5 would run for a minute; the run timeout ends it, and the map with it.
    let jobs = (0..100).map(|i| scratch.job(i, if i == 5 { 60_000 } else { 0 }, false));
    let options = TaskOptions::new().run_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let results: Vec<_> = pool.map_iter(&RECORD, jobs).options(options).collect();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the run timeout was not applied"
    );
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(
        results[..5]
            .iter()
            .enumerate()
            .all(|(i, r)| matches!(r, Ok(v) if *v == i as u64))
    );
    assert!(
        matches!(results[5], Err(Error::TimedOut)),
        "{:?}",
        results[5]
    );
}

fn dropping_a_stream_early_cancels_its_tasks() {
    let pool = pool(1);
    let scratch = Scratch::new("drop");
    let jobs = (0..1_000).map(|i| scratch.job(i, 200, false));
    let mut results = pool.map_iter(&RECORD, jobs).in_flight(4);
    assert_eq!(results.next().expect("a result").expect("a value"), 0);
    drop(results);
    settle(&pool);
    let started = scratch.started();
    // Items 1..4 were in flight when it was dropped, 200 ms in; item 1 may have started
    // already, but item 3 would only start at 600 ms on the single daemon had it not been
    // cancelled.
    assert!(started.iter().all(|&i| i < 4), "{started:?}");
    assert!(!started.contains(&3), "a cancelled task ran: {started:?}");
    assert_eq!(pool.retained(), 0);
}

/// Progress bars (feature `progress`) that count every result, on draw targets the test reads.
#[cfg(feature = "progress")]
mod progress {
    use std::sync::{Arc, Mutex};

    use mirai::Error;
    use mirai::indicatif::{
        ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle, TermLike,
    };

    use super::{FAIL_AT, INC, pool, settle};

    /// A terminal that keeps what is drawn on it, for the test to read.
    #[derive(Debug, Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<String>>>);

    impl Recorded {
        /// The last non-empty text drawn.
        fn last(&self) -> String {
            let lines = self.0.lock().unwrap();
            lines
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .cloned()
                .unwrap_or_default()
        }

        fn bar(&self) -> ProgressBar {
            ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::term_like(Box::new(self.clone())),
            )
            .with_style(ProgressStyle::with_template("{pos}/{len}").expect("a template"))
            // Left as it stands at the end (not moved to its length, not cleared), so the last
            // drawing shows what was counted.
            .with_finish(ProgressFinish::Abandon)
        }
    }

    impl TermLike for Recorded {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub(super) fn the_iterator_bar_counts_each_result_as_it_comes_out() {
        let pool = pool(2);
        let bar = ProgressBar::hidden();
        let results = pool.map_iter(&INC, 0..500).progress(bar.clone());
        assert_eq!(bar.length(), Some(500), "set from the exact size");
        for (k, result) in results.enumerate() {
            assert_eq!(result.unwrap(), k as u64 + 1);
            assert_eq!(bar.position(), k as u64 + 1, "counted as it came out");
        }
        assert!(bar.is_finished());

        // Items of unknown number: the length is set once the last one is submitted.
        let bar = ProgressBar::hidden();
        let items = (0..300).filter(|i| i % 3 == 0);
        let out: Vec<u64> = pool
            .map_iter(&INC, items)
            .progress(bar.clone())
            .map(Result::unwrap)
            .collect();
        assert_eq!(out.len(), 100);
        assert_eq!((bar.position(), bar.length()), (100, Some(100)));
    }

    pub(super) fn map_draws_every_result_on_an_injected_target() {
        let pool = pool(2);
        let term = Recorded::default();
        let bar = term.bar();
        let out = pool
            .map_with_progress(&INC, 0..1_000, bar.clone())
            .expect("the map");
        assert_eq!(out, (1..=1_000).collect::<Vec<_>>());
        assert_eq!(term.last(), "1000/1000");
        assert!(bar.is_finished());

        // At an error the bar stops where the results did: the 300 before it, and it stays drawn.
        let term = Recorded::default();
        let bar = term.bar();
        let err = pool.map_with_progress(&FAIL_AT, (0..1_000).map(|i| (i, 300)), bar.clone());
        assert!(matches!(err, Err(Error::Task { .. })), "{err:?}");
        assert_eq!(bar.position(), 300);
        assert_eq!(term.last(), "300/1000");
        assert!(bar.is_finished(), "abandoned");
    }

    pub(super) fn collect_counts_every_result_on_an_injected_target() {
        let pool = pool(2);
        let handles = |bad: u64| -> Vec<mirai::Mirai<u64>> {
            (0..200)
                .map(|i| pool.submit(&FAIL_AT, (i, bad)).expect("submit"))
                .collect()
        };
        let term = Recorded::default();
        let bar = term.bar();
        let values = mirai::collect_with_progress(handles(u64::MAX), bar.clone()).expect("collect");
        assert_eq!(values, (0..200).collect::<Vec<_>>());
        assert_eq!(term.last(), "200/200");
        assert!(bar.is_finished());

        let term = Recorded::default();
        let bar = term.bar();
        let err = mirai::collect_with_progress(handles(120), bar.clone());
        assert!(matches!(err, Err(Error::Task { .. })), "{err:?}");
        assert_eq!(bar.position(), 120);
        assert_eq!(term.last(), "120/200");
        settle(&pool);
        assert_eq!(pool.retained(), 0);
    }
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    #[cfg_attr(not(feature = "progress"), allow(unused_mut))]
    let mut tests = vec![
        common::Test::new(
            "a_million_items_stream_in_order_with_the_host_memory_bounded",
            a_million_items_stream_in_order_with_the_host_memory_bounded,
        ),
        common::Test::new(
            "no_task_starts_beyond_the_window_after_the_first_error",
            no_task_starts_beyond_the_window_after_the_first_error,
        ),
        common::Test::new(
            "map_stops_at_the_first_error_within_its_default_window",
            map_stops_at_the_first_error_within_its_default_window,
        ),
        common::Test::new(
            "an_error_behind_a_slow_task_stops_submission_when_it_arrives",
            an_error_behind_a_slow_task_stops_submission_when_it_arrives,
        ),
        common::Test::new(
            "the_first_error_in_input_order_wins_whatever_the_timing",
            the_first_error_in_input_order_wins_whatever_the_timing,
        ),
        common::Test::new(
            "the_stream_gives_the_same_results_under_tokio",
            the_stream_gives_the_same_results_under_tokio,
        ),
        common::Test::new(
            "the_window_waits_for_room_under_the_byte_cap",
            the_window_waits_for_room_under_the_byte_cap,
        ),
        common::Test::new(
            "task_options_reach_every_task_of_the_window",
            task_options_reach_every_task_of_the_window,
        ),
        common::Test::new(
            "dropping_a_stream_early_cancels_its_tasks",
            dropping_a_stream_early_cancels_its_tasks,
        ),
    ];
    #[cfg(feature = "progress")]
    tests.extend([
        common::Test::new(
            "the_iterator_bar_counts_each_result_as_it_comes_out",
            progress::the_iterator_bar_counts_each_result_as_it_comes_out,
        ),
        common::Test::new(
            "map_draws_every_result_on_an_injected_target",
            progress::map_draws_every_result_on_an_injected_target,
        ),
        common::Test::new(
            "collect_counts_every_result_on_an_injected_target",
            progress::collect_counts_every_result_on_an_injected_target,
        ),
    ]);
    common::run(&tests);
}
