//! Typed task functions: one constant names a function on both the host and the daemon.

use std::marker::PhantomData;

use mirai_dispatch::daemon::TaskContext;
use mirai_dispatch::{Payload, TaskError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Ctx;
use crate::trace::RegisterTraced as _;

/// A function the daemons run, addressed by name, with a serde argument and result.
///
/// Make one with [`task!`](crate::task!) from a `fn(A) -> R`, or with
/// [`task_ctx!`](crate::task_ctx!) from a `fn(&Ctx, A) -> R` that sees its task's
/// [`Ctx`]; register it with [`Registry::with`] and submit it with
/// [`Pool::submit`](crate::Pool::submit). Both kinds have the same type, so the pool's API takes
/// either.
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
    body: Body<A, R>,
    /// The daemon's side, monomorphized where the serde bounds are known: decode the argument,
    /// call, encode the value. The same code runs a task in [sync mode](crate::Daemons::sync).
    run: Runner<A, R>,
    _types: PhantomData<fn(A) -> R>,
}

/// The user's function, with or without the context.
enum Body<A, R> {
    Plain(fn(A) -> R),
    Ctx(fn(&Ctx, A) -> R),
}

impl<A, R> Clone for Body<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Body<A, R> {}

type Runner<A, R> = fn(Body<A, R>, Payload, &TaskContext) -> Result<Payload, TaskError>;

/// Runs `body` as a daemon does: the argument decoded from `payload` (freed before the call),
/// the value encoded for the host.
fn run_body<A: DeserializeOwned, R: Serialize>(
    body: Body<A, R>,
    payload: Payload,
    ctx: &TaskContext,
) -> Result<Payload, TaskError> {
    let arg: A = crate::wire::decode(payload.to_bytes())
        .map_err(|e| TaskError::new(format!("cannot decode the argument: {e}")))?;
    // What the argument did not keep a slice of is freed now: a large argument decoded inline
    // is not held twice while the function runs.
    drop(payload);
    let value = match body {
        Body::Plain(f) => f(arg),
        Body::Ctx(f) => f(&Ctx::from_context(ctx), arg),
    };
    // A `Shared` in the result hands its region over to the host, whose handle unlinks it;
    // this daemon's handle, dropped with `value`, no longer does.
    mori_shm::handing_over(|| crate::wire::encode(&value))
        .map_err(|e| TaskError::new(format!("cannot encode the value: {e}")))
}

impl<A, R> TaskFn<A, R> {
    /// A task named `name` running `f`; prefer [`task!`](crate::task!), which takes the name
    /// from the function. The serde bounds are those a daemon needs to run it.
    ///
    /// ```
    /// fn add((a, b): (i64, i64)) -> i64 { a + b }
    /// const PLUS: mirai::TaskFn<(i64, i64), i64> = mirai::TaskFn::new("plus", add);
    /// assert_eq!(PLUS.name(), "plus");
    /// ```
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        Self {
            name,
            body: Body::Plain(f),
            run: run_body::<A, R>,
            _types: PhantomData,
        }
    }

    /// A task named `name` running `f` with its task's [`Ctx`]; prefer
    /// [`task_ctx!`](crate::task_ctx!), which takes the name from the function.
    ///
    /// ```
    /// fn attempt(ctx: &mirai::Ctx, _: ()) -> u32 { ctx.attempt() }
    /// const ATTEMPT: mirai::TaskFn<(), u32> = mirai::TaskFn::with_ctx("attempt", attempt);
    /// assert!(ATTEMPT.takes_ctx());
    /// assert_eq!(ATTEMPT.call(()), 0);
    /// ```
    pub const fn with_ctx(name: &'static str, f: fn(&Ctx, A) -> R) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        Self {
            name,
            body: Body::Ctx(f),
            run: run_body::<A, R>,
            _types: PhantomData,
        }
    }

    /// Whether the function takes a [`Ctx`] (made by [`task_ctx!`](crate::task_ctx!)).
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// assert!(!mirai::task!(neg).takes_ctx());
    /// ```
    pub fn takes_ctx(&self) -> bool {
        matches!(self.body, Body::Ctx(_))
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

    /// Runs the function here, in this process. A context-aware function gets
    /// [`Ctx::unseeded`]; use [`TaskFn::call_with`] to choose its context.
    ///
    /// ```
    /// fn neg(x: i64) -> i64 { -x }
    /// assert_eq!(mirai::task!(neg).call(5), -5);
    /// ```
    pub fn call(&self, arg: A) -> R {
        match self.body {
            Body::Plain(f) => f(arg),
            Body::Ctx(f) => f(&Ctx::unseeded(), arg),
        }
    }

    /// Runs the function here with the context `ctx` (which a plain function ignores), e.g.
    /// [`Ctx::local`] to get the random numbers the task gets in a seeded pool.
    ///
    /// ```
    /// use rand_core::Rng;
    /// fn draw(ctx: &mirai::Ctx, _: ()) -> u64 { ctx.rng().next_u64() }
    /// let draw = mirai::task_ctx!(draw);
    /// let ctx = mirai::Ctx::local(42, 0);
    /// assert_eq!(draw.call_with(&ctx, ()), mirai::Ctx::local(42, 0).rng().next_u64());
    /// ```
    pub fn call_with(&self, ctx: &Ctx, arg: A) -> R {
        match self.body {
            Body::Plain(f) => f(arg),
            Body::Ctx(f) => f(ctx, arg),
        }
    }

    /// Runs the task on an encoded argument exactly as a daemon's registry does, panics not
    /// caught (see [`mirai_dispatch::daemon::run_caught`]).
    pub(crate) fn run(&self, payload: Payload, ctx: &TaskContext) -> Result<Payload, TaskError> {
        (self.run)(self.body, payload, ctx)
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

/// Makes a [`TaskFn`] from the path of a function `fn(&Ctx, A) -> R`, named after the
/// function: on a daemon (and in [sync mode](crate::Daemons::sync)) it receives its task's
/// [`Ctx`](crate::Ctx): random stream, cancellation, id, attempt and trace context.
///
/// ```
/// use mirai::{Ctx, TaskFn, task_ctx};
/// fn which(ctx: &Ctx, _: ()) -> (u64, u32) { (ctx.task_id(), ctx.attempt()) }
/// const WHICH: TaskFn<(), (u64, u32)> = task_ctx!(which);
/// assert_eq!(WHICH.name(), "which");
/// assert_eq!(WHICH.call_with(&Ctx::local(0, 7), ()), (7, 0));
/// ```
#[macro_export]
macro_rules! task_ctx {
    ($f:path) => {
        $crate::TaskFn::with_ctx(stringify!($f), $f)
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
    /// [`Error::Task`](crate::Error::Task) on the host, with the message and backtrace. A task
    /// made with [`task_ctx!`](crate::task_ctx!) gets its [`Ctx`] from the daemon.
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
        let (body, run) = (task.body, task.run);
        self.inner
            .register_traced(task.name, move |payload: Payload, ctx: &TaskContext| {
                run(body, payload, ctx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use mirai_dispatch::TaskId;

    /// Id (plus the argument), attempt, trace and stream.
    type Seen = (u64, u32, Option<Vec<u8>>, Option<u64>);

    fn seen(ctx: &Ctx, add: u64) -> Seen {
        (
            ctx.task_id() + add,
            ctx.attempt(),
            ctx.trace().map(<[u8]>::to_vec),
            ctx.stream(),
        )
    }
    const SEEN: TaskFn<u64, Seen> = crate::task_ctx!(seen);

    /// The registry hands the daemon's context (id, attempt, trace, stream) to the function.
    #[test]
    fn a_registered_ctx_task_sees_the_daemons_context() {
        let registry = Registry::new().with(&SEEN);
        let ctx = TaskContext::new(TaskId(41), Some(9))
            .with_attempt(2)
            .with_trace(Some(b"00-abc-01".to_vec()));
        let arg = crate::wire::encode(&1u64).unwrap();
        let out = registry
            .inner()
            .run("seen", &arg.to_bytes(), &ctx)
            .expect("ran");
        let value: Seen = crate::wire::decode(out.to_bytes()).unwrap();
        assert_eq!(value, (42, 2, Some(b"00-abc-01".to_vec()), Some(9)));
    }
}
