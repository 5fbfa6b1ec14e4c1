//! The dispatcher thread: one mio poll over the listener, the connections and a waker.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nano_transport::conn::{Connection, ReadProgress};
use nano_transport::proto::{MAX_TTL_DEFAULT, pair1_hops};

use super::accept::Listener;
use super::shared::{Link, Shared};
use super::{DaemonEvent, LISTENER, MISSED_BEATS, PAIR1_HEADER, READ_BATCH, WAKER};
use crate::admission::Admission;
use crate::core::Reply;
use crate::daemon::ExitReason;
use crate::protocol::{FromDaemon, Hello, RefuseReason, ResultStatus, ToDaemon, check_hello};
use crate::secret::Secret;
use crate::task::{DaemonId, Payload, TaskId};

/// One accepted connection, admitted or not yet.
pub(super) struct Peer {
    pub(super) conn: Connection,
    /// The peer's address, on TCP.
    pub(super) addr: Option<std::net::SocketAddr>,
    pub(super) daemon: Option<DaemonId>,
    pub(super) last_rx: Instant,
    /// Registered for writability (only while its sender has bytes queued).
    pub(super) writable: bool,
    /// Refused: closed as soon as the refusal is written, and read no more.
    pub(super) refused: bool,
}

/// A daemon message after decoding, waiting for the core.
enum Inbound {
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

/// The dispatcher thread's state.
pub(super) struct EventLoop {
    pub(super) shared: Arc<Shared>,
    pub(super) poll: Poll,
    pub(super) listener: Listener,
    pub(super) ipc_path: Option<PathBuf>,
    pub(super) token: Secret,
    pub(super) peers: HashMap<Token, Peer>,
    pub(super) by_daemon: HashMap<DaemonId, Token>,
    /// The nonzero launch ids of the admitted daemons: each credential admits one daemon at a
    /// time.
    pub(super) launches: HashMap<u64, Token>,
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
                    LISTENER => self.listener_ready = true,
                    token => {
                        if (event.is_readable() || event.is_read_closed() || event.is_error())
                            && let Some(peer) = self.peers.get_mut(&token)
                        {
                            peer.conn.note_readable();
                            if event.is_read_closed() {
                                // The daemon's last frame and its close may both be in this
                                // event: read until the close shows.
                                peer.conn.note_read_closed();
                            }
                            if !self.ready.contains(&token) {
                                self.ready.push(token);
                            }
                        }
                        if event.is_writable() {
                            woken = true;
                        }
                    }
                }
            }
            if woken {
                self.flush_queues();
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

    /// Flushes connections with queued bytes; watches for writability only while some remain.
    fn flush_queues(&mut self) {
        let mut failed = Vec::new();
        for (&token, peer) in &mut self.peers {
            let sender = peer.conn.sender();
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
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let fd = peer.conn.stream().as_raw_fd();
                if self
                    .poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), token, interest)
                    .is_err()
                {
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
        for token in tokens {
            let Some(peer) = self.peers.get_mut(&token) else {
                continue;
            };
            if peer.refused {
                continue;
            }
            let mut bodies = Vec::new();
            let before = peer.conn.bytes_received();
            let progress = peer.conn.on_readable(READ_BATCH, &mut |b| {
                bodies.push(b);
                true
            });
            // Bytes arriving are a sign of life even before they complete a message: a result
            // of gigabytes takes longer than the silence limit to arrive, and the daemon's
            // heartbeats wait behind it.
            if peer.conn.bytes_received() != before {
                // A fresh reading, not the turn's: this read may have taken longer than the
                // silence limit (a large message arriving), and the peer spoke until its end.
                peer.last_rx = Instant::now();
            }
            // A TLS read may leave handshake records for the socket to take.
            output |= peer.conn.sender().queued() > 0 && !peer.writable;
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
        if !inbound.is_empty() {
            let mut core = self.shared.host.lock();
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
                        // Noted before the core hears of it, so the departure that follows
                        // is reported as a retirement however soon the connection closes.
                        if let Some(link) = self
                            .shared
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
            self.shared.flush_held(core);
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
        match pair1_hops(&body, MAX_TTL_DEFAULT) {
            Ok(_) => {}
            Err(e) => return !e.closes_pipe(),
        }
        let frame = &body[PAIR1_HEADER.len()..];
        let Some(peer) = self.peers.get(&token) else {
            return false;
        };
        let admitted = peer.daemon.is_some();
        let Ok((msg, payload)) = FromDaemon::decode(frame, &self.shared.limits) else {
            // A malformed message: this daemon cannot be trusted, the others carry on.
            if !admitted {
                drop_unauthenticated(token, "malformed message before the hello");
            }
            return false;
        };
        let payload_len = payload.len();
        match (msg, peer.daemon) {
            (FromDaemon::Hello(hello), None) => self.on_hello(token, &hello),
            (_, None) => {
                drop_unauthenticated(token, "message before the hello");
                false
            }
            // A second hello: not our protocol.
            (FromDaemon::Hello(_), Some(_)) => false,
            (FromDaemon::Heartbeat, Some(_)) => true,
            (FromDaemon::Retiring { reason }, Some(daemon)) => {
                inbound.push(Inbound::Retiring {
                    daemon,
                    token,
                    reason,
                });
                true
            }
            (FromDaemon::Result { task, status, last }, Some(daemon)) => {
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
                inbound.push(Inbound::Result {
                    daemon,
                    token,
                    task,
                    reply,
                    last,
                });
                true
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
        let sender = peer.conn.sender().clone();
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
        peer.conn.set_recv_limit(full_limit);
        let daemon = core.daemon_connected(self.shared.local, Instant::now());
        // Linked before the core's lock is released, so whoever carries out the init finds it.
        self.shared
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                daemon,
                Link {
                    sender,
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
                    self.shared.send(peer.conn.sender(), &ToDaemon::Heartbeat);
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
        let silent = |peers: &HashMap<Token, Peer>, now: Instant| -> Vec<Token> {
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
            for token in &silent_now {
                if let Some(peer) = self.peers.get_mut(token) {
                    peer.conn.note_readable();
                    if !self.ready.contains(token) {
                        self.ready.push(*token);
                    }
                }
            }
            self.read_ready(Instant::now());
            silent_now = silent(&self.peers, Instant::now());
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
        let fd = peer.conn.stream().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        let _ = peer.conn.stream().shutdown();
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
            let _ = peer.conn.sender().flush();
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
