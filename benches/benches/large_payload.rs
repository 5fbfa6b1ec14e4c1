//! 200 MB through one task and back on one local daemon, for each payload kind, against a
//! memcpy of 200 MB into fresh memory and a nano-transport PUSH/PULL of one 200 MB message, all
//! measured in this one run.
//!
//! - Round trip: one echo task (it returns its argument), best of 3 after one warm-up, against
//!   the memcpy floor (goal <= 3x) and against twice the PUSH/PULL one-way time (the bytes go
//!   out and come back). The PUSH/PULL runs in this process over an ipc path, `send_vec` (the
//!   sender does not copy), timed from the send until the receiver holds the whole message,
//!   best of 3 after one warm-up.
//! - Memory figures count copies of the payload: each is against one copy measured in the same
//!   run and the same process, the peak RSS growth (`VmHWM` after a reset, over `VmRSS` before)
//!   of allocating and writing one 200 MB buffer (`touch_one_copy`): on the host directly, on
//!   the daemon as a task measured the way the daemon's figures are.
//! - Host peak over the live argument: the RSS the host's argument took when it was built, plus
//!   what the host's peak (reset once it is built) added over it while a task that returns only
//!   its length runs (goal <= 1.05 copies).
//! - Daemon peak: the daemon's peak RSS is reset before a task and read after it, over its RSS
//!   before the task (goal <= 1.1 copies), for the length task (argument in), the echo task
//!   (argument in, result out) and a task building a 200 MB result (result out).
//! - Host extra when receiving a 200 MB result built on the daemon, over its RSS before the
//!   task (goal <= 1.05 copies: the result itself).
//!
//! The payload kinds are listed once, in [`kinds!`] at the top: a type alias and one line each.
//! Every process is reaped and the ipc directory removed on the way out, a panic included. This
//! binary is its own daemon program: `main` first calls `daemon_main_if_requested`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mirai::{Daemons, Mirai, Pool, Registry, TaskFn, task};
use mirai_benches::{record, reset_peak_rss, vm_hwm, vm_rss};
use nano_transport::{Protocol, Socket};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes as serde users send them today: `serialize_bytes` of a `Vec<u8>`.
type BytesBySerde = serde_bytes::ByteBuf;
/// f64 as serde users send them today: a `Vec<f64>`, element by element.
type F64BySerde = Vec<f64>;
/// Bytes that travel beside the encoded value, never copied by the encoding.
type BytesZeroCopy = mirai::Bytes;
/// f64 that travel as their own bytes, read in place on the daemon.
type F64ZeroCopy = mirai::Array<f64>;

/// Every payload kind measured, one line each: `"label" => type, elements element;`, where the
/// type is `From<Vec<element>>` and has a `len()` in elements (its own or through `Deref`).
macro_rules! kinds {
    () => {
        kinds! {
            "bytes ByteBuf" => BytesBySerde, elements u8;
            "f64 Vec<f64>" => F64BySerde, elements f64;
            "bytes mirai::Bytes" => BytesZeroCopy, elements u8;
            "f64 mirai::Array" => F64ZeroCopy, elements f64;
        }
    };
    ($($label:literal => $ty:ty, elements $elem:ty;)*) => {
        /// The tasks of every kind, and [`PID`].
        fn registry() -> Registry {
            let registry = Registry::new().with(&PID).with(&ONE_COPY);
            $(let registry = kind!($label, $ty, $elem).register(registry);)*
            registry
        }

        /// Measures every kind on `pool`, whose one daemon is `daemon`.
        fn measure_all(pool: &Pool, daemon: u32, peers: &Peers) {
            $(measure(pool, daemon, &kind!($label, $ty, $elem), peers);)*
        }
    };
}

/// The tasks and helpers of one payload kind.
macro_rules! kind {
    ($label:literal, $ty:ty, $elem:ty) => {
        Kind::<$ty> {
            label: $label,
            echo: TaskFn::new(concat!("echo ", $label), |a: $ty| a),
            len: TaskFn::new(concat!("len ", $label), |a: $ty| {
                (a.len() * size_of::<$elem>()) as u64
            }),
            make: TaskFn::new(concat!("make ", $label), |n: u64| {
                build::<$ty, $elem>(n as usize)
            }),
            build: build::<$ty, $elem>,
            bytes: |a: &$ty| a.len() * size_of::<$elem>(),
        }
    };
}

kinds!();

const MB: usize = 1_000_000;
const PAYLOAD: usize = 200 * MB;
/// Timed rounds after one warm-up; the best is reported.
const ROUNDS: usize = 3;
const PATIENCE: Duration = Duration::from_secs(120);

fn pid((): ()) -> u32 {
    std::process::id()
}

const PID: TaskFn<(), u32> = task!(pid);

/// One copy of an `n`-byte payload, allocated, written and freed on the daemon.
fn one_copy(n: u64) -> u64 {
    mirai_benches::touch_one_copy(n as usize) as u64
}

const ONE_COPY: TaskFn<u64, u64> = task!(one_copy);

/// A payload of `bytes` bytes (`bytes / size_of::<E>()` elements, all 1).
fn build<A: From<Vec<E>>, E: From<u8> + Clone>(bytes: usize) -> A {
    A::from(vec![E::from(1); bytes / size_of::<E>()])
}

/// One payload kind: its tasks (echo, length, build on the daemon) and how the host builds and
/// measures one.
struct Kind<A: 'static> {
    label: &'static str,
    echo: TaskFn<A, A>,
    len: TaskFn<A, u64>,
    make: TaskFn<u64, A>,
    build: fn(usize) -> A,
    bytes: fn(&A) -> usize,
}

impl<A: Serialize + DeserializeOwned + 'static> Kind<A> {
    fn register(&self, registry: Registry) -> Registry {
        registry.with(&self.echo).with(&self.len).with(&self.make)
    }
}

/// The floors and the peer, measured in this run.
struct Peers {
    /// memcpy of [`PAYLOAD`] bytes into fresh memory, in seconds.
    memcpy: f64,
    /// PUSH/PULL of one [`PAYLOAD`]-byte message, one way, in seconds.
    push_pull: f64,
    /// One copy of the payload: peak RSS growth of allocating and writing it, in bytes.
    one_copy: OneCopy,
}

/// One copy of the payload, measured on each side: the peer of every memory figure.
struct OneCopy {
    /// On the host, directly.
    host: f64,
    /// On the daemon, as the [`ONE_COPY`] task, measured as the daemon's figures are.
    daemon: f64,
}

impl OneCopy {
    const HOST: &str = "one copy of the payload, measured on the host";
    const DAEMON: &str = "one copy of the payload, measured on the daemon";

    fn measure(pool: &Pool, daemon: u32) -> Self {
        let host = measured(
            mirai_benches::one_copy_peak_growth(PAYLOAD),
            "one copy on the host",
        );
        let (n, _, on_daemon) = peaks(pool, daemon, || {
            wait(
                "one copy",
                "one_copy",
                pool.submit(&ONE_COPY, PAYLOAD as u64),
            )
        });
        assert_eq!(n, PAYLOAD as u64, "the daemon held one whole copy");
        let daemon = measured(on_daemon, "one copy on the daemon");
        eprintln!(
            "one copy of 200 MB, measured: host {:.3} MB, daemon {:.3} MB",
            host / MB as f64,
            daemon / MB as f64
        );
        Self { host, daemon }
    }
}

/// Fails the bench unless `value` is a positive, finite measurement.
fn measured(value: f64, what: &str) -> f64 {
    assert!(
        value.is_finite() && value > 0.0,
        "{what}: no measurement ({value})"
    );
    value
}

/// A private temp directory for the ipc socket, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mirai-large-payload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench temp dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Best one-way time of a [`PAYLOAD`]-byte nano-transport PUSH/PULL message over ipc, from the
/// send until the receiver holds all of it, after one warm-up.
fn push_pull() -> f64 {
    let scratch = Scratch::new();
    let url = format!("ipc://{}", scratch.0.join("pushpull.ipc").display());
    let pull = Socket::new(Protocol::Pull0).expect("nano-transport PULL socket");
    // The default limit is 1 MiB; the protocol header comes on top of the payload.
    pull.set_recv_max_size(PAYLOAD + 1024);
    let url = pull
        .listen(&url)
        .unwrap_or_else(|e| panic!("nano-transport PULL listen on {url}: {e}"))
        .local_url()
        .to_owned();
    let push = Socket::new(Protocol::Push0).expect("nano-transport PUSH socket");
    push.dial_blocking(&url, PATIENCE)
        .unwrap_or_else(|e| panic!("nano-transport PUSH dial {url}: {e}"));
    let mut times = Vec::new();
    for _ in 0..=ROUNDS {
        let body = vec![7u8; PAYLOAD];
        let t = Instant::now();
        push.send_vec(body)
            .unwrap_or_else(|e| panic!("nano-transport PUSH send of {PAYLOAD} B: {e}"));
        let msg = pull
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("nano-transport PULL recv of {PAYLOAD} B: {e}"));
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(
            msg.len(),
            PAYLOAD,
            "nano-transport PULL got the whole message"
        );
    }
    eprintln!("nano-transport PUSH/PULL 200 MB one way, s (warm-up first): {times:.3?}");
    best(&times[1..])
}

fn best(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Runs [`PID`] on the pool's daemon: the daemon has finished (and freed) what came before.
fn settle(pool: &Pool, daemon: u32) {
    let mut handle = pool.submit(&PID, ()).expect("submit pid");
    let pid = handle.wait_timeout(PATIENCE).expect("pid task");
    assert_eq!(pid, daemon, "the pool's one daemon was not replaced");
}

/// Runs `submit` with the daemon's and this process's peak RSS reset just before; returns its
/// result, the host's peak over its RSS before (read as soon as the result is in) and the
/// daemon's (read once the daemon has answered a later task).
fn peaks<R>(pool: &Pool, daemon: u32, submit: impl FnOnce() -> R) -> (R, f64, f64) {
    settle(pool, daemon);
    let me = std::process::id();
    reset_peak_rss(daemon);
    let daemon_before = vm_rss(daemon);
    reset_peak_rss(me);
    let host_before = vm_rss(me);
    let out = submit();
    let host_extra = vm_hwm(me) - host_before;
    settle(pool, daemon);
    let daemon_extra = vm_hwm(daemon) - daemon_before;
    (out, host_extra, daemon_extra)
}

/// The result of a submitted task, or a panic saying which failed.
fn wait<R: DeserializeOwned>(
    label: &str,
    task_name: &str,
    submitted: Result<Mirai<R>, mirai::Error>,
) -> R {
    submitted
        .unwrap_or_else(|e| panic!("{label}: submit {task_name}: {e}"))
        .wait_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("{label}: {task_name}: {e}"))
}

fn measure<A>(pool: &Pool, daemon: u32, kind: &Kind<A>, peers: &Peers)
where
    A: Serialize + DeserializeOwned + 'static,
{
    let name = |what: &str| format!("large_payload/{}/{what}", kind.label);
    let mb = |bytes: f64| bytes / MB as f64;
    let (one_host, one_daemon) = (mb(peers.one_copy.host), mb(peers.one_copy.daemon));

    // Round trip through the echo task.
    let mut times = Vec::new();
    for _ in 0..=ROUNDS {
        let arg = (kind.build)(PAYLOAD);
        let t = Instant::now();
        let back: A = wait(kind.label, "echo", pool.submit(&kind.echo, arg));
        times.push(t.elapsed().as_secs_f64());
        assert_eq!((kind.bytes)(&back), PAYLOAD, "the echo returned it all");
    }
    eprintln!(
        "{}: round trip 200 MB, s (warm-up first): {times:.3?}",
        kind.label
    );
    let round_trip = best(&times[1..]);
    record(
        &name("round trip 200 MB"),
        round_trip,
        "s",
        "memcpy 200 MB into fresh memory",
        peers.memcpy,
    );
    record(
        &name("round trip 200 MB"),
        round_trip,
        "s",
        "nano-transport push/pull 200 MB x2",
        2.0 * peers.push_pull,
    );

    // Argument in: the host's peak over the live argument (what building it took, measured),
    // the daemon's peak growth.
    let me = std::process::id();
    let before = vm_rss(me);
    let arg = (kind.build)(PAYLOAD);
    let arg_rss = vm_rss(me) - before;
    let (len, host_extra, daemon_extra) = peaks(pool, daemon, || {
        wait(kind.label, "len", pool.submit(&kind.len, arg))
    });
    assert_eq!(len, PAYLOAD as u64, "the length task saw it all");
    record(
        &name("host peak over live argument"),
        mb(arg_rss + host_extra),
        "MB",
        OneCopy::HOST,
        one_host,
    );
    record(
        &name("daemon peak, argument in"),
        mb(daemon_extra),
        "MB",
        OneCopy::DAEMON,
        one_daemon,
    );

    // Argument in, result out.
    let arg = (kind.build)(PAYLOAD);
    let (back, _, daemon_extra) = peaks(pool, daemon, || {
        wait(kind.label, "echo", pool.submit(&kind.echo, arg))
    });
    assert_eq!((kind.bytes)(&back), PAYLOAD, "the echo returned it all");
    drop(back);
    record(
        &name("daemon peak, argument in + result out"),
        mb(daemon_extra),
        "MB",
        OneCopy::DAEMON,
        one_daemon,
    );

    // Result out, built on the daemon: what receiving it adds on the host.
    let (made, host_extra, daemon_extra) = peaks(pool, daemon, || {
        wait(kind.label, "make", pool.submit(&kind.make, PAYLOAD as u64))
    });
    assert_eq!((kind.bytes)(&made), PAYLOAD, "the result came whole");
    drop(made);
    record(
        &name("host extra receiving result"),
        mb(host_extra),
        "MB",
        OneCopy::HOST,
        one_host,
    );
    record(
        &name("daemon peak, result out"),
        mb(daemon_extra),
        "MB",
        OneCopy::DAEMON,
        one_daemon,
    );
}

fn main() {
    mirai::daemon_main_if_requested(&registry());

    let memcpy = measured(
        mirai_benches::memcpy_fresh_floor(PAYLOAD),
        "memcpy 200 MB into fresh memory",
    );
    let push_pull = measured(push_pull(), "nano-transport PUSH/PULL 200 MB over ipc");
    record(
        "large_payload/nano-transport push/pull 200 MB one way",
        push_pull,
        "s",
        "memcpy 200 MB into fresh memory",
        memcpy,
    );

    let pool = Daemons::new().local(1).start().expect("start the daemon");
    let deadline = Instant::now() + PATIENCE;
    while pool.status().connections < 1 {
        assert!(Instant::now() < deadline, "the daemon did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut handle = pool.submit(&PID, ()).expect("submit pid");
    let daemon = handle.wait_timeout(PATIENCE).expect("the daemon's pid");
    assert_eq!(pool.local_pids(), vec![daemon], "one local daemon");
    let peers = Peers {
        memcpy,
        push_pull,
        one_copy: OneCopy::measure(&pool, daemon),
    };
    measure_all(&pool, daemon, &peers);
}
