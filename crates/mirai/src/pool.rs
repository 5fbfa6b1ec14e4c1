//! The host side: a dispatcher with its local daemon processes, and typed submission.

use std::future::Future;
use std::ops::ControlFlow;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use mirai_dispatch::protocol::DEFAULT_MAX_MESSAGE;
use mirai_dispatch::{Dispatcher, RejectReason, Rejected, Status, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::launch::{Join, Program, Slurm, SlurmJob, Ssh, Template};
use crate::{Error, Mirai, TaskFn, TaskOptions};

mod builder;
mod events;
mod local;
mod setups;
mod stream;
mod sync;

pub use builder::Daemons;
pub use events::{DaemonStatus, EVENT_CAPACITY, Events, LeaveReason, PoolEvent};
use local::Local;
pub use stream::{MapIter, MapStream};

/// How long `scancel` gets at the pool's drop (it waits for the controller, which may be down).
const SCANCEL_PATIENCE: Duration = Duration::from_secs(5);

/// Runs `scancel`, killing it after [`SCANCEL_PATIENCE`]; errors are ignored (the job may be
/// over already, and the daemons exit without the pool anyway).
fn cancel_job(scancel: &mut Command) {
    let Ok(mut child) = scancel.spawn() else {
        return;
    };
    let deadline = Instant::now() + SCANCEL_PATIENCE;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
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
    /// Sync mode's executor: the calling process ([`Daemons::sync`]).
    sync: Option<Arc<sync::Runner>>,
}

impl Pool {
    /// The address daemons dial.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// println!("daemons dial {}", pool.url());
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        self.dispatcher.url()
    }

    /// The pool token: what a daemon started by hand presents (with [`run_daemon`](crate::run_daemon)
    /// and the [`url`](Pool::url)); launched daemons get credentials derived from it. Keep it
    /// off command lines.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.token().len(), 64);
    /// assert!(!format!("{pool:?}").contains(pool.token()), "Debug hides it");
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn token(&self) -> &str {
        self.local.token.expose_str().unwrap_or_default()
    }

    /// What a remote daemon needs to join this pool: the address it dials (see
    /// [`Daemons::advertise`]), the token its credentials derive from and the pool's exit rules. The launchers of
    /// [`launch`](crate::launch) take it, for launches the pool does not track.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// assert_eq!(pool.join().url(), pool.url());
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn join(&self) -> Join {
        let url = self
            .local
            .advertise
            .as_deref()
            .unwrap_or_else(|| self.url());
        let join = Join::with_rules(url, &self.local.token, self.local.exit_rules);
        match &self.local.tls_pin {
            Some(pin) => join.tls_pin(pin),
            None => join,
        }
    }

    /// The command that starts one more daemon of this pool when pasted into a shell on
    /// another machine: this executable's path, for machines that share its file system (see
    /// [`Pool::remote_command_for`] for another path). Like R's `launch_remote()` with an
    /// empty configuration; each call gives the daemon a fresh launch id. The line holds that
    /// daemon's credential as a shell assignment (see [`launch::manual`](crate::launch::manual)):
    /// paste it into a shell, do not pass it to `sh -c` or `ssh` as an argument.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// let line = pool.remote_command()?;
    /// assert!(line.starts_with(&format!("MIRAI_DAEMON_URL={} ", pool.url())));
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn remote_command(&self) -> Result<String, Error> {
        self.remote_command_for(&Program::current()?)
    }

    /// [`Pool::remote_command`] for `program` on the daemon's machine.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// use mirai::launch::Program;
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").token("0123456789abcdef").start()?;
    /// let first = pool.remote_command_for(&Program::new("/opt/app/worker"))?;
    /// let second = pool.remote_command_for(&Program::new("/opt/app/worker"))?;
    /// assert!(first.contains(" MIRAI_DAEMON_TOKEN=0123456789abcdef MIRAI_DAEMON_LAUNCH_ID=0 "));
    /// let credential = pool.join().credential(1);
    /// assert!(second.contains(&format!(" MIRAI_DAEMON_TOKEN={} ", credential.expose_str().unwrap())));
    /// assert!(second.contains(" MIRAI_DAEMON_LAUNCH_ID=1 "));
    /// assert!(first.ends_with(" /opt/app/worker"));
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn remote_command_for(&self, program: &Program) -> Result<String, Error> {
        let id = self.local.ids(1).start;
        Ok(crate::launch::manual(&self.join(), id, program)?)
    }

    /// Starts `n` daemons over ssh, each over its own connection, and waits until they joined
    /// (at most [`Daemons::launch_timeout`]); returns their launch ids. The pool owns the `ssh`
    /// clients, not the remote daemons: it never kills or replaces those, they exit when the
    /// pool goes away (and their `ssh` with them). [`Pool::status`] counts them in
    /// `connections` once joined.
    ///
    /// Errors: [`launch::Error::NotFound`](crate::launch::Error::NotFound) without an `ssh`
    /// client, [`launch::Error::Refused`](crate::launch::Error::Refused) with ssh's exit status
    /// and stderr when it could not log in or the daemon exited before it joined,
    /// [`launch::Error::NotJoined`](crate::launch::Error::NotJoined) on the timeout. Daemons
    /// that joined before an error keep serving.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// use mirai::launch::{Error, Ssh};
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// let ssh = Ssh::new("node1")?.ssh_program("/nonexistent/ssh");
    /// let err = pool.launch(&ssh, 1).unwrap_err();
    /// assert!(matches!(err, mirai::Error::Launch(Error::NotFound { .. })), "{err}");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn launch(&self, ssh: &Ssh, n: usize) -> Result<Vec<u64>, Error> {
        let join = self.join();
        let ids = self.local.ids(n);
        let remote = &self.local.remote;
        remote.spawn(
            ids.clone(),
            ssh.client(),
            self.local.passthrough,
            &join,
            |id| ssh.command(&join, id),
        )?;
        remote.wait_joined(ids.clone(), self.local.launch_timeout)?;
        Ok(ids.collect())
    }

    /// Starts `n` daemons through a command template, one `sh -c` each, and waits as
    /// [`Pool::launch`] does, except that a template that exits with success before its daemon
    /// joined (it handed the daemon to a scheduler, as `qsub` does) is not waited for.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// use mirai::launch::Template;
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// let refused = Template::new("echo 'quota exceeded' >&2; exit 3");
    /// match pool.launch_with(&refused, 1) {
    ///     Err(mirai::Error::Launch(mirai::launch::Error::Refused { status, stderr, .. })) => {
    ///         assert_eq!((status.code(), stderr.as_str()), (Some(3), "quota exceeded"));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn launch_with(&self, template: &Template, n: usize) -> Result<Vec<u64>, Error> {
        let join = self.join();
        let ids = self.local.ids(n);
        let remote = &self.local.remote;
        remote.spawn(ids.clone(), "sh", self.local.passthrough, &join, |id| {
            template.command(&join, id)
        })?;
        remote.wait_joined(ids.clone(), self.local.launch_timeout)?;
        Ok(ids.collect())
    }

    /// Submits one Slurm job array of `n` daemons and returns at once (a job may wait in the
    /// queue for hours): the job id and the daemons' launch ids. When the pool is dropped it
    /// cancels the job (`scancel`, see [`Slurm::scancel_program`]), so array tasks still queued
    /// do not start daemons for a pool that is gone. Wait for the daemons with
    /// [`Pool::everywhere`] (its `min`) or by submitting tasks, which queue until a daemon
    /// joins. An `sbatch` refusal is [`launch::Error::Refused`](crate::launch::Error::Refused)
    /// with its message.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// use mirai::launch::Slurm;
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// let err = pool.launch_slurm(&Slurm::new().sbatch_program("/nonexistent/sbatch"), 4);
    /// assert!(matches!(err, Err(mirai::Error::Launch(mirai::launch::Error::NotFound { .. }))));
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn launch_slurm(&self, slurm: &Slurm, n: usize) -> Result<SlurmJob, Error> {
        let ids = self.local.ids(n);
        let remote = &self.local.remote;
        remote.expect(ids.clone(), "sbatch");
        let job_id = slurm
            .submit(&self.join(), ids.start, n as u64)
            .inspect_err(|_| remote.forget(ids.clone()))?;
        self.local
            .slurm_jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slurm.scancel_command(&job_id));
        Ok(SlurmJob {
            job_id,
            launch_ids: ids,
        })
    }

    /// The daemons started through [`Pool::launch`], [`Pool::launch_with`] and
    /// [`Pool::launch_slurm`] that are connected now. [`Pool::status`]'s `connections` counts
    /// every connected daemon: local ones, these, and any started by hand.
    ///
    /// ```
    /// # #[cfg(feature = "tls")] { // a tls+tcp:// pool
    /// let pool = mirai::Daemons::new().url("tls+tcp://127.0.0.1:0").start()?;
    /// assert_eq!(pool.remote_daemons(), 0);
    /// # }
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn remote_daemons(&self) -> usize {
        self.local.remote.connected()
    }

    /// The fingerprint daemons of a `tls+tcp://` pool pin (`sha256:` and 64 hex digits);
    /// `None` on other transports (and always without the `tls` feature).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.tls_fingerprint(), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn tls_fingerprint(&self) -> Option<String> {
        #[cfg(feature = "tls")]
        return self.dispatcher.tls_fingerprint().map(|f| f.to_string());
        #[cfg(not(feature = "tls"))]
        None
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
        self.submit_with(task, arg, TaskOptions::new())
    }

    /// Like [`Pool::submit`] for async code: while the byte cap is full it waits without
    /// blocking the executor's thread, then queues `task(arg)`. The argument is encoded before
    /// the first poll, so the future holds only its bytes (and is `Send` whatever `A` is).
    /// Dropping the future before it resolves submits nothing. For a deadline, wrap it in the
    /// executor's timeout.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(1).max_queued_bytes(64).start()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let sum = rt.block_on(async {
    ///     let mut handles = Vec::new();
    ///     for i in 0..100 {
    ///         handles.push(pool.submit_async(&ADD, (i, 1)).await?);
    ///     }
    ///     let mut sum = 0;
    ///     for handle in handles {
    ///         sum += handle.await?;
    ///     }
    ///     Ok::<i64, mirai::Error>(sum)
    /// })?;
    /// assert_eq!(sum, (1..=100).sum::<i64>());
    /// # Ok(()) }
    /// ```
    pub fn submit_async<A, R>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
    ) -> impl Future<Output = Result<Mirai<R>, Error>> + Send + 'static
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let dispatcher = Arc::clone(&self.dispatcher);
        // In sync mode the task runs now (`Break`); otherwise only its encoding is kept.
        let prepared = match &self.sync {
            Some(runner) => runner.encode(&arg).and_then(|payload| {
                runner
                    .run(task, payload, &TaskOptions::new(), true)
                    .map(ControlFlow::Break)
            }),
            None => crate::wire::encode(&arg)
                .map(|payload| ControlFlow::Continue(crate::trace::task(task.name(), payload)))
                .map_err(Error::from),
        };
        async move {
            let mut task = match prepared? {
                ControlFlow::Break((id, outcome)) => {
                    return Ok(Mirai::resolved(dispatcher, id, outcome));
                }
                ControlFlow::Continue(task) => task,
            };
            loop {
                match dispatcher.try_submit(task) {
                    Ok(id) => return Ok(Mirai::new(dispatcher, id)),
                    Err(Rejected {
                        reason: RejectReason::Full,
                        task: back,
                    }) => {
                        dispatcher.room(back.payload.len() as u64).await?;
                        task = back;
                    }
                    Err(rejected) => return Err(Error::from(rejected.reason)),
                }
            }
        }
    }

    /// Waits until a task argument of `bytes` (its encoded size) would fit under the byte cap,
    /// for at most `timeout` if given ([`Error::Full`] then); [`Error::TooLarge`] at once if it
    /// never can. A producer of large arguments calls this before it builds the next one, so
    /// an argument never waits in its hands, outside the cap, while [`Pool::submit`] blocks:
    /// memory then stays within the cap rather than the cap plus one task. The room is not
    /// reserved for the caller.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().max_queued_bytes(1 << 20).start()?;
    /// pool.wait_for_room(1 << 10, None)?;
    /// assert!(matches!(pool.wait_for_room(2 << 20, None), Err(mirai::Error::TooLarge { .. })));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn wait_for_room(&self, bytes: u64, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        Ok(self.dispatcher.wait_for_room(bytes, deadline)?)
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
        self.submit_with(task, arg, TaskOptions::new().run_timeout(timeout))
    }

    /// Like [`Pool::submit`], with a queue timeout, a run timeout, retries after a lost daemon
    /// or a limit on the wait for room, as `options` say. A submission that finds no room
    /// within [`TaskOptions::submit_timeout`] fails with [`Error::Full`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// use mirai::{Error, TaskOptions};
    ///
    /// // No daemons, so nothing drains the 3-byte queue: (1, 2) takes all three (a format
    /// // byte and one byte per number).
    /// let pool = mirai::Daemons::new().max_queued_bytes(3).start()?;
    /// let queued = TaskOptions::new().queue_timeout(Duration::from_millis(50));
    /// let first = pool.submit_with(&ADD, (1, 2), queued)?;
    /// let hurried = TaskOptions::new().submit_timeout(Duration::from_millis(10));
    /// assert!(matches!(pool.submit_with(&ADD, (3, 4), hurried), Err(Error::Full)));
    /// // Nothing started the first task within its queue timeout.
    /// assert!(matches!(first.wait(), Err(Error::TimedOut)));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn submit_with<A, R>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
        options: TaskOptions,
    ) -> Result<Mirai<R>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        if let Some(runner) = &self.sync {
            let payload = runner.encode(&arg)?;
            drop(arg);
            let (id, outcome) = runner.run(task, payload, &options, true)?;
            return Ok(Mirai::resolved(Arc::clone(&self.dispatcher), id, outcome));
        }
        let payload = crate::wire::encode(&arg)?;
        // Only its payload travels: a large argument encoded inline is not held twice while it
        // is sent (the buffers of a `Bytes` or `Array` are shared by the payload, not copied).
        drop(arg);
        let id = self
            .dispatcher
            .submit(
                options.apply(Task::new(task.name(), payload))?,
                options.submit_deadline(),
            )
            .map_err(|r| Error::from(r.reason))?;
        Ok(Mirai::new(Arc::clone(&self.dispatcher), id))
    }

    /// Queues `task(arg)` only if it fits under the byte cap now; otherwise hands the argument
    /// back with the reason ([`Error::Full`], [`Error::TooLarge`],
    /// [`Error::ArgumentTooLarge`], [`Error::ShutDown`]).
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// // No daemons, so nothing drains the 3-byte queue: (1, 2) takes all three (a format
    /// // byte and one byte per number).
    /// let pool = mirai::Daemons::new().max_queued_bytes(3).start()?;
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
        if let Some(runner) = &self.sync {
            let payload = match runner.encode(&arg) {
                Ok(p) => p,
                Err(e) => return Err((e, arg)),
            };
            let (id, outcome) = match runner.run(task, payload, &TaskOptions::new(), true) {
                Ok(ran) => ran,
                Err(e) => return Err((e, arg)),
            };
            return Ok(Mirai::resolved(Arc::clone(&self.dispatcher), id, outcome));
        }
        let payload = match crate::wire::encode(&arg) {
            Ok(p) => p,
            Err(e) => return Err((Error::from(e), arg)),
        };
        let traced = crate::trace::task(task.name(), payload);
        match self.dispatcher.try_submit(traced) {
            Ok(id) => Ok(Mirai::new(Arc::clone(&self.dispatcher), id)),
            Err(r) => Err((Error::from(r.reason), arg)),
        }
    }

    /// Runs `task` on every item, in parallel, and returns the results in order; stops at the
    /// first error (in input order), cancelling the tasks after it. It is [`Pool::map_iter`]
    /// collected, so at most its window of tasks is in flight at a time. With the `progress`
    /// feature (on by default) a progress bar on stderr counts the results (hidden when stderr
    /// is no terminal; [`Pool::map_with_progress`] takes the bar to draw on).
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
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        stream::map(self, task, items)
    }

    /// Runs `task(arg)` once on every connected daemon (at least `min`, waiting for them to
    /// connect), e.g. to load data. Daemons that join later do not run it; for those, see
    /// [`Pool::everywhere_persistent`].
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
        if let Some(runner) = &self.sync {
            // The calling process is the one executor: the task runs once, whatever `min`.
            let payload = runner.encode(&arg)?;
            let (id, outcome) = runner.run(task, payload, &TaskOptions::new(), false)?;
            return Ok(vec![Mirai::resolved(
                Arc::clone(&self.dispatcher),
                id,
                outcome,
            )]);
        }
        let payload = crate::wire::encode(&arg)?;
        let ids = self
            .dispatcher
            .everywhere(crate::trace::task(task.name(), payload), min, None)
            .map_err(|r| Error::from(r.reason))?;
        Ok(ids
            .into_iter()
            .map(|id| Mirai::new(Arc::clone(&self.dispatcher), id))
            .collect())
    }

    /// The message limit in force (see [`Daemons::max_message_bytes`]).
    ///
    /// ```
    /// let pool = mirai::Daemons::new().max_message_bytes(4 << 30).start()?;
    /// assert_eq!(pool.max_message_bytes(), 4 << 30);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn max_message_bytes(&self) -> u64 {
        self.dispatcher
            .host()
            .lock()
            .config()
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE)
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
        match &self.sync {
            Some(runner) => runner.status(self.dispatcher.status()),
            None => self.dispatcher.status(),
        }
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

    /// How many local daemons were started to replace killed ones. A replacement is counted
    /// before its process starts, so once a task has run on it the count includes it.
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

    /// How many results the pool holds for handles that have not taken them yet (plus marks for
    /// dropped handles whose task has not finished). Dropped handles never leave a result here.
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().start()?; // no daemons: it stays queued
    /// let handle = pool.submit(&ADD, (1, 2))?;
    /// handle.cancel();
    /// assert_eq!(pool.retained(), 1, "the outcome waits for its handle");
    /// drop(handle);
    /// assert_eq!(pool.retained(), 0);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn retained(&self) -> usize {
        self.dispatcher.retained()
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
        drop(children);
        self.local.remote.shutdown();
        let jobs = std::mem::take(
            &mut *self
                .local
                .slurm_jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for mut scancel in jobs {
            cancel_job(&mut scancel);
        }
    }
}
