//! What a pool tells about its daemons: the event queue ([`Pool::events`]) and one row per
//! daemon ([`Pool::daemons`]), like R's `status()$daemons` and `info()`.
//!
//! The pool's launcher thread reads the dispatcher's events (it needs them to kill and replace
//! daemons) and copies each, with what only the launcher knows (a process's pid and exit, the
//! replacement it started), into one bounded queue, [`EVENT_CAPACITY`] long, which the pool's
//! [`Events`] receivers share. A full queue drops its **oldest** event and counts it
//! ([`Events::dropped`]): the launcher never waits for a reader, and a pool nobody reads the
//! events of holds at most [`EVENT_CAPACITY`] of them, while a reader that falls behind still
//! finds the latest ones.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mirai_dispatch::daemon::ExitReason;
use mirai_dispatch::protocol::RefuseReason;
use mirai_dispatch::{DaemonExit, DaemonPhase};

use super::Pool;

/// How many events a pool's queue holds before it drops the oldest (see [`Pool::events`]).
pub const EVENT_CAPACITY: usize = 1024;

/// Something that happened to a daemon of a [`Pool`], from [`Pool::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A daemon was admitted: it presented its launch's credential (or the pool token).
    Joined {
        /// The id its launcher gave it (0 for a daemon started by hand with the pool token).
        launch_id: u64,
        /// Its process id, for a local daemon this pool started.
        pid: Option<u32>,
    },
    /// A daemon left, and why.
    Left {
        /// The id its launcher gave it.
        launch_id: u64,
        /// Why.
        reason: LeaveReason,
        /// The launch id of the local daemon the pool started in its place (see
        /// [`Daemons::respawn`](crate::Daemons::respawn)); `None` if it was not replaced.
        replaced_by: Option<u64>,
    },
    /// A connection was refused at its hello (a wrong token or credential, another protocol
    /// version, a launch id already connected, a pool shutting down). Nothing about the peer
    /// is authenticated: the launch id is only what it claimed.
    Refused {
        /// The launch id the peer claimed.
        claimed_launch_id: u64,
        /// Why it was refused.
        reason: RefuseReason,
    },
    /// A setup of [`Pool::everywhere_persistent`] failed on a daemon that joined (the daemon
    /// serves on: the setup runs once per daemon).
    SetupFailed {
        /// The daemon's launch id.
        launch_id: u64,
        /// What went wrong (the task's error message, for a setup that failed or panicked).
        message: String,
    },
    /// A local connection from a process of another user was closed before a byte was
    /// exchanged (`ipc://` and `abstract://` pools admit only their own user's processes).
    ForeignPeer {
        /// The peer's user id, as the kernel recorded it.
        uid: u32,
        /// Its process id when it connected.
        pid: i32,
    },
}

/// Why a daemon left a pool, in [`PoolEvent::Left`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It retired after [`Daemons::idletime`](crate::Daemons::idletime) without a task.
    IdleTime,
    /// It retired after [`Daemons::walltime`](crate::Daemons::walltime).
    WallTime,
    /// It retired after [`Daemons::maxtasks`](crate::Daemons::maxtasks) tasks.
    MaxTasks,
    /// The pool told it to go (it is shutting down).
    Released,
    /// The pool killed it: a hard cancel ([`Mirai::cancel_hard`](crate::Mirai::cancel_hard)),
    /// or a cancel it did not answer within [`Daemons::cancel_grace`](crate::Daemons::cancel_grace).
    Killed,
    /// Its connection was lost without a word from it: its process ended (a task that exits or
    /// aborts, a kill from outside) or it fell silent (see `mirai_dispatch::MISSED_BEATS`).
    Lost {
        /// How its process ended, for a local daemon this pool started (after a second's grace
        /// the pool kills a process that left but lingers, and that kill is what shows).
        exit: Option<DaemonExit>,
    },
}

impl LeaveReason {
    /// The reason for a departure the dispatcher reported as `retired` (see
    /// [`DaemonEvent::Left`](mirai_dispatch::DaemonEvent::Left)).
    pub(super) fn retired(reason: ExitReason) -> Self {
        match reason {
            ExitReason::IdleTime => Self::IdleTime,
            ExitReason::WallTime => Self::WallTime,
            ExitReason::MaxTasks => Self::MaxTasks,
            ExitReason::HostGone => Self::Released,
        }
    }
}

/// The pool's event queue (see the module docs).
#[derive(Debug)]
pub(super) struct EventLog {
    state: Mutex<LogState>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct LogState {
    queue: VecDeque<PoolEvent>,
    dropped: u64,
    closed: bool,
}

impl EventLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(LogState::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event, dropping the oldest when full; never waits.
    pub(super) fn push(&self, event: PoolEvent) {
        let mut state = self.lock();
        if state.queue.len() >= self.capacity {
            state.queue.pop_front();
            state.dropped += 1;
        }
        state.queue.push_back(event);
        drop(state);
        self.ready.notify_all();
    }

    /// No event comes any more (the pool is gone): waiting receivers return.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A receiver of a pool's daemon events ([`Pool::events`]); iterating blocks for the next
/// event and ends once the pool is dropped and every event was taken.
///
/// All receivers of a pool share one queue: each event goes to one of them. Clones share it
/// too.
#[derive(Debug, Clone)]
pub struct Events {
    log: Arc<EventLog>,
}

impl Events {
    /// The next event, if one waits.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.events().try_recv(), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn try_recv(&self) -> Option<PoolEvent> {
        self.log.lock().queue.pop_front()
    }

    /// The next event, waiting for it up to `timeout`; `None` if none came in time or the pool
    /// is gone and the queue empty.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.events().recv_timeout(Duration::from_millis(10)), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<PoolEvent> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// The next event, waiting as long as the pool lives; `None` once it is gone and the
    /// queue empty.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// let events = pool.events();
    /// drop(pool);
    /// assert_eq!(events.recv(), None);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn recv(&self) -> Option<PoolEvent> {
        self.recv_until(None)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Option<PoolEvent> {
        let mut state = self.log.lock();
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some(event);
            }
            if state.closed {
                return None;
            }
            state = match deadline {
                None => self
                    .log
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.log
                        .ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// How many events were dropped, oldest first, because the queue was full.
    ///
    /// ```
    /// let pool = mirai::Daemons::new().start()?;
    /// assert_eq!(pool.events().dropped(), 0);
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.log.lock().dropped
    }
}

impl Iterator for Events {
    type Item = PoolEvent;

    fn next(&mut self) -> Option<PoolEvent> {
        self.recv()
    }
}

/// One connected daemon of a pool, from [`Pool::daemons`]: R's `status()$daemons` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// The id its launcher gave it (0 for a daemon started by hand with the pool token).
    pub launch_id: u64,
    /// Its process id, for a local daemon this pool started.
    pub pid: Option<u32>,
    /// Its address, for a daemon that dialled over `tcp://` or `tls+tcp://`.
    pub address: Option<SocketAddr>,
    /// When it joined.
    pub connected_since: Instant,
    /// Tasks sent to it (join setups of [`Pool::everywhere_persistent`] included).
    pub tasks_assigned: u64,
    /// Tasks it answered: with a value, an error or after a cancel.
    pub tasks_completed: u64,
    /// The dispatcher's id of the task it runs now; `None` when idle.
    pub current_task: Option<u64>,
    /// When that task started.
    pub busy_since: Option<Instant>,
    /// It still runs the join setups before any other task.
    pub setting_up: bool,
    /// Taking work, leaving, or being killed.
    pub phase: DaemonPhase,
}

impl Pool {
    /// The pool's daemon events: joins, departures with their reason and replacement, refused
    /// peers. The queue holds the events from the pool's start, at most [`EVENT_CAPACITY`]:
    /// when full, the oldest is dropped and counted ([`Events::dropped`]), so a pool whose
    /// events nobody reads never waits for a reader nor grows. Every call returns a receiver
    /// of the same queue.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// use std::time::Duration;
    /// use mirai::{LeaveReason, PoolEvent};
    /// let pool = mirai::Daemons::new().local(1).maxtasks(1).respawn(false).start()?;
    /// let events = pool.events();
    /// let Some(PoolEvent::Joined { launch_id, pid }) = events.recv_timeout(Duration::from_secs(30))
    /// else { panic!("no join") };
    /// assert_eq!(pid, Some(pool.local_pids()[0]));
    /// assert_eq!(pool.submit(&ADD, (1, 2))?.wait()?, 3);
    /// let left = events.recv_timeout(Duration::from_secs(30));
    /// let reason = LeaveReason::MaxTasks;
    /// assert_eq!(left, Some(PoolEvent::Left { launch_id, reason, replaced_by: None }));
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> Events {
        Events {
            log: Arc::clone(&self.local.events),
        }
    }

    /// One row per connected daemon, in the order they joined: launch id, pid (local daemons
    /// this pool started) or address (remote ones), when it joined, tasks assigned and
    /// completed, the task it runs now. R's `status()$daemons` / `info()`.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// assert_eq!(pool.submit(&ADD, (1, 2))?.wait()?, 3);
    /// let rows = pool.daemons();
    /// assert_eq!(rows.len(), 1);
    /// assert_eq!(rows[0].pid, Some(pool.local_pids()[0]));
    /// assert_eq!((rows[0].tasks_assigned, rows[0].tasks_completed), (1, 1));
    /// assert_eq!(rows[0].current_task, None);
    /// # Ok(()) }
    /// ```
    pub fn daemons(&self) -> Vec<DaemonStatus> {
        let rows = self.dispatcher.daemons();
        let children = self.local.children();
        rows.into_iter()
            .map(|row| DaemonStatus {
                launch_id: row.launch_id,
                pid: children.live.get(&row.launch_id).map(Child::id),
                address: row.address,
                connected_since: row.info.connected_at,
                tasks_assigned: row.info.assigned,
                tasks_completed: row.info.completed,
                current_task: row.info.current.map(|t| t.0),
                busy_since: row.info.current_since,
                setting_up: row.info.setting_up,
                phase: row.info.phase,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(launch_id: u64) -> PoolEvent {
        PoolEvent::Joined {
            launch_id,
            pid: None,
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts() {
        let log = Arc::new(EventLog::new(3));
        let events = Events {
            log: Arc::clone(&log),
        };
        for id in 0..5 {
            log.push(joined(id));
        }
        assert_eq!(events.dropped(), 2);
        let kept: Vec<PoolEvent> = std::iter::from_fn(|| events.try_recv()).collect();
        assert_eq!(kept, [joined(2), joined(3), joined(4)]);
    }

    #[test]
    fn a_waiting_receiver_gets_the_next_event_or_returns_at_close() {
        let log = Arc::new(EventLog::new(8));
        let events = Events {
            log: Arc::clone(&log),
        };
        let waiter = std::thread::spawn(move || events.collect::<Vec<_>>());
        log.push(joined(1));
        log.push(joined(2));
        log.close();
        assert_eq!(waiter.join().unwrap(), [joined(1), joined(2)]);
    }

    #[test]
    fn retirements_map_to_their_rule() {
        assert_eq!(
            LeaveReason::retired(ExitReason::IdleTime),
            LeaveReason::IdleTime
        );
        assert_eq!(
            LeaveReason::retired(ExitReason::WallTime),
            LeaveReason::WallTime
        );
        assert_eq!(
            LeaveReason::retired(ExitReason::MaxTasks),
            LeaveReason::MaxTasks
        );
        assert_eq!(
            LeaveReason::retired(ExitReason::HostGone),
            LeaveReason::Released
        );
    }
}
