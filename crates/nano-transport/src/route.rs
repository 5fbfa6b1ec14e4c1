//! The per-protocol send and receive paths: where a message goes and with which header
//! ([`plan_send`]), writing it from the calling thread ([`write_plan`]), and which queued message
//! a receive takes ([`take_message`]).
//!
//! These are the protocol rules on the user's side of a socket, shared by the blocking calls of
//! [`Socket`](crate::Socket), the futures of [`crate::context`] and the direct reader; kept apart
//! from the public API so each protocol's routing reads in one place.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use crate::conn::{ConnSender, SMALL_FRAME, SendStatus, SharedBody};
use crate::deliver;
use crate::proto::{MAX_FRAME_LEN, broadcast_targets};
use crate::shared::{Command, Core, Inner, PipeSlot};
use crate::{Error, Message, PipeId, Protocol};

/// What a send carries: borrowed pieces (written straight from the caller's buffers, copied
/// only if they must wait in a queue) or an owned body the queues keep without a copy.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Parts(&'a [&'a [u8]]),
    Shared(&'a SharedBody),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Parts(p) => p.iter().map(|p| p.len()).sum(),
            Self::Shared(b) => (***b).as_ref().len(),
        }
    }

    /// The whole body in one buffer, for a REQ request kept for resends.
    fn to_vec(self) -> Vec<u8> {
        match self {
            Self::Parts(p) => p.concat(),
            Self::Shared(b) => (**b).as_ref().to_vec(),
        }
    }
}

/// Where a send goes.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// The protocol decides.
    Route,
    /// PAIR1 poly: this pipe.
    Pipe(PipeId),
}

enum Header {
    None,
    Word([u8; 4]),
    Bytes(Vec<u8>),
}

impl Header {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::Word(w) => w,
            Self::Bytes(b) => b,
        }
    }
}

/// The pipes a send goes to: one for most protocols (kept without allocating), every ready one
/// for a broadcast.
enum Targets {
    One(ConnSender),
    Many(Vec<ConnSender>),
}

impl Targets {
    fn as_slice(&self) -> &[ConnSender] {
        match self {
            Self::One(t) => std::slice::from_ref(t),
            Self::Many(v) => v,
        }
    }
}

pub(crate) struct Plan {
    header: Header,
    targets: Targets,
    /// A timer this send armed (REQ resend), which the I/O thread must know about.
    timer: Option<Instant>,
    /// Queue the frame for the I/O thread to write with others instead of writing it now (see
    /// [`STREAM_GAP`]).
    later: bool,
}

/// A send that follows the socket's previous send this closely, with no message received in
/// between, is taken as part of a stream of messages: when small, it is queued for the I/O
/// thread, which writes everything queued meanwhile with one `writev`
/// ([`ConnSender::send_later`]), instead of costing a syscall of its own. A send after a
/// receive (request/reply, ping-pong) or after a pause is written at once by the calling
/// thread, so latency is unchanged where one message waits for another.
const STREAM_GAP: Duration = Duration::from_micros(10);

/// The longest frame header (ipc: a type byte and a 64-bit length).
const FRAME_HEADER_MAX: usize = 9;

#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Never,
    Until(Option<Instant>),
    /// Up to the socket's own timeout for this direction, read under the lock the call takes
    /// anyway (see [`Wait::resolve`]) rather than under one of its own.
    Timeout,
}

impl Wait {
    pub(crate) fn until(timeout: Option<Duration>) -> Self {
        Self::Until(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// [`Wait::Timeout`] as a deadline `timeout` from now; other waits as they are.
    pub(crate) fn resolve(self, timeout: Option<Duration>) -> Self {
        match self {
            Self::Timeout => Self::until(timeout),
            w => w,
        }
    }
}

/// Waits on `cv` until notified or `deadline`; `Err(Timeout)` once the deadline has passed.
pub(crate) fn wait<'a>(
    cv: &Condvar,
    guard: MutexGuard<'a, Core>,
    deadline: Option<Instant>,
) -> Result<MutexGuard<'a, Core>, Error> {
    match deadline {
        None => Ok(cv.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return Err(Error::Timeout);
            }
            let (g, _) = cv
                .wait_timeout(guard, d - now)
                .unwrap_or_else(|e| e.into_inner());
            Ok(g)
        }
    }
}

fn is_ready(inner: &Inner, slot: &PipeSlot) -> bool {
    slot.sender.queued() < inner.send_buffer.load(Ordering::SeqCst)
}

/// Decides where a message goes and with which header, and whether it is queued for the I/O
/// thread ([`STREAM_GAP`]); `Ok(None)` means "wait for a pipe".
pub(crate) fn plan_send(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    target: Target,
    body: Body<'_>,
) -> Result<Option<Plan>, Error> {
    let Some(mut plan) = plan_route(inner, core, ctx, target, body)? else {
        return Ok(None);
    };
    let now = Instant::now();
    // Only frames `send_later` queues (a larger one, or an owned body, is written at once).
    let frame = FRAME_HEADER_MAX + plan.header.as_slice().len() + body.len();
    plan.later = matches!(body, Body::Parts(_))
        && frame <= SMALL_FRAME
        && core
            .last_send
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_GAP);
    core.last_send = Some(now);
    Ok(Some(plan))
}

fn plan_route(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    target: Target,
    body: Body<'_>,
) -> Result<Option<Plan>, Error> {
    let proto = inner.protocol;
    if !proto.can_send() {
        return Err(Error::State("protocol cannot send"));
    }
    // Room for the largest protocol header (a full REP backtrace) under the wire's limit.
    let limit = MAX_FRAME_LEN - 64;
    let len = body.len() as u64;
    if len > limit {
        return Err(Error::TooLarge { size: len, limit });
    }
    if let Target::Pipe(pipe) = target {
        if proto != Protocol::Pair1 {
            return Err(Error::State("send_to needs a pair1 socket"));
        }
        let slot = core.pipes.get(&pipe).ok_or(Error::NoSuchPipe(pipe))?;
        if !is_ready(inner, slot) {
            return Ok(None);
        }
        let targets = Targets::One(slot.sender.clone());
        return Ok(Some(Plan {
            header: Header::Word(1u32.to_be_bytes()),
            targets,
            timer: None,
            later: false,
        }));
    }
    match proto {
        Protocol::Pub0 | Protocol::Bus0 | Protocol::Surveyor0 => {
            let header = if proto == Protocol::Surveyor0 {
                let window = core.opts.survey_time;
                let id = core.survey.start(Instant::now(), window);
                core.recv_q.clear();
                Header::Word(id.to_be_bytes())
            } else {
                Header::None
            };
            let ready = core
                .pipes
                .iter()
                .filter(|(_, s)| is_ready(inner, s))
                .map(|(id, _)| *id);
            let targets = Targets::Many(
                broadcast_targets(ready, None)
                    .map(|id| core.pipes[&id].sender.clone())
                    .collect(),
            );
            Ok(Some(Plan {
                header,
                targets,
                timer: None,
                later: false,
            }))
        }
        Protocol::Rep0 | Protocol::Respondent0 => {
            let (pipe, backtrace) = core
                .saved
                .remove(&ctx)
                .ok_or(Error::State("no request to reply to"))?;
            // A reply whose requester has gone is discarded, as NNG does.
            let targets = match core.pipes.get(&pipe) {
                Some(s) => Targets::One(s.sender.clone()),
                None => Targets::Many(Vec::new()),
            };
            Ok(Some(Plan {
                header: Header::Bytes(backtrace),
                targets,
                timer: None,
                later: false,
            }))
        }
        _ => {
            let Some(pipe) = core.rr.pick(
                core.pipes
                    .iter()
                    .filter(|(_, s)| is_ready(inner, s))
                    .map(|(id, _)| *id),
            ) else {
                return Ok(None);
            };
            let mut timer = None;
            let header = match proto {
                Protocol::Pair1 => Header::Word(1u32.to_be_bytes()),
                Protocol::Req0 => {
                    // The request is kept until its reply arrives: a resend (timer or lost pipe)
                    // needs the payload after the caller's buffer is gone. This copy is the
                    // price of REQ's resend guarantee.
                    let id = core.req.start(ctx, body.to_vec());
                    core.req.sent_on(ctx, pipe, Instant::now());
                    core.replies.remove(&ctx);
                    timer = core.req.next_deadline();
                    Header::Word(id.to_be_bytes())
                }
                _ => Header::None,
            };
            let targets = Targets::One(core.pipes[&pipe].sender.clone());
            Ok(Some(Plan {
                header,
                targets,
                timer,
                later: false,
            }))
        }
    }
}

/// Writes the planned frames from the calling thread; wakes the I/O thread if anything was left
/// queued or a pipe failed (it flushes or closes it).
///
/// A blocking send to one pipe (`wait` is `Some(deadline)`) waits for the stream to drain rather
/// than copy the unwritten part of a large message; broadcasts never wait.
pub(crate) fn write_plan(
    inner: &Inner,
    plan: &Plan,
    body: Body<'_>,
    wait: Option<Option<Instant>>,
) {
    let broadcast = matches!(
        inner.protocol,
        Protocol::Pub0 | Protocol::Bus0 | Protocol::Surveyor0
    );
    let mut wake = false;
    for t in plan.targets.as_slice() {
        let wait = wait.filter(|_| !broadcast);
        let sent = match body {
            Body::Parts(parts) => {
                let mut inline: [&[u8]; 4] = [plan.header.as_slice(), &[], &[], &[]];
                let joined: Vec<&[u8]>;
                let all: &[&[u8]] = if parts.len() < inline.len() {
                    inline[1..=parts.len()].copy_from_slice(parts);
                    &inline[..=parts.len()]
                } else {
                    joined = std::iter::once(plan.header.as_slice())
                        .chain(parts.iter().copied())
                        .collect();
                    &joined
                };
                match wait {
                    _ if plan.later => t.send_later(all),
                    Some(deadline) => t.send_blocking(all, deadline),
                    None => t.send(all),
                }
            }
            Body::Shared(b) => t.send_shared(&[plan.header.as_slice()], b, wait),
        };
        match sent {
            Ok(SendStatus::Written) => {}
            Ok(SendStatus::Queued) => wake |= !inner.flush_requested.swap(true, Ordering::AcqRel),
            Err(_) => wake = true,
        }
    }
    if wake {
        inner.wake_io();
    } else if let Some(t) = plan.timer {
        inner.timer_armed(t);
    }
}

/// Takes the next message for `ctx` if one is there; may shorten `deadline` (survey window).
/// A message taken ends a stream of sends ([`STREAM_GAP`]): the next send answers it.
pub(crate) fn take_message(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    deadline: &mut Option<Instant>,
) -> Result<Option<Message>, Error> {
    let taken = take_next(inner, core, ctx, deadline);
    if matches!(taken, Ok(Some(_))) {
        core.last_send = None;
    }
    taken
}

fn take_next(
    inner: &Inner,
    core: &mut Core,
    ctx: u32,
    deadline: &mut Option<Instant>,
) -> Result<Option<Message>, Error> {
    if core.closed {
        return Err(Error::Closed);
    }
    let proto = inner.protocol;
    if !proto.can_recv() {
        return Err(Error::State("protocol cannot receive"));
    }
    match proto {
        Protocol::Req0 => {
            if let Some(m) = core.replies.remove(&ctx) {
                return Ok(Some(m));
            }
            if !core.req.is_pending(ctx) {
                return Err(Error::State("no request outstanding"));
            }
            Ok(None)
        }
        Protocol::Surveyor0 => {
            if let Some(m) = core.recv_q.pop_front() {
                return Ok(Some(m));
            }
            let end = core
                .survey
                .deadline()
                .ok_or(Error::State("no survey started"))?;
            if Instant::now() >= end {
                return Err(Error::Timeout);
            }
            *deadline = Some(deadline.map_or(end, |d| d.min(end)));
            Ok(None)
        }
        _ => {
            let Some(m) = core.recv_q.pop_front() else {
                return Ok(None);
            };
            if core.reads_paused
                && core.recv_q.len() <= core.opts.recv_buffer / 2
                && core.recv_q.bytes() <= deliver::RECV_QUEUE_BYTES / 2
            {
                core.reads_paused = false;
                core.commands.push(Command::ResumeReads);
                inner.wake_io();
            }
            if matches!(proto, Protocol::Rep0 | Protocol::Respondent0) {
                core.saved.insert(ctx, (m.pipe(), m.header().to_vec()));
            }
            Ok(Some(m))
        }
    }
}
