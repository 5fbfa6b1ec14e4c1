//! Helpers shared by the interop and negative tests.
//!
//! Third-party peers (pynng, nngcat) run as child processes under a [`PeerProcess`] guard that
//! terminates them when the test ends, however it ends: SIGTERM first (nngcat cleans up its
//! socket files on a clean exit), SIGKILL after a grace period, and always a `wait` so no
//! zombie or orphan is left behind. Every endpoint is unique per test process and per call
//! (pid plus a counter), ipc socket files live in the temp dir and are removed by a guard, and
//! every wait is bounded so a broken peer fails the test instead of hanging it.
//!
//! A missing peer is a test failure with the hint "run `cargo xtask setup`", never a skip.
#![allow(dead_code)]

pub(crate) mod users;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a peer gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(1500);

/// The workspace root, from this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The Python interpreter of the interop virtualenv: `$MIRAI_INTEROP_PYTHON`, else
/// `<workspace>/target/interop-venv/bin/python`. Panics (fails the test) when it is missing or
/// cannot import pynng.
pub(crate) fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let path = std::env::var_os("MIRAI_INTEROP_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                workspace_root()
                    .join("target")
                    .join("interop-venv")
                    .join("bin")
                    .join("python")
            });
        let imports = Command::new(&path)
            .args(["-c", "import pynng"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match imports {
            Ok(s) if s.success() => Ok(path),
            Ok(_) => Err(format!(
                "{} cannot import pynng: run `cargo xtask setup`",
                path.display()
            )),
            Err(e) => Err(format!(
                "pynng peer missing ({}: {e}): run `cargo xtask setup`",
                path.display()
            )),
        }
    });
    match found {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// The `peer.py` script next to these tests.
pub(crate) fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
        .join("peer.py")
}

/// `nngcat` from `PATH`. Panics (fails the test) when it is missing.
pub(crate) fn nngcat() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nngcat"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("nngcat missing from PATH: run `cargo xtask setup`"))
}

/// What the child wrote to stdout so far, shared with the thread that reads it.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    eof: bool,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

fn capture<R: Read + Send + 'static>(mut from: R) -> Shared {
    let shared: Shared = Arc::default();
    let writer = Arc::clone(&shared);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            let n = from.read(&mut chunk).unwrap_or(0);
            let (lock, cond) = &*writer;
            let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
            if n == 0 {
                c.eof = true;
                cond.notify_all();
                return;
            }
            c.bytes.extend_from_slice(&chunk[..n]);
            cond.notify_all();
        }
    });
    shared
}

/// Waits (until `deadline`) for the captured stream to reach EOF; returns what it holds.
fn wait_eof(shared: &Shared, deadline: Instant) -> Vec<u8> {
    let (lock, cond) = &**shared;
    let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
    while !c.eof && Instant::now() < deadline {
        c = cond
            .wait_timeout(c, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    c.bytes.clone()
}

/// A third-party peer process that is terminated and reaped when dropped.
pub(crate) struct PeerProcess {
    name: String,
    child: Option<Child>,
    stdout: Shared,
    stderr: Shared,
    /// How many stdout bytes `next_line` has consumed.
    cursor: usize,
}

impl PeerProcess {
    /// Spawn `cmd` with piped stdin/stdout/stderr under a guard; `name` labels failures.
    pub(crate) fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let stdout = capture(child.stdout.take().expect("piped stdout"));
        let stderr = capture(child.stderr.take().expect("piped stderr"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            cursor: 0,
        }
    }

    /// Run `peer.py` with these arguments (see the script's docstring).
    pub(crate) fn pynng(args: &[&str]) -> Self {
        let mut cmd = Command::new(python());
        cmd.arg(peer_script()).args(args);
        Self::spawn(&format!("pynng {}", args.join(" ")), cmd)
    }

    /// Run `nngcat` with these arguments.
    pub(crate) fn nngcat(args: &[&str]) -> Self {
        let mut cmd = Command::new(nngcat());
        cmd.args(args);
        Self::spawn(&format!("nngcat {}", args.join(" ")), cmd)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything written to stderr so far, for failure messages.
    pub(crate) fn stderr_text(&self) -> String {
        let c = self.stderr.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&c.bytes).into_owned()
    }

    /// The next stdout line (without its newline), waiting at most `timeout`. Panics with the
    /// peer's stderr when none arrives.
    pub(crate) fn next_line(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.stdout;
        let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(pos) = c.bytes[self.cursor..].iter().position(|&b| b == b'\n') {
                let line = &c.bytes[self.cursor..self.cursor + pos];
                let line = String::from_utf8_lossy(line).into_owned();
                self.cursor += pos + 1;
                return line;
            }
            let now = Instant::now();
            if c.eof || now >= deadline {
                let seen = String::from_utf8_lossy(&c.bytes[self.cursor..]).into_owned();
                let why = if c.eof { "exited" } else { "timed out" };
                drop(c);
                panic!(
                    "{}: {why} waiting for a stdout line (unread {seen:?}); stderr: {}",
                    self.name,
                    self.stderr_text()
                );
            }
            c = cond
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait for the next line and require it to start with `prefix`; returns the rest.
    pub(crate) fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let line = self.next_line(timeout);
        match line.strip_prefix(prefix) {
            Some(rest) => rest.trim_start().to_owned(),
            None => panic!(
                "{}: expected a line starting {prefix:?}, got {line:?}; stderr: {}",
                self.name,
                self.stderr_text()
            ),
        }
    }

    /// Wait for `ready URL` from `peer.py` and return the URL.
    pub(crate) fn ready(&mut self) -> String {
        self.expect("ready", Duration::from_secs(10))
    }

    /// Wait for `msg HEX` from `peer.py` and return the decoded bytes.
    pub(crate) fn msg(&mut self, timeout: Duration) -> Vec<u8> {
        let hex = self.expect("msg", timeout);
        decode_hex(&hex)
    }

    /// Write one line to the child's stdin.
    pub(crate) fn write_line(&mut self, line: &str) {
        let stdin = self
            .child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .expect("piped stdin");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("{}: write stdin: {e}", self.name));
        stdin.flush().ok();
    }

    /// Close the child's stdin (it reads EOF).
    pub(crate) fn close_stdin(&mut self) {
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
        }
    }

    /// Wait (bounded) for the process to exit on its own; returns its status and everything it
    /// wrote to stdout. Panics, after terminating it, if it outlives `timeout`.
    pub(crate) fn finish(&mut self, timeout: Duration) -> (ExitStatus, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.child.as_mut().expect("child already reaped");
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    self.terminate();
                    panic!(
                        "{}: still running after {timeout:?}; stderr: {}",
                        self.name,
                        self.stderr_text()
                    );
                }
                Err(e) => panic!("{}: wait: {e}", self.name),
            }
        };
        self.child = None;
        // The pipes reach EOF once the process and anything it forked are gone.
        let eof_deadline = Instant::now() + Duration::from_secs(2);
        wait_eof(&self.stderr, eof_deadline);
        (status, wait_eof(&self.stdout, eof_deadline))
    }

    /// Like [`finish`](Self::finish) but requires a successful exit, and returns stdout.
    pub(crate) fn finish_ok(&mut self, timeout: Duration) -> Vec<u8> {
        let (status, out) = self.finish(timeout);
        assert!(
            status.success(),
            "{}: exited with {status}; stdout {:?}; stderr: {}",
            self.name,
            String::from_utf8_lossy(&out),
            self.stderr_text()
        );
        out
    }

    /// Wait (bounded) for `peer.py` to print `done` and exit successfully.
    pub(crate) fn done(&mut self) {
        self.expect("done", Duration::from_secs(10));
        self.finish_ok(Duration::from_secs(5));
    }

    /// SIGTERM, a grace period, then SIGKILL; always reaps the process.
    pub(crate) fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Decode lower- or upper-case hex; panics on malformed input (a peer bug).
pub(crate) fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name unique to this process and call: `nt-<pid>-<counter>-<tag>`.
pub(crate) fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("nt-{}-{n}-{tag}", std::process::id())
}

/// The transports every interop case runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Ipc,
    Abstract,
}

impl Transport {
    pub(crate) const ALL: [Self; 3] = [Self::Tcp, Self::Ipc, Self::Abstract];
}

/// A unique endpoint URL; an ipc socket file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    /// An ipc socket's directory, removed (with the socket file) on drop.
    dir: Option<tempfile::TempDir>,
}

impl Endpoint {
    /// A fresh endpoint on `transport`. For tcp the port is one the kernel just handed out and
    /// released (for peers that cannot report the port they bound); prefer [`Endpoint::tcp_any`]
    /// when the listener can report its port.
    pub(crate) fn new(transport: Transport, tag: &str) -> Self {
        match transport {
            Transport::Tcp => Self {
                url: format!("tcp://127.0.0.1:{}", free_tcp_port()),
                dir: None,
            },
            Transport::Ipc => {
                // A fresh directory, searchable by all so that tests can hand the socket to
                // other users (the socket file itself is 0600); short, to fit in sun_path.
                let dir = tempfile::Builder::new().prefix("nt-").tempdir().unwrap();
                std::fs::set_permissions(
                    dir.path(),
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
                let path = dir.path().join(format!("{tag}.ipc"));
                assert!(
                    path.as_os_str().len() < 100,
                    "ipc path too long for sun_path: {}",
                    path.display()
                );
                Self {
                    url: format!("ipc://{}", path.display()),
                    dir: Some(dir),
                }
            }
            Transport::Abstract => Self {
                url: format!("abstract://{}", unique_name(tag)),
                dir: None,
            },
        }
    }

    /// `tcp://127.0.0.1:0`: the listener picks the port and reports it.
    pub(crate) fn tcp_any() -> Self {
        Self {
            url: "tcp://127.0.0.1:0".to_owned(),
            dir: None,
        }
    }
}

/// A file in the temp dir with a unique name and given contents, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    _file: tempfile::TempPath,
}

impl TempFile {
    pub(crate) fn new(tag: &str, contents: &[u8]) -> Self {
        let mut file = tempfile::Builder::new()
            .prefix(&format!("nt-{tag}-"))
            .tempfile()
            .unwrap();
        file.write_all(contents)
            .unwrap_or_else(|e| panic!("{}: {e}", file.path().display()));
        let file = file.into_temp_path();
        Self {
            path: file.to_path_buf(),
            _file: file,
        }
    }

    /// The path as a `&str` (temp paths are UTF-8 here).
    pub(crate) fn as_str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

/// The messages in nngcat `--hex` output: one `"\xNN..."` line per message.
pub(crate) fn parse_nngcat_hex(out: &[u8]) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(out).expect("nngcat --hex output is ASCII");
    text.lines()
        .map(|line| {
            let inner = line
                .strip_prefix('"')
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| panic!("not an nngcat --hex line: {line:?}"));
            inner
                .split("\\x")
                .skip(1)
                .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
                .collect()
        })
        .collect()
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub(crate) fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Poll `cond` every few milliseconds until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until something accepts connections at `url` (a peer that cannot say it is ready).
///
/// tcp is probed with a connection that is closed before any byte is sent, which SP peers
/// ignore. Unix-domain listeners are found in `/proc/net/unix` instead, without connecting:
/// NNG 1.5.2's ipc listener stops delivering messages after a connection that closed before
/// its handshake.
pub(crate) fn wait_connectable(url: &str, timeout: Duration) {
    let ok = wait_until(timeout, || {
        if let Some(addr) = url.strip_prefix("tcp://") {
            TcpStream::connect(addr).is_ok()
        } else if let Some(path) = url.strip_prefix("ipc://") {
            unix_listening(path)
        } else if let Some(name) = url.strip_prefix("abstract://") {
            unix_listening(&format!("@{name}"))
        } else {
            panic!("unsupported url {url}")
        }
    });
    assert!(
        ok,
        "nothing accepted connections at {url} within {timeout:?}"
    );
}

/// Whether `/proc/net/unix` lists a listening stream socket bound to `name` (a path, or `@` and
/// an abstract name).
fn unix_listening(name: &str) -> bool {
    const SO_ACCEPTCON: u32 = 0x1_0000;
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path
        cols.len() >= 8
            && cols[7] == name
            && u32::from_str_radix(cols[3], 16).is_ok_and(|f| f & SO_ACCEPTCON != 0)
    })
}

/// Run `cases` on up to `parallel` threads; panics listing every failed case by name.
pub(crate) fn run_parallel<C: Send + 'static>(
    parallel: usize,
    cases: Vec<(String, C)>,
    run: impl Fn(C) + Send + Sync + 'static,
) {
    let total = cases.len();
    let queue = Arc::new(Mutex::new(cases));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let run = Arc::new(run);
    let workers: Vec<_> = (0..parallel.max(1))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let failures = Arc::clone(&failures);
            let run = Arc::clone(&run);
            thread::spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((name, case)) = next else { return };
                    let started = Instant::now();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(case)));
                    if let Err(e) = r {
                        let why = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{name} ({:?}): {why}", started.elapsed()));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("case runner thread");
    }
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
