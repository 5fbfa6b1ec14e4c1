//! A throwaway local user for the tests of who a local listener admits (they need root, and
//! fail without it: CI runs as root).
//!
//! The user is created with `useradd` (no home directory, no login shell) and removed with
//! `userdel` when its guard drops, however the test ends. Programs run as that user through
//! `setpriv`, under a deadline after which they are killed by pid and reaped.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A local user that exists while this guard lives.
#[derive(Debug)]
pub(crate) struct ThrowawayUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ThrowawayUser {
    /// Creates a new user with a unique name. Panics (fails the test) when not root.
    pub(crate) fn create() -> Self {
        assert_eq!(
            rustix::process::geteuid().as_raw(),
            0,
            "this test creates a second local user and must run as root"
        );
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ntpeer{}x{n}", std::process::id());
        run_ok(Command::new("useradd").args([
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ]));
        // From here on the guard removes the user, even if reading its uid fails.
        let mut user = Self { name, uid: 0 };
        let out = Command::new("id")
            .args(["-u", &user.name])
            .output()
            .expect("id -u");
        user.uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no uid for {}", user.name));
        assert_ne!(user.uid, 0);
        user
    }

    /// Runs `program args` as this user (real and effective uid and gid, no supplementary
    /// groups); kills it if it has not finished within `limit`.
    pub(crate) fn run(&self, program: &str, args: &[&str], limit: Duration) -> Output {
        let mut child = Command::new("setpriv")
            .arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} as {}: {e}", self.name));
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} as {} did not finish within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("child output")
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        // `run` reaps every process it starts, so nothing of this user is left running.
        let _ = Command::new("userdel")
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
