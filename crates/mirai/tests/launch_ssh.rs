//! Daemons launched over ssh against a real OpenSSH server that each test starts on a loopback
//! port, with host and user keys generated for it: the daemon is this test binary, started
//! through the remote login shell, and it dials back (directly or through a reverse tunnel) and
//! runs a task. OpenSSH's `sshd` must be installed (Debian: `openssh-server`; `cargo xtask setup`
//! installs it as root); without it the test fails, it never skips.

mod common;
mod launch_support;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::KilledOnDrop;
use launch_support::{
    DAEMON_ARGS, EXPOSURE, RUN_SELF, Reap, SQUARE, alive, ask, ask_everywhere, dispatcher,
    ends_within, this_program,
};
use mirai::Daemons;
use mirai::launch::{Error, Join, Ssh};

const SSHD: &str = "/usr/sbin/sshd";
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
#[ignore = "entry point of the daemons the other tests launch"]
fn daemon_entry() {
    launch_support::daemon_entry();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a setup command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The package is installed by `cargo xtask setup` (as root); a test never installs anything.
fn sshd_installed() -> bool {
    Path::new(SSHD).exists()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private sshd on 127.0.0.1 with its own host key, accepting one generated user key; killed
/// and its directory removed when dropped.
struct Sshd {
    // Declared first: killed and reaped before its directory is removed.
    child: KilledOnDrop,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
}

impl Sshd {
    fn start() -> Self {
        assert!(
            sshd_installed(),
            "{SSHD} is missing: install the Debian package openssh-server (`cargo xtask setup` does, as root)"
        );
        let scratch = tempfile::Builder::new()
            .prefix("mirai-launch-ssh-")
            .tempdir()
            .unwrap();
        let dir = scratch.path().to_path_buf();
        for key in ["host_key", "user_key"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "mirai-test", "-f"])
                .arg(dir.join(key)));
        }
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        // sshd's privilege-separation directory (a package install normally creates it).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nLogLevel ERROR\n"
            ),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let mut sshd = Self {
            child: KilledOnDrop(child),
            dir: scratch,
            port,
            user,
        };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = sshd.child.0.try_wait().unwrap() {
                panic!("sshd exited ({status}): {}", sshd.log());
            }
            assert!(
                t.elapsed() < PATIENCE,
                "sshd does not listen: {}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A launcher for this server, host key checked against the generated one.
    fn ssh(&self) -> Ssh {
        Ssh::new(&format!("{}@127.0.0.1:{}", self.user, self.port))
            .unwrap()
            .identity(self.dir.path().join("user_key"))
            .option(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .option("StrictHostKeyChecking=yes")
            .option("ConnectTimeout=10")
            .program(this_program())
    }
}

#[test]
fn a_daemon_launched_over_ssh_dials_back_and_runs_a_task() {
    let sshd = Sshd::start();
    let (d, join) = dispatcher();
    let launched = sshd.ssh().launch(&join, 5..6).unwrap();
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    let conn = answer.ssh_connection.expect("the daemon runs under sshd");
    assert!(
        conn.starts_with("127.0.0.1 ") && conn.ends_with(&format!(" {}", sshd.port)),
        "{conn}"
    );
    assert_eq!(answer.url.as_deref(), Some(d.url()));
    assert_eq!(answer.launch_id.as_deref(), Some("5"));
    assert_eq!(launched[0].launch_id(), 5);
    assert_ne!(
        answer.pid,
        launched[0].id(),
        "the daemon is not the local ssh client"
    );
    drop(d);
}

#[test]
fn through_a_reverse_tunnel_the_daemon_dials_its_own_loopback() {
    let sshd = Sshd::start();
    let (d, join) = dispatcher();
    // On one machine the dispatcher's own port is taken, so forward another one.
    let remote_port = free_port();
    let _launched = sshd
        .ssh()
        .tunnel_port(remote_port)
        .launch(&join, 0..1)
        .unwrap();
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    assert!(answer.ssh_connection.is_some());
    assert_eq!(answer.url, Some(format!("tcp://127.0.0.1:{remote_port}")));
    assert_ne!(answer.url.as_deref(), Some(d.url()));
    drop(d);
}

#[test]
fn the_printed_command_pasted_into_a_shell_starts_a_daemon() {
    let sshd = Sshd::start();
    let (d, join) = dispatcher();
    let join: Join = join.maxtasks(1);
    let line = sshd.ssh().command_line(&join, 9).unwrap();
    let credential = join.credential(9);
    assert!(!line.contains(credential.expose_str().unwrap()));
    // The daemon reads its credential from the first line of the command's stdin.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut shell.stdin.take().unwrap(),
        format!("{}\n", credential.expose_str().unwrap()).as_bytes(),
    )
    .unwrap();
    let answer = ask(&d, PATIENCE);
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(answer.launch_id.as_deref(), Some("9"));
    // maxtasks(1): the daemon exits after its task, and the ssh client with it.
    let t = Instant::now();
    let status = loop {
        if let Some(s) = shell.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < PATIENCE,
            "ssh did not end after the daemon's last task"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.code().is_some());
    drop(d);
}

/// Through the facade alone: `Pool::launch` starts two daemons over ssh with the pool's own
/// address and token, they count as connections, run typed tasks, and exit with the pool.
#[test]
fn the_pool_launches_daemons_over_ssh_that_run_typed_tasks() {
    let sshd = Sshd::start();
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let ids = pool.launch(&sshd.ssh(), 2).unwrap();
    assert_eq!(ids.len(), 2);
    // `launch` returns once both joined.
    assert_eq!(pool.status().connections, 2);
    assert_eq!(pool.remote_daemons(), 2);
    assert!(pool.local_pids().is_empty(), "remote daemons are not local");
    let answers = ask_everywhere(&pool, 2, PATIENCE);
    let pids: Vec<u32> = answers.iter().map(|a| a.pid).collect();
    let _reap = Reap(pids.clone());
    for a in &answers {
        assert!(a.ssh_connection.is_some(), "{a:?} did not run under sshd");
        assert_eq!(a.url.as_deref(), Some(pool.url()));
    }
    let mut got: Vec<u64> = answers
        .iter()
        .map(|a| a.launch_id.as_deref().unwrap().parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    let squares = pool.map(&SQUARE, 0..40u64).unwrap();
    assert_eq!(squares, (0..40u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(pool.submit(&SQUARE, 12).unwrap().wait().unwrap(), 144);
    drop(pool);
    for pid in pids {
        assert!(
            ends_within(pid, PATIENCE),
            "remote daemon {pid} outlived its pool"
        );
    }
}

/// A remote daemon that dies is not the pool's to replace: the connection count drops and
/// nothing is started in its place.
#[test]
fn a_remote_daemon_that_dies_is_not_replaced() {
    let sshd = Sshd::start();
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    pool.launch(&sshd.ssh(), 1).unwrap();
    let victim = ask_everywhere(&pool, 1, PATIENCE)[0].pid;
    let _reap = Reap(vec![victim]);
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    while pool.status().connections != 0 {
        assert!(t.elapsed() < PATIENCE, "the dead daemon still counts");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(victim));
    std::thread::sleep(Duration::from_millis(500)); // a replacement would have joined by now
    assert_eq!(pool.status().connections, 0);
    assert_eq!(pool.remote_daemons(), 0);
    assert_eq!(pool.replaced(), 0);
}

#[test]
fn a_refused_ssh_login_fails_the_launch_with_ssh_status_and_stderr() {
    let sshd = Sshd::start();
    let pool = Daemons::new().url("tls+tcp://127.0.0.1:0").start().unwrap();
    // The host key is no user key this server accepts.
    let err = pool
        .launch(&sshd.ssh().identity(sshd.dir.path().join("host_key")), 1)
        .unwrap_err();
    match err {
        mirai::Error::Launch(Error::Refused {
            program,
            status,
            stderr,
        }) => {
            assert_eq!(program, "ssh");
            assert_eq!(status.code(), Some(255));
            assert!(stderr.contains("Permission denied"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.status().connections, 0);
}

/// `Pool::launch` with a reverse tunnel: the daemon dials its own loopback, and still joins
/// the pool and runs its tasks.
#[test]
fn the_pool_launches_a_daemon_through_a_reverse_tunnel() {
    let sshd = Sshd::start();
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let remote_port = free_port();
    pool.launch(&sshd.ssh().tunnel_port(remote_port), 1)
        .unwrap();
    let answer = &ask_everywhere(&pool, 1, PATIENCE)[0];
    let _reap = Reap(vec![answer.pid]);
    assert_eq!(
        answer.url,
        Some(format!("tls+tcp://127.0.0.1:{remote_port}"))
    );
    assert_ne!(answer.url.as_deref(), Some(pool.url()));
    assert_eq!(pool.submit(&SQUARE, 3).unwrap().wait().unwrap(), 9);
}

/// While a daemon launched through sshd runs a task, neither the pool token nor the daemon's
/// credential is on any process's command line (the ssh client's included) or in the daemon's
/// environment; a process the task starts inherits no `MIRAI_DAEMON_*` variable, and one that
/// is this same program stays an ordinary process instead of becoming a second daemon.
#[test]
fn a_daemon_launched_over_ssh_keeps_its_credential_off_command_lines_and_out_of_task_children() {
    let sshd = Sshd::start();
    let pool = Daemons::new()
        .url("tls+tcp://127.0.0.1:0")
        .launch_timeout(PATIENCE)
        .start()
        .unwrap();
    let ids = pool.launch(&sshd.ssh(), 1).unwrap();
    let credential = pool.join().credential(ids[0]);
    let exposure = pool
        .submit(&EXPOSURE, ())
        .unwrap()
        .wait_timeout(PATIENCE)
        .unwrap();
    let _reap = Reap(vec![exposure.pid]);
    assert!(
        String::from_utf8_lossy(&exposure.daemon_initial_environ).contains("SSH_CONNECTION="),
        "the daemon runs under sshd"
    );
    exposure.assert_hides(&[pool.token(), credential.expose_str().unwrap()]);
    let args = DAEMON_ARGS.map(String::from).to_vec();
    let (code, stderr) = pool
        .submit(&RUN_SELF, args)
        .unwrap()
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the task's child, this same program, ran on as a daemon");
    assert_eq!(code, Some(101), "{stderr}");
    assert!(
        stderr.contains("daemon_entry only runs as a launched daemon"),
        "{stderr}"
    );
}
