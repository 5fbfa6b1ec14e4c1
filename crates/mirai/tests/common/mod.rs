//! Support for the integration tests that are their own daemon program.
//!
//! These binaries use `harness = false`: `main` must first call `daemon_main_if_requested`, so
//! the daemons they spawn (the same binary re-executed) serve tasks instead of running the
//! tests. [`run`] then hands the tests to libtest-mimic, which reads libtest's command line as
//! `cargo test` and `cargo xtask soak` pass it (name filters, `--skip`, `--exact`, `--list`,
//! `--ignored`, `--include-ignored`, `--test-threads`, ...) and prints libtest's lines.

#![allow(dead_code)] // Each test binary uses a different part.

/// One test: a name, a body, and whether it only runs when asked for (`--ignored`).
pub(crate) struct Test {
    pub(crate) name: &'static str,
    pub(crate) run: fn(),
    pub(crate) ignored: bool,
}

impl Test {
    pub(crate) const fn new(name: &'static str, run: fn()) -> Self {
        Self {
            name,
            run,
            ignored: false,
        }
    }

    pub(crate) const fn ignored(name: &'static str, run: fn()) -> Self {
        Self {
            name,
            run,
            ignored: true,
        }
    }
}

/// Runs the tests the command line selects, prints libtest's lines and exits with its status.
///
/// The tests run one at a time unless `--test-threads` says otherwise: several of them watch
/// process-wide state (this process's peak memory, its children, `/dev/shm`) that a test running
/// beside them would change.
pub(crate) fn run(tests: &[Test]) -> ! {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = tests
        .iter()
        .map(|t| {
            let body = t.run;
            // A panic in `body` fails the trial (libtest-mimic catches it); each test's pool
            // is a local, so its daemons are reaped while the panic unwinds.
            libtest_mimic::Trial::test(t.name, move || {
                body();
                Ok(())
            })
            .with_ignored_flag(t.ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// Waits until `cond` holds, panicking with `what` after `patience`.
pub(crate) fn eventually(
    patience: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + patience;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether a process with this id exists (zombies included: they are not reaped yet).
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A line of `/proc/<pid>/status` (`pid` may be `"self"`) in bytes, e.g. `VmHWM` (the peak
/// resident memory) or `VmRSS`.
pub(crate) fn status_bytes(pid: &str, field: &str) -> u64 {
    proc_kib_field(&format!("/proc/{pid}/status"), field) * 1024
}

/// A `Name:   123 kB` line of a `/proc` file (`status`, `smaps_rollup`), in KiB.
pub(crate) fn proc_kib_field(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// A process's peak resident memory in bytes (`VmHWM`).
pub(crate) fn peak_rss(pid: &str) -> u64 {
    status_bytes(pid, "VmHWM")
}

/// Starts a new peak for [`peak_rss`]: from now on it reports the peak since this call.
pub(crate) fn reset_peak_rss(pid: &str) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
}

/// Whether `pid` is a running process: it exists and is neither exited nor a zombie (a zombie
/// has stopped running; only its parent's wait removes it).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A child process of the test (such as a host it kills): SIGKILLed and reaped when dropped,
/// so it never outlives the test, even one that fails.
pub(crate) struct KilledOnDrop(pub(crate) std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes that are not our children (the daemons of a host we killed): SIGKILLed on drop if
/// they are still alive, so none outlives the test even when it fails.
pub(crate) struct Orphans(pub(crate) Vec<u32>);

impl Drop for Orphans {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A user that exists for one test only (created with `useradd`, so the test must run as
/// root, and fails otherwise); removed on drop, even when the test fails.
pub(crate) struct ThrowawayUser {
    pub(crate) name: String,
}

impl ThrowawayUser {
    pub(crate) fn create(tag: &str) -> Self {
        let me = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&me.stdout).trim(),
            "0",
            "this test creates a user and must run as root"
        );
        let name = format!("mtu{tag}{}", std::process::id());
        let status = std::process::Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name}: {status}");
        Self { name }
    }

    pub(crate) fn uid(&self) -> u32 {
        let out = std::process::Command::new("id")
            .args(["-u", &self.name])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs a Python script as this user, with `args`; its stdout.
    pub(crate) fn python(&self, script: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("runuser")
            .args(["-u", &self.name, "--", "/usr/bin/python3", "-c", script])
            .args(args)
            .current_dir("/")
            .output()
            .expect("run python as the throwaway user");
        assert!(
            out.status.success(),
            "python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}
