//! Ordered maps that keep a bounded number of tasks in flight: [`MapIter`] for blocking code,
//! [`MapStream`] for async code, and [`Pool::map`] built on them.
//!
//! Both drive one [`Window`]: the items are submitted in input order, at most `limit` at a time
//! (a task counts from its submission until its result is handed out), and results come out in
//! input order. Each handle in the window is polled with its own waker, which notes the task's
//! position, so a result arriving out of order is taken at once: an error is seen as soon as it
//! arrives, whatever task is in front. From then on nothing more is submitted, the tasks behind
//! the failing one are cancelled, and the tasks before it still hand out their results, so the
//! output is the same whatever the timing: the results before the first failing item (in input
//! order), then its error.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};

use mirai_dispatch::{Dispatcher, RejectReason, Rejected, Room, Task};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::{Error, Mirai, TaskFn, TaskOptions};

/// Tasks in flight per daemon when no limit is given. A daemon holds the task it runs plus up
/// to [`mirai_dispatch::DEFAULT_MAX_AHEAD`] sent ahead; the rest covers the results on their
/// way back and those waiting behind a slower task in front, so trivial tasks keep the daemons
/// busy (8 per daemon ran trivial tasks on two daemons 2-3x slower in a debug build). A
/// task in the window costs the host a handle and its waker, about a hundred bytes; after an
/// error the queued ones are cancelled before they start.
const IN_FLIGHT_PER_DAEMON: usize = 32;

/// The least default limit, for a pool whose daemons have not connected yet.
const MIN_IN_FLIGHT: usize = 64;

impl Pool {
    /// The default number of tasks a [`MapIter`] or [`MapStream`] keeps in flight: 32 per
    /// daemon (connected ones, and local ones still starting), at least 64.
    fn default_in_flight(&self) -> usize {
        let connected = usize::try_from(self.status().connections).unwrap_or(usize::MAX);
        let daemons = connected.max(self.local_pids().len());
        IN_FLIGHT_PER_DAEMON
            .saturating_mul(daemons)
            .max(MIN_IN_FLIGHT)
    }

    /// Runs `task` on every item, in parallel, handing out the results in input order as they
    /// come, with at most [`in_flight`](MapIter::in_flight) tasks submitted and not yet handed
    /// out at a time (default: 32 per daemon, at least 64). So memory stays bounded whatever
    /// the number of items: ten million items never hold ten million handles. Items are taken
    /// from `items` only as room frees up, and each waits for room under the byte cap as
    /// [`Pool::submit`] does (with the [`options`](MapIter::options) given, if any).
    ///
    /// The first error ends it: once any task in flight has failed nothing more is submitted,
    /// the tasks after the failing one are cancelled, the ones before it still hand out their
    /// results, then the error comes out and the iterator ends. So the output is the results
    /// of the items before the first failing one (in input order), then its error, whatever
    /// the timing. Dropping the iterator early cancels the tasks in flight.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// fn square(x: u64) -> u64 { x * x }
    /// const SQUARE: TaskFn<u64, u64> = task!(square);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// let mut total = 0;
    /// for result in pool.map_iter(&SQUARE, 0..10_000).in_flight(64) {
    ///     total += result?;
    /// }
    /// assert_eq!(total, (0..10_000u64).map(|x| x * x).sum::<u64>());
    /// # Ok(()) }
    /// ```
    pub fn map_iter<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> MapIter<R, I::IntoIter>
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        MapIter {
            window: self.window(task, items.into_iter()),
            waker: None,
        }
    }

    /// [`Pool::map_iter`] for async code: a [`futures_core::Stream`] of the results in input
    /// order that never blocks the executor's thread (while the byte cap is full it waits as
    /// [`Pool::submit_async`] does). Same window, same end at the first error; dropping the
    /// stream early cancels the tasks in flight. It owns what it needs, so it can move into a
    /// spawned task. `items` is a plain iterator, called from `poll_next`, so it should not
    /// block; items that arrive asynchronously are better submitted with
    /// [`Pool::submit_async`].
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// fn square(x: u64) -> u64 { x * x }
    /// const SQUARE: TaskFn<u64, u64> = task!(square);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
    /// use futures_core::Stream;
    ///
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let squares = rt.block_on(async {
    ///     let mut stream = pool.map_stream(&SQUARE, 1..=5).in_flight(4);
    ///     let mut out = Vec::new();
    ///     // `StreamExt::next` of futures or tokio-stream does the same.
    ///     while let Some(result) =
    ///         std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
    ///     {
    ///         out.push(result?);
    ///     }
    ///     Ok::<_, mirai::Error>(out)
    /// })?;
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    /// # Ok(()) }
    /// ```
    pub fn map_stream<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> MapStream<R, I::IntoIter>
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        MapStream {
            window: self.window(task, items.into_iter()),
        }
    }

    /// [`Pool::map`] counting its results on `bar` (feature `progress`) instead of a bar on
    /// stderr: any [`ProgressBar`](indicatif::ProgressBar), drawn wherever its draw target says
    /// (a terminal, a [`MultiProgress`](indicatif::MultiProgress), a hidden target a test
    /// reads). As R's `mirai_map(.progress = TRUE)`. The bar's length is set as
    /// [`MapIter::progress`] says; it counts each result, finishes with its own
    /// [`ProgressFinish`](indicatif::ProgressFinish) after the last, and is abandoned where it
    /// stands at an error.
    ///
    /// ```rust,standalone_crate
    /// # use mirai::{Daemons, Registry, TaskFn, task};
    /// # fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// # const ADD: TaskFn<(i64, i64), i64> = task!(add);
    /// # fn main() -> Result<(), mirai::Error> {
    /// # mirai::daemon_main_if_requested(&Registry::new().with(&ADD));
    /// use mirai::indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    ///
    /// let pool = mirai::Daemons::new().local(2).start()?;
    /// let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
    ///     .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len}").unwrap());
    /// let out = pool.map_with_progress(&ADD, (0..100).map(|i| (i, 1)), bar.clone())?;
    /// assert_eq!(out, (1..=100).collect::<Vec<i64>>());
    /// assert_eq!((bar.position(), bar.length()), (100, Some(100)));
    /// assert!(bar.is_finished());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    pub fn map_with_progress<A, R, I>(
        &self,
        task: &TaskFn<A, R>,
        items: I,
        bar: indicatif::ProgressBar,
    ) -> Result<Vec<R>, Error>
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_iter(task, items).progress(bar).collect()
    }

    fn window<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> Window<R, I>
    where
        A: Serialize + 'static,
        R: DeserializeOwned + 'static,
        I: Iterator<Item = A>,
    {
        Window {
            dispatcher: Arc::clone(&self.dispatcher),
            function: task.name(),
            run_here: self.sync.as_ref().map(|runner| {
                let (runner, task) = (Arc::clone(runner), *task);
                Box::new(move |payload, options: &TaskOptions| {
                    runner.run(&task, payload, options, true)
                }) as RunHere
            }),
            items,
            limit: self.default_in_flight(),
            options: TaskOptions::new(),
            slots: VecDeque::new(),
            front: 0,
            waiting: None,
            wakeups: Arc::default(),
            ready: Vec::new(),
            exhausted: false,
            failed: false,
            finished: false,
            #[cfg(feature = "progress")]
            bar: None,
        }
    }
}

/// The body of [`Pool::map`]: a [`MapIter`] collected, with a progress bar on stderr under
/// the `progress` feature.
pub(super) fn map<A, R, I>(pool: &Pool, task: &TaskFn<A, R>, items: I) -> Result<Vec<R>, Error>
where
    A: Serialize + 'static,
    R: DeserializeOwned + 'static,
    I: IntoIterator<Item = A>,
{
    let results = pool.map_iter(task, items);
    #[cfg(feature = "progress")]
    let results = {
        // As before the stream existed: the bar goes away once every result is in, and stays
        // where it stopped on an error.
        let bar =
            indicatif::ProgressBar::no_length().with_finish(indicatif::ProgressFinish::AndClear);
        results.progress(bar)
    };
    results.collect()
}

/// The results of [`Pool::map_iter`], in input order; ends after the first error.
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// fn check(x: i64) -> i64 { assert!(x != 3, "three is refused"); x }
/// const CHECK: TaskFn<i64, i64> = task!(check);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&CHECK));
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let mut results = pool.map_iter(&CHECK, 0..1_000).in_flight(8);
/// for expected in 0..3 {
///     assert_eq!(results.next().unwrap()?, expected);
/// }
/// assert!(matches!(results.next(), Some(Err(mirai::Error::Task { .. }))));
/// assert!(results.next().is_none()); // nothing after the first error
/// # Ok(()) }
/// ```
pub struct MapIter<R, I> {
    window: Window<R, I>,
    /// The waker that unparks the thread calling `next`, kept while it is the same thread.
    waker: Option<(ThreadId, Waker)>,
}

/// The results of [`Pool::map_stream`], in input order, as a [`futures_core::Stream`]; ends
/// after the first error.
///
/// ```rust,standalone_crate
/// # use mirai::{Daemons, Registry, TaskFn, task};
/// fn check(x: i64) -> i64 { assert!(x != 3, "three is refused"); x }
/// const CHECK: TaskFn<i64, i64> = task!(check);
/// # fn main() -> Result<(), mirai::Error> {
/// # mirai::daemon_main_if_requested(&Registry::new().with(&CHECK));
/// use futures_core::Stream;
///
/// let pool = mirai::Daemons::new().local(2).start()?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let (values, error) = rt.block_on(async {
///     let mut stream = pool.map_stream(&CHECK, 0..1_000);
///     let mut values = Vec::new();
///     let mut error = None;
///     while let Some(result) =
///         std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
///     {
///         match result {
///             Ok(v) => values.push(v),
///             Err(e) => error = Some(e),
///         }
///     }
///     (values, error)
/// });
/// assert_eq!(values, [0, 1, 2]);
/// assert!(matches!(error, Some(mirai::Error::Task { .. })));
/// # Ok(()) }
/// ```
pub struct MapStream<R, I> {
    window: Window<R, I>,
}

impl<R, I> std::fmt::Debug for MapIter<R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.window.fmt("MapIter", f)
    }
}

impl<R, I> std::fmt::Debug for MapStream<R, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.window.fmt("MapStream", f)
    }
}

macro_rules! builders {
    ($name:ident, $make:literal, $collect:literal) => {
        impl<R, I> $name<R, I> {
            /// Keeps at most `n` tasks submitted and not yet handed out (at least 1). More lets
            /// more results wait behind a slow task in front; fewer holds less memory. A smaller
            /// number set mid-way takes effect as results are handed out.
            ///
            /// ```rust,standalone_crate
            /// # use mirai::{Daemons, Registry, TaskFn, task};
            /// # fn square(x: u64) -> u64 { x * x }
            /// # const SQUARE: TaskFn<u64, u64> = task!(square);
            /// # fn main() -> Result<(), mirai::Error> {
            /// # mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
            /// let pool = mirai::Daemons::new().local(2).start()?;
            #[doc = concat!("let results = pool.", $make, "(&SQUARE, 0..100).in_flight(4);")]
            /// assert_eq!(results.in_flight_limit(), 4);
            /// # Ok(()) }
            /// ```
            pub fn in_flight(mut self, n: usize) -> Self {
                self.window.limit = n.max(1);
                self
            }

            /// Submits every task with `options`' queue timeout, run timeout and retries (as
            /// [`Pool::submit_with`](crate::Pool::submit_with) does). Their submit timeout is
            /// not used: the window waits for room under the byte cap as long as it takes
            /// (drop it, or wrap the wait for the next result in a timeout, to give up).
            ///
            /// ```rust,standalone_crate
            /// # use mirai::{Daemons, Registry, TaskFn, task};
            /// # fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
            /// # const NAP: TaskFn<u64, u64> = task!(nap);
            /// # fn main() -> Result<(), mirai::Error> {
            /// # mirai::daemon_main_if_requested(&Registry::new().with(&NAP));
            /// use std::time::Duration;
            /// use mirai::{Error, TaskOptions};
            ///
            /// let pool = mirai::Daemons::new().local(2).start()?;
            /// let options = TaskOptions::new().run_timeout(Duration::from_millis(500)).retries(1);
            #[doc = concat!("let results = pool.", $make, "(&NAP, [1, 2, 60_000, 3]).options(options);")]
            /// let results: Vec<_> = drain(results);
            /// assert!(matches!(results[..], [Ok(1), Ok(2), Err(Error::TimedOut)]));
            /// # Ok(()) }
            #[doc = concat!("# ", $collect)]
            /// ```
            pub fn options(mut self, options: TaskOptions) -> Self {
                self.window.options = options;
                self
            }

            /// How many tasks it keeps in flight at most (see [`Self::in_flight`]).
            ///
            /// ```rust,standalone_crate
            /// # use mirai::{Daemons, Registry, TaskFn, task};
            /// # fn square(x: u64) -> u64 { x * x }
            /// # const SQUARE: TaskFn<u64, u64> = task!(square);
            /// # fn main() -> Result<(), mirai::Error> {
            /// # mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
            /// let pool = mirai::Daemons::new().start()?; // no daemons yet
            #[doc = concat!("assert_eq!(pool.", $make, "(&SQUARE, 0..100).in_flight_limit(), 64);")]
            /// # Ok(()) }
            /// ```
            pub fn in_flight_limit(&self) -> usize {
                self.window.limit
            }

            /// Counts every result handed out on `bar` (feature `progress`). Its length is set
            /// to the number of items if it has none and the items say how many they are (an
            /// exact `size_hint`), or else once the last item is submitted. The bar finishes
            /// with its own [`ProgressFinish`](indicatif::ProgressFinish) after the last
            /// result, and is abandoned where it stands at an error or an early drop.
            ///
            /// ```rust,standalone_crate
            /// # use mirai::{Daemons, Registry, TaskFn, task};
            /// # fn square(x: u64) -> u64 { x * x }
            /// # const SQUARE: TaskFn<u64, u64> = task!(square);
            /// # fn main() -> Result<(), mirai::Error> {
            /// # mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
            /// use mirai::indicatif::ProgressBar;
            /// let pool = mirai::Daemons::new().local(2).start()?;
            /// let bar = ProgressBar::hidden(); // or ProgressBar::new(n), drawn on stderr
            #[doc = concat!("let results = pool.", $make, "(&SQUARE, 0..100).progress(bar.clone());")]
            /// assert_eq!(bar.length(), Some(100));
            /// # Ok(()) }
            /// ```
            #[cfg(feature = "progress")]
            pub fn progress(mut self, bar: indicatif::ProgressBar) -> Self
            where
                I: Iterator,
            {
                if bar.length().is_none()
                    && let (low, Some(high)) = self.window.items.size_hint()
                    && low == high
                {
                    bar.set_length(self.window.front + self.window.slots.len() as u64 + high as u64);
                }
                self.window.bar = Some(bar);
                self
            }
        }
    };
}

builders!(
    MapIter,
    "map_iter",
    "fn drain<T>(results: impl Iterator<Item = T>) -> Vec<T> { results.collect() }"
);
builders!(
    MapStream,
    "map_stream",
    "fn drain<T>(mut s: impl futures_core::Stream<Item = T> + Unpin) -> Vec<T> { \
     let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(); \
     rt.block_on(async { let mut out = Vec::new(); \
     while let Some(x) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut s).poll_next(cx)).await \
     { out.push(x) } out }) }"
);

impl<R, I> Iterator for MapIter<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let me = thread::current();
        let waker = match &self.waker {
            Some((id, waker)) if *id == me.id() => waker.clone(),
            _ => {
                let waker = Waker::from(Arc::new(Unpark(me.clone())));
                self.waker = Some((me.id(), waker.clone()));
                waker
            }
        };
        let mut cx = Context::from_waker(&waker);
        loop {
            match self.window.poll_next(&mut cx) {
                Poll::Ready(item) => return item,
                // A wake-up between the poll and the park leaves its token: no wake-up is lost.
                Poll::Pending => thread::park(),
            }
        }
    }
}

impl<R, I> futures_core::Stream for MapStream<R, I>
where
    R: DeserializeOwned,
    I: Iterator + Unpin,
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().window.poll_next(cx)
    }
}

// Nothing in a window is ever pinned (results move out by value), so a stream over an `Unpin`
// iterator is `Unpin` whatever its result type.
impl<R, I: Unpin> Unpin for MapStream<R, I> {}

impl<R, I> futures_core::FusedStream for MapStream<R, I>
where
    R: DeserializeOwned,
    I: Iterator + Unpin,
    I::Item: Serialize,
{
    fn is_terminated(&self) -> bool {
        self.window.finished
    }
}

impl<R, I> std::iter::FusedIterator for MapIter<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
}

/// Wakes the thread blocked in [`MapIter::next`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Which tasks of the window have news, and whom to tell.
#[derive(Default)]
struct Wakeups(Mutex<WakeState>);

#[derive(Default)]
struct WakeState {
    /// Positions (in input order) of tasks whose outcome may be ready.
    ready: Vec<u64>,
    /// The waker of the latest poll of the window.
    waker: Option<Waker>,
}

/// The waker one task's handle is polled with: it notes the task's position, then wakes
/// whoever polls the window.
struct SlotWake {
    seq: u64,
    wakeups: Arc<Wakeups>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let waker = {
            let mut state = self
                .wakeups
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.ready.push(self.seq);
            state.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

enum Slot<R> {
    /// Submitted, not yet resolved; polled with its own [`SlotWake`].
    Pending { handle: Mirai<R>, waker: Waker },
    /// Resolved (or refused at submission), waiting for its turn.
    Done(Result<R, Error>),
}

/// The state both [`MapIter`] and [`MapStream`] drive (see the module docs).
/// Runs one task in the calling process (a synchronous pool, [`Daemons::sync`]): its id and
/// outcome, as the task's handle resolves.
///
/// [`Daemons::sync`]: crate::Daemons::sync
type RunHere = Box<
    dyn Fn(
            mirai_dispatch::Payload,
            &TaskOptions,
        ) -> Result<(mirai_dispatch::TaskId, mirai_dispatch::Outcome), Error>
        + Send
        + Sync,
>;

struct Window<R, I> {
    dispatcher: Arc<Dispatcher>,
    function: &'static str,
    /// Set in a synchronous pool: tasks run here instead of being submitted.
    run_here: Option<RunHere>,
    items: I,
    /// At most this many slots.
    limit: usize,
    /// Applied to every task.
    options: TaskOptions,
    /// The tasks submitted and not yet handed out, in input order.
    slots: VecDeque<Slot<R>>,
    /// The position (in input order) of `slots[0]`.
    front: u64,
    /// A task refused for lack of room, and the wait for that room.
    waiting: Option<(Task, Room)>,
    wakeups: Arc<Wakeups>,
    /// Spare buffer the ready positions are swapped into.
    ready: Vec<u64>,
    /// The items ran out.
    exhausted: bool,
    /// A task failed (or an item could not be submitted): nothing more is submitted.
    failed: bool,
    /// The end or the error was handed out: nothing more comes.
    finished: bool,
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl<R, I> Window<R, I> {
    fn fmt(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("function", &self.function)
            .field("in_flight", &self.slots.len())
            .field("limit", &self.limit)
            .field("handed_out", &self.front)
            .field("finished", &self.finished)
            .finish()
    }

    /// Cancels every task still in flight from `slots[from]` on, and drops them (their
    /// outcomes are forgotten).
    fn cancel_from(&mut self, from: usize) {
        for slot in self.slots.drain(from.min(self.slots.len())..) {
            if let Slot::Pending { handle, .. } = slot {
                handle.cancel();
            }
        }
    }
}

impl<R, I> Window<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<R, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        {
            let mut state = self
                .wakeups
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            std::mem::swap(&mut state.ready, &mut self.ready);
        }
        let mut ready = std::mem::take(&mut self.ready);
        for seq in ready.drain(..) {
            self.poll_slot(seq);
        }
        self.ready = ready;
        self.refill(cx);
        match self.slots.front() {
            Some(Slot::Done(_)) => {
                let Some(Slot::Done(result)) = self.slots.pop_front() else {
                    unreachable!("the front slot was just seen done")
                };
                self.front += 1;
                match result {
                    Ok(value) => {
                        #[cfg(feature = "progress")]
                        if let Some(bar) = &self.bar {
                            bar.inc(1);
                        }
                        Poll::Ready(Some(Ok(value)))
                    }
                    Err(e) => {
                        self.finish(false);
                        Poll::Ready(Some(Err(e)))
                    }
                }
            }
            Some(Slot::Pending { .. }) => Poll::Pending,
            // Empty and not over: waiting for room under the byte cap, whose wait holds `cx`.
            None if !self.failed && !self.exhausted => Poll::Pending,
            None => {
                self.finish(true);
                Poll::Ready(None)
            }
        }
    }

    /// Takes the outcome of the task at `seq` if it arrived (a stale position is ignored).
    fn poll_slot(&mut self, seq: u64) {
        let Some(index) = seq.checked_sub(self.front).map(|i| i as usize) else {
            return;
        };
        let Some(Slot::Pending { handle, waker }) = self.slots.get_mut(index) else {
            return;
        };
        if let Poll::Ready(result) = Pin::new(handle).poll(&mut Context::from_waker(waker)) {
            self.resolved(index, result);
        }
    }

    /// Records the outcome of `slots[index]`; an error stops submission and cancels the tasks
    /// after it.
    fn resolved(&mut self, index: usize, result: Result<R, Error>) {
        let failed = result.is_err();
        self.slots[index] = Slot::Done(result);
        if failed {
            self.failed = true;
            self.waiting = None;
            self.cancel_from(index + 1);
        }
    }

    /// Submits items while there is room in the window and under the byte cap.
    fn refill(&mut self, cx: &mut Context<'_>) {
        while !self.failed && self.slots.len() < self.limit {
            let task = match self.waiting.take() {
                Some((task, mut room)) => match Pin::new(&mut room).poll(cx) {
                    Poll::Pending => {
                        self.waiting = Some((task, room));
                        return;
                    }
                    Poll::Ready(Ok(())) => task,
                    Poll::Ready(Err(reason)) => return self.refused(Error::from(reason)),
                },
                None => {
                    if self.exhausted {
                        return;
                    }
                    let Some(item) = self.items.next() else {
                        self.exhausted = true;
                        #[cfg(feature = "progress")]
                        if let Some(bar) = self.bar.as_ref().filter(|b| b.length().is_none()) {
                            bar.set_length(self.front + self.slots.len() as u64);
                        }
                        return;
                    };
                    if let Some(run) = &self.run_here {
                        let ran = crate::wire::encode(&item)
                            .map_err(Error::from)
                            .and_then(|p| run(p, &self.options));
                        match ran {
                            Ok((id, outcome)) => {
                                let handle =
                                    Mirai::resolved(Arc::clone(&self.dispatcher), id, outcome);
                                self.push_handle(handle);
                                continue;
                            }
                            Err(e) => return self.refused(e),
                        }
                    }
                    let task = crate::wire::encode(&item)
                        .map_err(Error::from)
                        .and_then(|p| self.options.apply(Task::new(self.function, p)));
                    match task {
                        Ok(task) => task,
                        Err(e) => return self.refused(e),
                    }
                }
            };
            match self.dispatcher.try_submit(task) {
                Ok(id) => self.push(id),
                Err(Rejected {
                    reason: RejectReason::Full,
                    task,
                }) => {
                    let room = self.dispatcher.room(task.payload.len() as u64);
                    self.waiting = Some((task, room));
                }
                Err(rejected) => return self.refused(Error::from(rejected.reason)),
            }
        }
    }

    /// Adds the task just submitted, polled once so its waker is registered.
    fn push(&mut self, id: mirai_dispatch::TaskId) {
        self.push_handle(Mirai::new(Arc::clone(&self.dispatcher), id));
    }

    /// Adds the handle of a task just submitted (or already run), polled once.
    fn push_handle(&mut self, mut handle: Mirai<R>) {
        let seq = self.front + self.slots.len() as u64;
        let waker = Waker::from(Arc::new(SlotWake {
            seq,
            wakeups: Arc::clone(&self.wakeups),
        }));
        match Pin::new(&mut handle).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(result) => {
                self.slots.push_back(Slot::Pending { handle, waker });
                self.resolved(self.slots.len() - 1, result);
            }
            Poll::Pending => self.slots.push_back(Slot::Pending { handle, waker }),
        }
    }

    /// The next item could not be submitted: it takes its place in the output as this error.
    fn refused(&mut self, error: Error) {
        self.slots.push_back(Slot::Done(Err(error)));
        self.failed = true;
        self.waiting = None;
    }

    /// Ends the output: the tasks left in flight are cancelled; the bar finishes as its style
    /// says once every result is out, and is abandoned where it stands otherwise.
    fn finish(&mut self, complete: bool) {
        self.finished = true;
        self.waiting = None;
        self.cancel_from(0);
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            if complete {
                bar.finish_using_style();
            } else {
                bar.abandon();
            }
        }
        #[cfg(not(feature = "progress"))]
        let _ = complete;
    }
}

impl<R, I> Drop for Window<R, I> {
    fn drop(&mut self) {
        // Dropped before its end: nobody will read the rest, so the work stops.
        self.cancel_from(0);
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
