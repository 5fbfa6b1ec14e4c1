//! A host killed mid-task leaves no daemon behind, even when the tasks never look at their
//! cancel token.
//!
//! This binary plays three parts, chosen by the environment: a local daemon (the pool re-runs
//! it, and `main` first calls `daemon_main_if_requested`), the host (a `tls+tcp://` pool with 2
//! local daemons plus 1 daemon of its own starting that dials in over TLS with the pinned
//! fingerprint, as a remote one would) and the test itself, which SIGKILLs the host.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mirai::{Daemons, Registry, TaskFn, task};

mod common;

/// Which part this process plays (unset: the test runner).
const ROLE: &str = "MIRAI_HOST_LOSS_ROLE";
/// For the daemon that dials in: the pool's address, token and fingerprint.
const REMOTE_URL: &str = "MIRAI_HOST_LOSS_URL";
const REMOTE_TOKEN: &str = "MIRAI_HOST_LOSS_TOKEN";
const REMOTE_PIN: &str = "MIRAI_HOST_LOSS_PIN";
/// Where tasks mark that they started.
const MARKS: &str = "MIRAI_HOST_LOSS_MARKS";

const PATIENCE: Duration = Duration::from_secs(30);
/// How long a daemon may outlive its killed host.
const BOUND: Duration = Duration::from_secs(5);

/// Writes its daemon's process id into the directory `dir` (so the host knows the task started,
/// and where), then sleeps `ms` without ever looking at its cancel token.
fn mark_then_sleep((dir, ms): (String, u64)) -> u32 {
    let pid = std::process::id();
    std::fs::write(PathBuf::from(dir).join(pid.to_string()), b"").expect("write the start mark");
    std::thread::sleep(Duration::from_millis(ms));
    pid
}

const MARK_THEN_SLEEP: TaskFn<(String, u64), u32> = task!(mark_then_sleep);

fn registry() -> Registry {
    Registry::new().with(&MARK_THEN_SLEEP)
}

fn main() {
    mirai::daemon_main_if_requested(&registry());
    match std::env::var(ROLE).as_deref() {
        Ok("host") => host(),
        Ok("remote") => remote(),
        _ => common::run(&[common::Test::new(
            "a_killed_host_leaves_no_busy_daemon_behind",
            a_killed_host_leaves_no_busy_daemon_behind,
        )]),
    }
}

/// The daemon that dials in over `tls+tcp://`, pinning the pool's certificate.
fn remote() -> ! {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set"));
    let code = mirai::run_daemon_tls(
        &var(REMOTE_URL),
        var(REMOTE_TOKEN).as_bytes(),
        &var(REMOTE_PIN),
        &registry(),
    );
    std::process::exit(code);
}

/// The host: 3 daemons each running a task that sleeps 60 s without looking at its token; prints
/// `pids P1 P2 P3` (the daemons running them) and waits to be killed.
fn host() -> ! {
    let marks = std::env::var(MARKS).expect("the marks directory");
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .local(2)
        .start()
        .expect("start the pool");
    let pin = pool
        .tls_fingerprint()
        .expect("a tls+tcp pool has a fingerprint");
    // Its child, as an ssh launch's daemon would be a child of sshd: orphaned with the host.
    let remote = Command::new(std::env::current_exe().expect("this program"))
        .env(ROLE, "remote")
        .env(REMOTE_URL, pool.url())
        .env(REMOTE_TOKEN, pool.token())
        .env(REMOTE_PIN, pin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the daemon that dials in");
    let deadline = Instant::now() + PATIENCE;
    while pool.status().connections < 3 {
        assert!(Instant::now() < deadline, "3 daemons did not join");
        std::thread::sleep(Duration::from_millis(10));
    }
    // One task per daemon: each goes to an idle one.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            pool.submit(&MARK_THEN_SLEEP, (marks.clone(), 60_000))
                .expect("submit")
        })
        .collect();
    let started = || std::fs::read_dir(&marks).map_or(0, |d| d.count());
    while started() < 3 {
        assert!(Instant::now() < deadline, "the 3 tasks did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut pids: Vec<u32> = pool.local_pids();
    pids.push(remote.id());
    println!(
        "pids {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Killed here, with the pool, its daemons and its handles still live.
    let _keep = (pool, remote, handles);
    loop {
        std::thread::park();
    }
}

fn a_killed_host_leaves_no_busy_daemon_behind() {
    let marks = tempfile::tempdir().expect("create the marks directory");
    let mut host = common::KilledOnDrop(
        Command::new(std::env::current_exe().expect("this program"))
            .env(ROLE, "host")
            .env(MARKS, marks.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the host"),
    );
    let stdout = host.0.stdout.take().expect("the host's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the host's pid line");
    let pids: Vec<u32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("unexpected host output {line:?}"))
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    let daemons = common::Orphans(pids);
    // Exactly these three ran the tasks, one each.
    let mut ran: Vec<u32> = std::fs::read_dir(marks.path())
        .expect("the marks")
        .map(|e| {
            e.expect("a mark")
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("a pid")
        })
        .collect();
    ran.sort_unstable();
    let mut reported = daemons.0.clone();
    reported.sort_unstable();
    assert_eq!(ran, reported, "one task on each daemon");
    assert!(
        daemons.0.iter().all(|&p| common::alive(p)),
        "daemons run tasks"
    );
    // Let the tasks run a while, as long tasks do, then kill the host.
    std::thread::sleep(Duration::from_secs(1));
    host.0.kill().expect("SIGKILL the host");
    host.0.wait().expect("reap the host");
    let t = Instant::now();
    while daemons.0.iter().any(|&p| common::alive(p)) {
        let left: Vec<u32> = daemons
            .0
            .iter()
            .copied()
            .filter(|&p| common::alive(p))
            .collect();
        assert!(
            t.elapsed() < BOUND,
            "daemons {left:?} outlived their host by {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
