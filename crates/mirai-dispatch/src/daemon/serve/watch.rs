//! The watcher thread: what the connection needs while the main thread runs a task.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use nano_transport::conn::ReadProgress;

use super::link::note_events;
use super::{
    AutoExit, CONN, Ended, HOST_GONE_GRACE, PAIR1_HEADER, READ_BATCH, Shared, WATCH_TICK,
    file_incoming,
};
use crate::dispatcher::MISSED_BEATS;
use crate::protocol::{FromDaemon, Limits};
use crate::task::TaskId;

/// The watcher thread: heartbeats, the host's silence, messages during a task, and a task
/// that outlives its host.
///
/// Every [`WATCH_TICK`] (or heartbeat interval, if shorter) it looks at the running task: one
/// still running at the next look gets the connection watched even if it never looks at its
/// token, so tasks sent ahead of it can be asked back and a closed connection is seen at once.
/// Once the host is lost with autoexit [`AutoExit::Immediately`], it waits
/// [`HOST_GONE_GRACE`] and then, if the loop has not ended by itself, tells [`serve`](super::serve) to return
/// without it.
pub(super) fn watch(shared: &Shared, mut poll: Poll) {
    let mut events = Events::with_capacity(8);
    let mut beat = PAIR1_HEADER.to_vec();
    if FromDaemon::Heartbeat.encode(&mut beat).is_err() {
        return;
    }
    let mut next_beat = Instant::now();
    let mut next_look = Instant::now();
    // The task running at the last look.
    let mut seen_running: Option<TaskId> = None;
    let mut abandon_at: Option<Instant> = None;
    // The connection's byte count at the last heartbeat.
    let mut received = 0;
    while !shared.stop.load(Ordering::Acquire) {
        let h = Duration::from_millis(shared.heartbeat_ms.load(Ordering::Acquire));
        let tick = if h.is_zero() {
            WATCH_TICK
        } else {
            h.min(WATCH_TICK)
        };
        let mut due = next_look;
        if !h.is_zero() {
            due = due.min(next_beat);
        }
        if let Some(at) = abandon_at {
            due = due.min(at);
        }
        let timeout = due.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return;
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if !h.is_zero() && Instant::now() >= next_beat {
            let sender = shared
                .sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            // A frame still arriving (the main thread may be in the middle of reading a large
            // task, the host's heartbeats queued behind it, maybe inside one long read) is a
            // sign of life.
            let now_received = sender.bytes_received();
            if now_received != received || sender.is_reading() {
                received = now_received;
                shared.heard();
            }
            // Judged before the heartbeat goes: its send waits for a large result being
            // written, whose end the main thread counts as hearing from the host.
            let silent_ms = u64::try_from(shared.epoch.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(shared.last_rx.load(Ordering::Acquire));
            if shared.autoexit != AutoExit::Never
                && Duration::from_millis(silent_ms) >= h * MISSED_BEATS
            {
                // Frozen, or the network is gone: end the connection as a close would.
                let _ = sender.stream().shutdown();
                shared.host_lost();
            } else if sender.queued() == 0 {
                // A heartbeat that does not fit now is not worth waiting for, nor piling up.
                let _ = sender.send(&[&beat]);
            }
            // Counted from after the send, which waits while a large result is written: the
            // main thread then has a whole interval to note that the host took it.
            next_beat = Instant::now() + h;
        }
        if Instant::now() >= next_look {
            next_look = Instant::now() + tick;
            let running = shared.running();
            if running.is_some() && running == seen_running && attach_watcher(shared) {
                watch_read(shared, &events);
            }
            seen_running = running;
        }
        if shared.running().is_some() && !events.is_empty() {
            watch_read(shared, &events);
        }
        if abandon_at.is_none()
            && shared.autoexit == AutoExit::Immediately
            && (shared.lost.load(Ordering::Acquire) || shared.exit.load(Ordering::Acquire))
        {
            abandon_at = Some(Instant::now() + HOST_GONE_GRACE);
        }
        if abandon_at.is_some_and(|at| Instant::now() >= at) {
            // The loop did not end within the grace: a task ignores its token (or the loop is
            // stuck on the dead connection). `serve` returns without it.
            tracing::debug!("host gone: abandoning the running task");
            let _ = shared
                .ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(Ended::Abandoned);
            return;
        }
    }
}

/// Reads the connection while a task runs: cancel and exit act at once, the rest waits for the
/// main thread.
fn watch_read(shared: &Shared, events: &Events) {
    let mut conn = shared.conn();
    note_events(&mut conn, events);
    let mut bodies = Vec::new();
    let before = conn.bytes_received();
    let progress = conn.on_readable(READ_BATCH, &mut |b| {
        bodies.push(b);
        true
    });
    // Partial frames count too (see `Daemon::read`).
    if conn.bytes_received() != before {
        shared.heard();
    }
    file_incoming(shared, bodies, &Limits::new(u64::MAX));
    let closed = progress.is_err();
    drop(conn);
    if closed {
        shared.host_lost();
    } else if progress.is_ok_and(|p| p != ReadProgress::Drained) {
        // More to read: the main thread picks it up when the task ends.
        let _ = shared.main_waker.wake();
    }
}

/// Attaches the connection to the watcher's poll for the running task (once per task; the main
/// thread detaches it when the task ends). `false` if no task runs or it is already attached.
fn attach_watcher(shared: &Shared) -> bool {
    // Read before the `current` lock is taken: no thread holds both locks at once this way
    // round (reading holds the connection's, then takes `current` for a cancel).
    let fd = shared.conn().stream().as_raw_fd();
    let current = shared
        .current
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if current.is_none() || shared.watching.swap(true, Ordering::AcqRel) {
        return false;
    }
    if shared
        .watch_registry
        .register(&mut SourceFd(&fd), CONN, Interest::READABLE)
        .is_err()
    {
        shared.watching.store(false, Ordering::Release);
        return false;
    }
    true
}
