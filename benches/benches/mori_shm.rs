//! mori-shm against its floors, each measured in the same run:
//!
//! - `share()` of 200 MB of f64 vs a `memcpy` of 200 MB into freshly allocated memory (both pay
//!   the page faults of new memory; R's mori takes 137-179 ms for the same share), and vs the
//!   kernel's own floor for it: one `pwrite` of the 200 MB into a new tmpfs file.
//! - The first attach by name in a fresh process, timed inside that process, for 1 KB, 1 MB and
//!   1 GB regions (goal: <= 20 µs, and 1 GB within 1.2x of 1 KB). Each against the bare system
//!   calls of an attach of the same region in a fresh process (`open`, `fstat`, `mmap` of the
//!   whole size, the first read of the header page: `mori_shm::probes::bare_attach`), so what
//!   the kernel's part costs at each size is a measured peer. 1 MB and 1 GB also against 1 KB;
//!   the bare calls at 1 MB and 1 GB against the bare calls at 1 KB (how much of any growth with
//!   size is the kernel's); what the attach adds to the bare calls (paired run by run) at 1 MB
//!   and 1 GB against the same at 1 KB; and 1 KB against `open` + `fstat` alone. Medians of 42
//!   fresh processes per figure, the sizes and kinds interleaved (their order rotated from run
//!   to run) so that a change of load during the run moves them all alike.
//! - 8 processes reading one 200 MB region: their summed PSS (`/proc/PID/smaps_rollup`) over
//!   the region size, against 8 processes that each read a private copy.
//!
//! `MORI_SHM_BENCH_ONLY=share`, `attach` or `pss` runs one part alone.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use mirai_benches::{Goal, Reaped, memcpy_fresh_floor, record, record_with_goal};

const CHILD_ENV: &str = "MORI_SHM_BENCH_CHILD";
const MB: usize = 1_000_000;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    // `MORI_SHM_BENCH_ONLY=attach` runs the first-attach figures alone.
    let only = std::env::var("MORI_SHM_BENCH_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if run("share") {
        share_200mb();
    }
    if run("attach") {
        first_attach();
    }
    if run("pss") {
        summed_pss();
    }
}

/// What a child process does: `MODE:NAME`.
fn child(spec: &str) {
    let (mode, name) = spec.split_once(':').expect("child spec is MODE:NAME");
    match mode {
        "attach" => {
            let t = Instant::now();
            let view = mori_shm::map_shared(name).expect("attach");
            let ns = t.elapsed().as_nanos();
            std::hint::black_box(view.len());
            println!("{ns}");
        }
        "bare" => {
            let t = Instant::now();
            let bare = mori_shm::probes::bare_attach(name).expect("bare attach");
            let ns = t.elapsed().as_nanos();
            std::hint::black_box(bare.first());
            println!("{ns}");
        }
        "open" => {
            let path = format!("/dev/shm{name}");
            let t = Instant::now();
            let f = std::fs::File::open(&path).expect("open");
            let len = f.metadata().expect("fstat").len();
            let ns = t.elapsed().as_nanos();
            std::hint::black_box(len);
            println!("{ns}");
        }
        "read-shared" | "read-private" => {
            let view = mori_shm::map_shared(name).expect("attach");
            let sum: f64 = if mode == "read-shared" {
                view.as_f64().expect("doubles").iter().sum()
            } else {
                let private = view.as_f64().expect("doubles").to_vec();
                drop(view);
                let s = private.iter().sum();
                std::mem::forget(private); // held until exit
                s
            };
            println!("ready {sum}");
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn(mode: &str, name: &str) -> Reaped {
    Reaped(
        Command::new(std::env::current_exe().expect("current exe"))
            .env(CHILD_ENV, format!("{mode}:{name}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child"),
    )
}

fn first_line(child: &mut Reaped) -> String {
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("child line");
    line.trim().to_owned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn doubles(bytes: usize) -> Vec<f64> {
    (0..bytes / 8).map(|i| i as f64).collect()
}

/// Wall and CPU time (of this thread, system calls and page faults included) of one call; what
/// it returns is dropped (unmapped, unlinked) after the clocks stop.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, f64) {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    };
    let (w0, c0) = (Instant::now(), cpu());
    let out = f();
    let times = (w0.elapsed().as_secs_f64(), cpu() - c0);
    drop(out);
    times
}

/// The best wall time and the best CPU time of 5 runs of `f`, in milliseconds.
fn best_of_5<T>(mut f: impl FnMut() -> T) -> (f64, f64) {
    (0..5)
        .map(|_| timed(&mut f))
        .fold((f64::INFINITY, f64::INFINITY), |(w, c), (w1, c1)| {
            (w.min(w1 * 1e3), c.min(c1 * 1e3))
        })
}

/// Removes a floor's file even if the bench panics.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `share()` of 200 MB against two floors: a `memcpy` into fresh memory (what any copy into new
/// memory pays) and one `pwrite` of the same bytes into a new tmpfs file (the kernel's own cost
/// of putting them into shared pages). Wall times are the figures the goal is about; CPU times
/// of the measuring thread are reported beside them because they move far less than wall
/// times when other work shares the two cores.
fn share_200mb() {
    let x = doubles(200 * MB);
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let share = best_of_5(|| mori_shm::share_f64(&x).expect("share"));
    let memcpy = best_of_5(|| {
        let mut dst: Vec<u8> = Vec::with_capacity(bytes.len());
        dst.extend_from_slice(&bytes);
        std::hint::black_box(dst)
    });
    let pwrite = best_of_5(|| {
        use std::os::unix::fs::FileExt;
        let path = Removed(format!("/dev/shm/mori-bench-floor-{}", std::process::id()));
        let f = std::fs::File::create_new(&path.0).expect("floor file");
        f.write_all_at(&bytes, 0).expect("pwrite floor");
        (f, path)
    });
    let floor = memcpy_fresh_floor(200 * MB) * 1e3;
    let name = "mori share() 200 MB f64";
    record(
        name,
        share.0,
        "ms",
        "memcpy 200 MB into fresh memory",
        floor,
    );
    record(
        name,
        share.0,
        "ms",
        "pwrite 200 MB into a new tmpfs file",
        pwrite.0,
    );
    let name = "mori share() 200 MB f64, CPU time";
    record(
        name,
        share.1,
        "ms",
        "memcpy into fresh memory, CPU",
        memcpy.1,
    );
    record(
        name,
        share.1,
        "ms",
        "pwrite into a tmpfs file, CPU",
        pwrite.1,
    );
}

/// Microseconds `mode` on `name` took, timed inside a fresh process.
fn child_time(mode: &str, name: &str) -> f64 {
    let mut c = spawn(mode, name);
    let ns: f64 = first_line(&mut c).parse().expect("child time");
    ns / 1e3
}

/// The first attach and the bare system calls of an attach, each in fresh processes, at three
/// sizes. The goal: at most 20 µs at every size, and flat (1 GB within 1.2x of 1 KB).
fn first_attach() {
    const RUNS: usize = 42;
    const GOAL_US: f64 = 20.0;
    const FLAT: f64 = 1.2;
    let sizes = [("1 KB", 1_000), ("1 MB", MB), ("1 GB", 1_000 * MB)];
    let regions: Vec<_> = sizes
        .iter()
        .map(|&(_, bytes)| mori_shm::share_f64(&doubles(bytes)).expect("share"))
        .collect();
    // times[size] = (attach, bare, open), one sample per run.
    let mut times = vec![(Vec::new(), Vec::new(), Vec::new()); sizes.len()];
    // Which size goes first, and whether the attach or the bare calls run first, change from
    // run to run: a process started right after another one of a different kind runs colder.
    for run in 0..RUNS {
        for k in 0..sizes.len() {
            let i = (run + k) % sizes.len();
            let (name, t) = (regions[i].name(), &mut times[i]);
            if run % 2 == 0 {
                t.0.push(child_time("attach", name));
                t.1.push(child_time("bare", name));
            } else {
                t.1.push(child_time("bare", name));
                t.0.push(child_time("attach", name));
            }
            t.2.push(child_time("open", name));
        }
    }
    drop(regions);
    // What attaching adds to the bare calls, paired run by run (the two processes ran one
    // right after the other).
    let over_bare: Vec<f64> = times
        .iter()
        .map(|(a, b, _)| median(a.iter().zip(b).map(|(a, b)| a - b).collect()))
        .collect();
    let medians: Vec<(f64, f64, f64)> = times
        .into_iter()
        .map(|(a, b, o)| (median(a), median(b), median(o)))
        .collect();
    let (attach_1kb, bare_1kb, open_1kb) = medians[0];
    record_with_goal(
        "mori first attach 1 KB (fresh process)",
        attach_1kb,
        "us",
        "open+fstat of the same file",
        open_1kb,
        Goal::value_at_most(GOAL_US),
    );
    for (&(label, _), &(attach, bare, _)) in sizes.iter().zip(&medians) {
        record_with_goal(
            &format!("mori first attach {label} (fresh process)"),
            attach,
            "us",
            "open+fstat+mmap+first read, same size (fresh process)",
            bare,
            Goal::value_at_most(GOAL_US),
        );
    }
    for (&(label, _), &(attach, bare, _)) in sizes.iter().zip(&medians).skip(1) {
        record_with_goal(
            &format!("mori first attach {label} (fresh process)"),
            attach,
            "us",
            "first attach 1 KB",
            attach_1kb,
            Goal::ratio_at_most(FLAT),
        );
        record(
            &format!("open+fstat+mmap+first read {label} (fresh process)"),
            bare,
            "us",
            "open+fstat+mmap+first read 1 KB",
            bare_1kb,
        );
    }
    for (&(label, _), &over) in sizes.iter().zip(&over_bare).skip(1) {
        record(
            &format!("mori first attach {label} over the bare calls (fresh process)"),
            over,
            "us",
            "the same at 1 KB",
            over_bare[0],
        );
    }
}

/// Summed PSS of 8 readers in `mode`, over the region size.
fn readers_pss(mode: &str) -> f64 {
    let bytes = 200 * MB;
    let shared = mori_shm::share_f64(&doubles(bytes)).expect("share");
    let mut readers: Vec<Reaped> = (0..8).map(|_| spawn(mode, shared.name())).collect();
    for r in &mut readers {
        assert!(first_line(r).starts_with("ready"));
    }
    // Only the 8 readers map the region now.
    drop(shared);
    let total: f64 = readers.iter().map(|r| mirai_benches::pss(r.0.id())).sum();
    total / bytes as f64
}

fn summed_pss() {
    let shared = readers_pss("read-shared");
    let private = readers_pss("read-private");
    record(
        "8 readers of one 200 MB region: summed PSS/size",
        shared,
        "x",
        "8 readers of private copies",
        private,
    );
}
