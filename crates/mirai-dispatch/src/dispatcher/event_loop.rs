//! The dispatcher thread: one mio poll over the listener, the connections and a waker.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nano_transport::conn::ReadProgress;
use nano_transport::proto::{MAX_TTL_DEFAULT, pair1_hops};

use super::accept::Listener;
use super::inbound::{Inbound, decode};
use super::lane::Lane;
use super::shared::{Link, Shared};
use super::waiting::LEASE;
use super::{DaemonEvent, LEASE_TIMER, LISTENER, MISSED_BEATS, PAIR1_HEADER, READ_BATCH, WAKER};
use crate::admission::Admission;
use crate::protocol::{FromDaemon, Hello, RefuseReason, ToDaemon, check_hello};
use crate::secret::Secret;
use crate::task::{DaemonId, IdMap};

/// One accepted connection, admitted or not yet.
pub(super) struct Peer {
    pub(super) lane: Arc<Lane>,
    /// The peer's address, on TCP.
    pub(super) addr: Option<std::net::SocketAddr>,
    pub(super) daemon: Option<DaemonId>,
    /// When bytes last came from it, as far as this thread has seen: its own reads, and the
    /// byte count moving under a caller's borrow ([`EventLoop::refresh_rx`]).
    pub(super) last_rx: Instant,
    /// The byte count `last_rx` goes with.
    pub(super) seen: u64,
    /// Registered for writability (only while its sender has bytes queued).
    pub(super) writable: bool,
    /// Refused: closed as soon as the refusal is written, and read no more.
    pub(super) refused: bool,
}

/// The dispatcher thread's state.
pub(super) struct EventLoop {
    pub(super) shared: Arc<Shared>,
    pub(super) poll: Poll,
    pub(super) listener: Listener,
    pub(super) ipc_path: Option<PathBuf>,
    pub(super) token: Secret,
    pub(super) peers: IdMap<Token, Peer>,
    pub(super) by_daemon: IdMap<DaemonId, Token>,
    /// The nonzero launch ids of the admitted daemons: each credential admits one daemon at a
    /// time.
    pub(super) launches: IdMap<u64, Token>,
    pub(super) next_token: usize,
    /// Connections that may hold unread bytes no readiness event will announce.
    pub(super) ready: Vec<Token>,
    /// The listener may hold connections no readiness event will announce (a full batch).
    pub(super) listener_ready: bool,
    /// When to try the listener again after a failed accept.
    pub(super) accept_retry: Option<Instant>,
    pub(super) next_beat: Option<Instant>,
    /// Hello deadlines and the cap of the connections not yet admitted.
    pub(super) admission: Admission<Token>,
}

impl EventLoop {
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = if self.ready.is_empty() && !self.listener_ready {
                self.sleep_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.sleep_until.store(0, Ordering::Relaxed);
            // One clock read for the bytes' arrival and the core's events of this turn (a read
            // costs about as much here as the rest of a result's handling).
            let now = Instant::now();
            if let Err(e) = polled
                && e.kind() != io::ErrorKind::Interrupted
            {
                break;
            }
            let mut woken = false;
            for event in &events {
                match event.token() {
                    WAKER => woken = true,
                    LEASE_TIMER => self.expire_leases(),
                    LISTENER => self.listener_ready = true,
                    token => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // The daemon's last frame and its close may both be in this
                            // event: then it is read until the close shows.
                            self.mark_ready(token, event.is_read_closed());
                        }
                        if event.is_writable() {
                            woken = true;
                        }
                    }
                }
            }
            if woken {
                self.flush_queues();
                self.take_returned();
            }
            // Payloads that left their connection's queue leave the budget.
            self.shared.release_written();
            if self.listener_ready {
                self.accept();
            }
            self.read_ready(now);
            // Also carries out what host calls through [`Dispatcher::host`] left. A fresh
            // reading: the reads of this turn may have taken long (a large message), and
            // heartbeats and silence are judged by the time they are due, not the turn's start.
            self.timers(Instant::now());
        }
        self.close_all();
    }

    /// The earliest time something is due (a core timeout, a heartbeat, a silence limit),
    /// published for host threads before the thread sleeps.
    fn sleep_deadline(&self) -> Option<Instant> {
        let core = self.shared.host.lock();
        let next = self.next_deadline(core.poll_timeout());
        let until = next.map_or(u64::MAX, |t| self.shared.nanos(t));
        self.shared.sleep_until.store(until, Ordering::Relaxed);
        drop(core);
        next
    }

    fn next_deadline(&self, core_next: Option<Instant>) -> Option<Instant> {
        let mut next = core_next;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(b) = self.next_beat {
            consider(b);
        }
        if let Some(t) = self.admission.next_deadline() {
            consider(t);
        }
        if let Some(t) = self.accept_retry {
            consider(t);
        }
        if let Some(h) = self.shared.heartbeat {
            for peer in self.peers.values().filter(|p| p.daemon.is_some()) {
                consider(peer.last_rx + h * MISSED_BEATS);
            }
        }
        next
    }

    /// Takes back the connections callers returned with something left: bytes read and not
    /// decoded (read on), or a failure (closed).
    fn take_returned(&mut self) {
        for token in self.shared.lanes.take() {
            let Some(peer) = self.peers.get(&token) else {
                continue;
            };
            if peer.lane.failed() {
                self.close(token);
            } else {
                self.mark_ready(token, false);
            }
        }
    }

    /// Notes that `token`'s connection may have bytes (and, with `closed`, that its peer's
    /// close was reported), and queues it for reading. A connection a caller borrowed is read by
    /// that caller, which hands it back if it leaves anything.
    fn mark_ready(&mut self, token: Token, closed: bool) {
        let Some(peer) = self.peers.get(&token) else {
            return;
        };
        if let Some(mut conn) = peer.lane.try_conn() {
            conn.note_readable();
            if closed {
                conn.note_read_closed();
            }
        }
        if !self.ready.contains(&token) {
            self.ready.push(token);
        }
    }

    /// Ends the leases older than [`LEASE`] (their submitters did not come to wait), and arms
    /// the timer again for the younger ones.
    fn expire_leases(&mut self) {
        self.shared.lease_timer.fired();
        let now = Instant::now();
        let cutoff = now.checked_sub(LEASE);
        let mut oldest_left: Option<Instant> = None;
        for peer in self.peers.values() {
            if let Some(taken) =
                peer.lane
                    .end_lease(&self.shared.registry, None, cutoff.or(Some(now)))
            {
                oldest_left = Some(oldest_left.map_or(taken, |t| t.min(taken)));
            }
        }
        if let Some(taken) = oldest_left {
            let due = (taken + LEASE).saturating_duration_since(now);
            self.shared.lease_timer.arm(due);
        }
    }

    /// Notes the bytes a caller read under a borrow as a sign of life (their arrival time is
    /// not known here: now is later, so this never judges a daemon silent early).
    fn refresh_rx(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            let received = peer.lane.sender().bytes_received();
            if received != peer.seen {
                peer.seen = received;
                peer.last_rx = now;
            }
        }
    }

    /// Flushes connections with queued bytes; watches for writability only while some remain.
    fn flush_queues(&mut self) {
        let mut failed = Vec::new();
        for (&token, peer) in &mut self.peers {
            let sender = peer.lane.sender();
            if sender.has_failed() {
                failed.push(token);
                continue;
            }
            if sender.queued() == 0 && !peer.writable {
                continue;
            }
            let Ok(done) = sender.flush() else {
                failed.push(token);
                continue;
            };
            if done && peer.refused {
                // The refusal is out: nothing more for this peer.
                failed.push(token);
                continue;
            }
            let want = !done;
            if want != peer.writable {
                if peer.lane.want_write(self.poll.registry(), want).is_err() {
                    failed.push(token);
                    continue;
                }
                peer.writable = want;
            }
        }
        for token in failed {
            self.close(token);
        }
    }

    /// Reads every connection that may have bytes, then feeds the results to the core under one
    /// lock; `now` is the time of the turn.
    fn read_ready(&mut self, now: Instant) {
        let mut inbound = Vec::new();
        let mut closing = Vec::new();
        let tokens = std::mem::take(&mut self.ready);
        let mut output = false;
        // Connections whose messages were read and are not yet with the core: no caller may
        // borrow them until they are (see `Lane::borrow`), so the core hears them in order.
        let mut unapplied: Vec<Arc<Lane>> = Vec::new();
        for token in tokens {
            let Some(peer) = self.peers.get_mut(&token) else {
                continue;
            };
            if peer.refused {
                continue;
            }
            let lane = Arc::clone(&peer.lane);
            // Borrowed: the caller reads it, and hands it back if it leaves anything.
            let Some(mut conn) = lane.try_conn() else {
                continue;
            };
            let mut bodies = Vec::new();
            let progress = conn.on_readable(READ_BATCH, &mut |b| {
                bodies.push(b);
                true
            });
            if !bodies.is_empty() && peer.daemon.is_some() {
                lane.hold_for_core();
                unapplied.push(Arc::clone(&lane));
            }
            drop(conn);
            // Bytes arriving are a sign of life even before they complete a message: a result
            // of gigabytes takes longer than the silence limit to arrive, and the daemon's
            // heartbeats wait behind it.
            let received = lane.sender().bytes_received();
            if received != peer.seen {
                // A fresh reading, not the turn's: this read may have taken longer than the
                // silence limit (a large message arriving), and the peer spoke until its end.
                peer.seen = received;
                peer.last_rx = Instant::now();
            }
            // A TLS read may leave handshake records for the socket to take.
            output |= lane.sender().queued() > 0 && !peer.writable;
            match progress {
                Ok(ReadProgress::Drained) => {}
                Ok(ReadProgress::HandshakeDone | ReadProgress::Yielded) => self.ready.push(token),
                Err(e) => {
                    if peer.daemon.is_none() {
                        unauthenticated_closed(token, &e);
                    }
                    closing.push(token);
                }
            }
            for body in bodies {
                if !self.on_body(token, body, &mut inbound) {
                    closing.push(token);
                    break;
                }
            }
        }
        closing.extend(self.shared.apply(inbound, now, None).closing);
        for lane in unapplied {
            lane.release_for_core();
        }
        for token in closing {
            self.close(token);
        }
        if output {
            self.flush_queues();
        }
    }

    /// Handles one message body; `false` closes the connection.
    fn on_body(&mut self, token: Token, body: Vec<u8>, inbound: &mut Vec<Inbound>) -> bool {
        let Some(peer) = self.peers.get(&token) else {
            return false;
        };
        if let Some(daemon) = peer.daemon {
            return decode(body, daemon, token, &self.shared.limits, inbound);
        }
        match pair1_hops(&body, MAX_TTL_DEFAULT) {
            Ok(_) => {}
            Err(e) => return !e.closes_pipe(),
        }
        let frame = &body[PAIR1_HEADER.len()..];
        match FromDaemon::decode(frame, &self.shared.limits) {
            Ok((FromDaemon::Hello(hello), _)) => self.on_hello(token, &hello),
            Ok(_) => {
                drop_unauthenticated(token, "message before the hello");
                false
            }
            Err(_) => {
                drop_unauthenticated(token, "malformed message before the hello");
                false
            }
        }
    }

    /// The receive limit of an admitted daemon: the largest result frame.
    pub(super) fn full_recv_limit(&self) -> u64 {
        self.shared
            .limits
            .max_frame()
            .saturating_add(PAIR1_HEADER.len() as u64)
    }

    /// Admits or refuses a connection on its hello. A refusal is logged and reported with the
    /// launch id the peer *claimed*: nothing about it is authenticated, so the event never says
    /// a launch failed.
    fn on_hello(&mut self, token: Token, hello: &Hello) -> bool {
        let full_limit = self.full_recv_limit();
        let Some(peer) = self.peers.get_mut(&token) else {
            return false;
        };
        let sender = peer.lane.sender().clone();
        let mut core = self.shared.host.lock();
        let refusal = match check_hello(hello, &self.token) {
            Err(e) => Some(e.refuse_reason()),
            Ok(()) if core.is_shut_down() => Some(RefuseReason::ShuttingDown),
            // Only the first holder of a launch's credential joins: a second claim (a copy of
            // the credential, or a replay) cannot push the launched daemon aside.
            Ok(()) if hello.launch_id != 0 && self.launches.contains_key(&hello.launch_id) => {
                Some(RefuseReason::LaunchInUse)
            }
            Ok(()) => None,
        };
        if let Some(reason) = refusal {
            drop(core);
            tracing::warn!(
                connection = token.0,
                claimed_launch_id = hello.launch_id,
                ?reason,
                "refusing a daemon"
            );
            peer.refused = true;
            self.shared.send(&sender, &ToDaemon::Refused(reason));
            self.shared.event(DaemonEvent::Refused {
                claimed_launch_id: hello.launch_id,
                reason,
            });
            // Closed once the refusal is written: at once if the kernel took it, else when the
            // dispatcher thread has flushed it (the hello deadline still bounds the wait).
            return sender.queued() > 0;
        }
        self.admission.admit(token);
        peer.lane.conn().set_recv_limit(full_limit);
        let daemon = core.daemon_connected(self.shared.local, Instant::now());
        // Linked before the core's lock is released, so whoever carries out the init finds it.
        self.shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                daemon,
                Link {
                    lane: Arc::clone(&peer.lane),
                    launch_id: hello.launch_id,
                    retired: None,
                    addr: peer.addr,
                },
            );
        peer.daemon = Some(daemon);
        self.by_daemon.insert(daemon, token);
        if hello.launch_id != 0 {
            self.launches.insert(hello.launch_id, token);
        }
        self.shared.event(DaemonEvent::Joined {
            daemon,
            launch_id: hello.launch_id,
        });
        self.shared.flush_held(core);
        true
    }

    /// Fires the core's timeouts, sends heartbeats, and closes silent connections.
    fn timers(&mut self, now: Instant) {
        {
            let mut core = self.shared.host.lock();
            if core.poll_timeout().is_some_and(|t| t <= now) {
                core.handle_timeout(now);
            }
            self.shared.flush_held(core);
        }
        if self.accept_retry.is_some_and(|t| t <= now) {
            self.accept_retry = None;
            self.listener_ready = true;
        }
        let heartbeat = self.shared.heartbeat;
        if let (Some(h), Some(beat)) = (heartbeat, self.next_beat)
            && beat <= now
        {
            self.next_beat = Some(now + h);
            for peer in self.peers.values() {
                if peer.daemon.is_some() {
                    self.shared.send(peer.lane.sender(), &ToDaemon::Heartbeat);
                }
            }
        }
        for token in self.admission.expired(now) {
            if self.peers.get(&token).is_some_and(|p| !p.refused) {
                drop_unauthenticated(token, "no valid hello in time");
            }
            self.close(token);
        }
        let Some(h) = heartbeat else {
            return;
        };
        // Bytes a caller read under a borrow count as the daemon's word too.
        self.refresh_rx(now);
        let silent = |peers: &IdMap<Token, Peer>, now: Instant| -> Vec<Token> {
            peers
                .iter()
                .filter(|(_, p)| p.daemon.is_some() && now >= p.last_rx + h * MISSED_BEATS)
                .map(|(&t, _)| t)
                .collect()
        };
        let mut silent_now = silent(&self.peers, now);
        if !silent_now.is_empty() {
            // A long write (a large task flushed as the daemon read it) may have kept this
            // thread from reading what the daemon sent meanwhile: look before judging.
            for &token in &silent_now {
                self.mark_ready(token, false);
            }
            self.read_ready(Instant::now());
            let now = Instant::now();
            self.refresh_rx(now);
            silent_now = silent(&self.peers, now);
        }
        for token in silent_now {
            self.close(token);
        }
    }

    /// Closes a connection; an admitted daemon leaves the core (resolving or retrying its task).
    pub(super) fn close(&mut self, token: Token) {
        let Some(peer) = self.peers.remove(&token) else {
            return;
        };
        self.admission.removed(token);
        self.ready.retain(|&t| t != token);
        peer.lane.deregister(self.poll.registry());
        // Also wakes a caller that borrowed the connection and waits on it.
        let _ = peer.lane.sender().stream().shutdown();
        if let Some(daemon) = peer.daemon {
            self.by_daemon.remove(&daemon);
            self.launches.retain(|_, t| *t != token);
            let mut core = self.shared.host.lock();
            core.daemon_disconnected(daemon, Instant::now());
            self.shared.flush_held(core);
        }
    }

    /// At stop: push out what is queued (the exit messages), then close everything.
    fn close_all(&mut self) {
        for peer in self.peers.values() {
            let _ = peer.lane.sender().flush();
        }
        let tokens: Vec<Token> = self.peers.keys().copied().collect();
        for token in tokens {
            self.close(token);
        }
        if let Some(path) = &self.ipc_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Logs that a connection which never authenticated is being closed, and why.
pub(super) fn drop_unauthenticated(token: Token, why: &str) {
    tracing::warn!(
        connection = token.0,
        reason = why,
        "closing an unauthenticated connection"
    );
}

/// Logs a transport failure of a connection that never authenticated (a failed TLS handshake,
/// a refused SP header, an oversized frame). A plain close is only a debug event: refused
/// daemons and probes leave that way.
fn unauthenticated_closed(token: Token, error: &nano_transport::conn::ConnError) {
    match error {
        nano_transport::conn::ConnError::Closed => {
            tracing::debug!(connection = token.0, "closed before its hello");
        }
        e => {
            let why = e.to_string();
            drop_unauthenticated(token, &why);
        }
    }
}
