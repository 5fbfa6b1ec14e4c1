//! Typed sharing (`#[derive(Frame)]`), measured against floors of the same run:
//!
//! - Sharing a derived struct of 200 MB (four 50 MB `Vec<f64>` columns, a data frame) with
//!   `share_typed`, against a `memcpy` of 200 MB into fresh memory (goal: at least 0.8x its speed,
//!   i.e. at most 1.25x its time). Best of 5 each.
//! - Attaching a 100-column frame by name and checking it into its generated view, timed inside a
//!   fresh process (median of 21 processes), for 10 rows and for 100,000 rows (80 MB), against a
//!   bare first attach of the same region in a fresh process (goal: at most 50 µs, and flat in the
//!   row count). At 100,000 rows each column starts on its own page, so reaching the columns at
//!   all costs a page fault each: an untyped walk of the columns by index (attach, then each
//!   column's header read) is the floor recorded beside it.
//!
//! Every region is unlinked on the way out (the `Shared` handles are dropped), a panic included;
//! every child is reaped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use mirai_benches::{Reaped, memcpy_fresh_floor, record};
use mori_shm::{Frame, FromShared, share_typed};

const MB: usize = 1_000_000;
const CHILD_ENV: &str = "MIRAI_BENCH_FRAMES_CHILD";

#[derive(Frame)]
#[mori(data_frame)]
struct Big {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

/// A frame of 100 double columns.
#[derive(Frame)]
#[mori(data_frame)]
struct Wide {
    c0: Vec<f64>,
    c1: Vec<f64>,
    c2: Vec<f64>,
    c3: Vec<f64>,
    c4: Vec<f64>,
    c5: Vec<f64>,
    c6: Vec<f64>,
    c7: Vec<f64>,
    c8: Vec<f64>,
    c9: Vec<f64>,
    c10: Vec<f64>,
    c11: Vec<f64>,
    c12: Vec<f64>,
    c13: Vec<f64>,
    c14: Vec<f64>,
    c15: Vec<f64>,
    c16: Vec<f64>,
    c17: Vec<f64>,
    c18: Vec<f64>,
    c19: Vec<f64>,
    c20: Vec<f64>,
    c21: Vec<f64>,
    c22: Vec<f64>,
    c23: Vec<f64>,
    c24: Vec<f64>,
    c25: Vec<f64>,
    c26: Vec<f64>,
    c27: Vec<f64>,
    c28: Vec<f64>,
    c29: Vec<f64>,
    c30: Vec<f64>,
    c31: Vec<f64>,
    c32: Vec<f64>,
    c33: Vec<f64>,
    c34: Vec<f64>,
    c35: Vec<f64>,
    c36: Vec<f64>,
    c37: Vec<f64>,
    c38: Vec<f64>,
    c39: Vec<f64>,
    c40: Vec<f64>,
    c41: Vec<f64>,
    c42: Vec<f64>,
    c43: Vec<f64>,
    c44: Vec<f64>,
    c45: Vec<f64>,
    c46: Vec<f64>,
    c47: Vec<f64>,
    c48: Vec<f64>,
    c49: Vec<f64>,
    c50: Vec<f64>,
    c51: Vec<f64>,
    c52: Vec<f64>,
    c53: Vec<f64>,
    c54: Vec<f64>,
    c55: Vec<f64>,
    c56: Vec<f64>,
    c57: Vec<f64>,
    c58: Vec<f64>,
    c59: Vec<f64>,
    c60: Vec<f64>,
    c61: Vec<f64>,
    c62: Vec<f64>,
    c63: Vec<f64>,
    c64: Vec<f64>,
    c65: Vec<f64>,
    c66: Vec<f64>,
    c67: Vec<f64>,
    c68: Vec<f64>,
    c69: Vec<f64>,
    c70: Vec<f64>,
    c71: Vec<f64>,
    c72: Vec<f64>,
    c73: Vec<f64>,
    c74: Vec<f64>,
    c75: Vec<f64>,
    c76: Vec<f64>,
    c77: Vec<f64>,
    c78: Vec<f64>,
    c79: Vec<f64>,
    c80: Vec<f64>,
    c81: Vec<f64>,
    c82: Vec<f64>,
    c83: Vec<f64>,
    c84: Vec<f64>,
    c85: Vec<f64>,
    c86: Vec<f64>,
    c87: Vec<f64>,
    c88: Vec<f64>,
    c89: Vec<f64>,
    c90: Vec<f64>,
    c91: Vec<f64>,
    c92: Vec<f64>,
    c93: Vec<f64>,
    c94: Vec<f64>,
    c95: Vec<f64>,
    c96: Vec<f64>,
    c97: Vec<f64>,
    c98: Vec<f64>,
    c99: Vec<f64>,
}

fn wide(rows: usize) -> Wide {
    let col: Vec<f64> = (0..rows).map(|i| i as f64).collect();
    Wide {
        c0: col.clone(),
        c1: col.clone(),
        c2: col.clone(),
        c3: col.clone(),
        c4: col.clone(),
        c5: col.clone(),
        c6: col.clone(),
        c7: col.clone(),
        c8: col.clone(),
        c9: col.clone(),
        c10: col.clone(),
        c11: col.clone(),
        c12: col.clone(),
        c13: col.clone(),
        c14: col.clone(),
        c15: col.clone(),
        c16: col.clone(),
        c17: col.clone(),
        c18: col.clone(),
        c19: col.clone(),
        c20: col.clone(),
        c21: col.clone(),
        c22: col.clone(),
        c23: col.clone(),
        c24: col.clone(),
        c25: col.clone(),
        c26: col.clone(),
        c27: col.clone(),
        c28: col.clone(),
        c29: col.clone(),
        c30: col.clone(),
        c31: col.clone(),
        c32: col.clone(),
        c33: col.clone(),
        c34: col.clone(),
        c35: col.clone(),
        c36: col.clone(),
        c37: col.clone(),
        c38: col.clone(),
        c39: col.clone(),
        c40: col.clone(),
        c41: col.clone(),
        c42: col.clone(),
        c43: col.clone(),
        c44: col.clone(),
        c45: col.clone(),
        c46: col.clone(),
        c47: col.clone(),
        c48: col.clone(),
        c49: col.clone(),
        c50: col.clone(),
        c51: col.clone(),
        c52: col.clone(),
        c53: col.clone(),
        c54: col.clone(),
        c55: col.clone(),
        c56: col.clone(),
        c57: col.clone(),
        c58: col.clone(),
        c59: col.clone(),
        c60: col.clone(),
        c61: col.clone(),
        c62: col.clone(),
        c63: col.clone(),
        c64: col.clone(),
        c65: col.clone(),
        c66: col.clone(),
        c67: col.clone(),
        c68: col.clone(),
        c69: col.clone(),
        c70: col.clone(),
        c71: col.clone(),
        c72: col.clone(),
        c73: col.clone(),
        c74: col.clone(),
        c75: col.clone(),
        c76: col.clone(),
        c77: col.clone(),
        c78: col.clone(),
        c79: col.clone(),
        c80: col.clone(),
        c81: col.clone(),
        c82: col.clone(),
        c83: col.clone(),
        c84: col.clone(),
        c85: col.clone(),
        c86: col.clone(),
        c87: col.clone(),
        c88: col.clone(),
        c89: col.clone(),
        c90: col.clone(),
        c91: col.clone(),
        c92: col.clone(),
        c93: col.clone(),
        c94: col.clone(),
        c95: col.clone(),
        c96: col.clone(),
        c97: col.clone(),
        c98: col.clone(),
        c99: col.clone(),
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    derive_share();
    typed_attach();
}

/// What a child process does: `MODE:NAME`, printing the nanoseconds it took.
fn child(spec: &str) {
    let (mode, name) = spec.split_once(':').expect("child spec is MODE:NAME");
    let t = Instant::now();
    let view = mori_shm::map_shared(name).expect("attach");
    let ns = match mode {
        "attach" => t.elapsed().as_nanos(),
        "typed" => {
            let typed = WideView::from_shared(view).expect("a 100-column frame");
            let ns = t.elapsed().as_nanos();
            std::hint::black_box(typed.c99.len());
            ns
        }
        "walk" => {
            // The floor of a typed view: reach every column by index, untyped (each column's
            // header is read, so each column's first page is touched).
            for i in 0..view.len() {
                std::hint::black_box(view.get(i).expect("a column").sexptype());
            }
            t.elapsed().as_nanos()
        }
        other => panic!("unknown child mode {other}"),
    };
    println!("{ns}");
}

/// Median of `runs` fresh processes each timing `mode` on `name`, in microseconds.
fn child_us(mode: &str, name: &str, runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let mut c = Reaped(
                Command::new(std::env::current_exe().expect("current exe"))
                    .env(CHILD_ENV, format!("{mode}:{name}"))
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn child"),
            );
            let mut line = String::new();
            BufReader::new(c.0.stdout.as_mut().expect("piped"))
                .read_line(&mut line)
                .expect("child line");
            let ns: f64 = line.trim().parse().expect("child time");
            ns / 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn derive_share() {
    let column = |k: f64| -> Vec<f64> { (0..50 * MB / 8).map(|i| i as f64 + k).collect() };
    let big = Big {
        a: column(0.0),
        b: column(1.0),
        c: column(2.0),
        d: column(3.0),
    };
    let floor = memcpy_fresh_floor(200 * MB);
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let shared = share_typed(&big).expect("share the frame");
            let took = t.elapsed().as_secs_f64();
            drop(shared);
            took
        })
        .fold(f64::INFINITY, f64::min);
    record(
        "frames/derive share 200 MB (4 f64 columns)",
        best * 1e3,
        "ms",
        "memcpy 200 MB into fresh memory",
        floor * 1e3,
    );
}

fn typed_attach() {
    const RUNS: usize = 21;
    let small = share_typed(&wide(10)).expect("share 100 x 10");
    let large = share_typed(&wide(100_000)).expect("share 100 x 100,000");
    let bare_small = child_us("attach", small.name(), RUNS);
    let typed_small = child_us("typed", small.name(), RUNS);
    let typed_large = child_us("typed", large.name(), RUNS);
    let walk_large = child_us("walk", large.name(), RUNS);
    record(
        "frames/attach + typed view, 100 columns x 10 rows (fresh process)",
        typed_small,
        "us",
        "bare first attach of the same region",
        bare_small,
    );
    record(
        "frames/attach + typed view, 100 columns x 100,000 rows (fresh process)",
        typed_large,
        "us",
        "the same, 10 rows",
        typed_small,
    );
    record(
        "frames/attach + typed view, 100 columns x 100,000 rows (fresh process)",
        typed_large,
        "us",
        "attach + untyped walk of the 100 columns, 100,000 rows",
        walk_large,
    );
}
