//! What a task function sees of its task: [`Ctx`], its random streams ([`TaskRng`]) and
//! cooperative cancellation ([`Cancelled`]).
//!
//! # The random streams, and why this generator
//!
//! A pool seeded with [`Daemons::seed`](crate::Daemons::seed) numbers its ordinary submissions
//! 0, 1, 2, … in the order they are accepted (neither [`Pool::everywhere`](crate::Pool::everywhere)
//! copies nor refused submissions count). Task number `n` gets the stream seed
//! [`stream_seed(seed, n)`](mirai_dispatch::rng::stream_seed): the `(n + 1)`-th output of a
//! SplitMix64 generator seeded with the pool's seed, computed directly. The seed is fixed when
//! the task is accepted and travels with it, so a retry on another daemon, a task sent ahead
//! and asked back, or any number of daemons in any order all give the task the same stream; so
//! does [sync mode](crate::Daemons::sync), which numbers its submissions the same way.
//!
//! The generator [`Ctx::rng`] hands out is xoshiro256++ (Blackman and Vigna), its 256-bit state
//! filled by SplitMix64 from that stream seed, as its authors recommend. R's mirai gives each
//! task an L'Ecuyer-CMRG stream, reached by stepping a jump-ahead from one stream to the next;
//! here a task's stream is computed in O(1) from the pool's seed and its number alone, with no
//! state passed from task to task, so the dispatcher never has to step through the streams of
//! earlier tasks and a daemon never needs more than the one 64-bit number in the task message.
//! Streams start at pseudo-random points of a 2^256 − 1 period, so two tasks' sequences
//! overlapping within any practical length is vanishingly unlikely; xoshiro256++ passes
//! BigCrush and PractRand and makes a 64-bit number in about a nanosecond. It is not a
//! cryptographic generator (it does not implement `CryptoRng`): use `getrandom` for secrets.
//!
//! A pool without a seed gives its tasks no stream: their generators draw fresh entropy from
//! the operating system, so two runs (and two pools) differ.

use std::sync::atomic::{AtomicU64, Ordering};

use mirai_dispatch::TaskId;
use mirai_dispatch::daemon::{CancelToken, TaskContext};
use mirai_dispatch::rng::{mix, stream_seed};
use rand_core::{Infallible, SeedableRng, TryRng, utils};
use serde::{Deserialize, Serialize};

/// The context a task function of the form `fn(&Ctx, A) -> R` receives (made with
/// [`task_ctx!`](crate::task_ctx!)): its reproducible random stream, cooperative cancellation,
/// its id, its attempt number and the submitter's trace context.
///
/// ```
/// use mirai::{Cancelled, Ctx, TaskFn, task_ctx};
/// use rand_core::Rng;
///
/// fn noise(ctx: &Ctx, n: usize) -> Result<Vec<u64>, Cancelled> {
///     let mut rng = ctx.rng();
///     let mut out = Vec::with_capacity(n);
///     for _ in 0..n {
///         ctx.check()?; // stops here once the task is cancelled
///         out.push(rng.next_u64());
///     }
///     Ok(out)
/// }
/// const NOISE: TaskFn<usize, Result<Vec<u64>, Cancelled>> = task_ctx!(noise);
///
/// // Locally, as the task submitted 4th to a pool seeded with 42 would run:
/// let a = NOISE.call_with(&Ctx::local(42, 3), 5)?;
/// let b = NOISE.call_with(&Ctx::local(42, 3), 5)?;
/// assert_eq!(a, b);
/// assert_ne!(a, NOISE.call_with(&Ctx::local(42, 4), 5)?);
/// # Ok::<(), Cancelled>(())
/// ```
#[derive(Debug)]
pub struct Ctx {
    inner: TaskContext,
    /// How many generators [`Ctx::rng`] has handed out.
    handed: AtomicU64,
}

impl Ctx {
    pub(crate) fn from_context(ctx: &TaskContext) -> Self {
        Self {
            inner: ctx.clone(),
            handed: AtomicU64::new(0),
        }
    }

    /// The context of the task numbered `index` (its submission order, from 0) in a pool
    /// seeded with `seed`, on its first attempt: [`Ctx::rng`] then gives the numbers that task
    /// gets on a daemon. For running and testing a task function in this process
    /// ([`TaskFn::call_with`](crate::TaskFn::call_with)). Its task id is `index` too (in a pool
    /// the two differ once [`Pool::everywhere`](crate::Pool::everywhere) has taken ids).
    ///
    /// ```
    /// use rand_core::Rng;
    /// let (a, b) = (mirai::Ctx::local(7, 0), mirai::Ctx::local(7, 0));
    /// assert_eq!(a.rng().next_u64(), b.rng().next_u64());
    /// assert_eq!((a.task_id(), a.attempt()), (0, 0));
    /// ```
    pub fn local(seed: u64, index: u64) -> Self {
        Self::from_context(&TaskContext::new(
            TaskId(index),
            Some(stream_seed(seed, index)),
        ))
    }

    /// A context without a stream (as tasks of an unseeded pool get): [`Ctx::rng`] draws fresh
    /// entropy. [`TaskFn::call`](crate::TaskFn::call) runs a context-aware task with one.
    ///
    /// ```
    /// use rand_core::Rng;
    /// let ctx = mirai::Ctx::unseeded();
    /// assert_eq!(ctx.stream(), None);
    /// assert_ne!(ctx.rng().next_u64(), ctx.rng().next_u64());
    /// ```
    pub fn unseeded() -> Self {
        Self::from_context(&TaskContext::new(TaskId(0), None))
    }

    /// A new generator for this task. Each call gives the next sub-stream of the task's stream
    /// (the `k`-th call's generator is seeded with
    /// [`stream_seed(stream, k)`](mirai_dispatch::rng::stream_seed)), so the `k`-th call in a
    /// task gives the same numbers on every run: take one generator and keep it, or take one
    /// per independent piece of work. Without a stream (an unseeded pool) each generator is
    /// seeded from the operating system's entropy. See the [module docs](self) for the choice.
    ///
    /// ```
    /// use rand_core::Rng;
    /// let ctx = mirai::Ctx::local(1, 0);
    /// let (mut first, mut second) = (ctx.rng(), ctx.rng());
    /// assert_ne!(first.next_u64(), second.next_u64());
    /// let again = mirai::Ctx::local(1, 0);
    /// assert_eq!(again.rng(), mirai::Ctx::local(1, 0).rng());
    /// ```
    pub fn rng(&self) -> TaskRng {
        let k = self.handed.fetch_add(1, Ordering::Relaxed);
        match self.inner.rng_seed() {
            Some(stream) => TaskRng::seed_from_u64(stream_seed(stream, k)),
            None => TaskRng::from_entropy(),
        }
    }

    /// The task's stream seed (`None` in an unseeded pool): what [`Ctx::rng`] derives from.
    ///
    /// ```
    /// use mirai_dispatch::rng::stream_seed;
    /// assert_eq!(mirai::Ctx::local(42, 3).stream(), Some(stream_seed(42, 3)));
    /// ```
    pub fn stream(&self) -> Option<u64> {
        self.inner.rng_seed()
    }

    /// Whether the task was cancelled ([`Mirai::cancel`](crate::Mirai::cancel)). Cheap enough
    /// for a hot loop: after the first call it is one atomic load.
    ///
    /// ```
    /// let ctx = mirai::Ctx::unseeded();
    /// assert!(!ctx.is_cancelled());
    /// ctx.cancel_token().cancel();
    /// assert!(ctx.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// `Err(Cancelled)` once the task is cancelled, for `?` in a function returning a
    /// `Result<_, Cancelled>` (or an error type with `From<Cancelled>`). A task that returns
    /// after its cancel resolves [`Error::Cancelled`](crate::Error::Cancelled) whatever it
    /// returned, and its daemon serves on: no kill, no replacement.
    ///
    /// ```
    /// use mirai::{Cancelled, Ctx};
    /// fn count(ctx: &Ctx) -> Result<u64, Cancelled> {
    ///     let mut n = 0;
    ///     loop {
    ///         ctx.check()?;
    ///         n += 1;
    ///         if n == 3 { ctx.cancel_token().cancel(); }
    ///     }
    /// }
    /// assert_eq!(count(&Ctx::unseeded()), Err(Cancelled));
    /// ```
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// The token a cancel sets: a clone can be handed to threads the task starts. Cancelling
    /// it here cancels only this task's view (e.g. to test a function locally).
    ///
    /// ```
    /// let ctx = mirai::Ctx::unseeded();
    /// let token = ctx.cancel_token().clone();
    /// std::thread::spawn(move || token.cancel()).join().unwrap();
    /// assert!(ctx.check().is_err());
    /// ```
    pub fn cancel_token(&self) -> &CancelToken {
        self.inner.cancel_token()
    }

    /// The task's id: unique in its pool, in submission order (the pool's first task is 0).
    ///
    /// ```
    /// assert_eq!(mirai::Ctx::local(0, 9).task_id(), 9);
    /// ```
    pub fn task_id(&self) -> u64 {
        self.inner.task().0
    }

    /// 0 the first time the task runs; one more for each retry after its daemon was lost
    /// ([`TaskOptions::retries`](crate::TaskOptions::retries)).
    ///
    /// ```
    /// assert_eq!(mirai::Ctx::local(0, 0).attempt(), 0);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.inner.attempt()
    }

    /// The trace context the submitter attached, as sent (e.g. a W3C `traceparent`); `None`
    /// when there is none.
    ///
    /// ```
    /// assert_eq!(mirai::Ctx::unseeded().trace(), None);
    /// ```
    pub fn trace(&self) -> Option<&[u8]> {
        self.inner.trace()
    }

    /// The dispatcher's context this was made from, for code built on
    /// [`mirai_dispatch`] directly.
    ///
    /// ```
    /// assert_eq!(mirai::Ctx::local(0, 5).context().task().0, 5);
    /// ```
    pub fn context(&self) -> &TaskContext {
        &self.inner
    }
}

/// The error [`Ctx::check`] returns once the task is cancelled.
///
/// ```
/// assert_eq!(mirai::Cancelled.to_string(), "task cancelled");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, thiserror::Error,
)]
#[error("task cancelled")]
pub struct Cancelled;

/// A task's random generator: xoshiro256++, seeded through SplitMix64 (see the
/// [module docs](crate::ctx) for why). It implements `rand_core`'s [`Rng`](rand_core::Rng)
/// (through [`TryRng`], with the deprecated `RngCore` name too) and [`SeedableRng`], so the
/// `rand` crate's distributions take it.
///
/// ```
/// use mirai::TaskRng;
/// use rand_core::{Rng, SeedableRng};
/// let mut a = TaskRng::seed_from_u64(42);
/// let mut b = TaskRng::seed_from_u64(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let mut bytes = [0u8; 5];
/// a.fill_bytes(&mut bytes);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRng {
    s: [u64; 4],
}

impl TaskRng {
    /// A generator seeded from the operating system's entropy.
    fn from_entropy() -> Self {
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            // No OS entropy (a sandbox without getrandom): the clock, the pid and a counter
            // still differ between pools and calls.
            static CALLS: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let x = nanos ^ u64::from(std::process::id()).rotate_left(32);
            return Self::seed_from_u64(x ^ mix(CALLS.fetch_add(1, Ordering::Relaxed)));
        }
        Self::from_seed(seed)
    }

    fn step(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
}

impl SeedableRng for TaskRng {
    type Seed = [u8; 32];

    /// The state as four little-endian words; the all-zero seed (a fixed point of xoshiro) is
    /// replaced by `seed_from_u64(0)`.
    fn from_seed(seed: [u8; 32]) -> Self {
        let s: [u64; 4] = utils::read_words(&seed);
        if s == [0; 4] {
            return Self::seed_from_u64(0);
        }
        Self { s }
    }

    /// The state filled by four SplitMix64 outputs from `state` (never all zero: SplitMix64's
    /// output function is a bijection and its four inputs differ).
    fn seed_from_u64(state: u64) -> Self {
        Self {
            s: std::array::from_fn(|i| stream_seed(state, i as u64)),
        }
    }
}

impl TryRng for TaskRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.step() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.step())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        utils::fill_bytes_via_next_word(dst, || self.try_next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    /// The reference implementation's outputs for the state [1, 2, 3, 4].
    #[test]
    fn matches_the_xoshiro256plusplus_reference() {
        let mut seed = [0u8; 32];
        for (i, word) in seed.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&(i as u64 + 1).to_le_bytes());
        }
        let mut rng = TaskRng::from_seed(seed);
        let expected: [u64; 10] = [
            41_943_041,
            58_720_359,
            3_588_806_011_781_223,
            3_591_011_842_654_386,
            9_228_616_714_210_784_205,
            9_973_669_472_204_895_162,
            14_011_001_112_246_962_877,
            12_406_186_145_184_390_807,
            15_849_039_046_786_891_736,
            10_450_023_813_501_588_000,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn the_zero_seed_is_not_a_fixed_point() {
        let mut rng = TaskRng::from_seed([0; 32]);
        assert_ne!(rng.next_u64() | rng.next_u64(), 0);
    }

    #[test]
    fn unseeded_generators_differ() {
        let ctx = Ctx::unseeded();
        assert_ne!(ctx.rng(), ctx.rng());
        assert_ne!(Ctx::unseeded().rng(), Ctx::unseeded().rng());
    }

    #[test]
    fn the_kth_generator_of_a_task_is_the_same_on_every_run() {
        let a = Ctx::local(5, 2);
        let b = Ctx::local(5, 2);
        let firsts = (a.rng(), b.rng());
        assert_eq!(firsts.0, firsts.1);
        assert_eq!(a.rng(), b.rng());
        assert_ne!(a.rng(), firsts.0);
    }
}
