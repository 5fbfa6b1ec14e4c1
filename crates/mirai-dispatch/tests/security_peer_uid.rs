//! Local transports admit only our own user. A second, throwaway user created by the test
//! dials the dispatcher on `abstract://` and on `ipc://` from its own process, with the right
//! token: it is closed before a byte is exchanged (no SP header, no init), while a real daemon
//! still joins and runs tasks. The `ipc://` socket file is 0600, and a directory where another
//! user could replace it is refused.
//!
//! Needs root (to create the user); fails without it.

mod util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;

use mirai_dispatch::security::PolicyError;
use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig, StartError};
use util::shell::{
    DemoDaemon, SP_HEADER, TOKEN, ipc_hello_frame, run_echo_tasks, unique, wait_event,
};

/// A user that exists for this test only; removed on drop, even when the test fails.
struct ThrowawayUser {
    name: String,
}

impl ThrowawayUser {
    fn create(tag: &str) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test creates a user and must run as root"
        );
        let name = format!("mtu{tag}{}", std::process::id());
        let status = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name}: {status}");
        Self { name }
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs the dialing script as this user; returns its report.
    fn dial(&self, kind: &str, address: &str, send: &[u8]) -> String {
        let hex: String = send.iter().map(|b| format!("{b:02x}")).collect();
        let out = Command::new("runuser")
            .args(["-u", &self.name, "--", "/usr/bin/python3", "-c", DIAL])
            .args([kind, address, &hex])
            .current_dir("/")
            .output()
            .expect("run the dialer as the throwaway user");
        assert!(
            out.status.success(),
            "dialer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Connects, sends what it is given, reads until the close (or 5 s), and reports.
const DIAL: &str = r#"
import socket, sys
kind, addr, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect("\0" + addr if kind == "abstract" else addr)
except OSError as e:
    print("connect-error", e.errno)
    sys.exit(0)
print("connected")
try:
    s.sendall(payload)
except OSError as e:
    print("send-error", e.errno)
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except socket.timeout:
    print("timeout")
except OSError as e:
    print("recv-error", e.errno)
print("received", got.hex())
"#;

/// What the intruder sends: an SP header and a hello with the right token.
fn intrusion() -> Vec<u8> {
    let mut bytes = SP_HEADER.to_vec();
    bytes.extend_from_slice(&ipc_hello_frame(0, TOKEN));
    bytes
}

/// The intruder got through the connect but was closed with nothing received.
fn assert_closed_unheard(report: &str) {
    assert!(report.contains("connected"), "{report}");
    assert!(!report.contains("timeout"), "left open: {report}");
    let received = report
        .lines()
        .find_map(|l| l.strip_prefix("received"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        received.trim(),
        "",
        "the other user received bytes: {report}"
    );
}

/// A real daemon still joins and works; nothing from the intruder was ever admitted.
fn assert_real_daemon_works(d: &Dispatcher, events: &Receiver<DaemonEvent>) {
    let _daemon = DemoDaemon::launch(d.url(), 1);
    // The intruder shows only as a foreign peer, never at the hello.
    let joined = wait_event(events, |e| !matches!(e, DaemonEvent::ForeignPeer { .. }));
    assert!(
        matches!(joined, DaemonEvent::Joined { launch_id: 1, .. }),
        "first event {joined:?}: the intruder reached the hello"
    );
    run_echo_tasks(d, 50);
    assert_eq!(d.status().connections, 1);
}

/// The refused connection was reported, with the uid the kernel gave for it, and first.
fn assert_foreign_peer_reported(events: &Receiver<DaemonEvent>, uid: u32) {
    let first = wait_event(events, |_| true);
    assert!(
        matches!(first, DaemonEvent::ForeignPeer { uid: u, pid } if u == uid && pid > 0),
        "first event {first:?}"
    );
}

/// A directory with a unique name and `mode`, removed on drop (a failed test included).
fn dir_with_mode(tag: &str, mode: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("peer-uid-{tag}-"))
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn another_user_is_refused_on_local_transports_and_a_daemon_still_joins() {
    let user = ThrowawayUser::create("a");

    // abstract://: no permissions exist, so only the peer check stands in the way.
    let name = unique("peer-uid-abstract");
    let (d, events) = Dispatcher::start(DispatcherConfig::new(
        format!("abstract://{name}"),
        TOKEN.to_vec(),
    ))
    .unwrap();
    assert_closed_unheard(&user.dial("abstract", &name, &intrusion()));
    assert_foreign_peer_reported(&events, user.uid());
    assert_real_daemon_works(&d, &events);
    drop(d);

    // ipc://: the file is 0600, so the other user cannot even connect ...
    let dir = dir_with_mode("ipc", 0o755);
    let path = dir.path().join("pool.sock");
    let url = format!("ipc://{}", path.display());
    let (d, events) = Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec())).unwrap();
    let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket file mode {mode:o}");
    let report = user.dial("ipc", path.to_str().unwrap(), &intrusion());
    assert!(report.contains("connect-error 13"), "{report}");
    // ... and if the file were open to all (as it is for an instant after bind), the peer
    // check closes the connection before a byte is exchanged.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_closed_unheard(&user.dial("ipc", path.to_str().unwrap(), &intrusion()));
    assert_foreign_peer_reported(&events, user.uid());
    assert_real_daemon_works(&d, &events);
}

#[test]
fn a_socket_directory_another_user_could_rewrite_is_refused() {
    let user = ThrowawayUser::create("b");
    let start = |dir: &Path| {
        let url = format!("ipc://{}", dir.join("pool.sock").display());
        Dispatcher::start(DispatcherConfig::new(url, TOKEN.to_vec()))
    };
    // Writable by all, no sticky bit: anyone could replace the socket.
    let open = dir_with_mode("open", 0o777);
    let refused = start(open.path());
    assert!(
        matches!(
            refused,
            Err(StartError::Policy(PolicyError::UnsafeSocketDir { .. }))
        ),
        "{refused:?}"
    );
    assert!(!open.path().join("pool.sock").exists());
    // Owned by another user.
    let theirs = dir_with_mode("theirs", 0o755);
    std::os::unix::fs::chown(theirs.path(), Some(user.uid()), None).unwrap();
    let refused = start(theirs.path());
    assert!(
        matches!(
            refused,
            Err(StartError::Policy(PolicyError::UnsafeSocketDir { .. }))
        ),
        "{refused:?}"
    );
    // Sticky and writable by all (as /tmp is): others cannot remove our file.
    let sticky = dir_with_mode("sticky", 0o1777);
    let (d, _events) = start(sticky.path()).expect("a sticky directory is fine");
    drop(d);
    // The socket file is removed when the dispatcher stops.
    assert!(!sticky.path().join("pool.sock").exists());
}

/// Listens as the throwaway user on an abstract name for `seconds`, accepting every
/// connection, and reports how many connections came and how many bytes they sent.
const SQUAT: &str = r#"
import socket, sys, time
addr, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + addr)
s.listen(64)
s.settimeout(0.05)
print("listening", flush=True)
end = time.time() + seconds
conns, total = [], 0
while time.time() < end:
    try:
        c, _ = s.accept()
        c.setblocking(False)
        conns.append(c)
    except socket.timeout:
        pass
    for c in conns:
        try:
            total += len(c.recv(65536))
        except OSError:
            pass
print("connections", len(conns))
print("bytes", total)
"#;

#[test]
fn a_daemon_never_talks_to_a_listener_of_another_user() {
    let intruder = ThrowawayUser::create("sq");
    let name = unique("squat");
    let mut squatter = Command::new("runuser")
        .args(["-u", &intruder.name, "--", "/usr/bin/python3", "-c", SQUAT])
        .args([&name, "3"])
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the squatter as the throwaway user");
    let mut out = std::io::BufReader::new(squatter.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening");
    // A daemon told to dial that name (as one whose dispatcher went away would redial it).
    let daemon = DemoDaemon::spawn(
        &format!("abstract://{name}"),
        1,
        &util::shell::credential(1),
    );
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report).unwrap();
    assert!(squatter.wait().unwrap().success());
    drop(daemon);
    let count = |what: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.strip_prefix(what))
            .unwrap_or_else(|| panic!("{report}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        count("connections") > 0,
        "the daemon never dialed: {report}"
    );
    assert_eq!(
        count("bytes"),
        0,
        "the daemon sent its SP header or credential to another user: {report}"
    );
}
