//! Floors and reporting shared by the benchmark binaries.
//!
//! These machines are noisy, so no figure stands alone: each benchmark measures a floor (a
//! Unix-socket ping-pong between two processes, a `memcpy`) or a peer (pynng, Python's
//! `ProcessPoolExecutor`) in the same run and reports the ratio. [`record`] prints one line and,
//! when `MIRAI_BENCH_RECORDS` names a file (as `cargo xtask bench` does), appends it there as a
//! JSON record `{name, value, unit, peer, peer_value, ratio}`; [`record_with_goal`] adds a
//! `goal` field `{of, cmp, target, met}`. The peer is always a measurement of the same run,
//! never a target; a missing or failed peer fails the bench ([`missing_peer`], naming
//! `cargo xtask setup`) and a non-finite figure is never recorded.
//!
//! A benchmark binary that uses [`uds_pingpong_floor`] must call [`serve_floor_child`] first
//! thing in `main`: the floor re-executes the binary as its echo process.
//!
//! ```no_run
//! mirai_benches::serve_floor_child();
//! let floor = mirai_benches::uds_pingpong_floor(64, 1_000, 20_000);
//! mirai_benches::record("floor p50", floor.p50_us(), "us", "self", floor.p50_us());
//! ```

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod record;
pub use record::{
    Cmp, Goal, Of, figure_json, missing_peer, peer_python, record, record_with_goal, run_peer,
};

const CHILD_ENV: &str = "MIRAI_BENCH_FLOOR_ECHO";

/// Sorted round-trip samples with percentile accessors.
#[derive(Debug, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Wrap and sort raw samples.
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Self(v)
    }

    /// The `q` quantile (0.0..=1.0) in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i].as_secs_f64() * 1e6
    }

    /// Median in microseconds.
    pub fn p50_us(&self) -> f64 {
        self.quantile_us(0.5)
    }

    /// 99th percentile in microseconds.
    pub fn p99_us(&self) -> f64 {
        self.quantile_us(0.99)
    }
}

/// If this process was started as the floor's echo child, echo until EOF and exit.
pub fn serve_floor_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, size) = spec
        .rsplit_once(':')
        .expect("floor child spec is PATH:SIZE");
    let size: usize = size.parse().expect("floor child size");
    let mut s = UnixStream::connect(path).expect("floor child connect");
    let mut buf = vec![0u8; size];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
    std::process::exit(0);
}

/// Blocking ping-pong of `size` bytes over a Unix stream socket with a child process: the
/// floor every round-trip figure is compared with (`anchors.md`: 20,000 timed after 1,000 warm-up).
pub fn uds_pingpong_floor(size: usize, warmup: usize, rounds: usize) -> Samples {
    // A fresh private directory (removed on drop, a panic included) with a short socket path.
    let dir = tempfile::Builder::new()
        .prefix("mirai-floor-")
        .tempdir()
        .expect("floor temp dir");
    let path = dir.path().join("floor.sock");
    let listener = UnixListener::bind(&path).expect("floor bind");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, format!("{}:{size}", path.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn floor child");
    let (mut s, _) = listener.accept().expect("floor accept");
    drop(dir);
    let mut buf = vec![7u8; size];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let t = Instant::now();
        s.write_all(&buf).expect("floor write");
        s.read_exact(&mut buf).expect("floor read");
        if i >= warmup {
            samples.push(t.elapsed());
        }
    }
    drop(s);
    let _ = child.wait();
    Samples::new(samples)
}

/// Runs `f` with the calling thread, and every thread and process it starts meanwhile, on one
/// CPU, then restores the thread's CPU set.
///
/// Why: on these 2-vCPU virtual machines a wake-up of the other, idle vCPU costs 50-60 µs
/// (the hypervisor's inter-processor interrupt), against 3 µs for a wake-up on the same CPU,
/// and whether two ping-pong partners share a CPU is the scheduler's coin flip, made anew for
/// each pair of processes. Latency figures taken unpinned are therefore bimodal for the floor
/// and for every peer alike; pinned, each measures its own software path. The unpinned figures
/// are still recorded beside the pinned ones.
///
/// ```
/// let cpus = mirai_benches::on_one_cpu(|| std::thread::available_parallelism().unwrap().get());
/// assert_eq!(cpus, 1);
/// ```
pub fn on_one_cpu<R>(f: impl FnOnce() -> R) -> R {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let before = sched_getaffinity(None).expect("read the CPU set");
    let first = (0..CpuSet::MAX_CPU)
        .find(|&cpu| before.is_set(cpu))
        .expect("a thread runs on some CPU");
    let mut one = CpuSet::new();
    one.set(first);
    sched_setaffinity(None, &one).expect("pin to one CPU");
    let out = f();
    sched_setaffinity(None, &before).expect("restore the CPU set");
    out
}

/// Best time of 5 copies of `bytes` bytes into freshly allocated memory (page faults included,
/// as they are for a write into a fresh shared region), in seconds.
pub fn memcpy_fresh_floor(bytes: usize) -> f64 {
    let src = vec![1u8; bytes];
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut dst: Vec<u8> = Vec::with_capacity(bytes);
            dst.extend_from_slice(&src);
            std::hint::black_box(&dst);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Proportional set size of process `pid`, in bytes (the `Pss:` line of its `smaps_rollup`).
///
/// ```
/// assert!(mirai_benches::pss(std::process::id()) > 0.0);
/// ```
pub fn pss(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Pss line");
    kb * 1024.0
}

/// One `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in bytes.
fn status_bytes(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in /proc/{pid}/status"));
    kb * 1024.0
}

/// Resident set size of process `pid` now, in bytes (`VmRSS:` of `/proc/PID/status`).
///
/// ```
/// assert!(mirai_benches::vm_rss(std::process::id()) > 0.0);
/// ```
pub fn vm_rss(pid: u32) -> f64 {
    status_bytes(pid, "VmRSS")
}

/// Peak resident set size of process `pid` since it started or since the last
/// [`reset_peak_rss`], in bytes (`VmHWM:` of `/proc/PID/status`). Never below [`vm_rss`] read
/// before it.
///
/// ```
/// let me = std::process::id();
/// let rss = mirai_benches::vm_rss(me);
/// assert!(mirai_benches::vm_hwm(me) >= rss);
/// ```
pub fn vm_hwm(pid: u32) -> f64 {
    status_bytes(pid, "VmHWM")
}

/// Resets the peak resident set size of process `pid` to its current resident set size (writes
/// `5` to `/proc/PID/clear_refs`), so a later [`vm_hwm`] shows the peak of what ran since.
///
/// ```
/// let me = std::process::id();
/// let block = vec![1u8; 64 << 20];
/// drop(std::hint::black_box(block));
/// assert!(mirai_benches::vm_hwm(me) >= mirai_benches::vm_rss(me) + (60 << 20) as f64);
/// mirai_benches::reset_peak_rss(me);
/// assert!(mirai_benches::vm_hwm(me) < mirai_benches::vm_rss(me) + (60 << 20) as f64);
/// ```
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("reset the peak RSS of {pid}: {e}"));
}

/// Allocates one copy of `bytes` bytes, writes every page of it and frees it: what holding one
/// copy of a payload of that size costs a process, for memory figures to be measured against.
/// Returns the number of bytes it held.
///
/// ```
/// assert_eq!(mirai_benches::touch_one_copy(1 << 20), 1 << 20);
/// ```
pub fn touch_one_copy(bytes: usize) -> usize {
    let copy = vec![1u8; bytes];
    std::hint::black_box(&copy);
    copy.len()
}

/// The growth of this process's peak RSS (`VmHWM`, reset first, over `VmRSS` before) while
/// [`touch_one_copy`] runs, in bytes: one copy of a `bytes`-byte payload, measured. The peer
/// of figures that count copies of a payload ("peak growth / one copy"), never the payload's
/// size itself.
///
/// ```
/// let one = mirai_benches::one_copy_peak_growth(64 << 20);
/// assert!(one >= (60 << 20) as f64, "{one}");
/// ```
pub fn one_copy_peak_growth(bytes: usize) -> f64 {
    let me = std::process::id();
    reset_peak_rss(me);
    let before = vm_rss(me);
    touch_one_copy(bytes);
    vm_hwm(me) - before
}

/// A child process killed and reaped when dropped, so a bench that panics leaves none behind.
///
/// ```
/// let child = mirai_benches::Reaped(std::process::Command::new("sleep").arg("60").spawn().unwrap());
/// let pid = child.0.id();
/// drop(child);
/// assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
/// ```
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
