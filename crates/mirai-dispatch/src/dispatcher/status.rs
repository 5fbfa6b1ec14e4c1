//! What the dispatcher tells about its daemons ([`Dispatcher::daemons`]), and join setups
//! ([`Dispatcher::everywhere_persistent`]). The core decides and keeps the counts; the shell
//! adds what only it knows (launch ids, peer addresses).

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Instant;

use super::Dispatcher;
use crate::core::{DaemonInfo, Rejected};
use crate::task::{Task, TaskId};

/// One connected daemon, as [`Dispatcher::daemons`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRow {
    /// The core's view: phase, join time, task counts, current task.
    pub info: DaemonInfo,
    /// The id its launcher gave it (0 for a daemon started by hand with the pool token).
    pub launch_id: u64,
    /// Its address, on `tcp://` and `tls+tcp://` (`None` on local transports).
    pub address: Option<SocketAddr>,
}

impl Dispatcher {
    /// The connected daemons, in the order they joined: one row each, with what the core
    /// counts ([`DaemonInfo`]) and the launch id and address the connection gave.
    ///
    /// ```
    /// use mirai_dispatch::{Dispatcher, DispatcherConfig};
    /// let (d, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-daemons", b"0123456789abcdef".to_vec()))?;
    /// assert!(d.daemons().is_empty());
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn daemons(&self) -> Vec<DaemonRow> {
        // The core's lock first, as everywhere: under it, every daemon the core knows is linked
        // (a link is made before the core's lock is released, and dropped after the core let
        // the daemon go).
        let core = self.shared.host.lock();
        let infos = core.daemons();
        let links = self
            .shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        infos
            .into_iter()
            .map(|info| {
                let link = links.get(&info.daemon);
                DaemonRow {
                    launch_id: link.map_or(0, |l| l.launch_id),
                    address: link.and_then(|l| l.addr),
                    info,
                }
            })
            .collect()
    }

    /// [`Dispatcher::everywhere`] on the daemons connected now (no minimum), and a join setup
    /// ([`Core::add_setup`](crate::Core::add_setup)) in the same step: every daemon that joins
    /// later (a replacement, a late remote daemon) runs `task` before any other task. Returns
    /// the ids of the copies sent to the daemons connected now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mirai_dispatch::{Dispatcher, DispatcherConfig, Task};
    /// let (d, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-persistent", b"0123456789abcdef".to_vec()))?;
    /// let now = d.everywhere_persistent(Task::new("load", vec![1]), None).unwrap();
    /// assert!(now.is_empty(), "no daemon yet: it runs on each as it joins");
    /// assert_eq!(d.host().lock().setups(), 1);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn everywhere_persistent(
        &self,
        task: Task,
        deadline: Option<Instant>,
    ) -> Result<Vec<TaskId>, Rejected> {
        let setup = task.clone();
        let (result, mut core) = self.shared.host.everywhere_held(task, 0, deadline);
        if result.is_ok() {
            core.add_setup(setup);
        }
        self.shared.flush_held(core);
        result
    }

    /// Forgets the join setups: daemons that join from now on run none
    /// ([`Core::clear_setups`](crate::Core::clear_setups)).
    ///
    /// ```
    /// use mirai_dispatch::{Dispatcher, DispatcherConfig, Task};
    /// let (d, _events) =
    ///     Dispatcher::start(DispatcherConfig::new("abstract://doc-clear-setups", b"0123456789abcdef".to_vec()))?;
    /// d.everywhere_persistent(Task::new("load", vec![]), None).unwrap();
    /// d.clear_setups();
    /// assert_eq!(d.host().lock().setups(), 0);
    /// # Ok::<(), mirai_dispatch::StartError>(())
    /// ```
    pub fn clear_setups(&self) {
        self.shared.host.lock().clear_setups();
    }
}
