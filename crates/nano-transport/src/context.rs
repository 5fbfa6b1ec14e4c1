//! [`Context`]s (independent request/reply state on one socket) and the futures of the async
//! send and receive ([`RecvFuture`], [`SendFuture`]).
//!
//! These are the handles layered over a [`Socket`]: each only names a context id and defers to
//! the socket's send and receive paths, so they sit apart from the socket's own API.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll as TaskPoll};
use std::time::Duration;

use crate::route::{Body, Target, Wait, plan_send, take_message, write_plan};
use crate::shared::Inner;
use crate::socket::Socket;
use crate::{Error, Message};

/// Future of [`Socket::recv_async`] and [`Context::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a> {
    pub(crate) inner: &'a Arc<Inner>,
    pub(crate) ctx: u32,
}

impl std::fmt::Debug for RecvFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture")
            .field("ctx", &self.ctx)
            .finish()
    }
}

impl Future for RecvFuture<'_> {
    type Output = Result<Message, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> TaskPoll<Self::Output> {
        let mut core = self.inner.lock();
        let mut deadline = None;
        match take_message(self.inner, &mut core, self.ctx, &mut deadline) {
            Ok(Some(m)) => TaskPoll::Ready(Ok(m)),
            Ok(None) => {
                core.recv_wakers.push(cx.waker().clone());
                self.inner.expire_leases(&core);
                if deadline.is_some() {
                    // The I/O thread wakes receivers when a survey window closes.
                    drop(core);
                    self.inner.wake_io();
                }
                TaskPoll::Pending
            }
            Err(e) => TaskPoll::Ready(Err(e)),
        }
    }
}

/// Future of [`Socket::send_async`] and [`Context::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a> {
    pub(crate) socket: &'a Socket,
    pub(crate) ctx: u32,
    pub(crate) body: &'a [u8],
}

impl std::fmt::Debug for SendFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("len", &self.body.len())
            .finish()
    }
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> TaskPoll<Self::Output> {
        let inner = &self.socket.inner;
        let mut core = inner.lock();
        if core.closed {
            return TaskPoll::Ready(Err(Error::Closed));
        }
        // Announced before looking, as a blocking sender does (see `send_inner`).
        inner.send_wakers_waiting.store(true, Ordering::SeqCst);
        let body = Body::Parts(std::slice::from_ref(&self.body));
        match plan_send(inner, &mut core, self.ctx, Target::Route, body) {
            Ok(Some(plan)) => {
                drop(core);
                write_plan(inner, &plan, body, None);
                TaskPoll::Ready(Ok(()))
            }
            Ok(None) => {
                core.send_wakers.push(cx.waker().clone());
                TaskPoll::Pending
            }
            Err(e) => TaskPoll::Ready(Err(e)),
        }
    }
}

/// An independent request/reply state on a REQ, REP or RESPONDENT socket: each context has
/// its own outstanding request (REQ) or pending reply (REP), so many can be in flight at once.
///
/// ```
/// use std::time::Duration;
/// use nano_transport::{Protocol, Socket};
/// let rep = Socket::new(Protocol::Rep0)?;
/// let url = rep.listen("tcp://127.0.0.1:0")?.local_url().to_owned();
/// let req = Socket::new(Protocol::Req0)?;
/// req.dial_blocking(&url, Duration::from_secs(5))?;
/// let (a, b) = (req.context()?, req.context()?);
/// a.send(b"a")?;
/// b.send(b"b")?;
/// for _ in 0..2 {
///     let m = rep.recv()?;
///     let answer = [&b"re:"[..], &m].concat();
///     rep.send(&answer)?;
/// }
/// assert_eq!(&*b.recv()?, b"re:b");
/// assert_eq!(&*a.recv()?, b"re:a");
/// # Ok::<(), nano_transport::Error>(())
/// ```
#[derive(Debug)]
pub struct Context {
    pub(crate) socket: Socket,
    pub(crate) id: u32,
}

impl Context {
    /// Sends on this context (REQ: a new request, abandoning this context's previous one;
    /// REP: the reply to the request this context received last).
    pub fn send(&self, body: &[u8]) -> Result<(), Error> {
        self.socket
            .send_inner(self.id, Target::Route, Body::Parts(&[body]), Wait::Timeout)
    }

    /// Receives on this context, blocking up to the socket's receive timeout.
    pub fn recv(&self) -> Result<Message, Error> {
        self.socket.recv_inner(self.id, Wait::Timeout)
    }

    /// Receives, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        self.socket.recv_inner(self.id, Wait::until(Some(timeout)))
    }

    /// Receives without blocking.
    pub fn try_recv(&self) -> Result<Message, Error> {
        self.socket.recv_inner(self.id, Wait::Never)
    }

    /// A future of the next message on this context.
    pub fn recv_async(&self) -> RecvFuture<'_> {
        RecvFuture {
            inner: &self.socket.inner,
            ctx: self.id,
        }
    }

    /// A future that resolves once the message has been handed to a pipe.
    pub fn send_async<'a>(&'a self, body: &'a [u8]) -> SendFuture<'a> {
        SendFuture {
            socket: &self.socket,
            ctx: self.id,
            body,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let mut core = self.socket.inner.lock();
        core.req.cancel(self.id);
        core.replies.remove(&self.id);
        core.saved.remove(&self.id);
    }
}
