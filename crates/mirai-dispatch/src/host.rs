//! The submission handle host threads share with the dispatcher thread.
//!
//! One mutex guards the whole [`Core`], so the byte reservation and the enqueue are a single
//! step (the cap is exact, unlike R's, where the gate and the counting run on different threads).
//! A condition variable wakes submitters blocked on a full budget whenever bytes are released;
//! an optional callback wakes the dispatcher's I/O thread when a host call left actions for it.
//!
//! Blocked submitters are woken together and race for the freed bytes, so a large task may wait
//! while smaller ones keep fitting; there is no fairness between submitters.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::core::{CancelMode, Core, RejectReason, Rejected, Status};
use crate::task::{Task, TaskId};

type Notify = Box<dyn Fn() + Send + Sync>;

struct Shared {
    core: Mutex<Core>,
    space: Space,
    /// [`Core::full_refusal_bound`], fixed for the core's life.
    refusal_bound: u64,
    notify: Notify,
}

/// Where submitters wait for budget bytes: blocked threads on a condition variable, futures
/// ([`Room`]) as wakers.
#[derive(Default)]
struct Space {
    freed: Condvar,
    /// Submitters waiting, counted under the core's lock: a notify costs a system call even
    /// with nobody to wake, and bytes are released on nearly every dispatch.
    waiting: AtomicUsize,
    /// The wakers of pending [`Room`] futures, by key. Registered under the core's lock, so a
    /// release (which also holds it) cannot slip between a future's check and its registration.
    wakers: Mutex<Vec<(u64, Waker)>>,
    /// `wakers.len()`, read without its lock on every release.
    registered: AtomicUsize,
    next_key: AtomicU64,
    /// [`Core::room_left`] as the last lock holder left it, stored before the lock is released:
    /// a `try_submit` that reads too little here is refused without taking the lock. The value
    /// read is the room at some instant during the call (every change is stored under the lock
    /// that made it), so the refusal is as exact as a locked one, and a refusal reserves
    /// nothing, so the cap and the order of waiting submitters are untouched.
    room: AtomicU64,
}

impl Space {
    /// Waits (releasing the core's lock) until bytes are released, or `timeout` passes.
    fn wait<'a>(
        &self,
        core: MutexGuard<'a, Core>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Core> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let core = match timeout {
            None => self
                .freed
                .wait(core)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.freed
                    .wait_timeout(core, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        core
    }

    /// Wakes the waiting submitters, if any (called with the core's lock held). Every pending
    /// [`Room`] is woken and checks again; one that still finds no room registers anew.
    fn wake(&self) {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.freed.notify_all();
        }
        if self.registered.load(Ordering::Relaxed) > 0 {
            let wakers = {
                let mut wakers = self.lock_wakers();
                self.registered.store(0, Ordering::Relaxed);
                std::mem::take(&mut *wakers)
            };
            // Still under the core's lock (the guard releases it after this): a wake only
            // schedules the future's task, it does not run it here.
            for (_, waker) in wakers {
                waker.wake();
            }
        }
    }

    fn lock_wakers(&self) -> MutexGuard<'_, Vec<(u64, Waker)>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or refreshes) the waker of the future with `key` (called with the core's
    /// lock held).
    fn register(&self, key: u64, waker: &Waker) {
        let mut wakers = self.lock_wakers();
        match wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => old.clone_from(waker),
            None => wakers.push((key, waker.clone())),
        }
        self.registered.store(wakers.len(), Ordering::Relaxed);
    }

    /// Forgets the waker of the future with `key`, if registered.
    fn unregister(&self, key: u64) {
        let mut wakers = self.lock_wakers();
        wakers.retain(|(k, _)| *k != key);
        self.registered.store(wakers.len(), Ordering::Relaxed);
    }
}

/// Whether a task of `bytes` can be submitted now: `None` while it only has to wait for room.
fn room_now(core: &Core, bytes: u64) -> Option<Result<(), RejectReason>> {
    if core.is_shut_down() {
        return Some(Err(RejectReason::ShutDown));
    }
    if let Some(capacity) = core.status().memory.capacity.filter(|&c| bytes > c) {
        return Some(Err(RejectReason::TooLarge {
            size: bytes,
            capacity,
        }));
    }
    core.fits(bytes).then_some(Ok(()))
}

/// A cloneable, thread-safe handle on a [`Core`].
///
/// ```
/// use std::time::Instant;
/// use mirai_dispatch::{Config, Core, Host, RejectReason, Task};
///
/// let host = Host::new(Core::new(Config::default().with_max_queued_bytes(4)));
/// let id = host.try_submit(Task::new("f", vec![0; 4])).unwrap();
/// // The budget is full: `try_submit` hands the task back at once.
/// let refused = host.try_submit(Task::new("f", vec![0; 1])).unwrap_err();
/// assert_eq!(refused.reason, RejectReason::Full);
/// // Cancelling the queued task releases its bytes.
/// assert!(host.cancel(id, mirai_dispatch::CancelMode::Soft));
/// assert!(host.submit(refused.task, Some(Instant::now())).is_ok());
/// assert_eq!(host.status().memory.used, 1);
/// ```
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("status", &self.status())
            .finish()
    }
}

impl Host {
    /// Shares `core` between threads.
    pub fn new(core: Core) -> Self {
        Self::with_notify(core, || {})
    }

    /// Shares `core`, calling `notify` whenever a host call leaves actions for the dispatcher
    /// thread (typically a mio `Waker::wake`).
    pub fn with_notify(core: Core, notify: impl Fn() + Send + Sync + 'static) -> Self {
        let space = Space {
            room: AtomicU64::new(core.room_left()),
            ..Space::default()
        };
        Self {
            shared: Arc::new(Shared {
                refusal_bound: core.full_refusal_bound(),
                core: Mutex::new(core),
                space,
                notify: Box::new(notify),
            }),
        }
    }

    /// Locks the core, for the dispatcher thread to feed it events and drain its actions. When
    /// the guard drops, submitters blocked on the budget are woken if bytes were released.
    pub fn lock(&self) -> CoreGuard<'_> {
        CoreGuard {
            core: self.raw_lock(),
            space: &self.shared.space,
        }
    }

    /// The core's state stays consistent across a panic elsewhere (its methods do not panic
    /// midway), so a poisoned lock is still usable.
    fn raw_lock(&self) -> MutexGuard<'_, Core> {
        self.shared
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Submits `task` if its bytes fit now; otherwise hands it back at once
    /// ([`RejectReason::Full`], [`RejectReason::TooLarge`] or [`RejectReason::ShutDown`]).
    pub fn try_submit(&self, task: Task) -> Result<TaskId, Rejected> {
        let task = self.refuse_if_full(task)?;
        let mut core = self.lock();
        let result = core.submit(task, Instant::now());
        self.after(core);
        result
    }

    /// Refuses `task` ([`RejectReason::Full`]) without the lock when the room the last lock
    /// holder left is too small for it; otherwise hands it back for a locked submit, which
    /// decides every other case (shutdown, a task too large for the cap or the message limit).
    /// This is the path a producer spinning on a full queue takes: one atomic load instead of
    /// the lock, the clock and the core's checks.
    pub(crate) fn refuse_if_full(&self, task: Task) -> Result<Task, Rejected> {
        let bytes = task.payload.len() as u64;
        if bytes <= self.shared.refusal_bound
            && bytes > self.shared.space.room.load(Ordering::Relaxed)
        {
            return Err(Rejected {
                reason: RejectReason::Full,
                task,
            });
        }
        Ok(task)
    }

    /// Submits `task`, waiting while the budget is full, until `deadline` if one is given
    /// ([`RejectReason::Full`] when it passes). Never waits for a task that cannot fit
    /// ([`RejectReason::TooLarge`]) or after shutdown.
    pub fn submit(&self, task: Task, deadline: Option<Instant>) -> Result<TaskId, Rejected> {
        let (result, core) = self.submit_held(task, deadline);
        self.after(core);
        result
    }

    /// [`Host::submit`], handing back the still-locked core instead of waking the dispatcher
    /// thread: the shell drains and carries out the actions itself.
    pub(crate) fn submit_held(
        &self,
        task: Task,
        deadline: Option<Instant>,
    ) -> (Result<TaskId, Rejected>, CoreGuard<'_>) {
        self.wait_for_space(task, deadline, |core, task, now| core.submit(task, now))
    }

    /// [`Core::everywhere`], waiting for space like [`Host::submit`].
    pub fn everywhere(
        &self,
        task: Task,
        min: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<TaskId>, Rejected> {
        let (result, core) = self.everywhere_held(task, min, deadline);
        self.after(core);
        result
    }

    /// [`Host::everywhere`], handing back the still-locked core (see [`Host::submit_held`]).
    pub(crate) fn everywhere_held(
        &self,
        task: Task,
        min: usize,
        deadline: Option<Instant>,
    ) -> (Result<Vec<TaskId>, Rejected>, CoreGuard<'_>) {
        self.wait_for_space(task, deadline, |core, task, now| {
            core.everywhere(task, min, now)
        })
    }

    /// Waits until a task of `bytes` would fit in the budget now, until `deadline` if one is
    /// given ([`RejectReason::Full`] when it passes); [`RejectReason::TooLarge`] at once if it
    /// never can, [`RejectReason::ShutDown`] after shutdown.
    ///
    /// A producer of large payloads calls this before it builds the next one, so the payload
    /// does not sit in its hands, outside the budget, while [`Host::submit`] waits: the host's
    /// memory then stays within the cap instead of the cap plus one task. The room is not
    /// reserved: another thread may take it first, and the submit then waits as usual.
    ///
    /// ```
    /// use std::time::Instant;
    /// use mirai_dispatch::{Config, Core, Host, RejectReason, Task};
    /// let host = Host::new(Core::new(Config::default().with_max_queued_bytes(8)));
    /// host.wait_for_room(8, None).unwrap();
    /// host.submit(Task::new("f", vec![0; 6]), None).unwrap();
    /// assert_eq!(host.wait_for_room(4, Some(Instant::now())), Err(RejectReason::Full));
    /// assert!(matches!(host.wait_for_room(9, None), Err(RejectReason::TooLarge { .. })));
    /// ```
    pub fn wait_for_room(&self, bytes: u64, deadline: Option<Instant>) -> Result<(), RejectReason> {
        let space = &self.shared.space;
        let mut core = self.raw_lock();
        loop {
            if let Some(decided) = room_now(&core, bytes) {
                return decided;
            }
            let now = Instant::now();
            core = match deadline {
                None => space.wait(core, None),
                Some(d) if d <= now => return Err(RejectReason::Full),
                Some(d) => space.wait(core, Some(d - now)),
            };
        }
    }

    /// [`Host::wait_for_room`] as a future, for async producers: it resolves once a task of
    /// `bytes` would fit ([`RejectReason::TooLarge`] at once if it never can,
    /// [`RejectReason::ShutDown`] after shutdown) and blocks no thread meanwhile. The room is
    /// not reserved. For a deadline, wrap it in the executor's timeout.
    ///
    /// ```
    /// use std::task::{Context, Poll, Waker};
    /// use mirai_dispatch::{CancelMode, Config, Core, Host, Task};
    ///
    /// let host = Host::new(Core::new(Config::default().with_max_queued_bytes(8)));
    /// let id = host.submit(Task::new("f", vec![0; 6]), None).unwrap();
    /// let mut room = std::pin::pin!(host.room(4));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(room.as_mut().poll(&mut cx).is_pending());
    /// host.cancel(id, CancelMode::Soft); // releases the 6 bytes, and wakes the future
    /// assert_eq!(room.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    /// ```
    pub fn room(&self, bytes: u64) -> Room {
        Room {
            host: self.clone(),
            bytes,
            key: None,
        }
    }

    /// [`Core::cancel`].
    pub fn cancel(&self, task: TaskId, mode: CancelMode) -> bool {
        let mut core = self.lock();
        let found = core.cancel(task, mode, Instant::now());
        self.after(core);
        found
    }

    /// [`Core::collected`].
    pub fn collected(&self, task: TaskId) -> bool {
        let mut core = self.lock();
        let found = core.collected(task, Instant::now());
        self.after(core);
        found
    }

    /// [`Core::shutdown`]; blocked submitters return [`RejectReason::ShutDown`].
    pub fn shutdown(&self) {
        let mut core = self.lock();
        core.shutdown(Instant::now());
        self.after(core);
    }

    /// A snapshot of the counters, read under the lock (no round trip to another thread).
    pub fn status(&self) -> Status {
        self.lock().status()
    }

    fn wait_for_space<T>(
        &self,
        mut task: Task,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut Core, Task, Instant) -> Result<T, Rejected>,
    ) -> (Result<T, Rejected>, CoreGuard<'_>) {
        let space = &self.shared.space;
        let mut core = self.raw_lock();
        loop {
            let now = Instant::now();
            match attempt(&mut core, task, now) {
                Err(Rejected {
                    reason: RejectReason::Full,
                    task: back,
                }) => {
                    task = back;
                    core = match deadline {
                        None => space.wait(core, None),
                        Some(d) if d <= now => {
                            let err = Err(Rejected {
                                reason: RejectReason::Full,
                                task,
                            });
                            return (err, CoreGuard { core, space });
                        }
                        Some(d) => space.wait(core, Some(d - now)),
                    };
                }
                result => return (result, CoreGuard { core, space }),
            }
        }
    }

    /// Unlocks, then wakes the dispatcher thread if the call left it work.
    fn after(&self, core: CoreGuard<'_>) {
        let has_work = core.has_actions();
        drop(core);
        if has_work {
            (self.shared.notify)();
        }
    }
}

/// Resolves when a task of some size would fit in the budget; see [`Host::room`].
#[must_use = "a future does nothing unless polled"]
pub struct Room {
    host: Host,
    bytes: u64,
    /// Set once the future has registered a waker.
    key: Option<u64>,
}

impl Future for Room {
    type Output = Result<(), RejectReason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let space = &this.host.shared.space;
        let core = this.host.raw_lock();
        if let Some(decided) = room_now(&core, this.bytes) {
            drop(core);
            if let Some(key) = this.key.take() {
                space.unregister(key);
            }
            return Poll::Ready(decided);
        }
        let key = *this
            .key
            .get_or_insert_with(|| space.next_key.fetch_add(1, Ordering::Relaxed));
        space.register(key, cx.waker());
        Poll::Pending
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.host.shared.space.unregister(key);
        }
    }
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("bytes", &self.bytes).finish()
    }
}

/// Exclusive access to the [`Core`] behind a [`Host`]; wakes blocked submitters on drop when
/// bytes were released.
pub struct CoreGuard<'a> {
    core: MutexGuard<'a, Core>,
    space: &'a Space,
}

impl Deref for CoreGuard<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: the mirror never shows a room the core did not have.
        self.space
            .room
            .store(self.core.room_left(), Ordering::Relaxed);
        if self.core.take_host_wake() {
            self.space.wake();
        }
    }
}

impl std::fmt::Debug for CoreGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CoreGuard").field(&*self.core).finish()
    }
}
