//! The daemon's pure logic, kept apart from its socket loop so it is tested without one.
//!
//! - [`Lifecycle`]: when a daemon exits (idle time, wall time, task count, the host going away),
//!   with time passed in.
//! - [`Registry`]: the functions a daemon can run, by name, with panics turned into
//!   [`TaskError`](crate::TaskError)s carrying a message and a backtrace.
//! - [`CancelToken`] in the [`TaskContext`]: how a cancel message reaches a running function,
//!   which checks it at points of its choosing (Rust code cannot be interrupted safely).
//! - `serve` (feature `shell`): the thin socket loop that drives them against a dispatcher.

mod cancel;
mod exit;
mod registry;
#[cfg(feature = "shell")]
mod serve;

pub use cancel::{CancelToken, TaskContext};
pub use exit::{AutoExit, ExitReason, ExitRules, HostGone, Lifecycle};
pub use registry::{Handler, Registry, run_caught};
#[cfg(feature = "shell")]
pub use serve::{DaemonConfig, DaemonError, HOST_GONE_GRACE, WATCH_TICK, serve};
