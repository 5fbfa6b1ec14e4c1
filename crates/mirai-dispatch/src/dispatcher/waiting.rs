//! A caller waiting for a result reads its daemon's connection itself, so the result wakes the
//! caller and nobody else (see [`super::lane`] for why and for the rules).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

use smallvec::SmallVec;

use super::READ_BATCH;
use super::inbound::{Inbound, decode};
use super::lane::Lane;
use super::shared::Shared;
use crate::host::CoreGuard;
use crate::task::TaskId;

/// The longest a caller reads its daemon's connection before handing it back and waiting like
/// any other caller. A task resolved another way while its daemon says nothing (cancelled by
/// another thread, timed out, and the function not looking at its cancel token) is noticed by
/// such a caller within this; its daemon's answer or close at once.
///
/// Longer than the kernel's scheduler tick (4 ms at 250 Hz) on purpose: a `poll(2)` timeout
/// that expires before the next tick is the CPU's earliest timer, and arming and cancelling it
/// reprograms the local APIC timer, which in a virtual machine costs an exit to the hypervisor
/// each time. With a 2 ms slice the one-CPU round trip's p99 was 7.8-10.8 µs, against 7.2-7.4
/// µs without a timeout in runs interleaved with it (docs/benchmarks.md).
pub(super) const BORROW_SLICE: Duration = Duration::from_millis(50);

/// How long a submitter's lease ([`Lane::lease`]) may keep the dispatcher thread from watching
/// a daemon's connection when nobody comes to wait for the task: the longest a result of a task
/// nobody waits for (or one polled only later) stays unread.
pub(super) const LEASE: Duration = Duration::from_millis(5);

/// A timer in the dispatcher thread's poll that goes off when leases may have run out, so a
/// lease nobody ends never holds a connection for longer than [`LEASE`]. Armed by the
/// submitter that takes a lease when it is not armed already (one `timerfd_settime`, no
/// wake-up); while round trips follow each other, it goes off once per [`LEASE`] and the
/// dispatcher thread re-arms it for the leases still young.
pub(super) struct LeaseTimer {
    fd: OwnedFd,
    armed: AtomicBool,
}

impl LeaseTimer {
    pub(super) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self {
            fd,
            armed: AtomicBool::new(false),
        })
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes sure the timer goes off within `after`, unless it is armed already (then it goes
    /// off sooner or later, and the dispatcher thread looks at every lease then).
    pub(super) fn arm(&self, after: Duration) {
        if self.armed.swap(true, Ordering::SeqCst) {
            return;
        }
        let value = Timespec {
            tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            // A zero value would disarm it.
            tv_nsec: i64::from(after.subsec_nanos()).max(1),
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        if timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec).is_err() {
            self.armed.store(false, Ordering::SeqCst);
        }
    }

    /// The timer went off: cleared before the leases are looked at, so a lease taken from here
    /// on arms it again.
    pub(super) fn fired(&self) {
        self.armed.store(false, Ordering::SeqCst);
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut count);
    }
}

impl Shared {
    /// With the core's lock held, just after the core took `task`: if the task goes to an idle
    /// local daemon now (written by this thread when it carries out the core's actions), the
    /// dispatcher thread stops watching that connection for bytes, so the result wakes only
    /// whoever waits for it ([`Lane::lease`]).
    pub(super) fn lease_for(&self, core: &CoreGuard<'_>, task: TaskId) {
        let Some(daemon) = core.running_on(task) else {
            return;
        };
        let Some((lane, _)) = self.link(daemon) else {
            return;
        };
        if lane.lease(&self.registry, task, Instant::now()) {
            self.lease_timer.arm(LEASE);
        }
    }

    /// Ends `task`'s lease if it holds one (it is polled, cancelled or forgotten, or its outcome
    /// was taken): from now on the dispatcher thread reads its daemon's connection again. A task
    /// that has resolved needs nothing read for it any more; its lease, if any is left, ends with
    /// the timer or the daemon's next task.
    pub(super) fn end_lease(&self, task: TaskId) {
        if !self.lanes.any_lease() {
            return;
        }
        let Some(daemon) = self.host.lock().daemon_of(task) else {
            return;
        };
        if let Some((lane, _)) = self.link(daemon) {
            lane.end_lease(&self.registry, Some(task), None);
        }
    }

    /// `task` goes to the daemon of `lane`: a lease on its connection for anything else ends
    /// (a lease lives only while its daemon holds just the leased task, so the dispatcher thread
    /// reads a daemon with more work).
    pub(super) fn lease_only_for(&self, lane: &Lane, task: TaskId) {
        if self.lanes.any_lease() {
            lane.end_lease_unless(&self.registry, task);
        }
    }

    /// Reads the connection of the daemon that runs `task` until the task has its outcome,
    /// [`BORROW_SLICE`] after `start` or `deadline` has passed, whichever is first; does
    /// nothing when the task is not on a daemon or another thread reads that connection.
    /// Everything read goes to the core, in order, as if the dispatcher thread had read it.
    pub(super) fn read_for(&self, task: TaskId, start: Instant, deadline: Option<Instant>) {
        let Some(daemon) = self.host.lock().daemon_of(task) else {
            return;
        };
        let Some((lane, _)) = self.link(daemon) else {
            return;
        };
        let Some(mut borrow) = lane.borrow(&self.registry, task) else {
            return;
        };
        let mut healthy = true;
        let mut idle = false;
        let mut now = start;
        let slice_end = start + BORROW_SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        let mut inbound: SmallVec<[Inbound; 2]> = SmallVec::new();
        // Look before waiting: on a busy or single CPU the daemon, woken by the task's write,
        // has usually answered by now, and a read that finds the answer saves the `poll(2)`;
        // one that finds nothing costs a read before the wait.
        borrow.conn().note_readable();
        loop {
            if !borrow.conn().may_have_more() {
                let left = until.saturating_duration_since(now);
                match borrow.conn().wait_readable(Some(left)) {
                    Ok(true) => borrow.conn().note_readable(),
                    Ok(false) => break,
                    Err(_) => {
                        borrow.fail();
                        break;
                    }
                }
            }
            // Decoded as they come (a message that breaks the protocol stops the read).
            let mut sound = true;
            let token = lane.token();
            let progress = borrow.conn().on_readable(READ_BATCH, &mut |body| {
                sound = decode(body, daemon, token, &self.limits, &mut inbound);
                sound
            });
            healthy = progress.is_ok() && sound;
            now = Instant::now();
            // What decoded before a failure still counts, as on the dispatcher thread.
            let fed = !inbound.is_empty();
            let applied = self.apply(inbound.drain(..), now, Some((task, daemon)));
            if !healthy || !applied.closing.is_empty() {
                // The dispatcher thread closes it (the borrow's end hands it back).
                borrow.fail();
                break;
            }
            idle = applied.idle;
            // Nothing fed to the core (a heartbeat): the task may have resolved another way.
            if applied.resolved || (!fed && self.completions.is_done(task)) {
                break;
            }
        }
        // The daemon is idle now: whoever submits to it next will lease the connection again,
        // so keep it leased instead of giving the interest back and taking it again (two
        // `epoll_ctl`s a round trip).
        if borrow.end(healthy && idle, now) {
            self.lease_timer.arm(LEASE);
        }
    }
}
