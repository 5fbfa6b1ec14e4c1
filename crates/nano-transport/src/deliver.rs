//! The receiving side of the shared state: a batch of bodies read from a pipe becomes queued
//! messages under the protocol's receive rules ([`deliver`]), within the receive queue's bounds
//! ([`receive_room`], [`RECV_QUEUE_BYTES`]).
//!
//! Both readers use it: the I/O thread (`io`) and a receiver reading its pipe directly
//! (`direct`); it stands apart so neither imports the other.

use std::time::Instant;

use crate::proto::Incoming;
use crate::shared::{Core, Inner};
use crate::{Message, PipeId, Protocol};

/// Messages read from one pipe per turn before other pipes get theirs (fair queueing).
pub(crate) const BATCH: usize = 256;

/// How many bytes of received messages may wait in the socket before the I/O thread stops
/// reading ahead (besides the message count of `set_recv_buffer`).
///
/// Reading far ahead of the consumer only moves the backlog from the kernel's buffers into
/// freshly faulted-in memory: with 1 MiB messages a 1,024-message queue would be a GiB. Bounded
/// at a few MiB, the allocator keeps reusing the buffers the consumer frees (mapped, in cache),
/// the kernel's socket buffers hold the rest, and the sender feels back-pressure as with NNG.
pub(crate) const RECV_QUEUE_BYTES: usize = 4 << 20;

/// Whether a protocol's receive queue applies back-pressure. REQ keeps at most one reply per
/// context (`Core::replies`), and SURVEYOR and SUB bound their queues by dropping instead (see
/// [`deliver`]): they read on so their peers never stall.
fn receive_limited(proto: Protocol) -> bool {
    !matches!(proto, Protocol::Sub0 | Protocol::Req0 | Protocol::Surveyor0)
}

/// Whether the receive queue is below both its bounds: [`set_recv_buffer`] messages and
/// [`RECV_QUEUE_BYTES`] bytes.
///
/// [`set_recv_buffer`]: crate::Socket::set_recv_buffer
fn queue_has_room(core: &Core) -> bool {
    core.recv_q.len() < core.opts.recv_buffer && core.recv_q.bytes() < RECV_QUEUE_BYTES
}

/// How many messages may be taken into the receive queue now; 0 when it holds
/// [`set_recv_buffer`](crate::Socket::set_recv_buffer) messages or [`RECV_QUEUE_BYTES`] bytes.
pub(crate) fn receive_room(proto: Protocol, core: &Core) -> usize {
    let room = if !receive_limited(proto) {
        BATCH
    } else if core.recv_q.bytes() >= RECV_QUEUE_BYTES {
        0
    } else {
        core.opts.recv_buffer.saturating_sub(core.recv_q.len())
    };
    room.min(BATCH)
}

/// How many bytes one batch may add to the receive queue (at least one message is read).
pub(crate) fn receive_room_bytes(proto: Protocol, core: &Core) -> usize {
    if receive_limited(proto) {
        RECV_QUEUE_BYTES.saturating_sub(core.recv_q.bytes()).max(1)
    } else {
        usize::MAX
    }
}

/// Applies the protocol's receive rules to a batch read from `pipe`, queueing what is kept and
/// waking receivers; returns whether the pipe must close (malformed message).
pub(crate) fn deliver(
    inner: &Inner,
    core: &mut Core,
    pipe: PipeId,
    batch: &mut Vec<Vec<u8>>,
) -> bool {
    if batch.is_empty() {
        return false;
    }
    let proto = inner.protocol;
    let now = Instant::now();
    let ttl = core.opts.max_ttl;
    let mut close = false;
    let mut delivered = false;
    for body in batch.drain(..) {
        if close {
            continue;
        }
        let header_len = match Incoming::classify(proto, &body, ttl) {
            Incoming::Deliver { header_len } => header_len,
            Incoming::Drop => continue,
            Incoming::Close => {
                close = true;
                continue;
            }
        };
        let msg = Message::new(body, header_len, pipe);
        match proto {
            Protocol::Req0 => match core.req.on_reply(msg.header()) {
                Ok(Some(ctx)) => {
                    core.replies.insert(ctx, msg);
                    delivered = true;
                }
                Ok(None) => {}
                Err(_) => close = true,
            },
            Protocol::Surveyor0 => {
                // Responses are read as they come (a survey's window is short, so stalling the
                // pipe would only make them late) and those beyond the queue's bound are
                // dropped, as NNG's surveyor does: a respondent answering the current survey
                // over and over cannot grow the queue.
                if core.survey.accepts(msg.header(), now) == Ok(true) && queue_has_room(core) {
                    core.recv_q.push_back(msg);
                    delivered = true;
                }
            }
            Protocol::Sub0 => {
                if core.topics.matches(&msg) {
                    // Drop the oldest, by count and by bytes (a publisher of large messages
                    // would otherwise hold `recv_buffer` of them).
                    while !core.recv_q.is_empty() && !queue_has_room(core) {
                        core.recv_q.pop_front();
                    }
                    core.recv_q.push_back(msg);
                    delivered = true;
                }
            }
            _ => {
                core.recv_q.push_back(msg);
                delivered = true;
            }
        }
    }
    if delivered {
        inner.notify_recv(core);
    }
    close
}
