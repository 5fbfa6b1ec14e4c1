//! Writer and reader throughput, each against a floor measured in the same run.
//!
//! - Writing 200 MB of doubles from a borrowed `&[f64]` into fresh memory, against a plain copy
//!   of the same bytes into fresh memory (the goal is at least 0.8x of that copy).
//! - Reading (validate + `&[f64]`) a 200 MB region, against the same read of a 1 KB region: the
//!   cost must not depend on the payload size.
//! - Validating a list of 10,000 elements, against a list of 1,000 (per element): linear.
//!
//! Criterion reports the timings; the ratio lines are printed and appended to
//! `$MIRAI_BENCH_RECORDS` by `mirai_benches::record`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mori_format::value::Value;
use mori_format::{AlignedBuf, Region, Source, View, WriteOptions};

const BIG: usize = 200 * 1000 * 1000 / 8;
const SMALL: usize = 1000 / 8;

fn doubles(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.5).collect()
}

/// Write `x` through the builder into freshly allocated memory, page faults included.
fn write_fresh(x: &[f64], opts: &WriteOptions) -> AlignedBuf {
    let src = Source::Double(x);
    let plan = src.plan(opts).expect("plan");
    let mut buf = AlignedBuf::zeroed(plan.len());
    plan.write_into(&mut buf).expect("write");
    buf
}

/// Copy `bytes` into freshly allocated memory: the floor of any write into a new region.
fn memcpy_fresh(bytes: &[u8]) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(bytes.len());
    buf.copy_from_slice(bytes);
    buf
}

fn read_sum_len(region: &[u8]) -> usize {
    match Region::new(region).expect("valid").root() {
        View::Double(v) => v.data().len(),
        _ => unreachable!("a double region"),
    }
}

fn list_region(n: usize) -> AlignedBuf {
    let v = Value::list(vec![Value::double([1.0, 2.0]); n]);
    let opts = WriteOptions::default();
    let mut buf = AlignedBuf::zeroed(mori_format::encoded_len(&v, &opts).expect("len"));
    mori_format::write(&v, &mut buf, &opts).expect("write");
    buf
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn criterion_benches(c: &mut Criterion, big: &[f64], opts: &WriteOptions) {
    let bytes: &[u8] = bytemuck::cast_slice(big);
    let mut g = c.benchmark_group("write 200 MB f64");
    g.sample_size(10)
        .throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("builder into fresh memory", |b| {
        b.iter(|| write_fresh(black_box(big), opts))
    });
    g.bench_function("memcpy into fresh memory (floor)", |b| {
        b.iter(|| memcpy_fresh(black_box(bytes)))
    });
    g.finish();

    let big_region = write_fresh(big, opts);
    let small_region = write_fresh(&doubles(SMALL), opts);
    let mut g = c.benchmark_group("read f64 region");
    g.bench_function("200 MB", |b| {
        b.iter(|| read_sum_len(black_box(&big_region)))
    });
    g.bench_function("1 KB", |b| {
        b.iter(|| read_sum_len(black_box(&small_region)))
    });
    g.finish();

    let list = list_region(10_000);
    c.bench_function("validate list of 10,000", |b| {
        b.iter(|| Region::new(black_box(&list)).expect("valid"))
    });
}

fn ratios(big: &[f64], opts: &WriteOptions) {
    let bytes: &[u8] = bytemuck::cast_slice(big);
    let gb = bytes.len() as f64 / 1e9;
    let write = best_of(5, || drop(black_box(write_fresh(big, opts))));
    let copy = best_of(5, || drop(black_box(memcpy_fresh(bytes))));
    mirai_benches::record(
        "mori-format write 200 MB f64 (builder)",
        gb / write.as_secs_f64(),
        "GB/s",
        "memcpy into fresh memory",
        gb / copy.as_secs_f64(),
    );

    let big_region = write_fresh(big, opts);
    let small_region = write_fresh(&doubles(SMALL), opts);
    let reads = 100_000;
    let per_read = |region: &[u8]| {
        best_of(5, || {
            for _ in 0..reads {
                black_box(read_sum_len(black_box(region)));
            }
        })
        .as_secs_f64()
            * 1e9
            / reads as f64
    };
    mirai_benches::record(
        "mori-format read 200 MB f64 (validate + view)",
        per_read(&big_region),
        "ns",
        "same read of a 1 KB region",
        per_read(&small_region),
    );

    let per_element = |n: usize| {
        let list = list_region(n);
        let rounds = 2_000_000 / n;
        best_of(5, || {
            for _ in 0..rounds {
                black_box(Region::new(black_box(&list)).expect("valid"));
            }
        })
        .as_secs_f64()
            * 1e9
            / (rounds * n) as f64
    };
    mirai_benches::record(
        "mori-format validate list of 10,000 (per element)",
        per_element(10_000),
        "ns",
        "list of 1,000 (per element)",
        per_element(1_000),
    );
}

fn main() {
    let big = doubles(BIG);
    let opts = WriteOptions::default();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &big, &opts);
    c.final_summary();
    ratios(&big, &opts);
}
