//! An admitted daemon's messages: decoded, then handed to the core in the order they came,
//! by whichever thread read them (the dispatcher thread, or a caller that borrowed the
//! connection; see [`super::lane`]).

use std::sync::PoisonError;
use std::time::Instant;

use mio::Token;
use nano_transport::proto::{MAX_TTL_DEFAULT, pair1_hops};

use super::PAIR1_HEADER;
use super::shared::Shared;
use crate::core::Reply;
use crate::daemon::ExitReason;
use crate::protocol::{FromDaemon, Limits, ResultStatus};
use crate::task::{DaemonId, Payload, TaskId};

/// A daemon message after decoding, waiting for the core.
pub(super) enum Inbound {
    Result {
        daemon: DaemonId,
        token: Token,
        task: TaskId,
        reply: Reply,
        last: bool,
    },
    /// [`FromDaemon::Retiring`].
    Retiring {
        daemon: DaemonId,
        token: Token,
        reason: ExitReason,
    },
}

/// Decodes one message body of admitted daemon `daemon` into `inbound`; `false` when the
/// connection must close (a malformed message, a second hello, a frame the PAIR1 rules drop
/// with its pipe). Heartbeats and frames PAIR1 drops alone add nothing.
pub(super) fn decode(
    body: Vec<u8>,
    daemon: DaemonId,
    token: Token,
    limits: &Limits,
    inbound: &mut impl Extend<Inbound>,
) -> bool {
    match pair1_hops(&body, MAX_TTL_DEFAULT) {
        Ok(_) => {}
        Err(e) => return !e.closes_pipe(),
    }
    let frame = &body[PAIR1_HEADER.len()..];
    let Ok((msg, payload)) = FromDaemon::decode(frame, limits) else {
        // A malformed message: this daemon cannot be trusted, the others carry on.
        return false;
    };
    let payload_len = payload.len();
    match msg {
        // A second hello: not our protocol.
        FromDaemon::Hello(_) => false,
        FromDaemon::Heartbeat => true,
        FromDaemon::Retiring { reason } => {
            inbound.extend([Inbound::Retiring {
                daemon,
                token,
                reason,
            }]);
            true
        }
        FromDaemon::Result { task, status, last } => {
            let reply = match status {
                ResultStatus::Ok => {
                    let start = body.len() - payload_len;
                    match Payload::from_frame(body, start) {
                        Some(p) => Reply::Value(p),
                        None => return false,
                    }
                }
                ResultStatus::Err(e) => Reply::Error(e),
                ResultStatus::Interrupted => Reply::Interrupted,
                ResultStatus::NotStarted => Reply::NotStarted,
                ResultStatus::TooLarge { size, limit } => Reply::TooLarge { size, limit },
            };
            inbound.extend([Inbound::Result {
                daemon,
                token,
                task,
                reply,
                last,
            }]);
            true
        }
    }
}

/// What [`Shared::apply`] did.
#[derive(Default)]
pub(super) struct Applied {
    /// The connections to close (a daemon that broke the protocol).
    pub(super) closing: Vec<Token>,
    /// The watched task has left the core (resolved: its outcome is delivered).
    pub(super) resolved: bool,
    /// The watched daemon is idle.
    pub(super) idle: bool,
}

impl Shared {
    /// Feeds decoded messages to the core under one lock and carries out what it decides;
    /// with `watch`, also says (from the same lock) whether that task resolved and that daemon
    /// is idle. Nothing to feed: nothing is looked at.
    pub(super) fn apply(
        &self,
        inbound: impl IntoIterator<Item = Inbound>,
        now: Instant,
        watch: Option<(TaskId, DaemonId)>,
    ) -> Applied {
        let mut closing = Vec::new();
        let mut inbound = inbound.into_iter().peekable();
        if inbound.peek().is_none() {
            return Applied::default();
        }
        let mut core = self.host.lock();
        for message in inbound {
            match message {
                Inbound::Result {
                    daemon,
                    token,
                    task,
                    reply,
                    last,
                } => {
                    if core.on_result(daemon, task, reply, last, now).is_err() {
                        // A result for a task the daemon was not running: drop the daemon.
                        closing.push(token);
                    }
                }
                Inbound::Retiring {
                    daemon,
                    token,
                    reason,
                } => {
                    // Noted before the core hears of it, so the departure that follows is
                    // reported as a retirement however soon the connection closes.
                    if let Some(link) = self
                        .links
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&daemon)
                    {
                        link.retired = Some(reason);
                    }
                    if core.daemon_retiring(daemon, now).is_err() {
                        closing.push(token);
                    }
                }
            }
        }
        let (resolved, idle) = watch.map_or((false, false), |(task, daemon)| {
            (!core.knows(task), core.is_idle(daemon))
        });
        // Delivers the outcomes before it returns.
        self.flush_held(core);
        Applied {
            closing,
            resolved,
            idle,
        }
    }
}
