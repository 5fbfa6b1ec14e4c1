//! The pool's local daemon processes and the launcher thread that keeps their number: how a
//! departure is judged, and when replacement gives up.
//!
//! - A daemon that leaves by its own rules (idletime, walltime, maxtasks) says so to the
//!   dispatcher first; the dispatcher reports the departure as retired
//!   ([`DaemonEvent::Left`] with `retired: Some(_)`), as it does for a daemon it told to go. A
//!   retired daemon is never replaced.
//! - Any other departure of a daemon that joined, whatever its exit code or signal (a task that
//!   calls `exit(0)`, an abort, a kill from outside), is a loss: it is replaced at once.
//! - A daemon process that ends before it joined (the program exits at start, crashes, cannot
//!   be started) is replaced after a backoff: [`FIRST_BACKOFF`] after the first such failure,
//!   doubling with each failure in a row. Any local daemon joining ends the row. After
//!   [`MAX_START_RETRIES`] retries in a row fail too, replacement gives up: the dispatcher is
//!   told ([`Dispatcher::strand`]), so tasks that find no daemon connected resolve
//!   [`Error::NoDaemons`](crate::Error::NoDaemons) instead of waiting forever, and
//!   [`Pool::status`](crate::Pool::status) shows the reason in `no_daemons`.
//! - Each dispatcher event is also told to the pool's users ([`Pool::events`](crate::Pool::events)),
//!   with what only the launcher knows: the pid of a daemon that joined, how a lost one's
//!   process ended, whether it was killed, and the replacement started for it.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, mpsc};
use std::time::{Duration, Instant};

use mirai_dispatch::daemon::{ExitReason, ExitRules};
use mirai_dispatch::secret::Secret;
use mirai_dispatch::{DaemonEvent, DaemonExit, Dispatcher, NoDaemons};

use crate::Error;
use crate::daemon::{ENV_LAUNCH_ID, ENV_RULES, ENV_TLS_PIN, ENV_TOKEN_STDIN, ENV_URL};
use crate::launch::remote::Remote;

use super::events::{EventLog, LeaveReason, PoolEvent};

/// How often the launcher looks for local daemons that ended before they joined (no event
/// tells of those).
const REAP_EVERY: Duration = Duration::from_millis(200);

/// How long a daemon that left the dispatcher gets to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// The wait before replacing a daemon that ended before it joined; it doubles with each such
/// failure in a row (100 ms, 200 ms, 400 ms, 800 ms, 1.6 s).
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How many times in a row a daemon that ended before it joined is replaced before the pool
/// gives up (N = 5): with [`FIRST_BACKOFF`] doubling, the retries span about 3 s, so a daemon
/// program that cannot start is retried at most 5 times a minute, and waiting tasks learn
/// within seconds that nothing will run them.
pub(crate) const MAX_START_RETRIES: u32 = 5;

/// The local daemon processes and how to start more: shared by the pool and the launcher
/// thread, which turns the dispatcher's [`DaemonEvent`]s into kills and replacements. Remote
/// launches share the launch id counter, so every daemon of the pool has its own id, and are
/// tracked apart ([`Remote`]): the pool never kills or replaces a daemon it did not start.
#[derive(Debug)]
pub(super) struct Local {
    pub(super) program: PathBuf,
    pub(super) url: String,
    pub(super) advertise: Option<String>,
    /// The fingerprint local daemons pin on a `tls+tcp://` pool.
    pub(super) tls_pin: Option<String>,
    pub(super) token: Secret,
    pub(super) exit_rules: ExitRules,
    pub(super) rules: String,
    pub(super) passthrough: bool,
    pub(super) respawn: bool,
    pub(super) next_launch: AtomicU64,
    pub(super) replaced: AtomicU64,
    pub(super) children: Mutex<Children>,
    pub(super) remote: Remote,
    pub(super) launch_timeout: Duration,
    /// `scancel JOB` for each Slurm job submitted, run when the pool is dropped.
    pub(super) slurm_jobs: Mutex<Vec<Command>>,
    /// Told when replacement gives up (weak: the pool's handles own the dispatcher).
    pub(super) dispatcher: Weak<Dispatcher>,
    /// What the pool's users read ([`Pool::events`](crate::Pool::events)).
    pub(super) events: Arc<EventLog>,
}

#[derive(Debug, Default)]
pub(super) struct Children {
    /// Set by the pool's drop: no launch after it.
    pub(super) stopped: bool,
    /// Live processes by launch id.
    pub(super) live: HashMap<u64, Child>,
    /// The launch ids in `live` that joined the dispatcher.
    joined: HashSet<u64>,
    /// Local daemons in a row that ended before joining (a join resets it).
    failures: u32,
    /// When the replacements of daemons that ended before joining are due.
    due: Vec<Instant>,
    /// Why replacement gave up, once it has.
    gave_up: Option<NoDaemons>,
    /// Daemons killed on the dispatcher's request whose departure is still to come, with the
    /// launch id of their replacement.
    killed: HashMap<u64, Option<u64>>,
}

impl Local {
    pub(super) fn children(&self) -> MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `n` fresh launch ids.
    pub(super) fn ids(&self, n: usize) -> std::ops::Range<u64> {
        let n = n as u64;
        let first = self.next_launch.fetch_add(n, Ordering::Relaxed);
        first..first + n
    }

    pub(super) fn launch(&self, children: &mut Children) -> Result<(), Error> {
        if children.stopped {
            return Err(Error::ShutDown);
        }
        self.spawn(children)
            .map(|_| ())
            .map_err(|e| Error::Start(format!("{}: {e}", self.program.display())))
    }

    /// Starts a daemon process; its launch id.
    fn spawn(&self, children: &mut Children) -> std::io::Result<u64> {
        let launch_id = self.next_launch.fetch_add(1, Ordering::Relaxed);
        let mut credential = self.token.launch_credential(launch_id).expose().to_vec();
        credential.push(b'\n');
        // The credential goes to the child's stdin, not its environment: then it is in no
        // process's environment (`/proc/<pid>/environ`) at all.
        let mut command = Command::new(&self.program);
        command
            .env(ENV_URL, &self.url)
            .env(ENV_TOKEN_STDIN, "1")
            .env(ENV_LAUNCH_ID, launch_id.to_string())
            .env(ENV_RULES, &self.rules)
            .stdin(Stdio::piped());
        if let Some(pin) = &self.tls_pin {
            command.env(ENV_TLS_PIN, pin);
        }
        if !self.passthrough {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let mut child = command.spawn()?;
        crate::launch::hand_over(&mut child, &credential);
        children.live.insert(launch_id, child);
        Ok(launch_id)
    }

    /// The launcher thread: runs until the pool is dropped.
    pub(super) fn supervise(&self, events: &mpsc::Receiver<DaemonEvent>) {
        self.supervise_events(events);
        // No event comes any more: the pool's readers stop waiting.
        self.events.close();
    }

    fn supervise_events(&self, events: &mpsc::Receiver<DaemonEvent>) {
        let mut last_reap = Instant::now();
        loop {
            let now = Instant::now();
            let wait = self
                .children()
                .due
                .iter()
                .min()
                .map_or(REAP_EVERY, |t| t.saturating_duration_since(now))
                .min(REAP_EVERY);
            // The dispatcher outlives the pool while handles hold it, so its channel may stay
            // open after the drop: look at the stop flag now and then.
            match events.recv_timeout(wait) {
                Ok(event) => {
                    self.on_event(event);
                    // Every event that waits is taken before the reap, so a daemon's join is
                    // known before its process is looked at.
                    while let Ok(event) = events.try_recv() {
                        self.on_event(event);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.children().stopped {
                return;
            }
            if last_reap.elapsed() >= REAP_EVERY {
                self.reap();
                self.remote.reap();
                last_reap = Instant::now();
            }
            self.launch_due();
        }
    }

    /// One event from the dispatcher. (Matched one by one, so events this launcher does not
    /// act on need no arm.) A refusal is not acted on: the launch id a refused peer claims is
    /// unproven, so it can neither fail a launch nor get a daemon killed.
    fn on_event(&self, event: DaemonEvent) {
        if let DaemonEvent::KillRequested { launch_id, .. } = event {
            self.kill(launch_id);
        } else if let DaemonEvent::Left {
            launch_id, retired, ..
        } = event
        {
            self.remote.left(launch_id);
            let (reason, replaced_by) = self.left(launch_id, retired);
            self.events.push(PoolEvent::Left {
                launch_id,
                reason,
                replaced_by,
            });
        } else if let DaemonEvent::Joined { launch_id, .. } = event {
            self.remote.joined(launch_id);
            let mut children = self.children();
            let pid = children.live.get(&launch_id).map(Child::id);
            if pid.is_some() {
                children.joined.insert(launch_id);
                // The program starts and joins: the row of failures is over.
                children.failures = 0;
            }
            drop(children);
            self.events.push(PoolEvent::Joined { launch_id, pid });
        } else if let DaemonEvent::Refused {
            claimed_launch_id,
            reason,
        } = event
        {
            self.events.push(PoolEvent::Refused {
                claimed_launch_id,
                reason,
            });
        } else if let DaemonEvent::SetupFailed {
            launch_id, outcome, ..
        } = event
        {
            let message = match outcome {
                mirai_dispatch::Outcome::TaskError(e) => e.message,
                other => other.to_string(),
            };
            self.events
                .push(PoolEvent::SetupFailed { launch_id, message });
        } else if let DaemonEvent::ForeignPeer { uid, pid } = event {
            self.events.push(PoolEvent::ForeignPeer { uid, pid });
        }
    }

    /// A hard cancel: kill the process at once and replace it.
    fn kill(&self, launch_id: u64) {
        let mut children = self.children();
        children.joined.remove(&launch_id);
        let Some(mut child) = children.live.remove(&launch_id) else {
            children.killed.insert(launch_id, None);
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        let replacement = self.replace(&mut children);
        children.killed.insert(launch_id, replacement);
    }

    /// A daemon left: replace it unless it retired (see the module docs). Its exit code says
    /// nothing: task code may exit with any. Returns why it left and its replacement.
    fn left(&self, launch_id: u64, retired: Option<ExitReason>) -> (LeaveReason, Option<u64>) {
        let (child, killed) = {
            let mut children = self.children();
            children.joined.remove(&launch_id);
            let killed = children.killed.remove(&launch_id);
            (children.live.remove(&launch_id), killed)
        };
        if let Some(reason) = retired {
            // A retirement (or a release) is never replaced.
            if let Some(child) = child {
                self.reap_leaver(child);
            }
            return (LeaveReason::retired(reason), None);
        }
        if let Some(replaced_by) = killed {
            return (LeaveReason::Killed, replaced_by);
        }
        let Some(child) = child else {
            return (LeaveReason::Lost { exit: None }, None);
        };
        let exit = self.reap_leaver(child);
        let replaced_by = self.replace(&mut self.children());
        (LeaveReason::Lost { exit }, replaced_by)
    }

    /// Waits a moment for a daemon that left to end, killing it if it does not; how it ended.
    fn reap_leaver(&self, mut child: Child) -> Option<DaemonExit> {
        // Its socket closes just before the process ends: give it a moment to exit by itself.
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(exit_of(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok().map(exit_of);
                }
            }
        }
    }

    /// Catches daemons that ended before they joined, every [`REAP_EVERY`]: each is a failure
    /// to start, replaced after a backoff (see [`Local::start_failed`]). Daemons that joined
    /// are judged by their [`DaemonEvent::Left`], which always follows.
    fn reap(&self) {
        let mut children = self.children();
        let Children { live, joined, .. } = &mut *children;
        let dead: Vec<(u64, ExitStatus)> = live
            .iter_mut()
            .filter(|(id, _)| !joined.contains(id))
            .filter_map(|(&id, child)| match child.try_wait() {
                Ok(Some(status)) => Some((id, status)),
                _ => None,
            })
            .collect();
        for (id, status) in dead {
            children.live.remove(&id);
            self.start_failed(&mut children, exit_of(status));
        }
    }

    /// A daemon ended before it joined (or could not be started): its replacement waits
    /// [`FIRST_BACKOFF`], doubled for each failure in a row before it; past
    /// [`MAX_START_RETRIES`] retries, replacement gives up and the dispatcher is told.
    fn start_failed(&self, children: &mut Children, last: DaemonExit) {
        children.failures = children.failures.saturating_add(1);
        if !self.respawn || children.stopped || children.gave_up.is_some() {
            return;
        }
        if children.failures > MAX_START_RETRIES {
            let reason = NoDaemons::CrashLoop {
                failures: children.failures,
                last,
            };
            children.gave_up = Some(reason);
            children.due.clear();
            if let Some(dispatcher) = self.dispatcher.upgrade() {
                dispatcher.strand(Some(reason));
            }
            return;
        }
        let delay = FIRST_BACKOFF * 2u32.pow(children.failures - 1);
        children.due.push(Instant::now() + delay);
    }

    /// Starts the replacements whose backoff is over.
    fn launch_due(&self) {
        let mut children = self.children();
        let now = Instant::now();
        let before = children.due.len();
        children.due.retain(|&t| t > now);
        for _ in children.due.len()..before {
            self.replace(&mut children);
        }
    }

    /// Starts a replacement daemon and counts it. The count comes first: the new process runs
    /// from inside `spawn`, and can join, serve a task and have its result taken before `spawn`
    /// returns here, so counting afterwards let a caller see a replacement's result and a count
    /// without it. A failed start takes its count back and counts as a failure to start.
    /// Returns the replacement's launch id, if one started.
    fn replace(&self, children: &mut Children) -> Option<u64> {
        if !self.respawn || children.stopped || children.gave_up.is_some() {
            return None;
        }
        self.replaced.fetch_add(1, Ordering::Relaxed);
        match self.spawn(children) {
            Ok(launch_id) => Some(launch_id),
            Err(e) => {
                self.replaced.fetch_sub(1, Ordering::Relaxed);
                self.start_failed(children, DaemonExit::NotStarted(e.kind()));
                None
            }
        }
    }
}

/// How a process ended.
fn exit_of(status: ExitStatus) -> DaemonExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => DaemonExit::Code(code),
        (None, Some(signal)) => DaemonExit::Signal(signal),
        // Neither: not an exit status a child has once reaped.
        (None, None) => DaemonExit::Code(-1),
    }
}
