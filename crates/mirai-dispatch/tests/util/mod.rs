//! A driver for the core in tests: a clock that only moves when told, and the actions drained.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use mirai_dispatch::{Action, Config, Core, DaemonId, Job, Outcome, Reply, Task, TaskId};

pub struct Driver {
    pub core: Core,
    pub t0: Instant,
    pub now: Instant,
}

impl Driver {
    pub fn new(config: Config) -> Self {
        let t0 = Instant::now();
        Self {
            core: Core::new(config),
            t0,
            now: t0,
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.core.handle_timeout(self.now);
    }

    pub fn submit(&mut self, bytes: usize) -> TaskId {
        self.core
            .submit(Task::new("f", vec![0; bytes]), self.now)
            .expect("accepted")
    }

    pub fn connect(&mut self) -> DaemonId {
        self.core.daemon_connected(true, self.now)
    }

    pub fn reply(&mut self, daemon: DaemonId, task: TaskId, value: &[u8]) {
        self.core
            .on_result(
                daemon,
                task,
                Reply::Value(value.to_vec().into()),
                false,
                self.now,
            )
            .expect("expected result");
    }

    pub fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.core.poll_action()).collect()
    }

    /// Drains and keeps only the sends, as (daemon, task).
    pub fn sends(&mut self) -> Vec<(DaemonId, TaskId)> {
        self.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { daemon, task, .. } => Some((daemon, task)),
                _ => None,
            })
            .collect()
    }

    /// Drains and keeps only the jobs sent.
    pub fn jobs(&mut self) -> Vec<(DaemonId, TaskId, Job)> {
        self.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { daemon, task, job } => Some((daemon, task, job)),
                _ => None,
            })
            .collect()
    }

    /// Drains and keeps only the resolutions.
    pub fn resolved(&mut self) -> Vec<(TaskId, Outcome)> {
        resolutions(self.drain())
    }
}

pub fn resolutions(actions: Vec<Action>) -> Vec<(TaskId, Outcome)> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Resolve { task, outcome } => Some((task, outcome)),
            _ => None,
        })
        .collect()
}

#[cfg(feature = "shell")]
pub mod shell;

/// A child process killed and reaped when dropped, so none outlives its test, even one that
/// fails; it dereferences to the [`std::process::Child`].
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
