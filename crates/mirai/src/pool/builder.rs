//! [`Daemons`], the settings of a pool, and [`Daemons::start`], which turns them into a
//! running [`Pool`]: the dispatcher's configuration, the local daemons launched, the launcher
//! thread. Kept apart from the pool's own methods (submitting, mapping, status), which are what
//! a program uses once the pool runs.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirai_dispatch::daemon::ExitRules;
use mirai_dispatch::protocol::{DEFAULT_MAX_MESSAGE, Limits};
use mirai_dispatch::secret::{MIN_TOKEN_LEN, Secret};
use mirai_dispatch::{Config, Dispatcher, DispatcherConfig};

use crate::Error;
use crate::daemon::format_rules;
use crate::launch::remote::Remote;

use super::events::{self, EVENT_CAPACITY};
use super::local::{Children, Local};
use super::{Pool, sync};

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
    max_uncollected_bytes: Option<u64>,
    max_message_bytes: Option<u64>,
    seed: Option<u64>,
    rules: ExitRules,
    program: Option<PathBuf>,
    passthrough: bool,
    cancel_grace: Option<Duration>,
    no_respawn: bool,
    keep_orphans: bool,
    token: Option<Secret>,
    advertise: Option<String>,
    launch_timeout: Option<Duration>,
    allow_plain_tcp: bool,
    sync: bool,
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
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let refused = mirai::Daemons::new().url("tcp://127.0.0.1:0").start();
    /// assert!(refused.is_err());
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// assert!(pool.url().starts_with("tls+tcp://127.0.0.1:"));
    /// assert!(!pool.url().ends_with(":0"));
    /// assert!(pool.tls_fingerprint().unwrap().starts_with("sha256:"));
    /// # }
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

    /// Pauses dispatch while results that arrived but were not yet taken (by `wait`, `.await`
    /// and the like) hold `bytes` or more, so a host that falls behind collecting cannot be
    /// buried in results; dispatch resumes as handles take them. Results of dropped handles
    /// never count. Off by default.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().max_uncollected_bytes(64 << 20).start()?;
    /// assert_eq!(pool.status().memory.uncollected_capacity, Some(64 << 20));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn max_uncollected_bytes(mut self, bytes: u64) -> Self {
        self.max_uncollected_bytes = Some(bytes);
        self
    }

    /// The largest task argument and task result, in encoded bytes (default
    /// [`DEFAULT_MAX_MESSAGE`](mirai_dispatch::protocol::DEFAULT_MAX_MESSAGE), 16 GiB).
    ///
    /// An argument over it is refused at submit with [`Error::ArgumentTooLarge`] (by
    /// [`Pool::submit`], [`Pool::submit_with`], [`Pool::submit_async`] and [`Pool::everywhere`];
    /// [`Pool::try_submit`] hands the argument back with it), before it is queued. A result
    /// over it resolves its task with [`Error::ResultTooLarge`]: the daemon checks the encoded
    /// value's size before sending it, and stays connected. The pool's daemons learn the limit
    /// when they join, so both sides hold every message to the same number.
    ///
    /// The default lets multi-gigabyte payloads (past 4 GiB too) through without a setting,
    /// while a runaway value gets a typed error naming this limit instead of being pushed into
    /// a daemon that then runs out of memory. A high limit costs nothing by itself: buffers grow
    /// with the bytes that actually arrive.
    ///
    /// ```
    /// # fn len(v: Vec<u8>) -> usize { v.len() }
    /// # const LEN: mirai::TaskFn<Vec<u8>, usize> = mirai::task!(len);
    /// let pool = mirai::Daemons::new().max_message_bytes(1 << 20).start()?;
    /// assert_eq!(pool.max_message_bytes(), 1 << 20);
    /// let err = pool.submit(&LEN, vec![0; 2 << 20]).unwrap_err();
    /// assert!(matches!(err, mirai::Error::ArgumentTooLarge { limit: 1048576, .. }));
    /// assert_eq!(mirai::Daemons::new().start()?.max_message_bytes(), 16 << 30);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn max_message_bytes(mut self, bytes: u64) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Seeds the per-task random streams, for reproducible results: a
    /// [`task_ctx!`](crate::task_ctx!) function's [`Ctx::rng`](crate::Ctx::rng) then gives the
    /// same numbers for the same submission order, whatever the daemons (see
    /// [`ctx`](crate::ctx)). Without a seed, tasks draw fresh entropy.
    ///
    /// ```
    /// # use mirai::{Ctx, TaskFn, task_ctx};
    /// # use rand_core::Rng;
    /// fn draw(ctx: &Ctx, _: ()) -> u64 { ctx.rng().next_u64() }
    /// const DRAW: TaskFn<(), u64> = task_ctx!(draw);
    /// let pool = mirai::Daemons::new().seed(42).sync().start()?;
    /// assert_eq!(pool.submit(&DRAW, ())?.wait()?, DRAW.call_with(&Ctx::local(42, 0), ()));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sync mode, as R's `daemons(sync = TRUE)`: each task runs in the calling process, on the
    /// calling thread, inside [`Pool::submit`] (and `try_submit`, `submit_async`, `map`,
    /// `everywhere`, which runs it once), so a debugger stops at a breakpoint in the task and a
    /// unit test needs no process. The handle is already resolved; its result and errors are
    /// those a daemon pool gives (the argument and value are encoded and decoded, a panic
    /// becomes [`Error::Task`], a value over the message limit [`Error::ResultTooLarge`]), and a
    /// [`Ctx`](crate::Ctx) gets the same id, attempt (0) and random stream as with
    /// [`Daemons::seed`] on daemons. No daemon is started ([`Daemons::local`] is ignored) and
    /// the pool sends no task to a daemon that dials in; run and queue timeouts do not apply.
    ///
    /// ```
    /// fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().sync().start()?; // no registry, no daemon
    /// let mut handle = pool.submit(&ADD, (1, 2))?;
    /// assert!(handle.is_resolved()); // ran inside submit
    /// assert_eq!(handle.wait()?, 3);
    /// assert_eq!(pool.map(&ADD, [(1, 1), (2, 2)])?, [2, 4]);
    /// assert_eq!((pool.status().submitted, pool.status().completed), (3, 3));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn sync(mut self) -> Self {
        self.sync = true;
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

    /// Whether [`start`](Self::start) first removes orphaned shared-memory regions of this user:
    /// regions whose owner is dead (a host killed while it held task results, a program that
    /// leaked its regions), as `mori prune` and R's `mori::prune()` do. Default: yes. Turn it off
    /// where `/dev/shm` is shared with processes in other PID namespaces (containers run with
    /// `--ipc=host`), whose live regions look orphaned from here.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().prune_orphans(false).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn prune_orphans(mut self, on: bool) -> Self {
        self.keep_orphans = !on;
        self
    }

    /// Whether a local daemon that is lost is replaced by a new one, keeping the count fixed.
    /// Default: yes. Every departure but a retirement is a loss, whatever the exit code or
    /// signal: a hard cancel, an unanswered cancel, a kill from outside, a task that calls
    /// `std::process::exit` or aborts. Daemons that exit by their own rules (idletime,
    /// walltime, maxtasks) say so to the dispatcher first and are never replaced.
    ///
    /// A daemon that ends before it joined (its program exits at start, or cannot be started)
    /// is replaced after a backoff: 100 ms, doubling with each such failure in a row, up to 5
    /// retries (so at most 5 a minute). Then the pool gives up: [`Pool::status`] shows why in
    /// `no_daemons`, and while no daemon is connected, waiting tasks and new ones resolve
    /// [`Error::NoDaemons`] instead of waiting forever.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// // A daemon program that exits at once, before it can join.
    /// let pool = mirai::Daemons::new().local(1).program("/bin/false").start()?;
    /// let mut handle = pool.submit(&ADD, (1, 2))?;
    /// let err = handle.wait_timeout(Duration::from_secs(60)).unwrap_err();
    /// assert!(matches!(err, mirai::Error::NoDaemons { .. }), "{err}");
    /// assert!(pool.status().no_daemons.is_some());
    /// let no_respawn = mirai::Daemons::new().respawn(false).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn respawn(mut self, on: bool) -> Self {
        self.no_respawn = !on;
        self
    }

    /// Sets the pool token, from which every launched daemon's credential derives and which
    /// daemons started by hand present (default: 256 fresh bits from the operating system's
    /// CSPRNG, as 64 hex digits). [`start`](Self::start) refuses a token shorter than 16 bytes
    /// with [`Error::WeakToken`]. `Debug` never shows it.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().token("s3cret-s3cret-s3cret").start()?;
    /// assert_eq!(pool.token(), "s3cret-s3cret-s3cret");
    /// let short = mirai::Daemons::new().token("s3cret").start();
    /// assert!(matches!(short, Err(mirai::Error::WeakToken { len: 6 })));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::from(token.into()));
        self
    }

    /// The address remote daemons dial, when it differs from the one the pool listens on
    /// (listening on `tls+tcp://0.0.0.0:5555`, daemons dial `tls+tcp://login1.cluster:5555`). Used by
    /// [`Pool::launch`] and the other launchers; default: [`Pool::url`].
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let pool = mirai::Daemons::new()
    ///     .url("tls+tcp://127.0.0.1:0")
    ///     .advertise("tls+tcp://login1.example:5555")
    ///     .start()?;
    /// assert_eq!(pool.join().url(), "tls+tcp://login1.example:5555");
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn advertise(mut self, url: impl Into<String>) -> Self {
        self.advertise = Some(url.into());
        self
    }

    /// How long [`Pool::launch`] and [`Pool::launch_with`] wait for their daemons to join
    /// before they stop the launching processes and fail with
    /// [`launch::Error::NotJoined`](crate::launch::Error::NotJoined). Default: 60 seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let pool = mirai::Daemons::new().launch_timeout(Duration::from_secs(300)).start()?;
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn launch_timeout(mut self, timeout: Duration) -> Self {
        self.launch_timeout = Some(timeout);
        self
    }

    /// Starts the dispatcher and the local daemons. Without [`url`](Self::url) the pool
    /// listens on an abstract socket whose name holds 128 random bits, so no other process can
    /// guess it. A [`token`](Self::token) shorter than 16 bytes is refused
    /// ([`Error::WeakToken`]).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert!(pool.url().starts_with("abstract://mirai-"));
    /// assert_ne!(pool.url(), mirai::Daemons::new().start()?.url());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn start(self) -> Result<Pool, Error> {
        let token = match &self.token {
            Some(t) if t.len() < MIN_TOKEN_LEN => return Err(Error::WeakToken { len: t.len() }),
            Some(t) => t.clone(),
            None => Secret::generate().map_err(|e| Error::Start(e.to_string()))?,
        };
        let url = match &self.url {
            Some(url) => url.clone(),
            None => default_url()?,
        };
        #[cfg(not(feature = "tls"))]
        if mirai_dispatch::security::exposure(&url) == mirai_dispatch::security::Exposure::Encrypted
        {
            return Err(Error::TlsDisabled { url });
        }
        let mut core =
            Config::default().with_cancel_grace(self.cancel_grace.unwrap_or(DEFAULT_CANCEL_GRACE));
        if let Some(bytes) = self.max_queued_bytes {
            core = core.with_max_queued_bytes(bytes);
        }
        if let Some(bytes) = self.max_uncollected_bytes {
            core = core.with_max_uncollected_bytes(bytes);
        }
        if let Some(seed) = self.seed {
            core = core.with_seed(seed);
        } else {
            // The daemons' own streams (in their init message) of an unseeded pool differ from
            // pool to pool, as its tasks' generators do (fresh entropy, see `Ctx::rng`).
            core = core.with_entropy(getrandom::u64().map_err(|e| Error::Start(e.to_string()))?);
        }
        let mut config = DispatcherConfig::new(url, token.clone())
            .with_core(core)
            .with_plain_tcp(self.allow_plain_tcp);
        if let Some(bytes) = self.max_message_bytes {
            config.limits = Limits::new(bytes);
        }
        if !self.keep_orphans {
            // Best effort: a region another user owns, or one that goes away meanwhile, is not
            // a reason to refuse to start.
            let _ = mori_shm::prune();
        }
        let (dispatcher, events) =
            Dispatcher::start(config).map_err(|e| Error::Start(e.to_string()))?;
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| Error::Start(e.to_string()))?,
        };
        let dispatcher = Arc::new(dispatcher);
        let max_message = self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE);
        let sync = self.sync.then(|| {
            Arc::new(sync::Runner::new(
                self.seed,
                max_message,
                self.max_queued_bytes,
            ))
        });
        let local = Arc::new(Local {
            program,
            url: dispatcher.url().to_owned(),
            advertise: self.advertise.clone(),
            #[cfg(feature = "tls")]
            tls_pin: dispatcher.tls_fingerprint().map(|f| f.to_string()),
            #[cfg(not(feature = "tls"))]
            tls_pin: None,
            token,
            exit_rules: self.rules,
            rules: format_rules(&self.rules),
            passthrough: self.passthrough,
            respawn: !self.no_respawn,
            next_launch: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            children: Mutex::new(Children::default()),
            remote: Remote::default(),
            launch_timeout: self.launch_timeout.unwrap_or(DEFAULT_LAUNCH_TIMEOUT),
            slurm_jobs: Mutex::new(Vec::new()),
            dispatcher: Arc::downgrade(&dispatcher),
            events: Arc::new(events::EventLog::new(EVENT_CAPACITY)),
        });
        let local_daemons = if sync.is_some() { 0 } else { self.local };
        let pool = Pool {
            dispatcher,
            local: Arc::clone(&local),
            sync,
        };
        for _ in 0..local_daemons {
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

/// The default listener: an abstract socket named by 128 bits from the operating system's
/// CSPRNG (abstract names have no file permissions, so an unguessable name is their first
/// defence; the dispatcher checks the peer's uid besides).
fn default_url() -> Result<String, Error> {
    let random = Secret::generate().map_err(|e| Error::Start(e.to_string()))?;
    let hex = random.expose_str().unwrap_or_default();
    Ok(format!("abstract://mirai-{}", &hex[..hex.len().min(32)]))
}

/// See [`Daemons::cancel_grace`].
const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(1);

/// See [`Daemons::launch_timeout`].
const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
