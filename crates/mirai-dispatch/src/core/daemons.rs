//! The daemon table seen from outside ([`Core::daemons`]), and join setups
//! ([`Core::add_setup`]): tasks every daemon runs when it joins, before any other.

use std::time::Instant;

use super::{Core, DaemonState, Entry, Job, TaskState};
use crate::task::{DaemonId, Task, TaskId};

/// Where a daemon is in its life, in a [`DaemonInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonPhase {
    /// Connected and taking work.
    Active,
    /// Released or retiring: it gets no more work and is about to leave.
    Exiting,
    /// Its process is being killed (a hard or unanswered cancel).
    Killed,
}

/// One connected daemon, as [`Core::daemons`] lists it: the core's side of R's
/// `status()$daemons`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The core's id for it.
    pub daemon: DaemonId,
    /// A process the shell can kill and replace.
    pub local: bool,
    /// Taking work, leaving, or being killed.
    pub phase: DaemonPhase,
    /// When it joined.
    pub connected_at: Instant,
    /// Tasks sent to it (join setups and tasks sent ahead included).
    pub assigned: u64,
    /// Tasks it answered with a value, an error or an interruption.
    pub completed: u64,
    /// The task it runs now; `None` when idle.
    pub current: Option<TaskId>,
    /// When [`current`](Self::current) started.
    pub current_since: Option<Instant>,
    /// Tasks sent ahead, waiting behind the current one.
    pub ahead: usize,
    /// It still runs join setups ([`Core::add_setup`]) before any other task.
    pub setting_up: bool,
}

impl Core {
    /// The connected daemons, in the order they joined.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, DaemonPhase, Reply, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default());
    /// let daemon = core.daemon_connected(true, now);
    /// let id = core.submit(Task::new("f", vec![]), now).unwrap();
    /// let row = &core.daemons()[0];
    /// assert_eq!((row.daemon, row.phase), (daemon, DaemonPhase::Active));
    /// assert_eq!((row.assigned, row.completed, row.current), (1, 0, Some(id)));
    /// core.on_result(daemon, id, Reply::Value(vec![1].into()), false, now).unwrap();
    /// let row = &core.daemons()[0];
    /// assert_eq!((row.assigned, row.completed, row.current), (1, 1, None));
    /// ```
    pub fn daemons(&self) -> Vec<DaemonInfo> {
        self.daemons
            .iter()
            .map(|(&daemon, d)| {
                let current = d.slots.front().map(|s| s.task);
                let current_setup = current
                    .and_then(|t| self.tasks.get(&t))
                    .is_some_and(|e| e.setup);
                DaemonInfo {
                    daemon,
                    local: d.local,
                    phase: match d.state {
                        DaemonState::Active => DaemonPhase::Active,
                        DaemonState::Exiting => DaemonPhase::Exiting,
                        DaemonState::Killed => DaemonPhase::Killed,
                    },
                    connected_at: d.connected,
                    assigned: d.assigned,
                    completed: d.answered,
                    current,
                    current_since: current.and(d.started),
                    ahead: d.slots.len().saturating_sub(1),
                    setting_up: current_setup || !d.setups.is_empty(),
                }
            })
            .collect()
    }

    /// Adds a join setup: every daemon that joins from now on runs `task` (after the setups
    /// added before it) before any other task, so work never finds a daemon that missed it.
    /// Daemons already connected are not sent it: run it on them with [`Core::everywhere`] in
    /// the same step (under the same lock). A setup's copies have no handle and resolve without
    /// an [`Action::Resolve`](super::Action::Resolve); one that fails is reported as
    /// [`Action::SetupFailed`](super::Action::SetupFailed), and its daemon serves on. Its payload is kept (shared, not copied) and counts against no byte cap.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Action, Config, Core, Reply, Task};
    /// let now = Instant::now();
    /// let mut core = Core::new(Config::default());
    /// core.add_setup(Task::new("load", vec![7]));
    /// let work = core.submit(Task::new("work", vec![]), now).unwrap();
    /// let daemon = core.daemon_connected(true, now);
    /// let sent: Vec<String> = std::iter::from_fn(|| core.poll_action())
    ///     .filter_map(|a| match a {
    ///         Action::Send { job, .. } => Some(job.function),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(sent, ["load"], "the setup first, the queued task waits for it");
    /// let setup = core.daemons()[0].current.unwrap();
    /// core.on_result(daemon, setup, Reply::Value(vec![].into()), false, now).unwrap();
    /// let next = std::iter::from_fn(|| core.poll_action()).find_map(|a| match a {
    ///     Action::Send { task, .. } => Some(task),
    ///     Action::Resolve { .. } => panic!("a setup resolves silently"),
    ///     _ => None,
    /// });
    /// assert_eq!(next, Some(work));
    /// ```
    pub fn add_setup(&mut self, task: Task) {
        self.setups.push(Job {
            function: task.function,
            payload: task.payload,
            trace: task.trace.map(Vec::from),
            rng_seed: None,
            attempt: 0,
        });
    }

    /// Forgets the join setups: daemons joining from now on run none. Daemons that already
    /// joined still run the ones they were given.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Task};
    /// let mut core = Core::new(Config::default());
    /// core.add_setup(Task::new("load", vec![]));
    /// assert_eq!(core.setups(), 1);
    /// core.clear_setups();
    /// core.daemon_connected(true, Instant::now());
    /// assert_eq!(core.daemons()[0].current, None);
    /// ```
    pub fn clear_setups(&mut self) {
        self.setups.clear();
    }

    /// How many join setups every new daemon runs.
    pub fn setups(&self) -> usize {
        self.setups.len()
    }

    /// Sends the idle `daemon` its next join setup, if it has one left: `true` if it did (the
    /// daemon is then busy with it).
    pub(super) fn run_setup(&mut self, daemon: DaemonId, now: Instant) -> bool {
        let Some(d) = self.daemons.get_mut(&daemon) else {
            return false;
        };
        if d.state != DaemonState::Active {
            return false;
        }
        let Some(job) = d.setups.pop_front() else {
            return false;
        };
        let id = TaskId(self.next_task);
        self.next_task += 1;
        self.submitted += 1;
        self.awaiting += 1;
        self.tasks.insert(
            id,
            Entry {
                job: Some(job),
                state: TaskState::Queued,
                reserved: 0,
                queue_timeout: None,
                run_timeout: None,
                retries_left: 0,
                attempt: 0,
                group: None,
                unwritten: false,
                recalled: false,
                forgotten: true,
                setup: true,
            },
        );
        self.assign(id, daemon, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{Action, Config, Core, Reply};
    use crate::task::{DaemonId, Outcome, Task, TaskId};

    fn sends(core: &mut Core) -> Vec<(DaemonId, TaskId, String)> {
        std::iter::from_fn(|| core.poll_action())
            .filter_map(|a| match a {
                Action::Send { daemon, task, job } => Some((daemon, task, job.function)),
                Action::Resolve { task, .. } => panic!("unexpected resolve of {task:?}"),
                _ => None,
            })
            .collect()
    }

    fn done(core: &mut Core, daemon: DaemonId, task: TaskId, now: Instant) {
        core.on_result(daemon, task, Reply::Value(vec![].into()), false, now)
            .unwrap();
    }

    fn balanced(core: &Core) {
        let s = core.status();
        assert_eq!(s.awaiting + s.executing + s.completed, s.submitted);
    }

    /// Setups run one by one, in order, before queued work; nothing is sent ahead of a
    /// daemon still setting up, even when its tasks look short.
    #[test]
    fn setups_run_in_order_and_nothing_slips_between_them() {
        let now = Instant::now();
        let mut core = Core::new(Config::default().with_send_ahead(Some(Duration::from_secs(60))));
        for name in ["first", "second", "third"] {
            core.add_setup(Task::new(name, vec![]));
        }
        let work: Vec<TaskId> = (0..3)
            .map(|_| core.submit(Task::new("work", vec![]), now).unwrap())
            .collect();
        let d = core.daemon_connected(true, now);
        let sent = sends(&mut core);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].2, "first");
        assert!(core.daemons()[0].setting_up);
        done(&mut core, d, sent[0].1, now);
        // The daemon's tasks look short now, but a setup is still to come: nothing ahead.
        let sent = sends(&mut core);
        assert_eq!(
            sent.len(),
            1,
            "work slipped before the third setup: {sent:?}"
        );
        assert_eq!(sent[0].2, "second");
        done(&mut core, d, sent[0].1, now);
        // The last setup: work may go ahead of it, behind it.
        let sent = sends(&mut core);
        assert_eq!(sent[0].2, "third");
        assert!(sent[1..].iter().all(|(_, _, f)| f == "work"));
        let ahead = sent.len() as u64 - 1;
        done(&mut core, d, sent[0].1, now);
        let after = sends(&mut core);
        let first_work = sent.get(1).or_else(|| after.first()).map(|s| s.1);
        assert_eq!(first_work, Some(work[0]));
        let row = &core.daemons()[0];
        assert!(!row.setting_up);
        assert_eq!(row.completed, 3);
        assert_eq!(row.assigned, 3 + ahead + after.len() as u64);
        balanced(&core);
    }

    /// A daemon lost during its setup takes the setup with it silently; the work waits for
    /// the next daemon, which runs the setup first.
    #[test]
    fn a_daemon_lost_while_setting_up_resolves_nothing_visible() {
        let now = Instant::now();
        let mut core = Core::new(Config::default());
        core.add_setup(Task::new("setup", vec![]));
        let work = core.submit(Task::new("work", vec![]), now).unwrap();
        let d = core.daemon_connected(true, now);
        let setup = sends(&mut core)[0].1;
        core.daemon_disconnected(d, now);
        assert!(sends(&mut core).is_empty());
        assert_eq!(core.status().awaiting, 1);
        let e = core.daemon_connected(true, now);
        let sent = sends(&mut core);
        assert_eq!(sent.len(), 1);
        assert_ne!(sent[0].1, setup);
        assert_eq!(sent[0].2, "setup");
        done(&mut core, e, sent[0].1, now);
        let next = sends(&mut core);
        assert_eq!(next[0].1, work);
        balanced(&core);
    }

    /// A setup that fails is reported once, for its daemon, which serves on.
    #[test]
    fn a_failed_setup_is_reported_and_its_daemon_serves_on() {
        use crate::task::TaskError;
        let now = Instant::now();
        let mut core = Core::new(Config::default());
        core.add_setup(Task::new("setup", vec![]));
        let d = core.daemon_connected(true, now);
        let setup = sends(&mut core)[0].1;
        let error = TaskError {
            message: "no data".into(),
            backtrace: String::new(),
        };
        core.on_result(d, setup, Reply::Error(error.clone()), false, now)
            .unwrap();
        let actions: Vec<Action> = std::iter::from_fn(|| core.poll_action()).collect();
        assert_eq!(
            actions,
            [Action::SetupFailed {
                daemon: d,
                outcome: Outcome::TaskError(error)
            }]
        );
        let work = core.submit(Task::new("work", vec![]), now).unwrap();
        assert_eq!(sends(&mut core)[0].1, work);
        balanced(&core);
    }

    /// At shutdown a setup still running resolves without a handle to tell.
    #[test]
    fn shutdown_resolves_setups_silently() {
        let now = Instant::now();
        let mut core = Core::new(Config::default());
        core.add_setup(Task::new("setup", vec![]));
        core.daemon_connected(true, now);
        let _ = sends(&mut core);
        core.shutdown(now);
        let resolved: Vec<(TaskId, Outcome)> = std::iter::from_fn(|| core.poll_action())
            .filter_map(|a| match a {
                Action::Resolve { task, outcome } => Some((task, outcome)),
                _ => None,
            })
            .collect();
        assert!(resolved.is_empty(), "{resolved:?}");
        balanced(&core);
    }

    /// A task answered counts as completed; one handed back unstarted does not.
    #[test]
    fn rows_count_answers_not_hand_backs() {
        let now = Instant::now();
        let mut core = Core::new(Config::default());
        let d = core.daemon_connected(true, now);
        let t = core.submit(Task::new("f", vec![]), now).unwrap();
        core.on_result(d, t, Reply::Interrupted, false, now)
            .unwrap();
        let row = &core.daemons()[0];
        assert_eq!((row.assigned, row.completed, row.current), (1, 1, None));
        assert!(row.local);
    }
}
