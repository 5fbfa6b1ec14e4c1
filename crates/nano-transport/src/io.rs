//! The socket's background I/O thread: one `mio::Poll` owning listeners, dialers and the
//! reading halves of the pipes.
//!
//! The thread accepts and dials, runs handshakes (with their timeout), reads frames in batches and
//! applies the protocol's receive rules ([`crate::deliver`]) under one lock per batch, flushes
//! send queues when streams become writable, redials with backoff, and fires REQ resends.
//! User threads talk to it through [`Command`]s in the shared core and a `mio::Waker`.

use std::collections::HashMap;
use std::io as stdio;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::conn::{ConnError, ConnSender, Connection, ReadProgress, SendStatus, Stream};
use crate::deliver::{BATCH, deliver, receive_room, receive_room_bytes};
use crate::endpoint::{ListenSource, admit, connect};
use crate::proto::Resend;
use crate::shared::{Command, Core, Inner, Interests, PipeEvent, PipeSlot};
use crate::url::Address;
use crate::{PipeId, Protocol};

/// The token of the socket's waker.
pub(crate) const WAKER: Token = Token(0);

/// How long a pipe stays with its direct reader after a receive returns (see `direct`): the
/// longest the I/O thread may take to notice a peer's close while nobody receives.
pub(crate) const DIRECT_LEASE: Duration = Duration::from_millis(10);

/// How long closing a socket waits at most for its queued messages to reach the kernel when
/// it has no send timeout (with one, it waits up to that timeout).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

pub(crate) fn spawn(inner: Arc<Inner>, poll: Poll) -> stdio::Result<JoinHandle<()>> {
    let name = format!("sp-{}", inner.protocol.name());
    thread::Builder::new().name(name).spawn(move || {
        let mut l = IoLoop {
            inner,
            poll,
            next_token: 1,
            next_pipe: 1,
            listeners: HashMap::new(),
            connecting: HashMap::new(),
            pipes: HashMap::new(),
            dialers: HashMap::new(),
            again: Vec::new(),
            paused: Vec::new(),
            batch: Vec::with_capacity(BATCH),
        };
        l.run();
        l.shutdown();
    })
}

struct Connecting {
    stream: Stream,
    dialer: u32,
}

struct PipeIo {
    id: PipeId,
    /// The reading half; a blocking `recv` may borrow it to read directly (see `direct`).
    reader: Arc<Mutex<Connection>>,
    sender: ConnSender,
    fd: RawFd,
    interests: Arc<Mutex<Interests>>,
    dialer: Option<u32>,
    /// Handshake deadline; `None` once the pipe is added.
    deadline: Option<Instant>,
}

struct Dialer {
    addr: Address,
    retry_at: Option<Instant>,
    backoff: Duration,
}

struct IoLoop {
    inner: Arc<Inner>,
    poll: Poll,
    next_token: usize,
    next_pipe: u32,
    listeners: HashMap<Token, ListenSource>,
    connecting: HashMap<Token, Connecting>,
    pipes: HashMap<Token, PipeIo>,
    dialers: HashMap<u32, Dialer>,
    /// Pipes that yielded with data possibly left; served again without waiting for an event.
    again: Vec<Token>,
    /// Pipes not read because the receive queue was full.
    paused: Vec<Token>,
    batch: Vec<Vec<u8>>,
}

impl IoLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            // "Sleeping with no timeout" while computing, so a timer armed meanwhile wakes us.
            self.inner.io_deadline.store(u64::MAX, Ordering::Release);
            let timeout = if self.again.is_empty() {
                self.next_timeout()
            } else {
                Some(Duration::ZERO)
            };
            let until = timeout.map_or(u64::MAX, |t| {
                self.inner.nanos_since_epoch(Instant::now() + t)
            });
            self.inner.io_deadline.store(until, Ordering::Release);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == stdio::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            for ev in events.iter() {
                let tok = ev.token();
                if tok == WAKER {
                    continue;
                }
                if self.listeners.contains_key(&tok) {
                    self.accept(tok);
                } else if self.connecting.contains_key(&tok) {
                    self.finish_connect(tok);
                } else if self.pipes.contains_key(&tok) {
                    if ev.is_writable() {
                        self.flush(tok);
                    }
                    if ev.is_read_closed() {
                        self.note_read_closed(tok);
                    }
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        self.read(tok);
                    }
                }
            }
            if !self.handle_commands() {
                return;
            }
            for tok in std::mem::take(&mut self.again) {
                self.read(tok);
            }
            self.fire_timers();
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn next_timeout(&self) -> Option<Duration> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for d in self.dialers.values() {
            consider(d.retry_at);
        }
        for p in self.pipes.values() {
            consider(p.deadline);
            let i = p.interests.lock().unwrap_or_else(|e| e.into_inner());
            if i.direct && !i.reader_active {
                consider(i.lease_end);
            }
        }
        let core = self.inner.lock();
        consider(core.req.next_deadline());
        if !core.recv_wakers.is_empty() {
            consider(core.survey.deadline().filter(|d| *d > Instant::now()));
        }
        drop(core);
        next.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// Runs user commands, flushes queues sends left behind, closes pipes whose writes failed.
    /// Returns `false` on shutdown.
    fn handle_commands(&mut self) -> bool {
        let commands = std::mem::take(&mut self.inner.lock().commands);
        for c in commands {
            match c {
                Command::Shutdown => return false,
                Command::Listen(src) => {
                    let tok = self.token();
                    let mut src = src;
                    let ok = match &mut src {
                        ListenSource::Tcp(l) => {
                            self.poll.registry().register(l, tok, Interest::READABLE)
                        }
                        ListenSource::Unix { listener, .. } => {
                            self.poll
                                .registry()
                                .register(listener, tok, Interest::READABLE)
                        }
                        #[cfg(feature = "tls")]
                        ListenSource::Tls(l, _) => {
                            self.poll.registry().register(l, tok, Interest::READABLE)
                        }
                    };
                    if ok.is_ok() {
                        self.listeners.insert(tok, src);
                        self.accept(tok);
                    }
                }
                Command::Dial(id, addr) => {
                    let backoff = self.inner.lock().opts.reconnect_min;
                    self.dialers.insert(
                        id,
                        Dialer {
                            addr,
                            retry_at: None,
                            backoff,
                        },
                    );
                    self.start_dial(id);
                }
                Command::ResumeReads => self.again.append(&mut self.paused),
            }
        }
        // Cleared before flushing: a sender that queues after this wakes us again.
        self.inner.flush_requested.store(false, Ordering::Release);
        let toks: Vec<Token> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.sender.queued() > 0 || p.sender.has_failed())
            .map(|(t, _)| *t)
            .collect();
        for tok in toks {
            self.flush(tok);
        }
        true
    }

    fn accept(&mut self, tok: Token) {
        loop {
            let accepted = match self.listeners.get(&tok) {
                Some(ListenSource::Tcp(l)) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                Some(ListenSource::Unix {
                    listener,
                    peers,
                    url,
                    ..
                }) => match listener.accept() {
                    // Before the stream becomes a pipe (which sends our SP header) and before
                    // any of its bytes is read: a refused peer is only closed (dropped).
                    Ok((s, _)) if !admit(&s, *peers, url) => continue,
                    Ok((s, _)) => Ok(Stream::Unix(s)),
                    Err(e) => Err(e),
                },
                #[cfg(feature = "tls")]
                Some(ListenSource::Tls(l, config)) => match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        match crate::tls::accept(s, config) {
                            Ok(tls) => Ok(Stream::Tls(tls)),
                            // This connection only; keep accepting the others.
                            Err(_) => continue,
                        }
                    }
                    Err(e) => Err(e),
                },
                None => return,
            };
            match accepted {
                Ok(stream) => self.start_pipe(stream, None),
                Err(e) if e.kind() == stdio::ErrorKind::WouldBlock => return,
                // ECONNABORTED, EMFILE and friends: drop this one, keep listening.
                Err(e) if e.kind() == stdio::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn start_dial(&mut self, id: u32) {
        let Some(d) = self.dialers.get_mut(&id) else {
            return;
        };
        d.retry_at = None;
        match connect(&d.addr) {
            Ok(stream) => {
                let tok = self.token();
                let fd = stream.as_raw_fd();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&fd), tok, interest)
                    .is_ok()
                {
                    self.connecting
                        .insert(tok, Connecting { stream, dialer: id });
                    self.finish_connect(tok);
                } else {
                    self.redial_later(id);
                }
            }
            Err(_) => self.redial_later(id),
        }
    }

    fn redial_later(&mut self, id: u32) {
        let opts = self.inner.lock().opts.clone();
        let Some(d) = self.dialers.get_mut(&id) else {
            return;
        };
        let wait = d.backoff.max(Duration::from_millis(1));
        d.retry_at = Some(Instant::now() + wait);
        d.backoff = if opts.reconnect_max > opts.reconnect_min {
            (wait * 2).min(opts.reconnect_max)
        } else {
            opts.reconnect_min
        };
    }

    fn finish_connect(&mut self, tok: Token) {
        let Some(c) = self.connecting.get(&tok) else {
            return;
        };
        let (err, peer) = match &c.stream {
            Stream::Tcp(s) => (s.take_error(), s.peer_addr().map(|_| ())),
            Stream::Unix(s) => (s.take_error(), s.peer_addr().map(|_| ())),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => (s.tcp().take_error(), s.tcp().peer_addr().map(|_| ())),
        };
        let failed = match (err, peer) {
            (Ok(None), Ok(())) => false,
            (Ok(None), Err(e)) if e.kind() == stdio::ErrorKind::NotConnected => return,
            _ => true,
        };
        let c = self.connecting.remove(&tok).expect("present");
        let fd = c.stream.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if failed {
            self.redial_later(c.dialer);
            return;
        }
        if let Stream::Tcp(s) = &c.stream {
            let _ = s.set_nodelay(true);
        }
        let Some(stream) = self.secure(c.dialer, c.stream) else {
            self.redial_later(c.dialer);
            return;
        };
        self.start_pipe(stream, Some(c.dialer));
    }

    /// Starts the client side of TLS on a connected stream when its dialer's URL asks for it.
    #[cfg(feature = "tls")]
    fn secure(&self, dialer: u32, stream: Stream) -> Option<Stream> {
        let Some(Address::Tls { host, .. }) = self.dialers.get(&dialer).map(|d| &d.addr) else {
            return Some(stream);
        };
        let Stream::Tcp(tcp) = stream else {
            return None;
        };
        let config = self.inner.lock().opts.tls.clone()?;
        crate::tls::connect(tcp, &config, host)
            .ok()
            .map(Stream::Tls)
    }

    #[cfg(not(feature = "tls"))]
    fn secure(&self, _dialer: u32, stream: Stream) -> Option<Stream> {
        Some(stream)
    }

    fn start_pipe(&mut self, stream: Stream, dialer: Option<u32>) {
        let (limit, hs) = {
            let core = self.inner.lock();
            (core.opts.recv_max_size, core.opts.handshake_timeout)
        };
        let Ok(conn) = Connection::new(stream, self.inner.protocol, limit) else {
            if let Some(d) = dialer {
                self.redial_later(d);
            }
            return;
        };
        let tok = self.token();
        let fd = conn.stream().as_raw_fd();
        let mut interests = Interests {
            fd,
            token: tok,
            direct: false,
            write: true,
            reader_active: false,
            lease_end: None,
            current: None,
        };
        interests.apply(self.poll.registry());
        if interests.current.is_none() {
            if let Some(d) = dialer {
                self.redial_later(d);
            }
            return;
        }
        let id = PipeId(self.next_pipe);
        self.next_pipe += 1;
        let deadline = Some(Instant::now() + hs);
        let sender = conn.sender().clone();
        let reader = Arc::new(Mutex::new(conn));
        let interests = Arc::new(Mutex::new(interests));
        self.pipes.insert(
            tok,
            PipeIo {
                id,
                reader,
                sender,
                fd,
                interests,
                dialer,
                deadline,
            },
        );
        self.read(tok);
    }

    fn flush(&mut self, tok: Token) {
        let Some(p) = self.pipes.get(&tok) else {
            return;
        };
        let sender = &p.sender;
        if sender.has_failed() {
            self.close_pipe(tok);
            return;
        }
        let before = sender.queued();
        if before == 0 {
            self.set_write_interest(tok, false);
            return;
        }
        match sender.flush() {
            Ok(empty) => {
                self.set_write_interest(tok, !empty);
                let after = sender.queued();
                let limit = self.inner.send_buffer.load(Ordering::SeqCst);
                // Any sender waiting may wait for this pipe (its queue may have filled while
                // this flush ran, so "it was full before" is not the test).
                if after < before && after < limit && self.inner.senders_waiting() {
                    let mut core = self.inner.lock();
                    self.inner.notify_send(&mut core);
                }
            }
            Err(_) => self.close_pipe(tok),
        }
    }

    fn set_write_interest(&self, tok: Token, on: bool) {
        if let Some(p) = self.pipes.get(&tok) {
            let mut i = p.interests.lock().unwrap_or_else(|e| e.into_inner());
            i.write = on;
            i.apply(self.poll.registry());
        }
    }

    /// The peer's close came with a readiness event: its last frame's read may be short with
    /// the close still unread (see [`Connection::note_read_closed`]).
    fn note_read_closed(&self, tok: Token) {
        // A direct reader holding the connection sees the close through its own poll.
        match self.pipes.get(&tok).map(|p| p.reader.try_lock()) {
            Some(Ok(mut c)) => c.note_read_closed(),
            Some(Err(TryLockError::Poisoned(e))) => e.into_inner().note_read_closed(),
            _ => {}
        }
    }

    fn read(&mut self, tok: Token) {
        loop {
            let Some(p) = self.pipes.get_mut(&tok) else {
                return;
            };
            let reader = Arc::clone(&p.reader);
            let mut conn = match reader.try_lock() {
                Ok(c) => c,
                // A receiving thread is reading this pipe directly; it hands the pipe back (and
                // re-arms our interest) when done.
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
            };
            if p.deadline.is_some() {
                match conn.on_readable(0, &mut |_| true) {
                    Ok(ReadProgress::HandshakeDone) => {
                        drop(conn);
                        if !self.add_pipe(tok) {
                            self.close_pipe(tok);
                            return;
                        }
                    }
                    Ok(_) => {
                        drop(conn);
                        // A TLS handshake flight the kernel did not take yet.
                        if p.sender.queued() > 0 {
                            self.set_write_interest(tok, true);
                        }
                        return;
                    }
                    Err(e) => {
                        drop(conn);
                        if let (ConnError::Handshake(refused), Some(d)) = (e, p.dialer) {
                            // Tell a `dial_blocking` caller why its dial cannot succeed.
                            let mut core = self.inner.lock();
                            core.dial_errors.insert(d, refused);
                            self.inner.notify_send(&mut core);
                        }
                        self.close_pipe(tok);
                        return;
                    }
                }
                continue;
            }
            let pipe = p.id;
            let Some((room, mut room_bytes)) = self.room(tok) else {
                return;
            };
            let batch = &mut self.batch;
            let result = conn.on_readable(room, &mut |body| {
                room_bytes = room_bytes.saturating_sub(body.len());
                batch.push(body);
                room_bytes > 0
            });
            // Delivered before the pipe's reader is released: a receiver reading this pipe
            // directly next must find these messages queued ahead of the ones it reads.
            let mut close = {
                let mut core = self.inner.lock();
                deliver(&self.inner, &mut core, pipe, &mut self.batch)
            };
            drop(conn);
            match result {
                Ok(ReadProgress::Yielded) => self.again.push(tok),
                Ok(_) => {}
                Err(_) => close = true,
            }
            if close {
                self.close_pipe(tok);
            }
            return;
        }
    }

    /// How many messages and bytes may be read from a pipe now; `None` (and the pipe parked
    /// until `ResumeReads`) when the receive queue is full.
    fn room(&mut self, tok: Token) -> Option<(usize, usize)> {
        let mut core = self.inner.lock();
        let room = receive_room(self.inner.protocol, &core);
        if room == 0 {
            core.reads_paused = true;
            self.paused.push(tok);
            return None;
        }
        Some((room, receive_room_bytes(self.inner.protocol, &core)))
    }

    /// Makes a handshaken pipe visible to senders; `false` if the protocol refuses it.
    fn add_pipe(&mut self, tok: Token) -> bool {
        let Some(p) = self.pipes.get_mut(&tok) else {
            return false;
        };
        let mut core = self.inner.lock();
        let single = match self.inner.protocol {
            Protocol::Pair0 => true,
            Protocol::Pair1 => !core.opts.poly,
            _ => false,
        };
        if single && !core.pipes.is_empty() {
            return false;
        }
        p.deadline = None;
        let _ = self
            .inner
            .direct_registry
            .register(&mut SourceFd(&p.fd), tok, Interest::READABLE);
        core.pipes.insert(
            p.id,
            PipeSlot {
                sender: p.sender.clone(),
                reader: Arc::clone(&p.reader),
                interests: Arc::clone(&p.interests),
            },
        );
        if let Some(d) = p.dialer {
            *core.dialers.entry(d).or_insert(0) += 1;
            let min = core.opts.reconnect_min;
            if let Some(dialer) = self.dialers.get_mut(&d) {
                dialer.backoff = min;
            }
        }
        let id = p.id;
        core.events
            .retain(|tx| tx.send(PipeEvent::Added(id)).is_ok());
        // A receiver reading the only other pipe directly must now share the reading.
        self.inner.wake_direct();
        if self.inner.protocol == Protocol::Req0 {
            let unsent = core.req.unsent();
            resend(&self.inner, &mut core, &unsent);
        }
        self.inner.notify_send(&mut core);
        true
    }

    fn close_pipe(&mut self, tok: Token) {
        let Some(p) = self.pipes.remove(&tok) else {
            return;
        };
        {
            let mut i = p.interests.lock().unwrap_or_else(|e| e.into_inner());
            (i.direct, i.write) = (true, false);
            i.apply(self.poll.registry());
        }
        let _ = self.inner.direct_registry.deregister(&mut SourceFd(&p.fd));
        // Wakes a thread blocked reading this pipe directly, and tells the peer at once.
        let _ = p.sender.stream().shutdown();
        self.paused.retain(|t| *t != tok);
        if p.deadline.is_none() {
            let mut core = self.inner.lock();
            core.pipes.remove(&p.id);
            if let Some(n) = p.dialer.and_then(|d| core.dialers.get_mut(&d)) {
                *n = n.saturating_sub(1);
            }
            let id = p.id;
            core.events
                .retain(|tx| tx.send(PipeEvent::Removed(id)).is_ok());
            if self.inner.protocol == Protocol::Req0 {
                let lost = core.req.on_pipe_removed(id);
                resend(&self.inner, &mut core, &lost);
            }
            self.inner.notify_send(&mut core);
        }
        if let Some(d) = p.dialer {
            self.redial_later(d);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        for (tok, p) in &self.pipes {
            let mut i = p.interests.lock().unwrap_or_else(|e| e.into_inner());
            if i.direct && !i.reader_active && i.lease_end.is_none_or(|t| t <= now) {
                i.direct = false;
                i.lease_end = None;
                i.apply(self.poll.registry());
                // Frames may sit in the connection's buffer with no event to announce them.
                self.again.push(*tok);
            }
        }
        let due: Vec<u32> = self
            .dialers
            .iter()
            .filter(|(_, d)| d.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.start_dial(id);
        }
        let expired: Vec<Token> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|t| t <= now))
            .map(|(t, _)| *t)
            .collect();
        for tok in expired {
            self.close_pipe(tok);
        }
        let mut core = self.inner.lock();
        if self.inner.protocol == Protocol::Req0 {
            let due = core.req.due(now);
            resend(&self.inner, &mut core, &due);
        }
        if !core.recv_wakers.is_empty() && core.survey.deadline().is_some_and(|d| d <= now) {
            self.inner.notify_recv(&mut core);
        }
    }

    fn shutdown(&mut self) {
        // Messages still queued (a stream of small sends is queued for this thread to write)
        // are written before the pipes close, as long as the peers read within the linger.
        let linger = self.inner.lock().opts.send_timeout.unwrap_or(CLOSE_LINGER);
        let deadline = Instant::now() + linger;
        for (_, p) in self.pipes.drain() {
            if p.deadline.is_none() {
                let _ = p.sender.flush_until(deadline);
            } else {
                let _ = p.sender.flush();
            }
            let _ = p.sender.stream().shutdown();
        }
        for (_, src) in self.listeners.drain() {
            if let ListenSource::Unix {
                path: Some(path), ..
            } = src
            {
                let _ = std::fs::remove_file(path);
            }
        }
        self.connecting.clear();
        let mut core = self.inner.lock();
        core.closed = true;
        core.pipes.clear();
        core.events.clear();
        self.inner.notify_recv(&mut core);
        self.inner.notify_send(&mut core);
    }
}

/// (Re)sends REQ requests on ready pipes; those with no pipe wait for the next one added.
fn resend(inner: &Inner, core: &mut Core, list: &[Resend]) {
    let now = Instant::now();
    for r in list {
        let limit = inner.send_buffer.load(Ordering::Relaxed);
        let Some((&pipe, slot)) = core.pipes.iter().find(|(_, s)| s.sender.queued() < limit) else {
            return;
        };
        let Some((id, payload)) = core.req.request(r.ctx) else {
            continue;
        };
        if id != r.id {
            continue;
        }
        let sender = slot.sender.clone();
        match sender.send(&[&id.to_be_bytes(), payload]) {
            Ok(status) => {
                core.req.sent_on(r.ctx, pipe, now);
                if status == SendStatus::Queued {
                    // Make the loop flush (and watch writability) on its next turn.
                    inner.flush_requested.store(true, Ordering::Release);
                    inner.wake_io();
                }
            }
            Err(_) => inner.wake_io(),
        }
    }
}
