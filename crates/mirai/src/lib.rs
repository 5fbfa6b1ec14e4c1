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
pub use crate::pool::{Daemons, Pool};
pub use crate::task::{Registry, TaskFn};
pub use mirai_dispatch::{DaemonExit, NoDaemons, Status};
/// The path `#[derive(Frame)]` uses in crates that depend on `mirai` alone.
#[doc(hidden)]
pub use mori_shm as __mori_shm;
/// Typed sharing: `#[derive(Frame)]` on a struct of columns, [`share_typed`] to write it as one
/// region, and the generated `<Name>View` (a task argument that crosses as the region's name)
/// to read it in place.
pub use mori_shm::{
    Column, DoubleColumn, Frame, FromShared, IntegerColumn, LogicalColumn, StringColumn, map_typed,
    share_typed,
};
/// Zero-copy shared memory: a [`SharedView`] passed as a task argument crosses to the daemon as
/// its region name only, and the daemon maps the same pages.
pub use mori_shm::{Shared, SharedView, is_shared, map_shared, share, share_f64, shared_name};

/// The README's example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
