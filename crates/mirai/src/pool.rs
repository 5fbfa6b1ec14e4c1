//! The host side: a dispatcher with its local daemon processes, and typed submission.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mirai_dispatch::daemon::ExitRules;
use mirai_dispatch::{Config, DaemonEvent, Dispatcher, DispatcherConfig, Status, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::daemon::{ENV_LAUNCH_ID, ENV_RULES, ENV_TLS_PIN, ENV_TOKEN, ENV_URL, format_rules};
use crate::{Error, Mirai, TaskFn};

/// Settings for a [`Pool`]: how many local daemons, where to listen, the byte cap.
///
/// Local daemons re-execute this program, whose `main` must first call
/// [`daemon_main_if_requested`](crate::daemon_main_if_requested):
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use mirai::{Daemons, Registry, TaskFn, task};
///
/// fn add((a, b): (i64, i64)) -> i64 { a + b }
/// const ADD: TaskFn<(i64, i64), i64> = task!(add);
///
/// fn main() -> Result<(), mirai::Error> {
///     mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
///     let pool = Daemons::new()
///         .local(2)
///         .max_queued_bytes(64 << 20)
///         .seed(42)
///         .idletime(Duration::from_secs(600))
///         .start()?;
///     assert_eq!(pool.submit(&ADD, (20, 22))?.wait()?, 42);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Daemons {
    local: usize,
    url: Option<String>,
    max_queued_bytes: Option<u64>,
    seed: Option<u64>,
    rules: ExitRules,
    program: Option<PathBuf>,
    passthrough: bool,
    cancel_grace: Option<Duration>,
    no_respawn: bool,
    token: Option<String>,
    allow_plain_tcp: bool,
}

impl Daemons {
    /// No daemons, a private local address, no cap.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert!(pool.url().starts_with("abstract://"));
    /// assert_eq!(pool.status().connections, 0);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `n` local daemon processes.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(3).start()?;
    /// assert_eq!(pool.local_pids().len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn local(mut self, n: usize) -> Self {
        self.local = n;
        self
    }

    /// Listens on `url` (e.g. `tls+tcp://0.0.0.0:5555`) so remote daemons can dial in; port 0
    /// picks a free port. A `tls+tcp://` pool generates its certificate at start; remote daemons
    /// run [`run_daemon_tls`](crate::run_daemon_tls) with this address, the pool's
    /// [`token`](Pool::token) and its [`tls_fingerprint`](Pool::tls_fingerprint) to pin. Plain
    /// `tcp://` (daemons run [`run_daemon`](crate::run_daemon)) is refused unless
    /// [`allow_plain_tcp`](Self::allow_plain_tcp).
    ///
    /// ```
    /// let refused = mirai::Daemons::new().url("tcp://127.0.0.1:0").start();
    /// assert!(refused.is_err());
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// assert!(pool.url().starts_with("tls+tcp://127.0.0.1:"));
    /// assert!(!pool.url().ends_with(":0"));
    /// assert!(pool.tls_fingerprint().unwrap().starts_with("sha256:"));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Accepts a plain `tcp://` url, whose token and task data cross the network unencrypted
    /// (e.g. behind an SSH tunnel).
    ///
    /// ```
    /// let pool = mirai::Daemons::new()
    ///     .url("tcp://127.0.0.1:0")
    ///     .allow_plain_tcp(true)
    ///     .start()?;
    /// assert!(pool.url().starts_with("tcp://127.0.0.1:"));
    /// assert_eq!(pool.tls_fingerprint(), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn allow_plain_tcp(mut self, yes: bool) -> Self {
        self.allow_plain_tcp = yes;
        self
    }

    /// Caps the bytes of queued task arguments; beyond it `try_submit` says [`Error::Full`].
    ///
    /// ```
    /// let pool = mirai::Daemons::new().max_queued_bytes(1 << 20).start()?;
    /// assert_eq!(pool.status().memory.capacity, Some(1 << 20));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn max_queued_bytes(mut self, bytes: u64) -> Self {
        self.max_queued_bytes = Some(bytes);
        self
    }

    /// Seeds the per-task random streams, for reproducible results.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().seed(42).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Daemons exit after this long without a task.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// use std::time::{Duration, Instant};
    /// let pool = mirai::Daemons::new()
    ///     .local(1)
    ///     .idletime(Duration::from_millis(100))
    ///     .start()?;
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// while !pool.local_pids().is_empty() {
    ///     assert!(Instant::now() < deadline, "the idle daemon stayed");
    ///     std::thread::sleep(Duration::from_millis(20));
    /// }
    /// assert_eq!(pool.replaced(), 0); // retired by its rule, not replaced
    /// # Ok(()) }
    /// ```
    pub fn idletime(mut self, d: Duration) -> Self {
        self.rules.idletime = Some(d);
        self
    }

    /// Daemons exit between tasks once they have run this long.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let pool = mirai::Daemons::new().walltime(Duration::from_secs(3600)).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn walltime(mut self, d: Duration) -> Self {
        self.rules.walltime = Some(d);
        self
    }

    /// Daemons exit after this many tasks.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().maxtasks(1000).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn maxtasks(mut self, n: u64) -> Self {
        self.rules.maxtasks = Some(n);
        self
    }

    /// Runs `path` as the daemon program instead of the current executable (it must call
    /// [`daemon_main_if_requested`](crate::daemon_main_if_requested) with the same tasks).
    ///
    /// ```
    /// let err = mirai::Daemons::new().local(1).program("/nonexistent/daemon").start();
    /// assert!(matches!(err, Err(mirai::Error::Start(_))));
    /// ```
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Lets daemons write to this process's stdout and stderr (they are discarded otherwise).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().passthrough(true).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }

    /// A running task cancelled on a local daemon that has not stopped within `grace` gets its
    /// daemon killed (and replaced, see [`Daemons::respawn`]). Default: one second. Task
    /// functions cannot be interrupted cooperatively, so without this a cancelled long task
    /// would keep its daemon busy until it finished.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let pool = mirai::Daemons::new().cancel_grace(Duration::from_millis(250)).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = Some(grace);
        self
    }

    /// Whether a local daemon that is killed (by a hard cancel, an unanswered cancel, or a
    /// signal from outside) is replaced by a new one, keeping the count fixed. Default: yes.
    /// Daemons that exit by their own rules (idletime, walltime, maxtasks) are never replaced.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().respawn(false).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn respawn(mut self, on: bool) -> Self {
        self.no_respawn = !on;
        self
    }

    /// Sets the join token remote daemons must present (default: a fresh random-looking one).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().token("s3cret").start()?;
    /// assert_eq!(pool.token(), "s3cret");
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Starts the dispatcher and the local daemons.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn start(self) -> Result<Pool, Error> {
        static POOLS: AtomicU64 = AtomicU64::new(0);
        let n = POOLS.fetch_add(1, Ordering::Relaxed);
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| format!("abstract://mirai-{}-{n}", std::process::id()));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = self
            .token
            .clone()
            .unwrap_or_else(|| format!("{:x}{:x}{n:x}", nanos, std::process::id()));
        let mut core =
            Config::default().with_cancel_grace(self.cancel_grace.unwrap_or(DEFAULT_CANCEL_GRACE));
        if let Some(bytes) = self.max_queued_bytes {
            core = core.with_max_queued_bytes(bytes);
        }
        if let Some(seed) = self.seed {
            core = core.with_seed(seed);
        }
        let (dispatcher, events) = Dispatcher::start(
            DispatcherConfig::new(url, token.clone().into_bytes())
                .with_core(core)
                .with_plain_tcp(self.allow_plain_tcp),
        )
        .map_err(|e| Error::Start(e.to_string()))?;
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| Error::Start(e.to_string()))?,
        };
        let local = Arc::new(Local {
            program,
            url: dispatcher.url().to_owned(),
            tls_pin: dispatcher.tls_fingerprint().map(|f| f.to_string()),
            token,
            rules: format_rules(&self.rules),
            passthrough: self.passthrough,
            respawn: !self.no_respawn,
            next_launch: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            children: Mutex::new(Children::default()),
        });
        let pool = Pool {
            dispatcher: Arc::new(dispatcher),
            local: Arc::clone(&local),
        };
        for _ in 0..self.local {
            // On failure `pool` drops here, killing the daemons already started.
            let mut children = local.children();
            local.launch(&mut children)?;
        }
        let supervisor = Arc::clone(&local);
        std::thread::Builder::new()
            .name("mirai-launcher".into())
            .spawn(move || supervisor.supervise(&events))
            .map_err(|e| Error::Start(e.to_string()))?;
        Ok(pool)
    }
}

/// See [`Daemons::cancel_grace`].
const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How often the launcher looks for local daemons that died without an event.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// How long a daemon that left the dispatcher gets to exit on its own before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// The local daemon processes and how to start more: shared by the pool and the launcher
/// thread, which turns the dispatcher's [`DaemonEvent`]s into kills and replacements.
#[derive(Debug)]
struct Local {
    program: PathBuf,
    url: String,
    /// The fingerprint local daemons pin on a `tls+tcp://` pool.
    tls_pin: Option<String>,
    token: String,
    rules: String,
    passthrough: bool,
    respawn: bool,
    next_launch: AtomicU64,
    replaced: AtomicU64,
    children: Mutex<Children>,
}

#[derive(Debug, Default)]
struct Children {
    /// Set by the pool's drop: no launch after it.
    stopped: bool,
    /// Live processes by launch id.
    live: HashMap<u64, Child>,
}

impl Local {
    fn children(&self) -> MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn launch(&self, children: &mut Children) -> Result<(), Error> {
        if children.stopped {
            return Err(Error::ShutDown);
        }
        let launch_id = self.next_launch.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new(&self.program);
        command
            .env(ENV_URL, &self.url)
            .env(ENV_TOKEN, &self.token)
            .env(ENV_LAUNCH_ID, launch_id.to_string())
            .env(ENV_RULES, &self.rules)
            .stdin(Stdio::null());
        if let Some(pin) = &self.tls_pin {
            command.env(ENV_TLS_PIN, pin);
        }
        if !self.passthrough {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = command
            .spawn()
            .map_err(|e| Error::Start(format!("{}: {e}", self.program.display())))?;
        children.live.insert(launch_id, child);
        Ok(())
    }

    /// The launcher thread: runs until the pool is dropped.
    fn supervise(&self, events: &mpsc::Receiver<DaemonEvent>) {
        let mut last_reap = Instant::now();
        loop {
            // The dispatcher outlives the pool while handles hold it, so its channel may stay
            // open after the drop: look at the stop flag now and then.
            match events.recv_timeout(REAP_EVERY) {
                Ok(DaemonEvent::KillRequested { launch_id, .. }) => self.kill(launch_id),
                Ok(DaemonEvent::Left { launch_id, .. }) => self.left(launch_id),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.children().stopped {
                return;
            }
            if last_reap.elapsed() >= REAP_EVERY {
                self.reap();
                last_reap = Instant::now();
            }
        }
    }

    /// A hard cancel: kill the process at once and replace it.
    fn kill(&self, launch_id: u64) {
        let mut children = self.children();
        let Some(mut child) = children.live.remove(&launch_id) else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        self.replace(&mut children);
    }

    /// A daemon left: replace it if it died rather than retired by its rules.
    fn left(&self, launch_id: u64) {
        let Some(mut child) = self.children().live.remove(&launch_id) else {
            return;
        };
        // Its socket closes just before the process ends: give it a moment to exit by itself.
        let deadline = Instant::now() + EXIT_GRACE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => break None,
            }
        };
        // Exit codes 0..=3 are the daemon's own rules (host gone, idletime, walltime, maxtasks).
        let retired = status.is_some_and(|s| s.code().is_some_and(|c| (0..=3).contains(&c)));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !retired {
            self.replace(&mut self.children());
        }
    }

    /// Catches daemons killed before they joined (no event tells of those), every
    /// [`REAP_EVERY`] whatever the events: a process that
    /// died by a signal is replaced; one that exited with an error (it could not dial, say)
    /// is not, lest a bad address launch daemons forever.
    fn reap(&self) {
        let mut children = self.children();
        let dead: Vec<(u64, bool)> = children
            .live
            .iter_mut()
            .filter_map(|(&id, child)| match child.try_wait() {
                Ok(Some(status)) => Some((id, status.signal().is_some())),
                _ => None,
            })
            .collect();
        for (id, killed) in dead {
            children.live.remove(&id);
            if killed {
                self.replace(&mut children);
            }
        }
    }

    fn replace(&self, children: &mut Children) {
        if self.respawn && !children.stopped && self.launch(children).is_ok() {
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running dispatcher and its local daemons. Dropping it (or [`Pool::shutdown`]) resolves
/// every pending task with [`Error::ShutDown`] and kills and reaps every local daemon.
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// # fn add((a, b): (i64, i64)) -> i64 { a + b }
/// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let sums = pool.map(&ADD, [(1, 1), (2, 2), (3, 3)])?;
/// assert_eq!(sums, [2, 4, 6]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pool {
    dispatcher: Arc<Dispatcher>,
    local: Arc<Local>,
}

impl Pool {
    /// The address daemons dial.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// println!("daemons dial {}", pool.url());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        self.dispatcher.url()
    }

    /// The join token daemons present; give it to remote daemons with the [`url`](Pool::url).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert!(!pool.token().is_empty());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn token(&self) -> &str {
        &self.local.token
    }

    /// The fingerprint daemons of a `tls+tcp://` pool pin (`sha256:` and 64 hex digits);
    /// `None` on other transports.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.tls_fingerprint(), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.dispatcher.tls_fingerprint().map(|f| f.to_string())
    }

    /// Queues `task(arg)`, waiting for room under the byte cap.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// let handle = pool.submit(&ADD, (1, 2))?;
    /// assert_eq!(handle.wait()?, 3);
    /// # Ok(()) }
    /// ```
    pub fn submit<A, R>(&self, task: &TaskFn<A, R>, arg: A) -> Result<Mirai<R>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let payload = postcard::to_allocvec(&arg)?;
        let id = self
            .dispatcher
            .submit(Task::new(task.name(), payload), None)
            .map_err(|r| Error::from(r.reason))?;
        Ok(Mirai::new(Arc::clone(&self.dispatcher), id))
    }

    /// Like [`Pool::submit`], but the task resolves with [`Error::TimedOut`] if it has not
    /// finished `timeout` after it started on a daemon (the daemon is then cancelled, and killed
    /// after the cancel grace if it does not stop).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().start()?; // no daemons: the task waits in the queue
    /// let mut handle = pool.submit_with_timeout(&ADD, (1, 2), Duration::from_secs(5))?;
    /// assert!(!handle.is_resolved());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn submit_with_timeout<A, R>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
        timeout: Duration,
    ) -> Result<Mirai<R>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let payload = postcard::to_allocvec(&arg)?;
        let id = self
            .dispatcher
            .submit(
                Task::new(task.name(), payload).with_run_timeout(timeout),
                None,
            )
            .map_err(|r| Error::from(r.reason))?;
        Ok(Mirai::new(Arc::clone(&self.dispatcher), id))
    }

    /// Queues `task(arg)` only if it fits under the byte cap now; otherwise hands the argument
    /// back with the reason ([`Error::Full`], [`Error::TooLarge`], [`Error::ShutDown`]).
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// // No daemons, so nothing drains the 2-byte queue: (1, 2) takes both bytes.
    /// let pool = mirai::Daemons::new().max_queued_bytes(2).start()?;
    /// let first = pool.try_submit(&ADD, (1, 2)).map_err(|(e, _)| e)?;
    /// let (error, arg) = pool.try_submit(&ADD, (3, 4)).unwrap_err();
    /// assert!(matches!(error, mirai::Error::Full));
    /// assert_eq!(arg, (3, 4)); // handed back, to retry later
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn try_submit<A, R>(&self, task: &TaskFn<A, R>, arg: A) -> Result<Mirai<R>, (Error, A)>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let payload = match postcard::to_allocvec(&arg) {
            Ok(p) => p,
            Err(e) => return Err((Error::from(e), arg)),
        };
        match self.dispatcher.try_submit(Task::new(task.name(), payload)) {
            Ok(id) => Ok(Mirai::new(Arc::clone(&self.dispatcher), id)),
            Err(r) => Err((Error::from(r.reason), arg)),
        }
    }

    /// Runs `task` on every item, in parallel, and returns the results in order; stops at the
    /// first error, cancelling the tasks still pending. With the `progress` feature (on by
    /// default) a progress bar on stderr counts the results (hidden when stderr is no terminal).
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// let out = pool.map(&ADD, (0..100).map(|i| (i, 1)))?;
    /// assert_eq!(out, (1..=100).collect::<Vec<i64>>());
    /// # Ok(()) }
    /// ```
    pub fn map<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> Result<Vec<R>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let mut handles = Vec::new();
        for item in items {
            match self.submit(task, item) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    handles.iter().for_each(Mirai::cancel);
                    return Err(e);
                }
            }
        }
        #[cfg(feature = "progress")]
        {
            let bar = indicatif::ProgressBar::new(handles.len() as u64);
            let mut values = Vec::with_capacity(handles.len());
            let mut rest = handles.into_iter();
            while let Some(handle) = rest.next() {
                match handle.wait() {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        rest.for_each(|h| h.cancel());
                        bar.abandon();
                        return Err(e);
                    }
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            Ok(values)
        }
        #[cfg(not(feature = "progress"))]
        crate::collect(handles)
    }

    /// Runs `task(arg)` once on every connected daemon (at least `min`, waiting for them to
    /// connect), e.g. to load data.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// let handles = pool.everywhere(&ADD, (1, 1), 2)?;
    /// assert_eq!(mirai::collect(handles)?, [2, 2]);
    /// # Ok(()) }
    /// ```
    pub fn everywhere<A, R>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
        min: usize,
    ) -> Result<Vec<Mirai<R>>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let payload = postcard::to_allocvec(&arg)?;
        let ids = self
            .dispatcher
            .everywhere(Task::new(task.name(), payload), min, None)
            .map_err(|r| Error::from(r.reason))?;
        Ok(ids
            .into_iter()
            .map(|id| Mirai::new(Arc::clone(&self.dispatcher), id))
            .collect())
    }

    /// The counters: connections, queued, executing, completed, bytes.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().max_queued_bytes(1024).start()?;
    /// let s = pool.status();
    /// assert_eq!((s.submitted, s.awaiting, s.memory.used), (0, 0, 0));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn status(&self) -> Status {
        self.dispatcher.status()
    }

    /// The process ids of the local daemons running now (replacements included).
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// assert_eq!(pool.local_pids().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn local_pids(&self) -> Vec<u32> {
        self.local.children().live.values().map(Child::id).collect()
    }

    /// How many local daemons were started to replace killed ones.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// # use std::time::{Duration, Instant};
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// let victim = pool.local_pids()[0];
    /// std::process::Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap();
    /// let deadline = Instant::now() + Duration::from_secs(30);
    /// while pool.replaced() == 0 {
    ///     assert!(Instant::now() < deadline, "no replacement");
    ///     std::thread::sleep(Duration::from_millis(10));
    /// }
    /// assert_eq!(pool.submit(&ADD, (1, 1))?.wait()?, 2); // served by the replacement
    /// # Ok(()) }
    /// ```
    pub fn replaced(&self) -> u64 {
        self.local.replaced.load(Ordering::Relaxed)
    }

    /// Resolves every pending task with [`Error::ShutDown`] and stops every local daemon.
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().start()?;
    /// let pending = pool.submit(&ADD, (1, 2))?;
    /// pool.shutdown();
    /// assert!(matches!(pending.wait(), Err(mirai::Error::ShutDown)));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn shutdown(self) {}
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.dispatcher.host().shutdown();
        // Daemons autoexit when the host goes away; kill anyway so none outlives the pool.
        let mut children = self.local.children();
        children.stopped = true;
        for child in children.live.values_mut() {
            let _ = child.kill();
        }
        for (_, mut child) in children.live.drain() {
            let _ = child.wait();
        }
    }
}
