//! The pool's side of remote launches: which launch ids it handed to a launcher, the launching
//! processes it owns (`ssh` clients, `sh -c` templates), the tail of their stderr, and whether
//! each daemon joined.
//!
//! Why apart from the local daemons: for a remote daemon the pool owns only the launching
//! process, never the daemon, so it never kills or replaces a remote daemon. It waits for the
//! daemon to join and, when it does not, says why: the launcher's exit status and what it
//! printed (ssh relays the remote daemon's stderr too, such as a refusal by the dispatcher), or
//! a timeout, after which it stops the launching process so nothing is left half started.
//!
//! A refusal by the dispatcher is not taken as the end of a launch: the launch id in a refused
//! hello comes from a peer that proved nothing, so anyone who reaches the port could claim it.
//! Only what the pool itself sees decides: the daemon joined (an authenticated hello), its
//! launching process exited, or the timeout passed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Error, Join, hand_over};

/// The most stderr kept per launching process (its last bytes): enough for ssh's diagnostics
/// and a daemon's last words, bounded whatever the remote side prints.
const TAIL_BYTES: usize = 4096;

/// How long a launching process that exited gets to have its stderr read to the end.
const TAIL_GRACE: Duration = Duration::from_secs(1);

/// How often a waiting launch looks at its launching processes (exits raise no event).
const POLL: Duration = Duration::from_millis(20);

/// How long launching processes get to end by themselves at shutdown (their daemons exit when
/// the dispatcher goes away, and `ssh` with them) before they are killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Remote launches of one pool, shared by the pool and its launcher thread.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    stopped: bool,
    launches: HashMap<u64, Launch>,
}

#[derive(Debug)]
struct Launch {
    /// The launching program, for errors.
    program: String,
    /// The launching process while it runs (none for `sbatch`, which returns at once).
    child: Option<Child>,
    /// How it ended, once it did.
    exit: Option<ExitStatus>,
    stderr: Arc<Tail>,
    phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Waiting,
    Joined,
    Left,
}

/// The last [`TAIL_BYTES`] a launching process wrote on stderr.
#[derive(Debug, Default)]
struct Tail {
    bytes: Mutex<(Vec<u8>, bool)>,
    closed: Condvar,
}

impl Tail {
    fn lock(&self) -> MutexGuard<'_, (Vec<u8>, bool)> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `from` to its end, keeping the last bytes (and echoing them when `echo`).
    fn fill(&self, mut from: impl Read, echo: bool) {
        let mut buf = [0u8; 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if echo {
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
            let mut kept = self.lock();
            kept.0.extend_from_slice(&buf[..n]);
            let excess = kept.0.len().saturating_sub(TAIL_BYTES);
            kept.0.drain(..excess);
        }
        self.lock().1 = true;
        self.closed.notify_all();
    }

    /// The text kept, once the stream closed or `grace` passed (a daemon started in the
    /// background may keep the stream open).
    fn text(&self, grace: Duration) -> String {
        let deadline = Instant::now() + grace;
        let mut kept = self.lock();
        while !kept.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            kept = self
                .closed
                .wait_timeout(kept, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        String::from_utf8_lossy(&kept.0).trim().to_owned()
    }
}

impl Remote {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts one launching process per id, `command(id)` building each, and writes daemon
    /// `id`'s credential of `join` to its stdin; their stderr is kept (and echoed to this
    /// process's stderr when `echo`). Stops at the first failure, keeping the processes
    /// already started.
    pub(crate) fn spawn(
        &self,
        ids: Range<u64>,
        program: &str,
        echo: bool,
        join: &Join,
        mut command: impl FnMut(u64) -> Result<Command, Error>,
    ) -> Result<(), Error> {
        for id in ids {
            let mut cmd = command(id)?;
            let credential = join.credential_line(id)?;
            cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
            let mut state = self.state();
            if state.stopped {
                return Err(Error::Invalid("the pool is shut down".into()));
            }
            // Registered before the daemon can join, under the lock the join event needs.
            let mut child = cmd.spawn().map_err(|e| Error::spawn(program, e))?;
            hand_over(&mut child, &credential);
            let stderr = Arc::new(Tail::default());
            if let Some(pipe) = child.stderr.take() {
                let tail = Arc::clone(&stderr);
                let started = std::thread::Builder::new()
                    .name("mirai-launch-stderr".into())
                    .spawn(move || tail.fill(pipe, echo));
                if let Err(e) = started {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::spawn(program, e));
                }
            }
            state.launches.insert(
                id,
                Launch {
                    program: program.to_owned(),
                    child: Some(child),
                    exit: None,
                    stderr,
                    phase: Phase::Waiting,
                },
            );
        }
        Ok(())
    }

    /// Records ids whose daemons are started by something the pool does not run (a Slurm job),
    /// so they count in [`Remote::connected`] once they join.
    pub(crate) fn expect(&self, ids: Range<u64>, program: &str) {
        let mut state = self.state();
        for id in ids {
            state.launches.insert(
                id,
                Launch {
                    program: program.to_owned(),
                    child: None,
                    exit: None,
                    stderr: Arc::new(Tail::default()),
                    phase: Phase::Waiting,
                },
            );
        }
    }

    /// Forgets ids whose launch failed before anything started.
    pub(crate) fn forget(&self, ids: Range<u64>) {
        let mut state = self.state();
        for id in ids {
            state.launches.remove(&id);
        }
    }

    /// Waits until every daemon of `ids` joined, or its launching process ended with success
    /// (it handed the daemon on, as `qsub` does), for at most `timeout`. On a failure the first
    /// one is reported; daemons of `ids` that joined keep serving. On the timeout the launching
    /// processes of the daemons still missing are killed.
    pub(crate) fn wait_joined(&self, ids: Range<u64>, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            let mut missing = None;
            let mut failed = None;
            for id in ids.clone() {
                let Some(l) = state.launches.get_mut(&id) else {
                    continue;
                };
                if l.phase != Phase::Waiting {
                    continue;
                }
                l.poll();
                match l.exit {
                    Some(status) if status.success() => {}
                    Some(status) => {
                        failed = Some((l.program.clone(), status, Arc::clone(&l.stderr)));
                        break;
                    }
                    None => missing = missing.or(Some(id)),
                }
            }
            if let Some((program, status, tail)) = failed {
                drop(state);
                let stderr = tail.text(TAIL_GRACE);
                return Err(Error::Refused {
                    program,
                    status,
                    stderr,
                });
            }
            let Some(first_missing) = missing else {
                return Ok(());
            };
            let now = Instant::now();
            if now >= deadline {
                for id in ids.clone() {
                    if let Some(l) = state.launches.get_mut(&id)
                        && l.phase == Phase::Waiting
                        && let Some(mut child) = l.child.take()
                    {
                        let _ = child.kill();
                        l.exit = child.wait().ok();
                    }
                }
                return Err(Error::NotJoined {
                    launch_id: first_missing,
                    waited: timeout,
                });
            }
            state = self
                .changed
                .wait_timeout(state, POLL.min(deadline - now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A daemon joined the dispatcher (ids the pool did not launch remotely are ignored).
    pub(crate) fn joined(&self, id: u64) {
        self.set(id, Phase::Joined);
    }

    /// A daemon left.
    pub(crate) fn left(&self, id: u64) {
        self.set(id, Phase::Left);
    }

    fn set(&self, id: u64, phase: Phase) {
        let mut state = self.state();
        if let Some(l) = state.launches.get_mut(&id) {
            l.phase = phase;
            self.changed.notify_all();
        }
    }

    /// Remote daemons connected now.
    pub(crate) fn connected(&self) -> usize {
        self.state()
            .launches
            .values()
            .filter(|l| l.phase == Phase::Joined)
            .count()
    }

    /// Reaps launching processes that ended, and forgets daemons that left and whose launching
    /// process is gone.
    pub(crate) fn reap(&self) {
        let mut state = self.state();
        for l in state.launches.values_mut() {
            l.poll();
        }
        state
            .launches
            .retain(|_, l| !(l.phase == Phase::Left && l.child.is_none()));
    }

    /// Stops every launching process: after the dispatcher shut down their daemons exit, and
    /// the processes with them; those still running after [`EXIT_GRACE`] are killed.
    pub(crate) fn shutdown(&self) {
        let mut children: Vec<Child> = {
            let mut state = self.state();
            state.stopped = true;
            state
                .launches
                .drain()
                .filter_map(|(_, l)| l.child)
                .collect()
        };
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            if children.is_empty() {
                return;
            }
            std::thread::sleep(POLL);
        }
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Launch {
    /// Notes the launching process's exit, if it ended.
    fn poll(&mut self) {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(status);
            self.child = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(line: &'static str) -> impl FnMut(u64) -> Result<Command, Error> {
        move |_| {
            let mut c = Command::new("sh");
            c.arg("-c").arg(line).stdout(Stdio::null());
            Ok(c)
        }
    }

    fn join() -> Join {
        Join::new("tcp://127.0.0.1:9", "0123456789abcdef-remote")
    }

    #[test]
    fn a_launcher_that_fails_reports_its_status_and_the_end_of_its_stderr() {
        let remote = Remote::default();
        remote
            .spawn(
                0..1,
                "sh",
                false,
                &join(),
                sh("head -c 10000 /dev/zero | tr '\\0' x >&2; echo ' no route' >&2; exit 255"),
            )
            .unwrap();
        let err = remote
            .wait_joined(0..1, Duration::from_secs(30))
            .unwrap_err();
        match err {
            Error::Refused { status, stderr, .. } => {
                assert_eq!(status.code(), Some(255));
                assert!(stderr.ends_with("x no route"), "{stderr}");
                assert!(stderr.len() <= TAIL_BYTES, "{}", stderr.len());
            }
            other => panic!("{other:?}"),
        }
        remote.shutdown();
    }

    #[test]
    fn joins_end_the_wait_and_a_launcher_that_never_joins_is_stopped_at_the_timeout() {
        let remote = Arc::new(Remote::default());
        remote
            .spawn(4..6, "sh", false, &join(), sh("exec sleep 60"))
            .unwrap();
        let r = Arc::clone(&remote);
        let joiner = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            r.joined(4);
            r.joined(5);
        });
        remote.wait_joined(4..6, Duration::from_secs(30)).unwrap();
        joiner.join().unwrap();
        assert_eq!(remote.connected(), 2);
        remote.left(5);
        assert_eq!(remote.connected(), 1);

        remote
            .spawn(6..7, "sh", false, &join(), sh("exec sleep 60"))
            .unwrap();
        let t = Instant::now();
        let err = remote
            .wait_joined(6..7, Duration::from_millis(200))
            .unwrap_err();
        assert!(
            matches!(err, Error::NotJoined { launch_id: 6, .. }),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let state = remote.state();
        assert!(
            state.launches[&6].child.is_none(),
            "the launcher was killed"
        );
        drop(state);
        remote.shutdown();
    }

    #[test]
    fn unknown_ids_are_ignored_and_a_launcher_reads_its_credential_on_stdin() {
        let remote = Remote::default();
        remote.expect(0..1, "sbatch");
        remote.joined(99);
        assert_eq!(remote.connected(), 0);
        // A launcher that ends with success once it read the right credential, and fails
        // otherwise: the credential of its own launch id arrives on its stdin.
        let expected = join().credential(3);
        let line = format!(
            "read -r c; [ \"$c\" = {} ] || {{ echo \"got $c\" >&2; exit 9; }}",
            expected.expose_str().unwrap()
        );
        remote
            .spawn(3..4, "sh", false, &join(), move |_| {
                let mut c = Command::new("sh");
                c.arg("-c").arg(&line).stdout(Stdio::null());
                Ok(c)
            })
            .unwrap();
        remote.wait_joined(3..4, Duration::from_secs(30)).unwrap();
        remote.shutdown();
    }

    #[test]
    fn a_missing_launcher_is_not_found() {
        let remote = Remote::default();
        let err = remote
            .spawn(0..1, "no-such-launcher", false, &join(), |_| {
                Ok(Command::new("/nonexistent/no-such-launcher"))
            })
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { ref program } if program == "no-such-launcher"));
    }
}
