//! `Mirai<T>`: the handle of one submitted task, blocking or as a `Future`.
//!
//! Polled, a handle registers its task's waker with the dispatcher, and the thread that
//! records the result wakes exactly that waker: one wake-up per task, no thread in between,
//! no polling loop. Blocking waits sleep on the dispatcher's condition variable. A handle
//! dropped before its result was taken tells the dispatcher to forget the task, so results
//! nobody will read are never kept.

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

/// A task's eventual result. Get it with [`Mirai::wait`], [`Mirai::wait_timeout`],
/// [`Mirai::try_result`], or `.await`.
///
/// **Dropping a handle does not cancel its task**, as in R's mirai: a queued or running task
/// still runs to the end (fire and forget), but its result is discarded as soon as it arrives,
/// and never counts against [`max_uncollected_bytes`](crate::Daemons). A result that had already
/// arrived is freed at once. Call [`Mirai::cancel`] first if the work itself should stop; this
/// also applies to a pending `.await` dropped by `select!` or a timeout.
///
/// It is also a `Future`: the result's arrival wakes the waker of its latest poll, once, so it
/// can be awaited on tokio or any other executor:
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
    /// The outcome once taken from the dispatcher, until decoded.
    outcome: Option<Outcome>,
    /// The outcome was taken from the dispatcher: nothing to forget on drop.
    taken: bool,
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
            taken: false,
            _value: PhantomData,
        }
    }

    /// A handle whose task already resolved with `outcome` in this process
    /// ([sync mode](crate::Daemons::sync)): nothing to fetch, forget or cancel in the
    /// dispatcher, which never saw the task (a cancel of an id it does not know is ignored).
    pub(crate) fn resolved(dispatcher: Arc<Dispatcher>, id: TaskId, outcome: Outcome) -> Self {
        Self {
            dispatcher,
            id,
            outcome: Some(outcome),
            taken: true,
            _value: PhantomData,
        }
    }

    /// Fetches the outcome if it arrives within `timeout` (`None`: forever).
    fn fetch(&mut self, timeout: Option<Duration>) {
        if self.taken {
            return;
        }
        self.outcome = self.dispatcher.wait(self.id, timeout);
        self.taken = self.outcome.is_some();
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

    /// Whether the task has resolved (never blocks); still `true` after its result was taken.
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
        // Still true once the result has been taken.
        self.taken
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
    /// // Taken: resolved, with nothing more to hand over.
    /// assert!(handle.is_resolved() && handle.try_result().is_none());
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn try_result(&mut self) -> Option<Result<T, Error>> {
        self.fetch(Some(Duration::ZERO));
        self.outcome.take().map(decode)
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
    /// # use std::time::Duration;
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

impl<T> Drop for Mirai<T> {
    fn drop(&mut self) {
        if !self.taken {
            self.dispatcher.forget(self.id);
        }
    }
}

impl<T: DeserializeOwned> Future for Mirai<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.taken {
            this.outcome = this.dispatcher.poll_outcome(this.id, cx.waker());
            this.taken = this.outcome.is_some();
        }
        if this.taken {
            Poll::Ready(this.take())
        } else {
            Poll::Pending
        }
    }
}

/// Waits for every handle and returns the results in order, or the first error met in order
/// (cancelling the handles not yet waited for). [`collect_with_progress`] counts them on a
/// progress bar.
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
    collect_each(handles, || {})
}

/// [`collect`], calling `each` after every result taken.
fn collect_each<T: DeserializeOwned>(
    handles: Vec<Mirai<T>>,
    mut each: impl FnMut(),
) -> Result<Vec<T>, Error> {
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
        each();
    }
    Ok(values)
}

/// [`collect`] counting each result on `bar` (feature `progress`), as
/// [`Pool::map_with_progress`](crate::Pool::map_with_progress) does: a bar without a length
/// gets the number of handles; it finishes with its own
/// [`ProgressFinish`](indicatif::ProgressFinish) once every result is in, and is abandoned
/// where it stands at the first error (the handles not yet waited for are cancelled).
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// # fn add((a, b): (i64, i64)) -> i64 { a + b }
/// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let handles = (0..10).map(|i| pool.submit(&ADD, (i, i))).collect::<Result<Vec<_>, _>>()?;
/// let bar = mirai::indicatif::ProgressBar::hidden(); // or ProgressBar::new(10) on stderr
/// let values: Vec<i64> = mirai::collect_with_progress(handles, bar.clone())?;
/// assert_eq!(values, (0..10).map(|i| 2 * i).collect::<Vec<_>>());
/// assert_eq!((bar.position(), bar.length()), (10, Some(10)));
/// # Ok(()) }
/// ```
#[cfg(feature = "progress")]
pub fn collect_with_progress<T: DeserializeOwned>(
    handles: Vec<Mirai<T>>,
    bar: indicatif::ProgressBar,
) -> Result<Vec<T>, Error> {
    if bar.length().is_none() {
        bar.set_length(handles.len() as u64);
    }
    match collect_each(handles, || bar.inc(1)) {
        Ok(values) => {
            bar.finish_using_style();
            Ok(values)
        }
        Err(e) => {
            bar.abandon();
            Err(e)
        }
    }
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
