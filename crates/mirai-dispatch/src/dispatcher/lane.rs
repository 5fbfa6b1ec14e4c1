//! A daemon's connection as the threads that read it share it.
//!
//! Why a host thread reads at all: a caller blocked on a result from an idle local daemon would
//! otherwise be woken by the dispatcher thread, which the result woke first: two process
//! wake-ups where a socket ping-pong has one, and on a busy or single CPU the larger part of a
//! task's round trip. So a caller that waits on a task running on daemon `d` may *borrow* `d`'s
//! reading half ([`Lane::borrow`]): while it holds it, the dispatcher thread's poll no longer
//! watches the connection for bytes (one `epoll_ctl`, no wake-up of anybody), the caller waits
//! for them in `poll(2)` itself, reads, and feeds what it read to the core exactly as the
//! dispatcher thread would. The core still decides everything; only who carries the bytes to it
//! changes.
//!
//! Rules that keep it exact:
//!
//! - **One reader at a time, in stream order.** The reading half sits behind a mutex; the
//!   dispatcher thread only ever *tries* it (a connection a caller holds is skipped, the caller
//!   reads it), and a reader hands what it read to the core before letting go, so the core
//!   hears a daemon's messages in the order it sent them.
//! - **Nothing is left unannounced.** A borrow ends by giving the interest back to the poll,
//!   which reports bytes already waiting (`EPOLL_CTL_MOD` checks readiness). Bytes the reader
//!   took from the kernel but did not decode, and a connection that failed under a borrower,
//!   are handed back to the dispatcher thread explicitly ([`Lanes`]).
//! - **Interest changes are serialized.** The dispatcher thread's writability and the borrows
//!   both change the poll's interest in this connection: both go through one lock, so neither
//!   undoes the other.
//! - **Only plain streams are lent.** A TLS session's reading can produce records to write;
//!   those connections stay with the dispatcher thread.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token, Waker};
use nano_transport::conn::{ConnSender, Connection, Stream};
use rustix::event::epoll::{self, EventData, EventFlags};

use crate::task::TaskId;

/// Who wants what from the poll for one connection.
#[derive(Debug, Default)]
struct Interests {
    /// Callers holding (or finishing) a borrow: the poll does not watch for bytes meanwhile.
    borrowed: usize,
    /// The dispatcher thread has bytes queued and waits for room to write them.
    write: bool,
    /// Deregistered (the connection is closed): nothing may register it again.
    gone: bool,
}

/// A hold on a connection's interest with nobody reading: for a task just written to the daemon
/// by its submitter, or (`task: None`) kept by the last waiter while the daemon is idle, for the
/// next submitter to take over.
#[derive(Debug, Clone, Copy)]
struct Lease {
    task: Option<TaskId>,
    taken: Instant,
}

/// What the lanes share with the dispatcher thread: the connections borrowers handed back with
/// something to do, its waker, and how many leases are held.
pub(super) struct Lanes {
    tokens: Mutex<Vec<Token>>,
    waker: Arc<Waker>,
    leases: AtomicUsize,
}

impl Lanes {
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Self {
            tokens: Mutex::default(),
            waker,
            leases: AtomicUsize::new(0),
        }
    }

    /// Whether any lease is held (else there is none to end).
    pub(super) fn any_lease(&self) -> bool {
        self.leases.load(Ordering::Acquire) > 0
    }

    fn hand_back(&self, token: Token) {
        lock(&self.tokens).push(token);
        let _ = self.waker.wake();
    }

    /// The connections handed back since the last call.
    pub(super) fn take(&self) -> Vec<Token> {
        std::mem::take(&mut *lock(&self.tokens))
    }
}

/// One connection: its reading half behind a lock, its writing half, and its registration.
pub(super) struct Lane {
    conn: Mutex<Connection>,
    sender: ConnSender,
    token: Token,
    interests: Mutex<Interests>,
    lanes: Arc<Lanes>,
    /// The dispatcher thread read messages of it that the core has not heard yet: no borrow
    /// until it has, so the core hears a daemon's messages in order.
    unapplied: AtomicBool,
    /// A hold on the poll's interest that no thread is reading under ([`Lane::lease`]).
    lease: Mutex<Option<Lease>>,
    /// The connection failed while borrowed (closed, a bad frame, a protocol violation).
    failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lane {
    /// Registers `conn` with `registry` under `token`, watching for bytes.
    pub(super) fn register(
        conn: Connection,
        token: Token,
        registry: &Registry,
        lanes: Arc<Lanes>,
    ) -> std::io::Result<Self> {
        registry.register(
            &mut SourceFd(&conn.stream().as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        Ok(Self {
            sender: conn.sender().clone(),
            conn: Mutex::new(conn),
            token,
            interests: Mutex::default(),
            lanes,
            unapplied: AtomicBool::new(false),
            lease: Mutex::new(None),
            failed: AtomicBool::new(false),
        })
    }

    fn fd(&self) -> RawFd {
        self.sender.stream().as_raw_fd()
    }

    /// Whether host threads may read it: a plain stream, not TLS.
    fn lendable(&self) -> bool {
        matches!(self.sender.stream(), Stream::Unix(_) | Stream::Tcp(_))
    }

    pub(super) fn token(&self) -> Token {
        self.token
    }

    /// The writing half.
    pub(super) fn sender(&self) -> &ConnSender {
        &self.sender
    }

    /// The reading half, for the dispatcher thread's own uses (handshake, hello, close); waits
    /// for a borrower to finish, which never takes longer than its read.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// The reading half unless a caller holds it (then the caller reads what is there).
    pub(super) fn try_conn(&self) -> Option<MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Asks the poll to report writability (while the sender has bytes queued) or not.
    pub(super) fn want_write(&self, registry: &Registry, on: bool) -> std::io::Result<()> {
        let mut interests = lock(&self.interests);
        if interests.write == on || interests.gone {
            interests.write = on;
            return Ok(());
        }
        interests.write = on;
        self.reregister(registry, &interests)
    }

    /// Takes the connection out of the poll for good (it is being closed); a lease on it ends.
    pub(super) fn deregister(&self, registry: &Registry) {
        if lock(&self.lease).take().is_some() {
            self.lanes.leases.fetch_sub(1, Ordering::AcqRel);
        }
        let mut interests = lock(&self.interests);
        interests.gone = true;
        let _ = registry.deregister(&mut SourceFd(&self.fd()));
    }

    fn reregister(&self, registry: &Registry, interests: &Interests) -> std::io::Result<()> {
        if interests.borrowed == 0 {
            let interest = if interests.write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            return registry.reregister(&mut SourceFd(&self.fd()), self.token, interest);
        }
        // Borrowed: watch for the peer's hang-up (and for room to write, if wanted), never for
        // bytes. mio has no such interest: its nearest, `PRIORITY`, is in the wake-up a socket
        // raises for every message (`EPOLLIN | EPOLLPRI | ...`), and the poll's thread would be
        // woken for each. So this one change is made with `epoll_ctl` directly, with the same
        // token mio gives the event loop (mio keeps no record of its own on Linux).
        let mut flags = EventFlags::RDHUP | EventFlags::ET;
        if interests.write {
            flags |= EventFlags::OUT;
        }
        let data = EventData::new_u64(self.token.0 as u64);
        epoll::modify(registry, self.sender.stream(), data, flags).map_err(Into::into)
    }

    /// Stops the poll watching for bytes, before `task` is written to this (idle) daemon by
    /// the thread that submitted it, so that the result wakes nobody but whoever waits for it
    /// ([`Lane::borrow`] takes the lease over); takes over an idle lease the last waiter kept
    /// (then nothing changes in the poll). A lease ends when its task is waited for, polled,
    /// cancelled or forgotten, or when it is older than [`LEASE`](super::waiting::LEASE) (the
    /// dispatcher thread's lease timer); `false` when it cannot be taken (another task's lease,
    /// a connection not lent or closing).
    pub(super) fn lease(&self, registry: &Registry, task: TaskId, now: Instant) -> bool {
        if !self.lendable() || self.failed() {
            return false;
        }
        let mut lease = lock(&self.lease);
        match &mut *lease {
            Some(Lease { task: Some(_), .. }) => false,
            Some(idle) => {
                *idle = Lease {
                    task: Some(task),
                    taken: now,
                };
                true
            }
            None => {
                if !self.add_borrower(registry) {
                    return false;
                }
                *lease = Some(Lease {
                    task: Some(task),
                    taken: now,
                });
                self.lanes.leases.fetch_add(1, Ordering::AcqRel);
                true
            }
        }
    }

    /// Ends the lease if `task` holds it or it is idle (any lease with `None`), and it was
    /// taken at or before `taken_by` (any time with `None`); returns when the lease that stays
    /// was taken.
    pub(super) fn end_lease(
        &self,
        registry: &Registry,
        task: Option<TaskId>,
        taken_by: Option<Instant>,
    ) -> Option<Instant> {
        let mut lease = lock(&self.lease);
        let held = (*lease)?;
        let other_task = matches!((task, held.task), (Some(t), Some(h)) if t != h);
        if other_task || taken_by.is_some_and(|t| held.taken > t) {
            return Some(held.taken);
        }
        *lease = None;
        self.lanes.leases.fetch_sub(1, Ordering::AcqRel);
        drop(lease);
        self.remove_borrower(registry);
        None
    }

    /// Ends the lease unless `task` holds it.
    pub(super) fn end_lease_unless(&self, registry: &Registry, task: TaskId) {
        let mut lease = lock(&self.lease);
        if lease.is_none_or(|held| held.task == Some(task)) {
            return;
        }
        *lease = None;
        self.lanes.leases.fetch_sub(1, Ordering::AcqRel);
        drop(lease);
        self.remove_borrower(registry);
    }

    fn add_borrower(&self, registry: &Registry) -> bool {
        let mut interests = lock(&self.interests);
        if interests.gone {
            return false;
        }
        interests.borrowed += 1;
        if interests.borrowed == 1 && self.reregister(registry, &interests).is_err() {
            interests.borrowed -= 1;
            return false;
        }
        true
    }

    /// Ends one borrow or lease; the last one gives the poll its interest back, which reports
    /// bytes that came meanwhile (the kernel checks readiness on a change). `false` when that
    /// failed: the connection is marked failed for the dispatcher thread.
    fn remove_borrower(&self, registry: &Registry) -> bool {
        let mut interests = lock(&self.interests);
        interests.borrowed -= 1;
        if interests.borrowed == 0
            && !interests.gone
            && self.reregister(registry, &interests).is_err()
        {
            self.failed.store(true, Ordering::Release);
            drop(interests);
            self.lanes.hand_back(self.token);
            return false;
        }
        true
    }

    /// Lends the reading half to a host thread waiting for `task`, unless somebody reads it
    /// now, it is not lendable, or it is closing; takes over `task`'s lease if it holds one.
    /// While the [`Borrow`] lives, the poll does not watch the connection for bytes.
    pub(super) fn borrow<'a>(&'a self, registry: &'a Registry, task: TaskId) -> Option<Borrow<'a>> {
        let leased = {
            let mut lease = lock(&self.lease);
            match *lease {
                Some(Lease { task: held, .. }) if held.is_none_or(|h| h == task) => {
                    *lease = None;
                    self.lanes.leases.fetch_sub(1, Ordering::AcqRel);
                    true
                }
                _ => false,
            }
        };
        let conn = if !self.lendable() || self.failed() {
            None
        } else {
            match self.conn.try_lock() {
                // Set under this lock by the dispatcher thread, so seen here if it applies.
                Ok(guard) if !self.unapplied.load(Ordering::Acquire) => Some(guard),
                Ok(_) | Err(_) => None,
            }
        };
        let Some(conn) = conn else {
            if leased {
                self.remove_borrower(registry);
            }
            return None;
        };
        if !leased && !self.add_borrower(registry) {
            return None;
        }
        Some(Borrow {
            lane: self,
            registry,
            conn: Some(conn),
        })
    }

    /// Marks messages read by the dispatcher thread as not yet with the core; call it holding
    /// the reading half, and [`Lane::release_for_core`] once the core has them.
    pub(super) fn hold_for_core(&self) {
        self.unapplied.store(true, Ordering::Release);
    }

    /// The core has heard what the dispatcher thread read: callers may borrow again.
    pub(super) fn release_for_core(&self) {
        self.unapplied.store(false, Ordering::Release);
    }

    /// Whether the connection failed under a borrower: the dispatcher thread closes it.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// A host thread's hold on a connection's reading half (see [`Lane::borrow`]).
pub(super) struct Borrow<'a> {
    lane: &'a Lane,
    registry: &'a Registry,
    conn: Option<MutexGuard<'a, Connection>>,
}

impl Borrow<'_> {
    /// The reading half.
    pub(super) fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("held until drop")
    }

    /// The connection failed under this borrow: the dispatcher thread closes it.
    pub(super) fn fail(&self) {
        self.lane.failed.store(true, Ordering::Release);
    }

    /// Ends the borrow, keeping the poll's interest off as an idle lease when `keep` (the
    /// daemon holds no task now: its next submitter takes the lease over, and the lease timer
    /// ends it if none comes); returns whether it was kept (the caller arms the timer).
    pub(super) fn end(mut self, keep: bool, now: Instant) -> bool {
        if keep && let Some(conn) = self.conn.take() {
            if !conn.may_have_more() && !self.lane.failed() {
                let mut lease = lock(&self.lane.lease);
                // Under the lease's lock, which a close takes first: no lease outlives it.
                if lease.is_none() && !lock(&self.lane.interests).gone {
                    *lease = Some(Lease {
                        task: None,
                        taken: now,
                    });
                    self.lane.lanes.leases.fetch_add(1, Ordering::AcqRel);
                    return true;
                }
            }
            self.conn = Some(conn);
        }
        self.release();
        false
    }

    fn release(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let leftover = conn.may_have_more() || self.lane.failed();
        // Let go of the reading half before the poll watches for bytes again: an event from
        // here on finds it free.
        drop(conn);
        if self.lane.remove_borrower(self.registry) && leftover {
            self.lane.lanes.hand_back(self.lane.token);
        }
    }
}

impl Drop for Borrow<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    //! The poll's interest as borrows and leases change it, on a real epoll and a real socket.

    use std::time::Duration;

    use mio::{Events, Poll};
    use nano_transport::Protocol;
    use nano_transport::conn::{ReadProgress, Stream};

    use super::*;

    const LANE: Token = Token(5);

    /// Whether the poll reports `LANE` readable within `within`.
    fn readable(poll: &mut Poll, within: Duration) -> bool {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(within)).unwrap();
        events.iter().any(|e| e.token() == LANE && e.is_readable())
    }

    fn drain(lane: &Lane) {
        let mut conn = lane.conn();
        conn.note_readable();
        while !matches!(
            conn.on_readable(64, &mut |_| true),
            Ok(ReadProgress::Drained)
        ) {}
    }

    #[test]
    fn bytes_raise_no_event_while_borrowed_or_leased_and_the_end_reports_them() {
        let mut poll = Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let lanes = Arc::new(Lanes::new(waker));
        let (a, b) = mio::net::UnixStream::pair().unwrap();
        let conn = Connection::new(Stream::Unix(a), Protocol::Pair1, 0).unwrap();
        let lane = Lane::register(conn, LANE, &registry, Arc::clone(&lanes)).unwrap();
        let peer = Connection::new(Stream::Unix(b), Protocol::Pair1, 0).unwrap();
        // The peer's header: watched, so reported.
        assert!(readable(&mut poll, Duration::from_secs(5)));
        drain(&lane);
        let quiet = Duration::from_millis(50);

        // A borrow: bytes arriving wake nobody; its end gives them to the poll.
        let borrow = lane.borrow(&registry, TaskId(1)).expect("free to borrow");
        assert!(
            lane.borrow(&registry, TaskId(1)).is_none(),
            "one reader at a time"
        );
        peer.sender().send(&[b"one"]).unwrap();
        assert!(
            !readable(&mut poll, quiet),
            "a borrowed connection woke the poll"
        );
        drop(borrow);
        assert!(
            readable(&mut poll, Duration::from_secs(5)),
            "the end lost the bytes"
        );
        drain(&lane);

        // A lease: the same, and only its own task's borrow takes it over.
        assert!(lane.lease(&registry, TaskId(2), Instant::now()));
        assert!(lanes.any_lease());
        assert!(
            !lane.lease(&registry, TaskId(3), Instant::now()),
            "one lease at a time"
        );
        peer.sender().send(&[b"two"]).unwrap();
        assert!(
            !readable(&mut poll, quiet),
            "a leased connection woke the poll"
        );
        lane.end_lease_unless(&registry, TaskId(2));
        assert!(lanes.any_lease(), "ended by its own task");
        assert!(
            lane.end_lease(&registry, Some(TaskId(3)), None).is_some(),
            "another task's"
        );
        assert!(lane.end_lease(&registry, Some(TaskId(2)), None).is_none());
        assert!(!lanes.any_lease());
        assert!(
            readable(&mut poll, Duration::from_secs(5)),
            "the lease's end lost the bytes"
        );
        drain(&lane);

        // A borrow ending idle keeps an idle lease, which the next task takes over.
        let borrow = lane.borrow(&registry, TaskId(4)).expect("free to borrow");
        assert!(borrow.end(true, Instant::now()), "kept as an idle lease");
        assert!(
            lane.lease(&registry, TaskId(5), Instant::now()),
            "taken over"
        );
        peer.sender().send(&[b"three"]).unwrap();
        assert!(!readable(&mut poll, quiet));
        let borrow = lane
            .borrow(&registry, TaskId(5))
            .expect("the lease's own task");
        assert!(!lanes.any_lease(), "the borrow took the lease over");
        drop(borrow);
        assert!(readable(&mut poll, Duration::from_secs(5)));

        // Closed: its lease ends, and nothing registers it again.
        assert!(lane.lease(&registry, TaskId(6), Instant::now()));
        lane.deregister(&registry);
        assert!(!lanes.any_lease());
        assert!(!lane.lease(&registry, TaskId(6), Instant::now()));
        assert!(lane.borrow(&registry, TaskId(6)).is_none());
    }
}
