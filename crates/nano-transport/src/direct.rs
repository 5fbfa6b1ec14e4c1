//! The direct read: a blocking receive on a socket with a single pipe reads that pipe itself
//! ([`DirectRead`]) instead of waiting for the I/O thread to hand messages over.
//!
//! It is the one place a user thread takes over the I/O thread's reading, with the lease and
//! interest bookkeeping that hand-over needs, so it stands on its own.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::conn::{ConnSender, Connection, ReadProgress};
use crate::route::take_message;
use crate::shared::{Core, Inner, Interests};
use crate::{Error, Message, PipeId, Protocol};
use crate::{deliver, io};

/// How many bytes of messages a direct read hands over per batch.
const DIRECT_BATCH_BYTES: usize = 64 * 1024;

/// A blocking receive that reads the socket's only pipe itself instead of waiting for the I/O
/// thread to hand messages over: one thread wake-up per message instead of two, which is most
/// of a request/reply round trip. The I/O thread's read interest in the pipe is paused
/// meanwhile and restored afterwards (re-registering re-checks readiness, so nothing that arrived
/// in between is missed).
pub(crate) struct DirectRead {
    reader: Arc<Mutex<Connection>>,
    interests: Arc<Mutex<Interests>>,
    sender: ConnSender,
    pipe: PipeId,
}

impl DirectRead {
    /// Whether the calling receiver may read directly: a protocol without receive-side timers,
    /// exactly one pipe.
    pub(crate) fn begin(inner: &Inner, core: &Core) -> Option<Self> {
        let eligible = !matches!(inner.protocol, Protocol::Surveyor0) && core.pipes.len() == 1;
        if !eligible {
            return None;
        }
        let (&pipe, slot) = core.pipes.iter().next()?;
        Some(Self {
            reader: Arc::clone(&slot.reader),
            interests: Arc::clone(&slot.interests),
            sender: slot.sender.clone(),
            pipe,
        })
    }

    /// Reads until a message for `ctx` arrives, the deadline passes or the socket closes;
    /// `None` means "fall back to waiting for the I/O thread".
    pub(crate) fn run(
        self,
        inner: &Inner,
        ctx: u32,
        deadline: Option<Instant>,
    ) -> Option<Result<Message, Error>> {
        let Ok(mut conn) = self.reader.try_lock() else {
            return None;
        };
        self.pause_io(inner);
        // Waiting first is safe only if every byte in the stream has an event still to come.
        let mut wait_first = !conn.may_have_more();
        let mut batch = Vec::new();
        let outcome = loop {
            if !wait_first {
                let room = deliver::receive_room(inner.protocol, &inner.lock());
                if room == 0 {
                    break None;
                }
                // Stop once a batch holds DIRECT_BATCH_BYTES: small messages still come many per
                // lock, but large ones are handed over one by one instead of being read ahead
                // into fresh memory, so the allocator reuses the buffer the caller just freed
                // (still in cache, its pages already mapped).
                let mut bytes = 0;
                let progress = conn.on_readable(room, &mut |body| {
                    bytes += body.len();
                    batch.push(body);
                    bytes < DIRECT_BATCH_BYTES
                });
                let yielded = matches!(progress, Ok(ReadProgress::Yielded));
                let mut core = inner.lock();
                let broken =
                    deliver::deliver(inner, &mut core, self.pipe, &mut batch) || progress.is_err();
                if broken {
                    self.sender.mark_failed();
                    inner.wake_io();
                }
                let mut d = deadline;
                match take_message(inner, &mut core, ctx, &mut d) {
                    Ok(Some(m)) => break Some(Ok(m)),
                    Err(e) => break Some(Err(e)),
                    Ok(None) => {}
                }
                if broken || core.pipes.len() != 1 || !core.pipes.contains_key(&self.pipe) {
                    break None;
                }
                drop(core);
                if yielded {
                    continue;
                }
            }
            wait_first = false;
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => Some(t),
                    _ => break Some(Err(Error::Timeout)),
                },
                None => None,
            };
            {
                // Look once more and announce the wait in one critical section: a message the
                // I/O thread queues after this (say from a pipe added meanwhile) or a new pipe
                // then wakes the wait below.
                let mut core = inner.lock();
                let mut d = deadline;
                match take_message(inner, &mut core, ctx, &mut d) {
                    Ok(Some(m)) => break Some(Ok(m)),
                    Err(e) => break Some(Err(e)),
                    Ok(None) => {}
                }
                if core.pipes.len() != 1 || !core.pipes.contains_key(&self.pipe) {
                    break None;
                }
                inner.direct_waiting.store(true, Ordering::SeqCst);
            }
            let mut guard = inner.direct_poll.lock().unwrap_or_else(|e| e.into_inner());
            let (poll, events) = &mut *guard;
            let polled = poll.poll(events, timeout);
            inner.direct_waiting.store(false, Ordering::SeqCst);
            // Whatever readiness the wait consumed must now be read before waiting again.
            conn.note_readable();
            if events.iter().any(|e| e.is_read_closed()) {
                conn.note_read_closed();
            }
            if polled.is_err_and(|e| e.kind() != std::io::ErrorKind::Interrupted) {
                break None;
            }
        };
        drop(conn);
        self.end(inner);
        outcome
    }

    /// Pauses the I/O thread's reading (if its lease had lapsed).
    fn pause_io(&self, inner: &Inner) {
        let mut i = self.interests.lock().unwrap_or_else(|e| e.into_inner());
        i.reader_active = true;
        i.direct = true;
        i.apply(&inner.io_registry);
    }

    /// Leaves the pipe paused for the I/O thread for a short lease, so a receiver that comes
    /// straight back (a request/reply loop) costs no re-registration; the I/O thread takes the
    /// pipe back when the lease lapses.
    fn end(&self, inner: &Inner) {
        let mut i = self.interests.lock().unwrap_or_else(|e| e.into_inner());
        i.reader_active = false;
        let lease_end = Instant::now() + io::DIRECT_LEASE;
        i.lease_end = Some(lease_end);
        drop(i);
        inner.timer_armed(lease_end);
    }
}
