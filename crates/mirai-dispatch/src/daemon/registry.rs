//! The functions a daemon can run, by name.
//!
//! A task names a registered function rather than carrying code: Rust cannot ship closures
//! between processes, and a name is also what lets the dispatcher and the daemon be the same
//! binary. A panic in a function is caught and becomes a [`TaskError`] with the panic message and
//! a backtrace, so one bad task never takes the daemon down.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cancel::TaskContext;
use crate::protocol::MAX_ERROR_TEXT;
use crate::task::{Payload, TaskError};

/// A registered function on raw bytes (shared, so a [`Registry`] clones cheaply: the daemon
/// loop runs on a thread of its own, which owns a clone).
pub type Handler = Arc<dyn Fn(&[u8], &TaskContext) -> Result<Vec<u8>, TaskError> + Send + Sync>;

/// A task's argument bytes as a function receives them: borrowed ([`Registry::run`]), or the
/// frame the daemon received, which a typed function frees once it has decoded its argument,
/// so a large argument is not held twice (received and decoded) while the function runs.
enum Input<'a> {
    Borrowed(&'a [u8]),
    // Only the daemon loop (feature `shell`) receives frames.
    #[cfg_attr(not(feature = "shell"), allow(dead_code))]
    Frame(Payload),
}

impl std::ops::Deref for Input<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Borrowed(b) => b,
            Self::Frame(p) => p,
        }
    }
}

/// How a [`Registry`] keeps a function.
type Run = Arc<dyn Fn(Input<'_>, &TaskContext) -> Result<Payload, TaskError> + Send + Sync>;

/// Name -> function.
///
/// ```
/// use mirai_dispatch::daemon::{Registry, TaskContext};
/// use mirai_dispatch::TaskId;
///
/// let mut registry = Registry::new();
/// registry.register("add", |(a, b): (i64, i64), _ctx: &TaskContext| Ok(a + b));
/// let arg = postcard::to_allocvec(&(2i64, 40i64)).unwrap();
/// let out = registry.run("add", &arg, &TaskContext::new(TaskId(0), None)).unwrap();
/// assert_eq!(postcard::from_bytes::<i64>(&out).unwrap(), 42);
///
/// registry.register("boom", |_: (), _ctx: &TaskContext| -> Result<(), _> { panic!("kaboom") });
/// let err = registry.run("boom", &[], &TaskContext::new(TaskId(1), None)).unwrap_err();
/// assert_eq!(err.message, "kaboom");
/// ```
#[derive(Default, Clone)]
pub struct Registry {
    functions: HashMap<String, Run>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Registry")
            .field("functions", &names)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a function on raw bytes under `name` (replacing any previous one).
    pub fn register_bytes(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&[u8], &TaskContext) -> Result<Vec<u8>, TaskError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.functions.insert(
            name.into(),
            Arc::new(move |input: Input<'_>, ctx| f(&input, ctx).map(Payload::from)),
        );
        self
    }

    /// Registers a function on payloads under `name` (replacing any previous one): it gets the
    /// received frame's payload itself, which it may keep slices of without a copy, and returns
    /// a payload of one or more pieces, which go out in one vectored write without a copy. This
    /// is the form for codecs that carry large buffers beside their encoded values.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use mirai_dispatch::daemon::{Registry, TaskContext};
    /// use mirai_dispatch::{Payload, TaskId};
    ///
    /// let mut registry = Registry::new();
    /// registry.register_payload("frame", |arg: Payload, _ctx: &TaskContext| {
    ///     let head = Bytes::from_static(b"len:");
    ///     Ok(Payload::from_parts([head, arg.to_bytes()]))
    /// });
    /// let out = registry.run("frame", b"abc", &TaskContext::new(TaskId(0), None)).unwrap();
    /// assert_eq!(out.parts().len(), 2);
    /// assert_eq!(&*out, b"len:abc");
    /// ```
    pub fn register_payload(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(Payload, &TaskContext) -> Result<Payload, TaskError> + Send + Sync + 'static,
    ) -> &mut Self {
        let run = move |input: Input<'_>, ctx: &TaskContext| {
            let payload = match input {
                // A call from this process with borrowed bytes: the one copy is here.
                Input::Borrowed(bytes) => Payload::from(bytes.to_vec()),
                Input::Frame(payload) => payload,
            };
            f(payload, ctx)
        };
        self.functions.insert(name.into(), Arc::new(run));
        self
    }

    /// Registers a typed function: the argument is decoded and the value encoded with postcard.
    pub fn register<A, R, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A, &TaskContext) -> Result<R, TaskError> + Send + Sync + 'static,
    {
        let run = move |input: Input<'_>, ctx: &TaskContext| {
            let arg: A = postcard::from_bytes(&input)
                .map_err(|e| TaskError::new(format!("cannot decode the argument: {e}")))?;
            // The received bytes are no longer needed: a large argument is not held twice.
            drop(input);
            let value = f(arg, ctx)?;
            postcard::to_allocvec(&value)
                .map(Payload::from)
                .map_err(|e| TaskError::new(format!("cannot encode the value: {e}")))
        };
        self.functions.insert(name.into(), Arc::new(run));
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// Runs `name` on `payload`. Unknown names, failures and panics all become a
    /// [`TaskError`], its message and backtrace truncated to
    /// [`MAX_ERROR_TEXT`] bytes each so it always fits in a
    /// result message.
    pub fn run(&self, name: &str, payload: &[u8], ctx: &TaskContext) -> Result<Payload, TaskError> {
        self.run_input(name, Input::Borrowed(payload), ctx)
    }

    /// [`Registry::run`] on the received frame's payload, which a typed function frees as
    /// soon as it has decoded its argument.
    #[cfg_attr(not(feature = "shell"), allow(dead_code))]
    pub(crate) fn run_frame(
        &self,
        name: &str,
        payload: Payload,
        ctx: &TaskContext,
    ) -> Result<Payload, TaskError> {
        self.run_input(name, Input::Frame(payload), ctx)
    }

    fn run_input(
        &self,
        name: &str,
        payload: Input<'_>,
        ctx: &TaskContext,
    ) -> Result<Payload, TaskError> {
        let Some(f) = self.functions.get(name) else {
            return Err(TaskError::new(format!("no function named {name:?}")));
        };
        run_caught(|| f(payload, ctx))
    }
}

/// Runs `f` as [`Registry::run`] runs a registered function: a panic becomes a [`TaskError`]
/// with its message and backtrace, and both texts are truncated to [`MAX_ERROR_TEXT`] bytes.
/// For running a task in the calling process exactly as a daemon would.
///
/// ```
/// use mirai_dispatch::daemon::run_caught;
/// let e = run_caught(|| -> Result<mirai_dispatch::Payload, _> { panic!("kaboom") }).unwrap_err();
/// assert_eq!(e.message, "kaboom");
/// assert!(run_caught(|| Ok(mirai_dispatch::Payload::from(vec![1]))).is_ok());
/// ```
pub fn run_caught(f: impl FnOnce() -> Result<Payload, TaskError>) -> Result<Payload, TaskError> {
    install_panic_capture();
    CAPTURING.set(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.set(false);
    let result = result.unwrap_or_else(|panic| {
        let (message, backtrace) = LAST_PANIC.take().unwrap_or_else(|| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "task panicked".to_owned());
            (message, String::new())
        });
        Err(TaskError { message, backtrace })
    });
    result.map_err(|e| TaskError {
        message: truncate(e.message),
        backtrace: truncate(e.backtrace),
    })
}

thread_local! {
    /// Set while a registered function runs on this thread: its panics are captured, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The message and backtrace of the last captured panic on this thread.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Chains a panic hook that records the message and a backtrace of panics inside
/// [`Registry::run`] (where the stack still exists) and leaves every other panic to the hook
/// that was there before.
fn install_panic_capture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.get() {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "task panicked".to_owned());
                let location = info
                    .location()
                    .map(|l| format!("panicked at {}:{}:{}\n", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let backtrace = std::backtrace::Backtrace::force_capture();
                LAST_PANIC.set(Some((message, format!("{location}{backtrace}"))));
            } else {
                previous(info);
            }
        }));
    });
}

/// Cuts `s` to at most `MAX_ERROR_TEXT` bytes on a character boundary.
fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskId;

    fn ctx() -> TaskContext {
        TaskContext::new(TaskId(0), None)
    }

    #[test]
    fn a_panic_becomes_a_task_error_with_location_and_backtrace() {
        let mut r = Registry::new();
        r.register_bytes("boom", |_, _| panic!("bad input {}", 7));
        let e = r.run("boom", &[], &ctx()).unwrap_err();
        assert_eq!(e.message, "bad input 7");
        assert!(e.backtrace.contains("registry.rs"), "{}", e.backtrace);
        // The daemon survives and runs the next task.
        r.register_bytes("ok", |b, _| Ok(b.to_vec()));
        assert_eq!(r.run("ok", &[1], &ctx()), Ok(vec![1].into()));
    }

    #[test]
    fn unknown_functions_and_bad_arguments_are_task_errors() {
        let mut r = Registry::new();
        r.register("neg", |x: i32, _: &TaskContext| Ok(-x));
        assert!(
            r.run("nope", &[], &ctx())
                .unwrap_err()
                .message
                .contains("nope")
        );
        let e = r.run("neg", &[], &ctx()).unwrap_err();
        assert!(
            e.message.starts_with("cannot decode the argument"),
            "{}",
            e.message
        );
        assert!(r.contains("neg") && !r.contains("nope"));
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let mut r = Registry::new();
        r.register_bytes("long", |_, _| {
            Err(TaskError::new("é".repeat(MAX_ERROR_TEXT)))
        });
        let e = r.run("long", &[], &ctx()).unwrap_err();
        assert!(e.message.len() <= MAX_ERROR_TEXT && e.message.len() >= MAX_ERROR_TEXT - 1);
    }

    #[test]
    fn the_function_sees_cancellation() {
        let mut r = Registry::new();
        r.register_bytes("wait", |_, ctx| {
            ctx.cancel_token().check()?;
            Ok(vec![])
        });
        let c = ctx();
        c.cancel_token().cancel();
        assert_eq!(
            r.run("wait", &[], &c).unwrap_err().message,
            "task cancelled"
        );
    }
}
