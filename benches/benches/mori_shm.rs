//! mori-shm against its floors, each measured in the same run:
//!
//! - `share()` of 200 MB of f64 vs a `memcpy` of 200 MB into freshly allocated memory (both pay
//!   the page faults of new memory; R's mori takes 137-179 ms for the same share), and vs the
//!   kernel's own floor for it: one `pwrite` of the 200 MB into a new tmpfs file.
//! - The first attach by name in a fresh process, timed inside that process, for 1 KB, 1 MB and
//!   1 GB regions: 1 KB against opening and stat-ing the same file (the syscalls any attach
//!   needs), 1 MB and 1 GB against 1 KB (flat means a ratio near 1).
//! - 8 processes reading one 200 MB region: their summed PSS (`/proc/PID/smaps_rollup`) over
//!   the region size, against 8 processes that each read a private copy.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use mirai_benches::{memcpy_fresh_floor, record};

const CHILD_ENV: &str = "MORI_SHM_BENCH_CHILD";
const MB: usize = 1_000_000;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    share_200mb();
    first_attach();
    summed_pss();
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

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

fn share_200mb() {
    let x = doubles(200 * MB);
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let shared = mori_shm::share_f64(&x).expect("share");
            let s = t.elapsed().as_secs_f64();
            drop(shared);
            s
        })
        .fold(f64::INFINITY, f64::min);
    let floor = memcpy_fresh_floor(200 * MB);
    let pwrite = pwrite_fresh_floor(bytemuck_bytes(&x));
    record(
        "mori share() 200 MB f64",
        best * 1e3,
        "ms",
        "memcpy 200 MB into fresh memory",
        floor * 1e3,
    );
    record(
        "mori share() 200 MB f64",
        best * 1e3,
        "ms",
        "pwrite 200 MB into a new tmpfs file",
        pwrite * 1e3,
    );
}

/// The bytes of `x` (an f64 has no padding and any byte pattern is valid to read).
fn bytemuck_bytes(x: &[f64]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Best time of 5 `pwrite`s of `bytes` into a new file in `/dev/shm` (the file is removed).
fn pwrite_fresh_floor(bytes: Vec<u8>) -> f64 {
    use std::os::unix::fs::FileExt;
    /// Removes the floor's file even if the bench panics.
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    (0..5)
        .map(|_| {
            let path = Removed(format!("/dev/shm/mori-bench-floor-{}", std::process::id()));
            let t = Instant::now();
            let f = std::fs::File::create_new(&path.0).expect("floor file");
            f.write_all_at(&bytes, 0).expect("pwrite floor");
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Median of `runs` fresh processes each timing `mode` on `name`, in microseconds.
fn child_times(mode: &str, name: &str, runs: usize) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let mut c = spawn(mode, name);
                let ns: f64 = first_line(&mut c).parse().expect("child time");
                ns / 1e3
            })
            .collect(),
    )
}

fn first_attach() {
    const RUNS: usize = 21;
    let mut by_size = Vec::new();
    for (label, bytes) in [("1 KB", 1_000), ("1 MB", MB), ("1 GB", 1_000 * MB)] {
        let shared = mori_shm::share_f64(&doubles(bytes)).expect("share");
        let attach = child_times("attach", shared.name(), RUNS);
        let open = child_times("open", shared.name(), RUNS);
        by_size.push((label, attach, open));
    }
    let (_, base, open) = by_size[0];
    record(
        "mori first attach 1 KB (fresh process)",
        base,
        "us",
        "open+fstat of the same file",
        open,
    );
    for &(label, attach, _) in &by_size[1..] {
        record(
            &format!("mori first attach {label} (fresh process)"),
            attach,
            "us",
            "first attach 1 KB",
            base,
        );
    }
}

/// Proportional set size of process `pid`, in bytes.
fn pss(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Pss line");
    kb * 1024.0
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
    let total: f64 = readers.iter().map(|r| pss(r.0.id())).sum();
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
