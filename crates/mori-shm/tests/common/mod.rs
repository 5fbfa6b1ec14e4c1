//! Helpers shared by the integration tests: child processes and regions that are cleaned up
//! even when a test fails.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The `mori` binary built with the tests (feature `cli`).
#[cfg(feature = "cli")]
pub const MORI: &str = env!("CARGO_BIN_EXE_mori");

/// The files under /dev/shm of regions created by `pid`.
pub fn regions_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("mori_{pid:x}_");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The file under /dev/shm of region `name` (`/mori_...`).
pub fn region_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

/// A child process that is killed and reaped when dropped, with every region it created
/// removed; a test that had not already failed then fails if the child left any region.
pub struct ChildGuard {
    pub child: Child,
    pub stdout: Option<BufReader<ChildStdout>>,
    /// Set when the test expects the child's regions to be gone only after cleanup (a killed
    /// creator leaves its region by design).
    pub may_leave_regions: bool,
}

impl ChildGuard {
    /// Start `cmd` with piped stdin and stdout.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().map(BufReader::new);
        Self {
            child,
            stdout,
            may_leave_regions: false,
        }
    }

    /// `mori share FILE` with stdin held open.
    #[cfg(feature = "cli")]
    pub fn mori_share(file: &std::path::Path) -> Self {
        Self::spawn(Command::new(MORI).arg("share").arg(file))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child prints, without its newline; `None` once it closed stdout.
    pub fn try_line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = self
            .stdout
            .as_mut()
            .expect("stdout piped")
            .read_line(&mut s)
            .expect("read child line");
        (n > 0).then(|| s.trim_end().to_owned())
    }

    /// The next line the child prints, without its newline.
    pub fn line(&mut self) -> String {
        self.try_line().expect("the child closed its output")
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin piped")
    }

    /// Close the child's stdin.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Wait for the child to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().expect("wait child").code()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let left = regions_of(self.child.id());
        for f in &left {
            let _ = std::fs::remove_file(f);
        }
        if !std::thread::panicking() && !self.may_leave_regions {
            assert!(left.is_empty(), "child left regions behind: {left:?}");
        }
    }
}

/// A temporary JSON file with a unique name, removed when dropped.
pub struct TempJson(pub tempfile::TempPath);

impl TempJson {
    pub fn new(tag: &str, text: &str) -> Self {
        let mut file = tempfile::Builder::new()
            .prefix(&format!("mori-shm-test-{tag}-"))
            .suffix(".json")
            .tempfile()
            .unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        Self(file.into_temp_path())
    }
}

/// Run `mori` with `args`; (exit code, stdout, stderr).
#[cfg(feature = "cli")]
pub fn mori(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(MORI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mori");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run every other test of this test binary in a child process, then check, by the child's pid,
/// that it left no region in /dev/shm (whether its tests passed or failed); removes any it left.
///
/// Tests named `prune...` are skipped there: they assert which regions a prune removes, and a
/// second prune running at the same time in the child would race them.
pub fn assert_suite_leaves_no_regions(this_test: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--skip",
            this_test,
            "--skip",
            "prune",
            "--test-threads=2",
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the suite in a child");
    let pid = child.id();
    let status = child.wait().expect("wait for the suite");
    let left = regions_of(pid);
    for f in &left {
        let _ = std::fs::remove_file(f);
    }
    assert!(left.is_empty(), "the suite left regions behind: {left:?}");
    assert!(status.success(), "the suite failed in the child: {status}");
}

/// Fail (never skip) a test that needs root, saying so.
pub fn require_root(why: &str) {
    let euid = rustix::process::geteuid().as_raw();
    assert!(
        euid == 0,
        "this test must run as root ({why}); it runs as uid {euid}"
    );
}

/// A path under /dev/shm (a symbolic link, a FIFO, a directory, a planted file) that is removed
/// when dropped, whether the test passed or failed.
pub struct ShmPath(pub PathBuf);

impl ShmPath {
    /// An unused region name of this process, `/mori_<our pid>_<random>`, and its path guard.
    /// Nothing exists at the path yet.
    pub fn unused() -> (String, Self) {
        loop {
            let counter = getrandom::u32().expect("getrandom");
            let name = format!("/mori_{:x}_{counter:x}", std::process::id());
            let path = region_file(&name);
            if std::fs::symlink_metadata(&path).is_err() {
                return (name, Self(path));
            }
        }
    }
}

impl Drop for ShmPath {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&self.0);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}
