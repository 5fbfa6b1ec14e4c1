//! What host threads and the dispatcher thread share, and how actions are carried out.
//!
//! Sends never wait. A task's payload is handed to the connection by reference
//! ([`ConnSender::send_shared`]): what the kernel does not take at once stays in the
//! connection's queue as the task's own buffer, never a copy, and the dispatcher thread flushes
//! it as the daemon reads. So a daemon that stops reading holds only its own payload; no thread
//! (host or dispatcher) blocks on it, and the other daemons' tasks go on. With a byte cap, the
//! payload keeps counting against it until its last byte is written: the queue's reference is
//! an [`Outgoing`] whose drop reports the task written, and the dispatcher thread tells the
//! core ([`Core::written`](crate::Core::written)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::{Registry, Waker};
use nano_transport::conn::{ConnSender, SendStatus, SharedBody};
use smallvec::SmallVec;

use super::lane::{Lane, Lanes};
use super::waiting::LeaseTimer;
use super::{DaemonEvent, PAIR1_HEADER};
use crate::completions::Completions;
use crate::core::Action;
use crate::daemon::ExitReason;
use crate::host::{CoreGuard, Host};
use crate::protocol::{Init, Limits, ToDaemon};
use crate::task::{DaemonId, IdMap, Outcome, Payload, TaskId};

/// How host threads reach a daemon.
pub(super) struct Link {
    /// The connection: its writing half, and its reading half for a caller waiting on a task of
    /// this daemon to read it itself.
    pub(super) lane: Arc<Lane>,
    pub(super) launch_id: u64,
    /// Why the daemon leaves, if by its rules ([`FromDaemon::Retiring`]) or because it was
    /// released (last result, shutdown): what [`DaemonEvent::Left`] reports.
    ///
    /// [`FromDaemon::Retiring`]: crate::protocol::FromDaemon::Retiring
    pub(super) retired: Option<ExitReason>,
    /// The daemon's address, on TCP (for [`super::Dispatcher::daemons`]).
    pub(super) addr: Option<std::net::SocketAddr>,
}

/// What host threads and the dispatcher thread share.
pub(super) struct Shared {
    pub(super) host: Host,
    pub(super) links: Mutex<IdMap<DaemonId, Link>>,
    /// Held while actions are carried out, so they go out in the order the core made them.
    pub(super) outbox: Mutex<()>,
    pub(super) completions: Completions,
    /// Bounded ([`super::EVENT_CAPACITY`]): when nobody drains it, events are dropped and
    /// counted rather than kept or waited for.
    pub(super) events: mpsc::SyncSender<DaemonEvent>,
    pub(super) dropped_events: AtomicU64,
    pub(super) waker: Arc<Waker>,
    pub(super) stop: AtomicBool,
    pub(super) local: bool,
    pub(super) settings: Vec<u8>,
    pub(super) limits: Limits,
    pub(super) heartbeat: Option<Duration>,
    /// Whether values must be reported collected (only with an uncollected-bytes cap).
    pub(super) track_collected: bool,
    /// Payloads still in a connection's queue, while the budget counts them.
    pub(super) unwritten: Arc<Unwritten>,
    pub(super) epoch: Instant,
    /// When the dispatcher thread will wake on its own, in nanoseconds since `epoch`
    /// (`u64::MAX`: not before an event; 0: it is awake). Written and read under the core's lock,
    /// so a host call that arms an earlier core timer knows to wake it.
    pub(super) sleep_until: AtomicU64,
    /// The dispatcher thread's poll registry, for borrows of connections ([`Lane::borrow`]).
    pub(super) registry: Registry,
    /// Connections borrowers handed back with something left to do; the lease count.
    pub(super) lanes: Arc<Lanes>,
    /// Goes off in the dispatcher thread's poll when leases may have run out.
    pub(super) lease_timer: LeaseTimer,
}

/// The payloads of tracked tasks (with a byte cap) that are still queued on their connection.
///
/// Each send of a tracked task gets a number, recorded here under the task before the send; an
/// [`Outgoing`] that was queued reports `(task, number)` when the queue drops it (its last byte
/// written, or the connection gone). Only a report whose number is still the task's counts: a
/// task sent again since (recalled, or requeued after its daemon left) is not released by its
/// old copy's report.
pub(super) struct Unwritten {
    sends: Mutex<IdMap<TaskId, u64>>,
    done: Mutex<Vec<(TaskId, u64)>>,
    next: AtomicU64,
    waker: Arc<Waker>,
}

impl Unwritten {
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Self {
            sends: Mutex::new(IdMap::default()),
            done: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            waker,
        }
    }

    fn start(&self, task: TaskId) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.sends).insert(task, n);
        n
    }

    /// The send `n` of `task` is over (written, or failed): `true` if it was the current one.
    fn finish(&self, task: TaskId, n: u64) -> bool {
        let mut sends = lock(&self.sends);
        if sends.get(&task) == Some(&n) {
            sends.remove(&task);
            true
        } else {
            false
        }
    }

    /// The tasks whose queued payload has been written since the last call.
    pub(super) fn take_written(&self) -> Vec<TaskId> {
        let done = std::mem::take(&mut *lock(&self.done));
        done.into_iter()
            .filter(|&(task, n)| self.finish(task, n))
            .map(|(task, _)| task)
            .collect()
    }
}

/// A task payload as a connection's queue keeps it: by reference (no byte copied), reporting
/// to [`Unwritten`] when the queue lets go of it.
struct Outgoing {
    payload: Payload,
    report: Option<(Arc<Unwritten>, TaskId, u64)>,
    /// Cleared when the sender saw the payload written at once (reported there, not here).
    armed: AtomicBool,
}

impl AsRef<[u8]> for Outgoing {
    /// The payload's first piece; the others go beside it as bodies of their own (see
    /// [`Shared::send_task`]), so the frame is all of them and none is copied.
    fn as_ref(&self) -> &[u8] {
        self.payload.parts().first().map_or(&[], |b| &b[..])
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Some((log, task, n)) = self.report.take()
            && self.armed.load(Ordering::Acquire)
        {
            lock(&log.done).push((task, n));
            let _ = log.waker.wake();
        }
    }
}

/// A task's envelope (`PAIR1 header + ToDaemon::Task`), encoded, and its payload, which goes
/// beside it without being copied into it.
fn task_frame(task: TaskId, job: crate::core::Job) -> Option<(Vec<u8>, crate::Payload)> {
    let msg = ToDaemon::Task {
        task,
        function: job.function,
        trace: job.trace,
        rng_seed: job.rng_seed,
        attempt: job.attempt,
    };
    Some((encode(&msg)?, job.payload))
}

/// The largest task payload [`Shared::queue_task`] copies into a batch.
const SMALL_TASK: usize = 128;

/// Whether `job`'s payload is one piece of at most [`SMALL_TASK`] bytes.
fn is_small(job: &crate::core::Job) -> bool {
    let parts = job.payload.parts();
    parts.len() <= 1 && parts.first().is_none_or(|b| b.len() <= SMALL_TASK)
}

/// The daemons that get two or more small tasks among `actions`.
fn daemons_with_small_sends(actions: &[Action]) -> Vec<DaemonId> {
    // The common batch (one task submitted, one result in) sends at most one: nothing to count.
    let sends = actions.iter().filter(|a| matches!(a, Action::Send { .. }));
    if sends.count() < 2 {
        return Vec::new();
    }
    let mut counts: Vec<(DaemonId, usize)> = Vec::new();
    for action in actions {
        if let Action::Send { daemon, job, .. } = action
            && is_small(job)
        {
            match counts.iter_mut().find(|(d, _)| d == daemon) {
                Some((_, n)) => *n += 1,
                None => counts.push((*daemon, 1)),
            }
        }
    }
    counts
        .into_iter()
        .filter(|&(_, n)| n >= 2)
        .map(|(d, _)| d)
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
impl Shared {
    /// A handle took `task`'s outcome: with an uncollected cap, its value leaves the count.
    pub(super) fn taken(&self, task: TaskId, outcome: &Outcome) {
        if outcome.is_value() && self.track_collected {
            let mut core = self.host.lock();
            if core.collected(task, Instant::now()) {
                self.flush_held(core);
            }
        }
    }

    /// Drains the core's actions and carries them out, in order; takes the core's lock and
    /// releases it before anything is written.
    pub(super) fn flush_held(&self, mut core: CoreGuard<'_>) {
        let asleep_until = self.sleep_until.load(Ordering::Relaxed);
        if asleep_until != 0
            && core
                .poll_timeout()
                .is_some_and(|t| self.nanos(t) < asleep_until)
        {
            // A core timer earlier than the dispatcher thread's wake-up was just armed.
            let _ = self.waker.wake();
        }
        if !core.has_actions() {
            return;
        }
        let track = core.config().release_when_written;
        let actions: SmallVec<[Action; 4]> = std::iter::from_fn(|| core.poll_action()).collect();
        // Only what goes to a daemon needs the core's order. A batch of resolutions alone (a
        // result came in, nothing else to send) skips the lock: on one CPU the thread that
        // holds it is often a host thread preempted in the middle of writing its task (the
        // write woke the daemon, whose result is what we are delivering), and waiting for it
        // cost two more context switches and a futex wake per round trip.
        let order = actions
            .iter()
            .any(|a| !matches!(a, Action::Resolve { .. }))
            .then(|| self.outbox.lock().unwrap_or_else(PoisonError::into_inner));
        drop(core);
        // Daemons that get several small tasks in this batch (a turn that read several results
        // refills their send-ahead slots at once): their tasks are queued back to back and
        // written with one `writev` at the end, instead of one write (and one wake-up of the
        // daemon) each.
        let batch_to = if track {
            Vec::new()
        } else {
            daemons_with_small_sends(&actions)
        };
        let mut batched: Vec<(DaemonId, ConnSender)> = Vec::new();
        let mut resolved: SmallVec<[(TaskId, Outcome); 2]> = SmallVec::new();
        let mut written = Vec::new();
        for action in actions {
            match action {
                Action::Resolve { task, outcome } => resolved.push((task, outcome)),
                Action::Send { daemon, task, job } if track => {
                    if self.send_task(daemon, task, job, true) {
                        written.push(task);
                    }
                }
                Action::Send { daemon, task, job }
                    if batch_to.contains(&daemon) && is_small(&job) =>
                {
                    if let Some(sender) = self.queue_task(daemon, task, job)
                        && !batched.iter().any(|(d, _)| *d == daemon)
                    {
                        batched.push((daemon, sender));
                    }
                }
                other => self.carry_out(other),
            }
        }
        for (_, sender) in batched {
            // What the kernel does not take now, the dispatcher thread writes when it can.
            if !matches!(sender.flush(), Ok(true)) {
                let _ = self.waker.wake();
            }
        }
        drop(order);
        if !resolved.is_empty() {
            self.completions.deliver(resolved);
        }
        if !written.is_empty() {
            // The payloads are out of our hands: their bytes leave the budget, which may let
            // blocked submitters in and queue more sends.
            let mut core = self.host.lock();
            let now = Instant::now();
            for task in written {
                core.written(task, now);
            }
            self.flush_held(core);
        }
    }

    /// Tells the core which queued payloads have been written since the last call (their
    /// bytes leave the budget). The dispatcher thread calls it on every turn.
    pub(super) fn release_written(&self) {
        let tasks = self.unwritten.take_written();
        if tasks.is_empty() {
            return;
        }
        let mut core = self.host.lock();
        let now = Instant::now();
        for task in tasks {
            core.written(task, now);
        }
        self.flush_held(core);
    }

    pub(super) fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX - 1)
            .max(1)
    }

    /// The daemon's connection and launch id, while it is linked.
    pub(super) fn link(&self, daemon: DaemonId) -> Option<(Arc<Lane>, u64)> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&daemon)
            .map(|l| (Arc::clone(&l.lane), l.launch_id))
    }

    fn carry_out(&self, action: Action) {
        match action {
            Action::Joined { daemon, rng_stream } => {
                if let Some((lane, _)) = self.link(daemon) {
                    let init = Init {
                        daemon,
                        rng_stream,
                        max_message: self.limits.max_message,
                        heartbeat_ms: self
                            .heartbeat
                            .map_or(0, |h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX)),
                        settings: self.settings.clone(),
                    };
                    self.send(lane.sender(), &ToDaemon::Init(init));
                }
            }
            Action::Send { daemon, task, job } => {
                self.send_task(daemon, task, job, false);
            }
            Action::Cancel { daemon, task } => {
                if let Some((lane, _)) = self.link(daemon) {
                    self.send(lane.sender(), &ToDaemon::Cancel { task });
                }
            }
            Action::Recall { daemon, task } => {
                if let Some((lane, _)) = self.link(daemon) {
                    self.send(lane.sender(), &ToDaemon::Recall { task });
                }
            }
            Action::Kill { daemon } => {
                if let Some((lane, launch_id)) = self.link(daemon) {
                    self.send(lane.sender(), &ToDaemon::Exit);
                    self.event(DaemonEvent::KillRequested { daemon, launch_id });
                }
            }
            Action::Release { daemon } => {
                // Told to go (after its last result, or at shutdown): leaving is no loss. A
                // daemon's own word on its rule, which follows a last result, is kept.
                if let Some(link) = self
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(&daemon)
                {
                    link.retired.get_or_insert(ExitReason::HostGone);
                }
                if let Some((lane, _)) = self.link(daemon) {
                    self.send(lane.sender(), &ToDaemon::Exit);
                }
            }
            Action::Left { daemon } => {
                let link = self
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&daemon);
                if let Some(link) = link {
                    self.event(DaemonEvent::Left {
                        daemon,
                        launch_id: link.launch_id,
                        retired: link.retired,
                    });
                }
            }
            Action::Resolve { task, outcome } => self.completions.deliver([(task, outcome)]),
            Action::WakeSubmitters => {}
            Action::SetupFailed { daemon, outcome } => {
                let launch_id = self.link(daemon).map_or(0, |(_, id)| id);
                tracing::warn!(daemon = daemon.0, launch_id, %outcome, "a join setup failed");
                self.event(DaemonEvent::SetupFailed {
                    daemon,
                    launch_id,
                    outcome,
                });
            }
        }
    }

    /// Sends a task to its daemon without waiting and without copying its payload; with
    /// `track`, returns whether the payload is already written (else its [`Outgoing`] reports it
    /// when it is, to [`Shared::unwritten`]).
    fn send_task(
        &self,
        daemon: DaemonId,
        task: TaskId,
        job: crate::core::Job,
        track: bool,
    ) -> bool {
        let _span = tracing::debug_span!("dispatch", task = task.0, daemon = daemon.0).entered();
        let Some((lane, _)) = self.link(daemon) else {
            // The daemon is gone; its close resolves or requeues the task.
            return true;
        };
        self.lease_only_for(&lane, task);
        let sender = lane.sender();
        let Some((head, payload)) = task_frame(task, job) else {
            return true;
        };
        let report = track.then(|| {
            let n = self.unwritten.start(task);
            (Arc::clone(&self.unwritten), task, n)
        });
        let n = report.as_ref().map(|(_, _, n)| *n);
        let outgoing = Arc::new(Outgoing {
            payload,
            report,
            armed: AtomicBool::new(true),
        });
        // The first piece travels inside the tracker, the rest (large buffers a value points
        // to) as bodies of their own: all are kept by reference, and the tracker reports when
        // the queue lets go of the frame, which is when it lets go of every piece.
        let first: SharedBody = outgoing.clone();
        let sent = if outgoing.payload.parts().len() <= 1 {
            // The common case, without a list to allocate.
            sender.send_shared(&[&head], &first, None)
        } else {
            let rest = outgoing.payload.parts()[1..].iter();
            let bodies: Vec<SharedBody> = std::iter::once(first.clone())
                .chain(rest.map(|piece| -> SharedBody { Arc::new(piece.clone()) }))
                .collect();
            sender.send_shared_parts(&[&head], &bodies, None)
        };
        drop(first);
        let written = matches!(sent, Ok(SendStatus::Written));
        if written || sent.is_err() {
            // Out of our hands now (or the connection is going, and its close resolves or
            // requeues the task): no report from the drop.
            outgoing.armed.store(false, Ordering::Release);
            if let Some(n) = n {
                self.unwritten.finish(task, n);
            }
        }
        drop(outgoing);
        self.after_send(&sent);
        written || sent.is_err()
    }

    /// Queues a small task behind what is queued for its daemon, to be written with the others
    /// of the batch ([`Shared::flush_held`] flushes). Its payload is copied into the queue's
    /// buffer: at most [`SMALL_TASK`] bytes, fewer than the write it saves costs. Returns the
    /// daemon's sender, `None` when the daemon is gone or the message cannot be encoded (its
    /// close or the core resolves the task, as for [`Shared::send_task`]).
    fn queue_task(
        &self,
        daemon: DaemonId,
        task: TaskId,
        job: crate::core::Job,
    ) -> Option<ConnSender> {
        let _span = tracing::debug_span!("dispatch", task = task.0, daemon = daemon.0).entered();
        let (lane, _) = self.link(daemon)?;
        self.lease_only_for(&lane, task);
        let sender = lane.sender().clone();
        let (head, payload) = task_frame(task, job)?;
        let payload: &[u8] = payload.parts().first().map_or(&[], |b| &b[..]);
        match sender.send_later(&[&head, payload]) {
            Ok(SendStatus::Written | SendStatus::Queued) => Some(sender),
            // The connection failed: the dispatcher thread closes it.
            Err(_) => {
                let _ = self.waker.wake();
                None
            }
        }
    }

    /// Writes one message without a payload: `PAIR1 header + envelope`; what the kernel does
    /// not take waits (copied: a few bytes) in the connection's queue.
    pub(super) fn send(&self, sender: &ConnSender, msg: &ToDaemon) {
        if let Some(head) = encode(msg) {
            let sent = sender.send(&[&head]);
            self.after_send(&sent);
        }
    }

    fn after_send(&self, sent: &Result<SendStatus, nano_transport::conn::ConnError>) {
        match sent {
            Ok(SendStatus::Written) => {}
            // The rest waits in the connection's queue: the dispatcher thread flushes it. A
            // failed write marks the connection failed; the dispatcher thread closes it.
            Ok(SendStatus::Queued) | Err(_) => {
                let _ = self.waker.wake();
            }
        }
    }

    /// Reports an event without ever waiting: when the channel is full (nobody drains it), the
    /// event is dropped and counted ([`super::Dispatcher::dropped_events`]). Nobody listening
    /// is fine.
    pub(super) fn event(&self, event: DaemonEvent) {
        if let Err(TrySendError::Full(event)) = self.events.try_send(event) {
            let n = self.dropped_events.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    ?event,
                    "daemon event channel full; event dropped"
                );
            }
        }
    }
}

/// `PAIR1 header + envelope` of a message.
fn encode(msg: &ToDaemon) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&PAIR1_HEADER);
    msg.encode(&mut head).ok()?;
    Some(head)
}
