//! Helpers for tests against a running dispatcher: the demo daemon as a child process, raw
//! peers that speak the wire protocol by hand, and the process's own descriptors and memory.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::{FromDaemon, Hello, Limits, ToDaemon, VERSION};
use mirai_dispatch::secret::Secret;
use mirai_dispatch::{DaemonEvent, Dispatcher, Outcome, Task};

/// How long anything that should happen may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The pool token of these tests.
pub const TOKEN: &[u8] = b"pool-token-for-the-shell-tests-2f9c";

/// What a daemon of launch `id` presents: the pool token for 0, else its launch credential.
pub fn credential(id: u64) -> Vec<u8> {
    Secret::from(TOKEN).launch_credential(id).expose().to_vec()
}

/// A demo daemon process, killed and reaped whatever happens to the test.
pub struct DemoDaemon(pub super::Reaped);

impl DemoDaemon {
    /// Starts a demo daemon of launch `launch_id` presenting `presented`.
    pub fn spawn(url: &str, launch_id: u64, presented: &[u8]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url, "--launch-id", &launch_id.to_string()])
            .env(
                "MIRAI_DAEMON_TOKEN",
                std::str::from_utf8(presented).expect("a text credential"),
            )
            .spawn()
            .expect("spawn the demo daemon");
        Self(super::Reaped(child))
    }

    /// Starts the legitimate daemon of launch `launch_id` (its own credential).
    pub fn launch(url: &str, launch_id: u64) -> Self {
        Self::launch_with(url, launch_id, &[])
    }

    /// [`DemoDaemon::launch`] with more command-line arguments (exit rules, say).
    pub fn launch_with(url: &str, launch_id: u64, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_mirai-demo-daemon"))
            .args(["--url", url, "--launch-id", &launch_id.to_string()])
            .args(args)
            .env(
                "MIRAI_DAEMON_TOKEN",
                std::str::from_utf8(&credential(launch_id)).expect("a text credential"),
            )
            .spawn()
            .expect("spawn the demo daemon");
        Self(super::Reaped(child))
    }

    /// Waits (at most [`PATIENCE`]) for the process to end; returns its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

/// Waits for the next event matching `want`, skipping others; panics after [`PATIENCE`].
pub fn wait_event(
    events: &Receiver<DaemonEvent>,
    want: impl Fn(&DaemonEvent) -> bool,
) -> DaemonEvent {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if want(&e) => return e,
            Ok(_) => {}
            Err(e) => panic!("no matching daemon event: {e}"),
        }
    }
}

/// Submits `n` echo tasks and checks every answer within [`PATIENCE`].
pub fn run_echo_tasks(d: &Dispatcher, n: u32) {
    let ids: Vec<_> = (0..n)
        .map(|i| {
            let arg = i.to_le_bytes().to_vec();
            (d.submit(Task::new("echo", arg.clone()), None).unwrap(), arg)
        })
        .collect();
    for (id, arg) in ids {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => assert_eq!(&*v, &arg[..]),
            other => panic!("task {id:?}: {other:?}"),
        }
    }
}

/// The SP header of a PAIR1 peer.
pub const SP_HEADER: [u8; 8] = [0, b'S', b'P', 0, 0, 0x11, 0, 0];

/// A hello as an `ipc://`/`abstract://` frame: type byte, u64 length, PAIR1 header, message.
pub fn ipc_hello_frame(launch_id: u64, presented: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 1];
    FromDaemon::Hello(Hello {
        version: VERSION,
        launch_id,
        token: presented.to_vec(),
    })
    .encode(&mut body)
    .unwrap();
    let mut frame = vec![1];
    frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A peer on a local socket speaking the protocol by hand (and able to stop reading).
pub struct RawPeer {
    pub stream: UnixStream,
}

impl RawPeer {
    /// Connects to an `abstract://name` or `ipc:///path` URL.
    pub fn connect(url: &str) -> std::io::Result<Self> {
        let stream = if let Some(name) = url.strip_prefix("abstract://") {
            UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?
        } else {
            UnixStream::connect(url.strip_prefix("ipc://").expect("a local url"))?
        };
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Self { stream })
    }

    /// Exchanges SP headers and sends a hello; returns the first message back (`None` if the
    /// connection closed first).
    pub fn hello(&mut self, launch_id: u64, presented: &[u8]) -> Option<ToDaemon> {
        self.stream.write_all(&SP_HEADER).ok()?;
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).ok()?;
        assert_eq!(header, SP_HEADER);
        self.stream
            .write_all(&ipc_hello_frame(launch_id, presented))
            .ok()?;
        self.read_message()
    }

    /// Reads one message (a small one: an init or a refusal).
    pub fn read_message(&mut self) -> Option<ToDaemon> {
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head).ok()?;
        let len = u64::from_be_bytes(head[1..].try_into().unwrap());
        assert!(len < 1 << 20, "an unexpectedly large message: {len} bytes");
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).ok()?;
        let (msg, _) = ToDaemon::decode(&body[4..], &Limits::default()).expect("decodable");
        Some(msg)
    }

    /// Sends one message (without payload) as a PAIR1 frame.
    pub fn send(&mut self, msg: &FromDaemon) -> std::io::Result<()> {
        let mut body = vec![0, 0, 0, 1];
        msg.encode(&mut body).unwrap();
        let mut frame = vec![1];
        frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)
    }

    /// Reads and discards everything until the dispatcher closes; returns the byte count.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = self.stream.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    }
}

/// How many descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns whether it held.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A unique name for this test process and `what`.
pub fn unique(what: &str) -> String {
    format!("mirai-test-{what}-{}", std::process::id())
}
