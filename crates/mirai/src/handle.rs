//! `Mirai<T>`: the handle of one submitted task, blocking or as a `Future`.
//!
//! The dispatcher exposes a blocking `wait(id, timeout)` and no waker hook, so a polled handle
//! that is not resolved yet hands that wait to a completion thread ([`crate::waiters`]), which
//! wakes the task's waker when the outcome arrives: event-driven, no polling loop.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mirai_dispatch::{CancelMode, Dispatcher, Outcome, TaskId};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::error::decode;

/// Where a completion thread leaves the outcome.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

impl Slot {
    /// Stores the outcome and wakes whoever waits for it, blocking or as a future.
    pub(crate) fn fill(&self, outcome: Outcome) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.outcome = Some(outcome);
        self.ready.notify_all();
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

/// A task's eventual result. Get it with [`Mirai::wait`], [`Mirai::wait_timeout`],
/// [`Mirai::try_result`], or `.await`.
///
/// It is also a `Future`, woken by the dispatcher when the result arrives, so it can be
/// awaited on tokio or any other executor:
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// # fn add((a, b): (i64, i64)) -> i64 { a + b }
/// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// # const NAP: TaskFn<u64, u64> = task!(nap);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
/// let pool = mirai::Daemons::new().local(1).start()?;
/// let handle = pool.submit(&ADD, (1, 2))?;
/// assert_eq!(handle.wait()?, 3);
///
/// // Awaited, here on a minimal executor that sleeps until woken.
/// struct Unpark(std::thread::Thread);
/// impl std::task::Wake for Unpark {
///     fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// }
/// let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
/// let mut cx = std::task::Context::from_waker(&waker);
/// let mut future = std::pin::pin!(pool.submit(&ADD, (2, 3))?);
/// let sum = loop {
///     match future.as_mut().poll(&mut cx) {
///         std::task::Poll::Ready(result) => break result?,
///         std::task::Poll::Pending => std::thread::park(),
///     }
/// };
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
pub struct Mirai<T> {
    dispatcher: Arc<Dispatcher>,
    id: TaskId,
    /// The outcome once taken from the dispatcher, or from the completion thread's slot.
    outcome: Option<Outcome>,
    /// Set once a completion thread owns the wait.
    slot: Option<Arc<Slot>>,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Mirai<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirai")
            .field("id", &self.id)
            .field("resolved", &self.outcome.is_some())
            .finish()
    }
}

impl<T: DeserializeOwned> Mirai<T> {
    pub(crate) fn new(dispatcher: Arc<Dispatcher>, id: TaskId) -> Self {
        Self {
            dispatcher,
            id,
            outcome: None,
            slot: None,
            _value: PhantomData,
        }
    }

    /// Fetches the outcome if it arrives within `timeout` (`None`: forever).
    fn fetch(&mut self, timeout: Option<Duration>) {
        if self.outcome.is_some() {
            return;
        }
        match &self.slot {
            None => self.outcome = self.dispatcher.wait(self.id, timeout),
            Some(slot) => {
                let state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
                let mut state = match timeout {
                    None => slot
                        .ready
                        .wait_while(state, |s| s.outcome.is_none())
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(t) => {
                        slot.ready
                            .wait_timeout_while(state, t, |s| s.outcome.is_none())
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
                self.outcome = state.outcome.take();
            }
        }
    }

    fn take(&mut self) -> Result<T, Error> {
        match self.outcome.take() {
            Some(outcome) => decode(outcome),
            None => Err(Error::TimedOut),
        }
    }

    /// Blocks until the task resolves and returns its result.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # const NAP: TaskFn<u64, u64> = task!(nap);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// assert_eq!(pool.submit(&ADD, (40, 2))?.wait()?, 42);
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self) -> Result<T, Error> {
        self.fetch(None);
        self.take()
    }

    /// Waits up to `timeout`; [`Error::TimedOut`] if the task has not resolved by then (it
    /// keeps running: cancel it with [`Mirai::cancel`] if it should not).
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # const NAP: TaskFn<u64, u64> = task!(nap);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
    /// # use std::time::Duration;
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// let mut handle = pool.submit(&NAP, 300)?;
    /// assert!(matches!(handle.wait_timeout(Duration::from_millis(1)), Err(mirai::Error::TimedOut)));
    /// assert_eq!(handle.wait_timeout(Duration::from_secs(30))?, 300);
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        self.fetch(Some(timeout));
        self.take()
    }

    /// Whether the task has resolved (never blocks).
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().start()?; // no daemons: it stays queued
    /// let mut handle = pool.submit(&ADD, (1, 2))?;
    /// assert!(!handle.is_resolved());
    /// handle.cancel();
    /// assert!(handle.is_resolved());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn is_resolved(&mut self) -> bool {
        self.fetch(Some(Duration::ZERO));
        self.outcome.is_some()
    }

    /// The result if the task has resolved, without blocking; `None` otherwise.
    ///
    /// ```
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: mirai::TaskFn<(i64, i64), i64> = mirai::task!(add);
    /// let pool = mirai::Daemons::new().start()?; // no daemons: it stays queued
    /// let mut handle = pool.submit(&ADD, (1, 2))?;
    /// assert!(handle.try_result().is_none());
    /// handle.cancel();
    /// assert!(matches!(handle.try_result(), Some(Err(mirai::Error::Cancelled))));
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn try_result(&mut self) -> Option<Result<T, Error>> {
        if self.is_resolved() {
            Some(self.take())
        } else {
            None
        }
    }
}

impl<T> Mirai<T> {
    /// Cancels the task (stopping it on its daemon); it then resolves with
    /// [`Error::Cancelled`] unless it had already finished. A running task that does not stop
    /// within the pool's [`cancel_grace`](crate::Daemons::cancel_grace) has its daemon killed.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # const NAP: TaskFn<u64, u64> = task!(nap);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// let handle = pool.submit(&NAP, 60_000)?;
    /// handle.cancel();
    /// assert!(matches!(handle.wait(), Err(mirai::Error::Cancelled)));
    /// assert_eq!(pool.submit(&ADD, (1, 1))?.wait()?, 2); // the daemon is free again
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self) {
        self.dispatcher.cancel(self.id, CancelMode::Soft);
    }

    /// Cancels the task and kills the local daemon running it at once (the pool starts a
    /// replacement); a remote daemon gets a plain cancel. It resolves with
    /// [`Error::Cancelled`] unless it had already finished.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # const NAP: TaskFn<u64, u64> = task!(nap);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
    /// # use std::time::{Duration, Instant};
    /// let pool = mirai::Daemons::new().local(1).start()?;
    /// let handle = pool.submit(&NAP, 60_000)?;
    /// while pool.status().executing == 0 {
    ///     std::thread::sleep(Duration::from_millis(5));
    /// }
    /// handle.cancel_hard();
    /// assert!(matches!(handle.wait(), Err(mirai::Error::Cancelled)));
    /// assert_eq!(pool.submit(&ADD, (1, 1))?.wait()?, 2); // on the replacement daemon
    /// assert_eq!(pool.replaced(), 1);
    /// # Ok(()) }
    /// ```
    pub fn cancel_hard(&self) {
        self.dispatcher.cancel(self.id, CancelMode::Hard);
    }
}

impl<T: DeserializeOwned> Future for Mirai<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.outcome.is_some() {
            return Poll::Ready(this.take());
        }
        let slot = match &this.slot {
            Some(slot) => Arc::clone(slot),
            None => {
                // Already resolved: no thread needed.
                this.fetch(Some(Duration::ZERO));
                if this.outcome.is_some() {
                    return Poll::Ready(this.take());
                }
                let slot = Arc::new(Slot::default());
                slot.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .waker = Some(cx.waker().clone());
                let job = crate::waiters::Job {
                    dispatcher: Arc::clone(&this.dispatcher),
                    id: this.id,
                    slot: Arc::clone(&slot),
                };
                if crate::waiters::watch(job).is_err() {
                    // No thread to spare: fall back to waiting on this one.
                    this.fetch(None);
                    return Poll::Ready(this.take());
                }
                this.slot = Some(Arc::clone(&slot));
                slot
            }
        };
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(decode(outcome)),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Waits for every handle and returns the results in order, or the first error met in order
/// (cancelling the handles not yet waited for).
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// # fn add((a, b): (i64, i64)) -> i64 { a + b }
/// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// # const NAP: TaskFn<u64, u64> = task!(nap);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let handles = (0..10).map(|i| pool.submit(&ADD, (i, i))).collect::<Result<Vec<_>, _>>()?;
/// let values: Vec<i64> = mirai::collect(handles)?;
/// assert_eq!(values, (0..10).map(|i| 2 * i).collect::<Vec<_>>());
/// # Ok(()) }
/// ```
pub fn collect<T: DeserializeOwned>(handles: Vec<Mirai<T>>) -> Result<Vec<T>, Error> {
    let mut values = Vec::with_capacity(handles.len());
    let mut rest = handles.into_iter();
    while let Some(handle) = rest.next() {
        match handle.wait() {
            Ok(v) => values.push(v),
            Err(e) => {
                rest.for_each(|h| h.cancel());
                return Err(e);
            }
        }
    }
    Ok(values)
}

/// Waits for the first of `handles` to resolve and returns its index and result; the others
/// keep running and stay in the vector, minus the winner.
///
/// Event-driven: each handle is polled as a future with a waker that signals this thread.
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// # fn add((a, b): (i64, i64)) -> i64 { a + b }
/// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// # const NAP: TaskFn<u64, u64> = task!(nap);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD).with(&NAP));
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let mut handles = vec![pool.submit(&NAP, 5_000)?, pool.submit(&NAP, 10)?];
/// let (index, first) = mirai::race(&mut handles).expect("at least one handle");
/// assert_eq!((index, first?), (1, 10));
/// assert_eq!(handles.len(), 1); // the slow one, still running
/// handles[0].cancel();
/// # Ok(()) }
/// ```
pub fn race<T: DeserializeOwned>(handles: &mut Vec<Mirai<T>>) -> Option<(usize, Result<T, Error>)> {
    use std::task::Wake;

    #[derive(Default)]
    struct Signal {
        woken: Mutex<bool>,
        ready: Condvar,
    }
    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.ready.notify_all();
        }
    }

    if handles.is_empty() {
        return None;
    }
    let signal = Arc::new(Signal::default());
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    loop {
        *signal.woken.lock().unwrap_or_else(PoisonError::into_inner) = false;
        for (i, handle) in handles.iter_mut().enumerate() {
            if let Poll::Ready(result) = Pin::new(&mut *handle).poll(&mut cx) {
                handles.remove(i);
                return Some((i, result));
            }
        }
        let woken = signal.woken.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            signal
                .ready
                .wait_while(woken, |w| !*w)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}
