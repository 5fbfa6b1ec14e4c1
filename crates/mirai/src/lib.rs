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
//! A pool tells about its daemons: [`Pool::daemons`] gives a row per daemon (R's
//! `status()$daemons`), [`Pool::events`] a bounded queue of joins, departures with their reason
//! and refused peers, and [`Pool::everywhere_persistent`] runs a setup on every daemon, those
//! that join later included, before its first task.
// `deny`, not `forbid`: the `environment` module alone may remove variables from the process
// environment, which the 2024 edition marks `unsafe`.
#![deny(unsafe_code)]

mod buffers;
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
mod wire;

pub use crate::buffers::{Array, Bytes, Element};
pub use crate::daemon::{daemon_main_if_requested, run_daemon, run_daemon_tls};
pub use crate::error::Error;
pub use crate::handle::{Mirai, collect, race};
pub use crate::options::TaskOptions;
pub use crate::pool::{
    DaemonStatus, Daemons, EVENT_CAPACITY, Events, LeaveReason, Pool, PoolEvent,
};
pub use crate::task::{Registry, TaskFn};
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
    Error as SharedError, Shared, SharedView, Source, Untrusted, WriteOptions, is_shared,
    map_shared, share, share_data_frame, share_f64, share_i32, share_list, share_raw, share_source,
    share_source_with, share_strings, shared_name,
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
