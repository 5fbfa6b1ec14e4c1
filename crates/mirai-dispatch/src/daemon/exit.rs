//! When a daemon exits, as a small state machine with injected time.
//!
//! The rules follow R's `mirai::daemon()`: `idletime` (no task for that long), `walltime`
//! (checked between tasks: a running task is never cut short), `maxtasks`, and what to do when
//! the host goes away (`autoexit`). A daemon that reaches maxtasks or walltime marks its last
//! result, so the dispatcher sends it no more work, then exits.
//!
//! The host is gone when its connection ends or falls silent for
//! `MISSED_BEATS` heartbeat intervals; the socket loop detects it (see
//! `serve`) and reports it here with [`Lifecycle::host_gone`]. As in R, where a daemon exits on
//! host loss even mid-task, the default [`AutoExit::Immediately`] does not wait for a running
//! task beyond a short grace (`HOST_GONE_GRACE`, 1 s after its cancel token fires): a task
//! that ignores its token is abandoned with its thread when the daemon process exits, so a
//! daemon outlives a host whose connection closed by a bounded time (about 2 s, see `serve`)
//! whatever its task does. [`AutoExit::FinishTask`] lets the task end first, without a bound,
//! and [`AutoExit::Never`] keeps the daemon for a later host.

use std::time::{Duration, Instant};

/// What to do when the connection to the host is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoExit {
    /// Exit at once: a running task's cancel token fires, and a task still running a short
    /// grace later is abandoned (the daemon exits without it).
    #[default]
    Immediately,
    /// Finish the running task, then exit (however long the task takes).
    FinishTask,
    /// Stay and redial, so a new host at the same address can use the daemon.
    Never,
}

/// Exit rules; `None` is "never".
///
/// ```
/// use std::time::Duration;
/// use mirai_dispatch::daemon::ExitRules;
/// let rules = ExitRules::default().with_maxtasks(100).with_idletime(Duration::from_secs(60));
/// assert_eq!(rules.maxtasks, Some(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitRules {
    /// Exit after this long without a task.
    pub idletime: Option<Duration>,
    /// Exit once this long has passed since start, checked between tasks.
    pub walltime: Option<Duration>,
    /// Exit after this many tasks.
    pub maxtasks: Option<u64>,
    /// What to do when the host goes away.
    pub autoexit: AutoExit,
}

impl ExitRules {
    /// Sets [`ExitRules::idletime`].
    pub fn with_idletime(mut self, d: Duration) -> Self {
        self.idletime = Some(d);
        self
    }

    /// Sets [`ExitRules::walltime`].
    pub fn with_walltime(mut self, d: Duration) -> Self {
        self.walltime = Some(d);
        self
    }

    /// Sets [`ExitRules::maxtasks`].
    pub fn with_maxtasks(mut self, n: u64) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// Sets [`ExitRules::autoexit`].
    pub fn with_autoexit(mut self, a: AutoExit) -> Self {
        self.autoexit = a;
        self
    }
}

/// Why a daemon exits; [`ExitReason::code`] is its process exit code (R's values).
///
/// A daemon that exits by a rule of its own (idletime, walltime, maxtasks) says so to the
/// dispatcher first, in a [`FromDaemon::Retiring`](crate::protocol::FromDaemon::Retiring)
/// message: its launcher then knows not to replace it, whatever its exit code. The codes alone
/// cannot tell: task code or a library may exit with any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitReason {
    /// The host went away (or told the daemon to exit).
    HostGone,
    /// No task for `idletime`.
    IdleTime,
    /// `walltime` passed.
    WallTime,
    /// `maxtasks` tasks done.
    MaxTasks,
}

impl ExitReason {
    /// The process exit code: 0 host gone, 1 idletime, 2 walltime, 3 maxtasks.
    ///
    /// ```
    /// assert_eq!(mirai_dispatch::daemon::ExitReason::MaxTasks.code(), 3);
    /// ```
    pub fn code(self) -> i32 {
        match self {
            Self::HostGone => 0,
            Self::IdleTime => 1,
            Self::WallTime => 2,
            Self::MaxTasks => 3,
        }
    }

    /// Whether this is one of the daemon's own exit rules (idletime, walltime, maxtasks), which
    /// it announces to the dispatcher before it exits; the host going is not.
    ///
    /// ```
    /// use mirai_dispatch::daemon::ExitReason;
    /// assert!(ExitReason::IdleTime.is_rule());
    /// assert!(!ExitReason::HostGone.is_rule());
    /// ```
    pub fn is_rule(self) -> bool {
        !matches!(self, Self::HostGone)
    }
}

/// What the daemon loop should do when the host is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostGone {
    /// Exit now.
    Exit,
    /// Keep running the current task, exit after it.
    ExitAfterTask,
    /// Redial.
    Redial,
}

/// The daemon's exit state.
///
/// ```
/// use std::time::{Duration, Instant};
/// use mirai_dispatch::daemon::{ExitReason, ExitRules, Lifecycle};
/// let t0 = Instant::now();
/// let mut life = Lifecycle::new(ExitRules::default().with_maxtasks(2), t0);
/// life.task_started(t0);
/// assert!(!life.task_finished(t0)); // first result: not the last
/// life.task_started(t0);
/// assert!(life.task_finished(t0)); // second: mark it last
/// assert_eq!(life.poll(t0), Some(ExitReason::MaxTasks));
/// ```
#[derive(Debug, Clone)]
pub struct Lifecycle {
    rules: ExitRules,
    started: Instant,
    idle_since: Instant,
    running: bool,
    done: u64,
    exit: Option<ExitReason>,
    exit_after_task: bool,
}

impl Lifecycle {
    /// A daemon starting at `now`, idle.
    pub fn new(rules: ExitRules, now: Instant) -> Self {
        Self {
            rules,
            started: now,
            idle_since: now,
            running: false,
            done: 0,
            exit: None,
            exit_after_task: false,
        }
    }

    /// A task started.
    pub fn task_started(&mut self, _now: Instant) {
        self.running = true;
    }

    /// A task finished; `true` if its result must be marked last (maxtasks reached, walltime
    /// passed, or the host left during it), after which [`Lifecycle::poll`] says to exit.
    pub fn task_finished(&mut self, now: Instant) -> bool {
        self.running = false;
        self.idle_since = now;
        self.done += 1;
        if self.exit.is_some() {
            return true;
        }
        let reason = if self.exit_after_task {
            Some(ExitReason::HostGone)
        } else if self.rules.maxtasks.is_some_and(|m| self.done >= m) {
            Some(ExitReason::MaxTasks)
        } else if self.walltime_passed(now) {
            Some(ExitReason::WallTime)
        } else {
            None
        };
        self.exit = reason;
        reason.is_some()
    }

    /// The host connection is gone.
    pub fn host_gone(&mut self, _now: Instant) -> HostGone {
        match self.rules.autoexit {
            AutoExit::Immediately => {
                self.exit = Some(ExitReason::HostGone);
                HostGone::Exit
            }
            AutoExit::FinishTask if self.running => {
                self.exit_after_task = true;
                HostGone::ExitAfterTask
            }
            AutoExit::FinishTask => {
                self.exit = Some(ExitReason::HostGone);
                HostGone::Exit
            }
            AutoExit::Never => HostGone::Redial,
        }
    }

    /// The host told the daemon to exit.
    pub fn exit_requested(&mut self) {
        self.exit.get_or_insert(ExitReason::HostGone);
    }

    /// Whether (and why) to exit now; `None` while the daemon should keep going.
    pub fn poll(&mut self, now: Instant) -> Option<ExitReason> {
        if self.exit.is_none() && !self.running {
            if self.walltime_passed(now) {
                self.exit = Some(ExitReason::WallTime);
            } else if self
                .rules
                .idletime
                .is_some_and(|i| now.saturating_duration_since(self.idle_since) >= i)
            {
                self.exit = Some(ExitReason::IdleTime);
            }
        }
        self.exit
    }

    /// When [`Lifecycle::poll`] may next change its answer while idle (the receive timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.running || self.exit.is_some() {
            return None;
        }
        let idle = self
            .rules
            .idletime
            .and_then(|i| self.idle_since.checked_add(i));
        let wall = self
            .rules
            .walltime
            .and_then(|w| self.started.checked_add(w));
        match (idle, wall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tasks finished so far.
    pub fn tasks_done(&self) -> u64 {
        self.done
    }

    fn walltime_passed(&self, now: Instant) -> bool {
        self.rules
            .walltime
            .is_some_and(|w| now.saturating_duration_since(self.started) >= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idletime_counts_from_the_last_task() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(ExitRules::default().with_idletime(100 * MS), t0);
        assert_eq!(l.next_deadline(), Some(t0 + 100 * MS));
        assert_eq!(l.poll(t0 + 99 * MS), None);
        l.task_started(t0 + 50 * MS);
        assert_eq!(
            l.poll(t0 + 500 * MS),
            None,
            "never idle-exits while running"
        );
        assert!(!l.task_finished(t0 + 500 * MS));
        assert_eq!(l.poll(t0 + 599 * MS), None);
        assert_eq!(l.poll(t0 + 600 * MS), Some(ExitReason::IdleTime));
        assert_eq!(ExitReason::IdleTime.code(), 1);
    }

    #[test]
    fn walltime_never_cuts_a_task_short_and_marks_its_result_last() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(ExitRules::default().with_walltime(100 * MS), t0);
        l.task_started(t0 + 10 * MS);
        assert_eq!(l.poll(t0 + 200 * MS), None);
        assert!(l.task_finished(t0 + 200 * MS));
        assert_eq!(l.poll(t0 + 200 * MS), Some(ExitReason::WallTime));
    }

    #[test]
    fn walltime_also_ends_an_idle_daemon() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(
            ExitRules::default()
                .with_walltime(100 * MS)
                .with_idletime(500 * MS),
            t0,
        );
        assert_eq!(l.next_deadline(), Some(t0 + 100 * MS));
        assert_eq!(l.poll(t0 + 100 * MS), Some(ExitReason::WallTime));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn autoexit_modes() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(ExitRules::default(), t0);
        assert_eq!(l.host_gone(t0), HostGone::Exit);
        assert_eq!(l.poll(t0), Some(ExitReason::HostGone));

        let rules = ExitRules::default().with_autoexit(AutoExit::FinishTask);
        let mut l = Lifecycle::new(rules, t0);
        l.task_started(t0);
        assert_eq!(l.host_gone(t0), HostGone::ExitAfterTask);
        assert_eq!(l.poll(t0), None);
        assert!(l.task_finished(t0));
        assert_eq!(l.poll(t0), Some(ExitReason::HostGone));

        let mut l = Lifecycle::new(rules, t0);
        assert_eq!(l.host_gone(t0), HostGone::Exit);

        let mut l = Lifecycle::new(ExitRules::default().with_autoexit(AutoExit::Never), t0);
        assert_eq!(l.host_gone(t0), HostGone::Redial);
        assert_eq!(l.poll(t0 + 1000 * MS), None);
        l.exit_requested();
        assert_eq!(l.poll(t0), Some(ExitReason::HostGone));
    }

    #[test]
    fn maxtasks_marks_exactly_the_nth_result() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(ExitRules::default().with_maxtasks(3), t0);
        let marks: Vec<bool> = (0..3)
            .map(|_| {
                l.task_started(t0);
                l.task_finished(t0)
            })
            .collect();
        assert_eq!(marks, [false, false, true]);
        assert_eq!(l.tasks_done(), 3);
        assert_eq!(l.poll(t0), Some(ExitReason::MaxTasks));
    }
}
