//! The host side: a dispatcher with its local daemon processes, and typed submission.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirai_dispatch::daemon::ExitRules;
use mirai_dispatch::{Config, Dispatcher, DispatcherConfig, Status, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::daemon::{ENV_LAUNCH_ID, ENV_RULES, ENV_TLS_PIN, ENV_TOKEN, ENV_URL, format_rules};
use crate::{Error, Mirai, TaskFn};

/// Settings for a [`Pool`]: how many local daemons, where to listen, the byte cap.
///
/// ```no_run
/// use std::time::Duration;
/// let pool = mirai::Daemons::new()
///     .local(4)
///     .max_queued_bytes(64 << 20)
///     .seed(42)
///     .idletime(Duration::from_secs(600))
///     .start()?;
/// # Ok::<(), mirai::Error>(())
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
    allow_plain_tcp: bool,
}

impl Daemons {
    /// No daemons, a private local address, no cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `n` local daemon processes.
    pub fn local(mut self, n: usize) -> Self {
        self.local = n;
        self
    }

    /// Listens on `url` (e.g. `tls+tcp://0.0.0.0:5555`) so remote daemons can dial in. A
    /// `tls+tcp://` pool generates its certificate at start; daemons pin
    /// [`Pool::tls_fingerprint`]. Plain `tcp://` is refused unless
    /// [`allow_plain_tcp`](Self::allow_plain_tcp).
    ///
    /// ```
    /// let refused = mirai::Daemons::new().url("tcp://127.0.0.1:0").start();
    /// assert!(refused.is_err());
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// assert!(pool.tls_fingerprint().unwrap().starts_with("sha256:"));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Accepts a plain `tcp://` url, whose token and task data cross the network unencrypted
    /// (e.g. behind an SSH tunnel).
    pub fn allow_plain_tcp(mut self, yes: bool) -> Self {
        self.allow_plain_tcp = yes;
        self
    }

    /// Caps the bytes of queued task arguments; beyond it `try_submit` says [`Error::Full`].
    pub fn max_queued_bytes(mut self, bytes: u64) -> Self {
        self.max_queued_bytes = Some(bytes);
        self
    }

    /// Seeds the per-task random streams, for reproducible results.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Daemons exit after this long without a task.
    pub fn idletime(mut self, d: Duration) -> Self {
        self.rules.idletime = Some(d);
        self
    }

    /// Daemons exit between tasks once they have run this long.
    pub fn walltime(mut self, d: Duration) -> Self {
        self.rules.walltime = Some(d);
        self
    }

    /// Daemons exit after this many tasks.
    pub fn maxtasks(mut self, n: u64) -> Self {
        self.rules.maxtasks = Some(n);
        self
    }

    /// Runs `path` as the daemon program instead of the current executable.
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Lets daemons write to this process's stdout and stderr (they are discarded otherwise).
    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }

    /// Starts the dispatcher and the local daemons.
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
        let token = format!("{:x}{:x}{n:x}", nanos, std::process::id());
        let mut core = Config::default();
        if let Some(bytes) = self.max_queued_bytes {
            core = core.with_max_queued_bytes(bytes);
        }
        if let Some(seed) = self.seed {
            core = core.with_seed(seed);
        }
        let (dispatcher, _events) = Dispatcher::start(
            DispatcherConfig::new(url, token.clone().into_bytes())
                .with_core(core)
                .with_plain_tcp(self.allow_plain_tcp),
        )
        .map_err(|e| Error::Start(e.to_string()))?;
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| Error::Start(e.to_string()))?,
        };
        let mut pool = Pool {
            dispatcher: Arc::new(dispatcher),
            children: Mutex::new(Vec::new()),
        };
        for launch_id in 0..self.local {
            let mut command = Command::new(&program);
            command
                .env(ENV_URL, pool.dispatcher.url())
                .env(ENV_TOKEN, &token)
                .env(ENV_LAUNCH_ID, launch_id.to_string())
                .env(ENV_RULES, format_rules(&self.rules))
                .stdin(Stdio::null());
            if let Some(pin) = pool.dispatcher.tls_fingerprint() {
                command.env(ENV_TLS_PIN, pin.to_string());
            }
            if !self.passthrough {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
            // On failure `pool` drops here, killing the daemons already started.
            let child = command
                .spawn()
                .map_err(|e| Error::Start(format!("{}: {e}", program.display())))?;
            pool.children
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .push(child);
        }
        Ok(pool)
    }
}

/// A running dispatcher and its local daemons. Dropping it (or [`Pool::shutdown`]) resolves
/// every pending task with [`Error::ShutDown`] and kills and reaps every local daemon.
#[derive(Debug)]
pub struct Pool {
    dispatcher: Arc<Dispatcher>,
    children: Mutex<Vec<Child>>,
}

impl Pool {
    /// The address daemons dial.
    pub fn url(&self) -> &str {
        self.dispatcher.url()
    }

    /// The fingerprint daemons of a `tls+tcp://` pool pin (`sha256:` and 64 hex digits).
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.dispatcher.tls_fingerprint().map(|f| f.to_string())
    }

    /// Queues `task(arg)`, waiting for room under the byte cap.
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

    /// Queues `task(arg)` only if it fits under the byte cap now; otherwise hands the argument
    /// back with the reason ([`Error::Full`], [`Error::TooLarge`], [`Error::ShutDown`]).
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

    /// Runs `task(arg)` once on every connected daemon (at least `min`), e.g. to load data.
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
    pub fn status(&self) -> Status {
        self.dispatcher.status()
    }

    /// The process ids of the local daemons started.
    pub fn local_pids(&self) -> Vec<u32> {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(Child::id)
            .collect()
    }

    /// Resolves every pending task with [`Error::ShutDown`] and stops every local daemon.
    pub fn shutdown(self) {}
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.dispatcher.host().shutdown();
        // Daemons autoexit when the host goes away; kill anyway so none outlives the pool.
        let children = self
            .children
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for child in children.iter_mut() {
            let _ = child.kill();
        }
        for child in children.iter_mut() {
            let _ = child.wait();
        }
    }
}
