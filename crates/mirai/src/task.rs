//! Typed task functions: one constant names a function on both the host and the daemon.

use std::marker::PhantomData;

use mirai_dispatch::daemon::TaskContext;
use mirai_dispatch::{Payload, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::trace::RegisterTraced as _;

/// A function the daemons run, addressed by name, with a serde argument and result.
///
/// Make one with [`task!`](crate::task!); register it with [`Registry::with`] and submit it with
/// [`Pool::submit`](crate::Pool::submit).
///
/// ```
/// use mirai::{TaskFn, task};
/// fn double(x: u32) -> u32 { x * 2 }
/// const DOUBLE: TaskFn<u32, u32> = task!(double);
/// assert_eq!(DOUBLE.name(), "double");
/// assert_eq!(DOUBLE.call(21), 42);
/// ```
pub struct TaskFn<A, R> {
    name: &'static str,
    f: fn(A) -> R,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> TaskFn<A, R> {
    /// A task named `name` running `f`; prefer [`task!`](crate::task!), which takes the name
    /// from the function.
    ///
    /// ```
    /// fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// const PLUS: mirai::TaskFn<(i64, i64), i64> = mirai::TaskFn::new("plus", add);
    /// assert_eq!(PLUS.name(), "plus");
    /// ```
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self {
        Self {
            name,
            f,
            _types: PhantomData,
        }
    }

    /// The name daemons know it by.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// assert_eq!(mirai::task!(neg).name(), "neg");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the function here, in this process.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// assert_eq!(mirai::task!(neg).call(5), -5);
    /// ```
    pub fn call(&self, arg: A) -> R {
        (self.f)(arg)
    }

    /// This call as a dispatcher task, for code that drives a
    /// [`mirai_dispatch::Dispatcher`] itself: the argument is encoded as the pool's daemons
    /// decode it (see [`TaskFn::decode`] for the way back).
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// let task = mirai::task!(neg).to_task(&5)?;
    /// assert_eq!(task.function, "neg");
    /// # Ok::<(), mirai::Error>(())
    /// ```
    pub fn to_task(&self, arg: &A) -> Result<mirai_dispatch::Task, crate::Error>
    where
        A: Serialize,
    {
        Ok(mirai_dispatch::Task::new(
            self.name,
            crate::wire::encode(arg)?,
        ))
    }

    /// The typed result of this function from a dispatcher's outcome (a task made by
    /// [`TaskFn::to_task`]); a failed outcome becomes its [`Error`](crate::Error).
    ///
    /// ```
    /// use mirai_dispatch::Outcome;
    /// fn neg(x: i64) -> i64 { -x }
    /// let neg = mirai::task!(neg);
    /// assert!(matches!(neg.decode(Outcome::Cancelled), Err(mirai::Error::Cancelled)));
    /// ```
    pub fn decode(&self, outcome: mirai_dispatch::Outcome) -> Result<R, crate::Error>
    where
        R: DeserializeOwned,
    {
        crate::error::decode(outcome)
    }
}

impl<A, R> Clone for TaskFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for TaskFn<A, R> {}

impl<A, R> std::fmt::Debug for TaskFn<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFn").field("name", &self.name).finish()
    }
}

/// Makes a [`TaskFn`] from a function path, named after the function.
///
/// ```
/// fn square(x: i64) -> i64 { x * x }
/// const SQUARE: mirai::TaskFn<i64, i64> = mirai::task!(square);
/// assert_eq!(SQUARE.name(), "square");
/// ```
#[macro_export]
macro_rules! task {
    ($f:path) => {
        $crate::TaskFn::new(stringify!($f), $f)
    };
}

/// The functions a daemon can run.
///
/// ```
/// use mirai::{Registry, TaskFn, task};
/// fn add((a, b): (i64, i64)) -> i64 { a + b }
/// const ADD: TaskFn<(i64, i64), i64> = task!(add);
/// let registry = Registry::new().with(&ADD);
/// assert!(registry.contains(&ADD));
/// ```
#[derive(Default)]
pub struct Registry {
    inner: mirai_dispatch::daemon::Registry,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// assert!(!mirai::Registry::new().contains(&mirai::task!(neg)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `task` (replacing a function of the same name). A panic in it becomes
    /// [`Error::Task`](crate::Error::Task) on the host, with the message and backtrace.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// const NEG: mirai::TaskFn<i64, i64> = mirai::task!(neg);
    /// let registry = mirai::Registry::new().with(&NEG);
    /// assert!(registry.contains(&NEG));
    /// ```
    pub fn with<A, R>(mut self, task: &TaskFn<A, R>) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let f = task.f;
        self.inner
            .register_traced(task.name, move |payload: Payload, _: &TaskContext| {
                let arg: A = crate::wire::decode(payload.to_bytes())
                    .map_err(|e| TaskError::new(format!("cannot decode the argument: {e}")))?;
                // What the argument did not keep a slice of is freed now: a large argument
                // decoded inline is not held twice while the function runs.
                drop(payload);
                let value = f(arg);
                // A `Shared` in the result hands its region over to the host, whose handle
                // unlinks it; this daemon's handle, dropped with `value`, no longer does.
                mori_shm::handing_over(|| crate::wire::encode(&value))
                    .map_err(|e| TaskError::new(format!("cannot encode the value: {e}")))
            });
        self
    }

    /// Whether `task` is registered.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// fn abs(x: i64) -> i64 { x.abs() }
    /// let registry = mirai::Registry::new().with(&mirai::task!(neg));
    /// assert!(!registry.contains(&mirai::task!(abs)));
    /// ```
    pub fn contains<A, R>(&self, task: &TaskFn<A, R>) -> bool {
        self.inner.contains(task.name)
    }

    pub(crate) fn inner(&self) -> &mirai_dispatch::daemon::Registry {
        &self.inner
    }
}
