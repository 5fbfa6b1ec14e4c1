//! Bounded admission under a flood from another process: 1,000 connections that never say
//! hello and 1,000 with wrong tokens hold at most the cap of our descriptors, a real daemon
//! joins meanwhile and 10,000 tasks complete, and descriptors and memory come back afterwards.
//! And out of descriptors, the listener keeps accepting (the oldest unauthenticated connection
//! makes room) instead of stalling.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use mirai_dispatch::{
    DaemonEvent, Dispatcher, DispatcherConfig, MAX_UNAUTHENTICATED, Outcome, Task,
};
use util::shell::{
    PATIENCE, SP_HEADER, TOKEN, credential, eventually, ipc_hello_frame, open_fds, rss_kib,
    run_echo_tasks, unique, wait_event,
};

/// The tests of this file count the process's descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Opens `silent` connections that send only an SP header and `wrong` that also send a hello
/// with a wrong token, holds them all, prints `flooded`, and exits when its stdin closes.
const FLOOD: &str = r#"
import resource, socket, sys
name, silent, wrong, hello = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sys.stdin.readline()
held = []
def dial(payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect("\0" + name)
        s.sendall(payload)
    except OSError:
        pass
    held.append(s)
for _ in range(silent):
    dial(hello[:8])
for _ in range(wrong):
    dial(hello)
print("flooded", flush=True)
sys.stdin.read()
"#;

/// The flooding process; killed and reaped whatever happens.
struct Flood {
    child: util::Reaped,
    stdin: Option<ChildStdin>,
}

impl Flood {
    /// Starts it; it dials once [`Flood::go`] is called.
    fn spawn(name: &str, silent: usize, wrong: usize) -> Self {
        let mut wrong_hello = SP_HEADER.to_vec();
        wrong_hello.extend_from_slice(&ipc_hello_frame(0, b"wrong-token-wrong-token"));
        let hex: String = wrong_hello.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new("python3")
            .args([
                "-c",
                FLOOD,
                name,
                &silent.to_string(),
                &wrong.to_string(),
                &hex,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take();
        Self {
            child: util::Reaped(child),
            stdin,
        }
    }

    fn go(&mut self) {
        self.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    /// Waits for `flooded`.
    fn wait_flooded(&mut self) {
        let mut line = String::new();
        BufReader::new(self.child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "flooded");
    }

    /// Closes every connection (the process exits).
    fn end(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// A demo daemon that waits for a line on its stdin before it dials (so it can be started
/// before the test takes descriptors away, and dial after).
struct HeldDaemon {
    child: util::Reaped,
}

impl HeldDaemon {
    fn spawn(url: &str, launch_id: u64) -> Self {
        let child = Command::new("sh")
            .args(["-c", r#"read go; exec "$0" --url "$1" --launch-id "$2""#])
            .arg(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args([url, &launch_id.to_string()])
            .env(
                "MIRAI_DAEMON_TOKEN",
                String::from_utf8(credential(launch_id)).unwrap(),
            )
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        Self {
            child: util::Reaped(child),
        }
    }

    fn go(&mut self) {
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
    }
}

#[test]
fn a_flood_holds_at_most_the_cap_and_a_daemon_joins_and_works_meanwhile() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("flood");
    let (d, events) = Dispatcher::start(DispatcherConfig::new(
        format!("abstract://{name}"),
        TOKEN.to_vec(),
    ))
    .unwrap();
    let mut flood = Flood::spawn(&name, 1000, 1000);
    let mut daemon = HeldDaemon::spawn(d.url(), 1);
    let fds = open_fds();
    let rss = rss_kib();

    flood.go();
    daemon.go();
    let joined = wait_event(&events, |e| matches!(e, DaemonEvent::Joined { .. }));
    assert!(
        matches!(joined, DaemonEvent::Joined { launch_id: 1, .. }),
        "{joined:?}"
    );
    // 10,000 tasks while the flood goes on.
    let ids: Vec<_> = (0..10_000u32)
        .map(|i| {
            (
                d.submit(Task::new("echo", i.to_le_bytes().to_vec()), None)
                    .unwrap(),
                i,
            )
        })
        .collect();
    for (id, i) in ids {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &i.to_le_bytes()),
            other => panic!("task {i}: {other:?}"),
        }
    }
    flood.wait_flooded();
    // All 2,000 connections are still open on the flooder's side; we hold at most the cap
    // (the wrong tokens were refused and closed, the silent ones evicted oldest first).
    let during = open_fds();
    assert!(
        during <= fds + MAX_UNAUTHENTICATED + 8,
        "{during} descriptors open during the flood (baseline {fds}, cap {MAX_UNAUTHENTICATED})"
    );
    assert_eq!(d.status().connections, 1);

    flood.end();
    // Back to the baseline, plus the daemon's connection.
    assert!(
        eventually(PATIENCE, || open_fds() <= fds + 2),
        "{} descriptors open after the flood (baseline {fds})",
        open_fds()
    );
    let grown = rss_kib().saturating_sub(rss);
    assert!(grown < 64 << 10, "resident memory grew by {grown} KiB");
    run_echo_tasks(&d, 100);
}

/// Out of descriptors, the dispatcher closes the oldest unauthenticated connection and accepts
/// again, so a daemon that dials while silent connections fill the table still joins (before
/// their hello timeout, which is long here). Runs in a child process whose descriptor limit is
/// lowered, so nothing else in the test binary runs out.
#[test]
fn out_of_descriptors_the_listener_keeps_accepting() {
    const CHILD: &str = "MIRAI_TEST_EMFILE_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return emfile_child();
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "out_of_descriptors_the_listener_keeps_accepting",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .spawn()
        .unwrap();
    let mut child = util::Reaped(child);
    let deadline = std::time::Instant::now() + 2 * PATIENCE;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the child hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "child: {status}");
}

fn emfile_child() {
    let name = unique("emfile");
    let mut config = DispatcherConfig::new(format!("abstract://{name}"), TOKEN.to_vec());
    // Only running out of descriptors may close them: no timeout, no cap in the way.
    config.hello_timeout = Duration::from_secs(600);
    config.max_unauthenticated = 100_000;
    let (d, events) = Dispatcher::start(config).unwrap();
    let mut flood = Flood::spawn(&name, 300, 0);
    let mut daemon = HeldDaemon::spawn(d.url(), 1);
    // From here on the process may open only a few more descriptors.
    let limit = (open_fds() + 24) as u64;
    let rlimit = rustix::process::Rlimit {
        current: Some(limit),
        maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, rlimit).unwrap();
    flood.go();
    flood.wait_flooded();
    daemon.go();
    let joined = wait_event(&events, |e| matches!(e, DaemonEvent::Joined { .. }));
    assert!(
        matches!(joined, DaemonEvent::Joined { launch_id: 1, .. }),
        "{joined:?}"
    );
    run_echo_tasks(&d, 100);
}
