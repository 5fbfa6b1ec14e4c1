#![doc = include_str!("../README.md")]
//! The byte-capped task dispatcher behind `mirai`.
//!
//! - [`Core`]: the dispatcher as a pure state machine (queue, exact byte budget, daemon table,
//!   timeouts, cancel, retries, `everywhere`, shutdown), driven by events and returning
//!   [`Action`]s; no threads, sockets or clocks.
//! - [`Host`]: the submission handle host threads share: blocking [`Host::submit`],
//!   non-blocking [`Host::try_submit`], cancel and status, over one mutex and condition variable.
//! - `Dispatcher` (feature `shell`, on by default): the I/O shell around both: a thread owning a
//!   mio poll over the daemons' PAIR1 connections and a waker for host threads, heartbeats, and
//!   results waited for by task id; and `daemon::serve`, the daemon's socket loop.
//! - [`protocol`]: the dispatcher <-> daemon messages, postcard envelopes with the payload kept
//!   as a separate slice so it is never copied into a frame.
//! - [`daemon`]: the daemon's pure logic: exit rules, the function registry that turns panics into
//!   [`TaskError`]s, and the cooperative cancel token.
//! - [`rng`]: how each task's reproducible RNG stream is derived.
//! - [`secret`]: the pool token and the per-launch credentials derived from it.
//! - [`security`]: which addresses may be listened on (plain `tcp://` only on request), and the
//!   TLS set-up of `tls+tcp://` listeners (a certificate generated at start, pinned by daemons).
//! - Feature `tls` (on by default, implies `shell`): `tls+tcp://` listeners and dialers through
//!   nano-transport's TLS transport (rustls, ring, rcgen). Without it every local transport and
//!   plain tcp (when allowed) work, and a `tls+tcp://` address is refused with
//!   `nano_transport::Error::TlsDisabled`. Launch credentials never need it (HMAC-SHA-256 in
//!   pure Rust).
#![forbid(unsafe_code)]

#[cfg(feature = "shell")]
mod admission;
#[cfg(feature = "shell")]
mod completions;
mod core;
pub mod daemon;
#[cfg(feature = "shell")]
mod dispatcher;
mod host;
mod payload;
pub mod protocol;
pub mod rng;
pub mod secret;
pub mod security;
mod task;

pub use crate::core::{
    Action, CancelMode, Config, Core, DEFAULT_MAX_AHEAD, DaemonInfo, DaemonPhase, Job,
    MAX_AHEAD_BYTES, Memory, ProtocolViolation, RejectReason, Rejected, Reply, SHORT_TASK, Status,
    UNSTARTED_GRACE,
};
#[cfg(feature = "shell")]
pub use crate::dispatcher::{
    DaemonEvent, DaemonRow, Dispatcher, DispatcherConfig, EVENT_CAPACITY, HELLO_TIMEOUT,
    MAX_UNAUTHENTICATED, MISSED_BEATS, StartError,
};
pub use crate::host::{CoreGuard, Host, Room};
pub use crate::task::{DaemonExit, DaemonId, NoDaemons, Outcome, Payload, Task, TaskError, TaskId};

#[doc(hidden)]
pub mod fuzzing;
