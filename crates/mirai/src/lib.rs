#![doc = include_str!("../README.md")]
//! Async tasks on worker processes behind a byte-capped queue.
//!
//! Why this crate: it joins the dispatcher ([`mirai_dispatch`]) and shared memory
//! ([`mori_shm`]) into one typed API. Functions are registered by name on both sides through a
//! [`TaskFn`] constant, so the host cannot misspell a name or pass the wrong argument type.
//!
//! Local daemons are child processes that re-execute the current binary: call
//! [`daemon_main_if_requested`] first thing in `main`, and the child becomes a daemon.
//!
//! ```rust,standalone_crate
//! use mirai::{Daemons, Registry, TaskFn, task};
//!
//! fn add((a, b): (i64, i64)) -> i64 { a + b }
//! const ADD: TaskFn<(i64, i64), i64> = task!(add);
//!
//! fn main() -> Result<(), mirai::Error> {
//!     let registry = Registry::new().with(&ADD);
//!     mirai::daemon_main_if_requested(&registry);
//!     let pool = Daemons::new().local(2).start()?;
//!     assert_eq!(pool.submit(&ADD, (1, 2))?.wait()?, 3);
//!     Ok(())
//! }
//! ```
//!
//! Many items: [`Pool::map`] returns every result in input order; [`Pool::map_iter`] (and
//! [`Pool::map_stream`], a `Stream` for async code) hands them out as they come with a bounded
//! number of tasks in flight, so the host's memory does not grow with the number of items;
//! [`Pool::map_with_progress`] and [`collect_with_progress`] count results on a progress bar
//! the caller supplies (feature `progress`, on by default).
//!
//! Feature `tls` (on by default): pools and daemons on `tls+tcp://`, the transport remote
//! daemons use (plain tcp needs an explicit opt-in, and the ssh and Slurm launchers pin the
//! pool's certificate), so every launcher works without choosing features. A pool that only
//! runs local daemons can turn default features off and build no TLS stack (rustls, ring, rcgen);
//! a `tls+tcp://` address is then [`Error::TlsDisabled`] at start.
//!
//! ```rust,standalone_crate
//! use mirai::{Daemons, Registry, TaskFn, task};
//!
//! fn square(x: u64) -> u64 { x * x }
//! const SQUARE: TaskFn<u64, u64> = task!(square);
//!
//! fn main() -> Result<(), mirai::Error> {
//!     mirai::daemon_main_if_requested(&Registry::new().with(&SQUARE));
//!     let pool = Daemons::new().local(2).start()?;
//!     assert_eq!(pool.map(&SQUARE, 1..=3)?, [1, 4, 9]);
//!     // Items taken as room frees up, at most 128 tasks in flight at a time.
//!     let mut sum = 0;
//!     for square in pool.map_iter(&SQUARE, 0..100_000u64).in_flight(128) {
//!         sum += square? % 7;
//!     }
//!     assert_eq!(sum, (0..100_000u64).map(|x| x * x % 7).sum::<u64>());
//!     Ok(())
//! }
//! ```
//!
//! # Tasks that see their context
//!
//! A function `fn(&Ctx, A) -> R`, made into a [`TaskFn`] with [`task_ctx!`], receives its
//! task's [`Ctx`]: [`Ctx::rng`] is a random generator (a [`TaskRng`], implementing `rand_core`'s
//! traits) on the task's own stream, derived from the pool's [`Daemons::seed`] and the task's
//! submission index, so the same seed and submission order give the same numbers whatever the
//! number of daemons, the order they run in, retries or tasks sent ahead (an unseeded pool
//! draws fresh entropy; see [`ctx`] for the generator and why). [`Ctx::check`] returns
//! `Err(`[`Cancelled`]`)` once [`Mirai::cancel`] was called, for `?` in a loop: the task stops,
//! its handle resolves [`Error::Cancelled`] and its daemon serves on, with no kill and no
//! replacement. [`Ctx::task_id`], [`Ctx::attempt`] (one more per retry after a lost daemon) and
//! [`Ctx::trace`] tell the task which it is.
//!
//! ```rust,standalone_crate
//! use mirai::{Cancelled, Ctx, Daemons, Registry, TaskFn, task_ctx};
//! use rand_core::Rng;
//!
//! fn walk(ctx: &Ctx, steps: u32) -> Result<i64, Cancelled> {
//!     let mut rng = ctx.rng();
//!     let mut at = 0i64;
//!     for _ in 0..steps {
//!         ctx.check()?; // a cancel stops the walk here
//!         at += if rng.next_u32() % 2 == 0 { 1 } else { -1 };
//!     }
//!     Ok(at)
//! }
//! const WALK: TaskFn<u32, Result<i64, Cancelled>> = task_ctx!(walk);
//!
//! fn main() -> Result<(), mirai::Error> {
//!     mirai::daemon_main_if_requested(&Registry::new().with(&WALK));
//!     let walks = |daemons| -> Result<Vec<_>, mirai::Error> {
//!         let pool = Daemons::new().local(daemons).seed(42).start()?;
//!         pool.map(&WALK, [100, 200, 300, 400])
//!     };
//!     let one = walks(1)?;
//!     assert_eq!(one, walks(3)?); // the same walks with 1 and with 3 daemons
//!     // ... and as computed here, for the task submitted third to a pool seeded with 42:
//!     assert_eq!(one[2], WALK.call_with(&Ctx::local(42, 2), 300));
//!     Ok(())
//! }
//! ```
//!
//! # Sync mode
//!
//! [`Daemons::sync`], as R's `daemons(sync = TRUE)`, runs each task in the calling process,
//! inside `submit`: set a breakpoint in a task function, or unit-test task code without
//! processes. The API, the errors and the random streams are those of a daemon pool.
//!
//! ```
//! use mirai::{Ctx, Daemons, TaskFn, task, task_ctx};
//! use rand_core::Rng;
//!
//! fn half(x: i64) -> i64 {
//!     assert!(x % 2 == 0, "{x} is odd");
//!     x / 2
//! }
//! fn dice(ctx: &Ctx, n: usize) -> Vec<u32> {
//!     let mut rng = ctx.rng();
//!     (0..n).map(|_| rng.next_u32() % 6 + 1).collect()
//! }
//! const HALF: TaskFn<i64, i64> = task!(half);
//! const DICE: TaskFn<usize, Vec<u32>> = task_ctx!(dice);
//!
//! let pool = Daemons::new().sync().seed(7).start()?;
//! assert_eq!(pool.submit(&HALF, 10)?.wait()?, 5);
//! // A panic is the same typed error a daemon reports.
//! let odd = pool.submit(&HALF, 3)?.wait();
//! assert!(matches!(odd, Err(mirai::Error::Task { message, .. }) if message == "3 is odd"));
//! // The task submitted third (index 2) draws what it would on daemons.
//! assert_eq!(pool.submit(&DICE, 5)?.wait()?, DICE.call_with(&Ctx::local(7, 2), 5));
//! # Ok::<(), mirai::Error>(())
//! ```
//!
//! # Tracing across processes
//!
//! A submission opens a `submit` span where it is called, and the daemon runs the task in an
//! `execute` span that is its child: the task carries a W3C `traceparent` to the daemon, the
//! spans record `trace_id`, `span_id` and `parent_span_id`, and with the `opentelemetry`
//! feature they join one OpenTelemetry trace across the host and its daemons. A task sees its
//! context through [`trace::current`], and [`TaskOptions::trace_parent`] continues a trace
//! given from elsewhere (an incoming request's header, say). See [`trace`].
//!
//! ```rust,standalone_crate
//! use mirai::trace::TraceParent;
//! use mirai::{Daemons, Registry, TaskFn, TaskOptions, task};
//!
//! fn trace_id((): ()) -> Option<[u8; 16]> {
//!     mirai::trace::current().map(|context| context.trace_id())
//! }
//! const TRACE_ID: TaskFn<(), Option<[u8; 16]>> = task!(trace_id);
//!
//! fn main() -> Result<(), mirai::Error> {
//!     mirai::daemon_main_if_requested(&Registry::new().with(&TRACE_ID));
//!     let pool = Daemons::new().local(1).start()?;
//!     let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//!     let options = TaskOptions::new().trace_parent(incoming);
//!     let seen = pool.submit_with(&TRACE_ID, (), options)?.wait()?;
//!     let incoming: TraceParent = incoming.parse()?;
//!     assert_eq!(seen, Some(incoming.trace_id())); // the daemon continues the caller's trace
//!     Ok(())
//! }
//! ```
//!
//! # Daemons and their events
//!
//! A pool tells about its daemons: [`Pool::daemons`] gives a row per daemon (R's
//! `status()$daemons`), [`Pool::events`] a bounded queue of joins, departures with their reason
//! and refused peers, and [`Pool::everywhere_persistent`] runs a setup on every daemon, those
//! that join later included, before its first task.
// `deny`, not `forbid`: the `environment` module alone may remove variables from the process
// environment, which the 2024 edition marks `unsafe`.
#![deny(unsafe_code)]

mod buffers;
pub mod ctx;
mod daemon;
mod environment;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
pub mod launch;
mod options;
mod pool;
mod task;
pub mod trace;
mod wire;

pub use crate::buffers::{Array, Bytes, Element};
pub use crate::ctx::{Cancelled, Ctx, TaskRng};
pub use crate::daemon::{daemon_main_if_requested, run_daemon, run_daemon_tls};
pub use crate::error::Error;
#[cfg(feature = "progress")]
pub use crate::handle::collect_with_progress;
pub use crate::handle::{Mirai, collect, race};
pub use crate::options::TaskOptions;
pub use crate::pool::{
    DaemonStatus, Daemons, EVENT_CAPACITY, Events, LeaveReason, MapIter, MapStream, Pool, PoolEvent,
};
pub use crate::task::{Registry, TaskFn};
/// The progress bars of [`Pool::map_with_progress`], [`collect_with_progress`] and
/// [`MapIter::progress`] (feature `progress`, on by default), so callers name the same version.
///
/// ```
/// let bar = mirai::indicatif::ProgressBar::hidden();
/// bar.inc(1);
/// assert_eq!(bar.position(), 1);
/// ```
#[cfg(feature = "progress")]
pub use indicatif;
pub use mirai_dispatch::protocol::RefuseReason;
pub use mirai_dispatch::{DaemonExit, DaemonPhase, NoDaemons, Status};
/// The path `#[derive(Frame)]` uses in crates that depend on `mirai` alone.
#[doc(hidden)]
pub use mori_shm as __mori_shm;
/// The types a [`SharedView`] hands out, read in place from the mapping: [`View`] and its
/// variants' [`Vector`], [`List`], [`Strings`] and [`Str`], the R type tag [`SexpType`], and the
/// owned model ([`Value`], [`Data`], [`RString`]) that [`share`] writes and
/// [`SharedView::to_value`] copies out.
pub use mori_shm::mori_format::{
    List, Str, Strings, Vector, View,
    layout::SexpType,
    value::{Data, NA_INTEGER, NA_REAL, RString, Value},
};
/// Typed sharing: `#[derive(Frame)]` on a struct of columns, [`share_typed`] to write it as one
/// region, and the generated `<Name>View` (a task argument that crosses as the region's name)
/// to read it in place.
pub use mori_shm::{
    Column, DoubleColumn, Frame, FromShared, IntegerColumn, LogicalColumn, StringColumn, map_typed,
    share_typed,
};
/// Zero-copy shared memory: a [`SharedView`] passed as a task argument crosses to the daemon as
/// its region name only, and the daemon maps the same pages.
///
/// Everything needed to share and read is here, and a failure converts into [`Error::Shared`],
/// so `?` works in a function returning [`Error`]:
///
/// ```
/// use mirai::{Source, View};
///
/// fn frame() -> Result<(), mirai::Error> {
///     let x = [1.5, 2.5];
///     let shared = mirai::share_data_frame(vec![
///         ("x", Source::Double(&x)),
///         ("n", Source::Integer(&[1, 2])),
///         ("label", Source::Strings(&["a", "b"])),
///     ])?;
///     let label = shared.get_named("label")?.unwrap();
///     let strings: mirai::Strings<'_> = label.as_strings().unwrap();
///     assert_eq!(strings.get(1).and_then(|s| s.as_str()), Some("b"));
///     assert_eq!(shared.get(0)?.sexptype(), mirai::SexpType::Double);
///     assert!(matches!(shared.get(1)?.view(), View::Integer(v) if v.data() == [1, 2]));
///     let names: Vec<mirai::RString> = shared.names()?.unwrap();
///     assert_eq!(names[2].as_str(), Some("label"));
///     assert_eq!(mirai::share_strings(&["s"])?.to_value()?, mirai::Value::character(["s"]));
///     Ok(())
/// }
/// frame()?;
/// # Ok::<(), mirai::Error>(())
/// ```
pub use mori_shm::{
    Error as SharedError, Shared, SharedView, Source, Untrusted, VectorElement, WriteOptions,
    is_shared, map_shared, share, share_data_frame, share_f64, share_i32, share_list, share_raw,
    share_source, share_source_with, share_strings, share_with, shared_name,
};
/// Regions and their owners: a task may return a [`Shared`], whose region then belongs to the
/// host (the daemon never unlinks it, the host's handle does); [`list_regions`] shows the
/// owner of each region and [`prune`] removes those whose owner died. See
/// [`mori_shm::handing_over`].
///
/// ```rust,standalone_crate
/// use mirai::{Daemons, Registry, Shared, TaskFn, task};
///
/// fn squares(n: u32) -> Shared {
///     let x: Vec<f64> = (0..n).map(|i| f64::from(i * i)).collect();
///     mirai::share_f64(&x).expect("share")
/// }
/// const SQUARES: TaskFn<u32, Shared> = task!(squares);
///
/// fn main() -> Result<(), mirai::Error> {
///     mirai::daemon_main_if_requested(&Registry::new().with(&SQUARES));
///     let pool = Daemons::new().local(1).start()?;
///     let shared = pool.submit(&SQUARES, 1000)?.wait()?; // the daemon's region, now ours
///     assert_eq!(shared.as_f64().unwrap()[999], 998_001.0); // read in place
///     let owner = mirai::list_regions()?.into_iter().find(|r| r.name == shared.name());
///     assert_eq!(owner.map(|r| r.pid), Some(std::process::id()));
///     Ok(())
/// }
/// ```
pub use mori_shm::{RegionInfo, Status as RegionStatus, list_regions, prune};

/// The README's example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
