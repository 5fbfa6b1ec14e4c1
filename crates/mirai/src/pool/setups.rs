//! `everywhere` for the daemons that join later: a setup every daemon runs before its first
//! task ([`Pool::everywhere_persistent`]).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::{Error, Mirai, TaskFn};

impl Pool {
    /// Runs `task(arg)` once on every daemon connected now, as [`Pool::everywhere`] does, and
    /// on every daemon that joins later (a replacement of a lost daemon, a late remote or Slurm
    /// daemon) before that daemon runs any other task, so work never lands on a daemon that
    /// missed the setup. Returns the handles of the copies sent to the daemons connected now;
    /// the copies run at a join have none: one that fails there is reported as
    /// [`PoolEvent::SetupFailed`](crate::PoolEvent::SetupFailed), and its daemon serves on.
    ///
    /// Setups accumulate: a daemon that joins runs every one, in the order they were made.
    /// [`Pool::clear_persistent`] stops them for later joins. Unlike [`Pool::everywhere`], it
    /// takes no minimum: it does not wait for daemons, every one that comes runs it. Copies are
    /// tasks like others in [`Pool::status`] and [`Pool::daemons`]. (R's `everywhere()` runs
    /// on the daemons connected at the call only.)
    ///
    /// ```rust,standalone_crate
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// use mirai::{Daemons, Registry, TaskFn, task};
    ///
    /// static LOADED: AtomicI64 = AtomicI64::new(0);
    /// fn load(x: i64) { LOADED.store(x, Ordering::Relaxed) }
    /// fn loaded((): ()) -> i64 { LOADED.load(Ordering::Relaxed) }
    /// const LOAD: TaskFn<i64, ()> = task!(load);
    /// const LOADED_NOW: TaskFn<(), i64> = task!(loaded);
    ///
    /// fn main() -> Result<(), mirai::Error> {
    ///     mirai::daemon_main_if_requested(&Registry::new().with(&LOAD).with(&LOADED_NOW));
    ///     let pool = Daemons::new().local(1).start()?;
    ///     mirai::collect(pool.everywhere_persistent(&LOAD, 42)?)?; // the daemon connected now
    ///     // Its replacement loads too, before it serves anything.
    ///     let victim = pool.local_pids()[0].to_string();
    ///     std::process::Command::new("kill").args(["-KILL", &victim]).status().unwrap();
    ///     while pool.replaced() == 0 {
    ///         std::thread::sleep(std::time::Duration::from_millis(10));
    ///     }
    ///     assert_eq!(pool.submit(&LOADED_NOW, ())?.wait()?, 42);
    ///     Ok(())
    /// }
    /// ```
    pub fn everywhere_persistent<A, R>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
    ) -> Result<Vec<Mirai<R>>, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        if self.sync.is_some() {
            // The calling process is the one executor, and no daemon ever joins.
            return self.everywhere(task, arg, 0);
        }
        let payload = crate::wire::encode(&arg)?;
        let ids = self
            .dispatcher
            .everywhere_persistent(crate::trace::task(task.name(), payload), None)
            .map_err(|r| Error::from(r.reason))?;
        Ok(ids
            .into_iter()
            .map(|id| Mirai::new(Arc::clone(&self.dispatcher), id))
            .collect())
    }

    /// Stops the setups of [`Pool::everywhere_persistent`] for daemons that join from now on.
    ///
    /// ```
    /// # fn load(x: i64) {}
    /// # const LOAD: mirai::TaskFn<i64, ()> = mirai::task!(load);
    /// let pool = mirai::Daemons::new().start()?;
    /// pool.everywhere_persistent(&LOAD, 1)?;
    /// pool.clear_persistent();
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn clear_persistent(&self) {
        self.dispatcher.clear_setups();
    }
}
