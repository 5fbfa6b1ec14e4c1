//! A daemon on another "host": its own network namespace joined to ours by a veth pair, with
//! private 10.x addresses, dialing the dispatcher over `tls+tcp://` with the pinned fingerprint
//! and running tasks.
//!
//! The test creates the namespace, the veth pair and the addresses itself and removes them
//! when it ends, however it ends. It needs root and iproute2's `ip`; without them it fails with
//! a message saying so (it never passes without running).

mod util;

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirai_dispatch::{DaemonEvent, Dispatcher, DispatcherConfig, Outcome, Task};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "netns-pool-token";

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs iproute2's `ip` (and root) to build a namespace: {e}")
        });
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace and a veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host: Ipv4Addr,
    remote: Ipv4Addr,
}

impl Netns {
    fn create() -> Self {
        let pid = std::process::id();
        // A /30 of 10.0.0.0/8 derived from the pid, so concurrent runs do not collide.
        let (a, b, c) = (100 + ((pid >> 14) & 63), (pid >> 6) & 255, (pid & 63) * 4);
        let net = |last: u32| Ipv4Addr::new(10, a as u8, b as u8, (c + last) as u8);
        let ns = Self {
            name: format!("mirai-test-{pid}"),
            host_if: format!("mth{pid}"),
            host: net(1),
            remote: net(2),
        };
        let remote_if = format!("mtd{pid}");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &remote_if,
        ]);
        ip(&["link", "set", &remote_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/30", ns.remote),
            "dev",
            &remote_if,
        ]);
        inside(&["link", "set", &remote_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `program` inside the namespace.
    fn spawn(&self, program: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .env("MIRAI_DAEMON_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the pair from our side is immediate; the namespace takes its end with it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn net_namespace_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("read a process's net namespace")
}

#[test]
fn daemon_in_its_own_network_namespace_runs_tasks_over_pinned_tls() {
    let ns = Netns::create();
    let url = format!("tls+tcp://{}:0", ns.host);
    let (d, events) = Dispatcher::start(DispatcherConfig::new(url, TOKEN.as_bytes().to_vec()))
        .expect("start the dispatcher");
    let pin = d.tls_fingerprint().expect("fingerprint").to_string();
    let daemon = util::Reaped(ns.spawn(
        env!("CARGO_BIN_EXE_mirai-demo-daemon"),
        &["--url", d.url(), "--tls-pin", &pin],
    ));
    let event = events.recv_timeout(PATIENCE).expect("the daemon joins");
    assert!(matches!(event, DaemonEvent::Joined { .. }), "{event:?}");

    let id = d
        .submit(Task::new("pid", postcard::to_allocvec(&()).unwrap()), None)
        .unwrap();
    let remote_pid: u32 = match d.wait(id, Some(PATIENCE)) {
        Some(Outcome::Value(v)) => postcard::from_bytes(&v).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(remote_pid, daemon.0.id());
    assert_ne!(
        net_namespace_of(remote_pid),
        net_namespace_of(std::process::id()),
        "the daemon was not in its own network namespace"
    );
    let ids: Vec<_> = (0..20i64)
        .map(|i| {
            let arg = postcard::to_allocvec(&(i, 1000i64)).unwrap();
            (i, d.submit(Task::new("add", arg), None).unwrap())
        })
        .collect();
    for (i, id) in ids {
        match d.wait(id, Some(PATIENCE)) {
            Some(Outcome::Value(v)) => {
                assert_eq!(postcard::from_bytes::<i64>(&v).unwrap(), i + 1000)
            }
            other => panic!("{other:?}"),
        }
    }
}
