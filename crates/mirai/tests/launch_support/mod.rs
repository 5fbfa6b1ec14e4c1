//! What the launch tests share: the daemon entry point (the test binary itself, run with the
//! harness arguments below), a dispatcher to dial, and a task that reports where it ran.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use mirai::launch::{Join, Program};
use mirai::{Registry, TaskFn, task};
use mirai_dispatch::{Dispatcher, DispatcherConfig, Outcome};

/// Where a task ran: its process id and the environment variables that tell how it started
/// (the url and launch id as the daemon was started with them: a daemon removes its own
/// variables from its environment once read, so they are read from `/proc/self/environ`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Whereabouts {
    pub pid: u32,
    pub url: Option<String>,
    pub launch_id: Option<String>,
    pub ssh_connection: Option<String>,
    pub slurm_array_task_id: Option<String>,
}

/// A variable of the environment this process started with.
pub fn initial_var(name: &str) -> Option<String> {
    let environ = std::fs::read("/proc/self/environ").ok()?;
    environ.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

fn where_am_i((): ()) -> Whereabouts {
    let var = |k: &str| std::env::var(k).ok();
    Whereabouts {
        pid: std::process::id(),
        url: initial_var("MIRAI_DAEMON_URL"),
        launch_id: initial_var("MIRAI_DAEMON_LAUNCH_ID"),
        ssh_connection: var("SSH_CONNECTION"),
        slurm_array_task_id: var("SLURM_ARRAY_TASK_ID"),
    }
}

pub const WHERE_AM_I: TaskFn<(), Whereabouts> = task!(where_am_i);

fn square(x: u64) -> u64 {
    x * x
}

/// A plain typed task, for the pool tests.
pub const SQUARE: TaskFn<u64, u64> = task!(square);

/// What a daemon's secrets could leak into, seen from a task: every command line on this
/// machine, the environment a process the task starts gets, and the daemon's own.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Exposure {
    pub pid: u32,
    /// `(pid, /proc/<pid>/cmdline)` of every process, read while the task runs.
    pub cmdlines: Vec<(u32, Vec<u8>)>,
    /// `/proc/self/environ` of a child the task started (`sh -c 'cat /proc/$$/environ'`).
    pub child_environ: Vec<u8>,
    /// What `env` prints in a child the task started.
    pub child_env: String,
    /// The daemon's environment now: every `MIRAI_DAEMON_*` variable's name.
    pub daemon_vars: Vec<String>,
    /// The environment the daemon was started with (`/proc/self/environ`).
    pub daemon_initial_environ: Vec<u8>,
}

fn exposure((): ()) -> Exposure {
    let mut cmdlines = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok())
            && let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
        {
            cmdlines.push((pid, cmdline));
        }
    }
    let child = |script: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    Exposure {
        pid: std::process::id(),
        cmdlines,
        child_environ: child("cat /proc/$$/environ"),
        child_env: String::from_utf8_lossy(&child("env")).into_owned(),
        daemon_vars: std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("MIRAI_DAEMON_"))
            .collect(),
        daemon_initial_environ: std::fs::read("/proc/self/environ").unwrap_or_default(),
    }
}

/// Reports what a daemon's secrets could leak into.
pub const EXPOSURE: TaskFn<(), Exposure> = task!(exposure);

impl Exposure {
    /// Fails the test if any of `secrets` shows anywhere this report covers.
    pub fn assert_hides(&self, secrets: &[&str]) {
        let holds =
            |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        for secret in secrets {
            assert!(!secret.is_empty());
            for (pid, cmdline) in &self.cmdlines {
                assert!(
                    !holds(cmdline, secret),
                    "a secret is on the command line of process {pid}: {}",
                    String::from_utf8_lossy(cmdline)
                );
            }
            assert!(
                !holds(&self.child_environ, secret),
                "a task's child inherits a secret"
            );
            assert!(
                !holds(self.child_env.as_bytes(), secret),
                "a task's child inherits a secret"
            );
            assert!(
                !holds(&self.daemon_initial_environ, secret),
                "the secret is in the daemon's environment"
            );
        }
        assert!(self.cmdlines.len() > 1, "the daemon sees the process list");
        assert!(
            !holds(&self.child_environ, "MIRAI_DAEMON_")
                && !self.child_env.contains("MIRAI_DAEMON_"),
            "a task's child inherits the daemon's variables: {}",
            self.child_env
        );
        assert!(self.daemon_vars.is_empty(), "{:?}", self.daemon_vars);
        assert!(
            holds(&self.daemon_initial_environ, "MIRAI_DAEMON_URL="),
            "the report comes from a daemon"
        );
    }
}

/// What a task child that is this same program (started with `args`) did: its exit code and
/// stderr, or `None` when it was still running after 20 seconds (it had become a daemon).
fn run_self(args: Vec<String>) -> Option<(Option<i32>, String)> {
    let mut child = std::process::Command::new(std::env::current_exe().ok()?)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Some((status.code(), err));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs this program again from inside a task (see `run_self`).
pub const RUN_SELF: TaskFn<Vec<String>, Option<(Option<i32>, String)>> = task!(run_self);

/// Called by the `daemon_entry` test of each file: serves tasks and exits when this process
/// was started as a daemon; fails otherwise.
pub fn daemon_entry() {
    mirai::daemon_main_if_requested(&registry());
    panic!("daemon_entry only runs as a launched daemon");
}

/// Every task the launch tests' daemons serve.
pub fn registry() -> Registry {
    Registry::new()
        .with(&WHERE_AM_I)
        .with(&SQUARE)
        .with(&EXPOSURE)
        .with(&RUN_SELF)
}

/// The arguments that make this test binary run only `daemon_entry`.
pub const DAEMON_ARGS: [&str; 5] = [
    "--exact",
    "daemon_entry",
    "--ignored",
    "--test-threads=1",
    "--nocapture",
];

/// This test binary as the daemon program: the harness runs only `daemon_entry`.
pub fn this_program() -> Program {
    DAEMON_ARGS
        .iter()
        .fold(Program::current().unwrap(), |p, a| p.arg(*a))
}

/// A dispatcher on a loopback TCP port, and what a daemon needs to join it.
pub fn dispatcher() -> (Dispatcher, Join) {
    let token = format!("launch-test-token-{}", std::process::id());
    // Plain tcp on loopback, allowed explicitly: the ssh launcher's reverse tunnel carries it.
    let (d, _events) = Dispatcher::start(
        DispatcherConfig::new("tcp://127.0.0.1:0", token.clone().into_bytes()).with_plain_tcp(true),
    )
    .expect("start dispatcher");
    let join = Join::new(d.url(), token).idletime(Duration::from_secs(60));
    (d, join)
}

/// Runs `where_am_i` on some daemon of `d` and returns its answer, failing after `patience`.
pub fn ask(d: &Dispatcher, patience: Duration) -> Whereabouts {
    let id = d
        .submit(WHERE_AM_I.to_task(&()).expect("encode"), None)
        .expect("submit");
    match d.wait(id, Some(patience)) {
        Some(outcome @ Outcome::Value(_)) => WHERE_AM_I.decode(outcome).expect("decode"),
        other => panic!("no answer from a launched daemon within {patience:?}: {other:?}"),
    }
}

/// Whether process `pid` is running (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

/// Waits up to `patience` for process `pid` to end; whether it did.
pub fn ends_within(pid: u32, patience: Duration) -> bool {
    let t = std::time::Instant::now();
    while alive(pid) {
        if t.elapsed() > patience {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs `where_am_i` once on every daemon of `pool` (at least `n` of them, waiting for them
/// to join), failing after `patience`.
pub fn ask_everywhere(pool: &mirai::Pool, n: usize, patience: Duration) -> Vec<Whereabouts> {
    pool.everywhere(&WHERE_AM_I, (), n)
        .expect("everywhere")
        .into_iter()
        .map(|mut h| {
            h.wait_timeout(patience)
                .unwrap_or_else(|e| panic!("no answer from a launched daemon: {e}"))
        })
        .collect()
}

/// Kills process `pid` (a daemon this test launched) if it still runs after the dispatcher
/// went away, so no daemon outlives its test even when it fails to exit by itself.
pub struct Reap(pub Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !ends_within(pid, Duration::from_secs(5)) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}
