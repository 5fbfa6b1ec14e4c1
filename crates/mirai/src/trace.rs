//! Tracing across processes: the caller's span continues on the daemon.
//!
//! Each submission opens a `submit` span (target `mirai`) where it is called, and the task
//! carries a W3C `traceparent` naming that span to the daemon, which runs the function inside
//! an `execute` span (target `mirai`) that is its child. Both record their ids as fields, so
//! any span-recording `tracing` subscriber, on the host and on the daemons, can join them:
//!
//! | span | fields |
//! |---|---|
//! | `submit` | `function`, `trace_id`, `span_id`, `parent_span_id` (if the submission continues a trace) |
//! | `execute` | `function`, `task`, `trace_id`, `span_id`, `parent_span_id` (= the `submit` span's `span_id`), `otel.status_code` = `"error"` if the function failed or panicked |
//!
//! As in R's mirai, whose `mirai` span ends when `mirai()` returns, the `submit` span covers the
//! submission, not the wait for the result; OpenTelemetry sees it as a client span and
//! `execute` as a server span (the `otel.kind` field).
//!
//! Ids are lowercase hex, 32 digits for a trace, 16 for a span. Plain `tracing` spans have no
//! ids that mean anything in another process, so these are W3C ids of their own:
//!
//! - The trace a submission belongs to is, first, the one given with
//!   [`TaskOptions::trace_parent`](crate::TaskOptions::trace_parent); else, with the
//!   `opentelemetry` feature, the OpenTelemetry context of the current span; else, inside a
//!   task, the trace of its `execute` span (a task that submits tasks continues its trace);
//!   else a new trace. New trace and span ids come from the operating system's CSPRNG.
//! - When no subscriber records the `submit` span, the task carries the context it continues
//!   unchanged (so the next recorded span links to the last recorded one), or nothing at all
//!   if there is none: untraced programs pay nothing.
//! - A daemon reads the context it is given and never trusts it further: a malformed one is
//!   ignored, and the `execute` span then has no parent.
//!
//! With the `opentelemetry` feature the same spans are OpenTelemetry spans for a subscriber
//! with a `tracing_opentelemetry` layer: the host takes the `submit` span's OpenTelemetry
//! context ([`OpenTelemetrySpanExt::context`]) for the `traceparent`, and the daemon sets the
//! received context as the remote parent of its `execute` span, so a program that installs an
//! exporter on the host and on its daemons (its own binary: set the subscriber up before
//! [`daemon_main_if_requested`](crate::daemon_main_if_requested)) sees one trace from submit
//! to result. A daemon ends its process without returning, so export there with a
//! synchronous span processor (e.g. `with_simple_exporter`), which sends each span as it ends.
//!
//! ```
//! use mirai::trace::TraceParent;
//!
//! // Outside any trace there is nothing to continue.
//! assert_eq!(mirai::trace::current(), None);
//! let explicit: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
//! let options = mirai::TaskOptions::new().trace_parent(explicit);
//! # let _ = options;
//! # Ok::<(), mirai::trace::TraceParentError>(())
//! ```
//!
//! With the `opentelemetry` feature, the host side of a trace (here with `opentelemetry_sdk`'s
//! in-memory exporter; a real program installs the same layer with its exporter, e.g. OTLP, on
//! the host and, before `daemon_main_if_requested`, on the daemons):
//!
//! ```
//! # #[cfg(feature = "opentelemetry")] {
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tracing_subscriber::layer::SubscriberExt as _;
//! # fn neg(x: i64) -> i64 { -x }
//! # const NEG: mirai::TaskFn<i64, i64> = mirai::task!(neg);
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("app"));
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     let pool = mirai::Daemons::new().start()?; // no daemons: the task stays queued
//!     let request = tracing::info_span!("request");
//!     let _queued = request.in_scope(|| pool.submit(&NEG, 1))?;
//!     Ok::<(), mirai::Error>(())
//! })?;
//! let spans = exporter.get_finished_spans().unwrap();
//! let span = |name| spans.iter().find(|s| s.name == name).unwrap();
//! assert_eq!(span("submit").parent_span_id, span("request").span_context.span_id());
//! assert_eq!(span("submit").span_context.trace_id(), span("request").span_context.trace_id());
//! # }
//! # Ok::<(), mirai::Error>(())
//! ```
//!
//! [`OpenTelemetrySpanExt::context`]: https://docs.rs/tracing-opentelemetry/latest/tracing_opentelemetry/trait.OpenTelemetrySpanExt.html#tymethod.context

use std::cell::Cell;

use mirai_dispatch::daemon::TaskContext;
use mirai_dispatch::{Payload, Task, TaskError};
use tracing::field::Empty;

#[cfg(feature = "opentelemetry")]
mod otel;
mod parent;

use parent::Hex;
pub(crate) use parent::fuzz;
pub use parent::{MAX_TRACEPARENT, TraceParent, TraceParentError};

thread_local! {
    /// The context of the `execute` span this thread is running a task in, if any.
    static IN_TASK: Cell<Option<TraceParent>> = const { Cell::new(None) };
}

/// The context a submission from here would continue, without an explicit one: the current
/// span's OpenTelemetry context (with the `opentelemetry` feature), else that of the task this
/// thread is running on a daemon, else `None`.
///
/// ```
/// assert_eq!(mirai::trace::current(), None); // not in a task, no OpenTelemetry context
/// ```
pub fn current() -> Option<TraceParent> {
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = otel::of_span(&tracing::Span::current()) {
        return Some(parent);
    }
    IN_TASK.get()
}

/// A task calling `function` with `payload`, with the trace context of its submission (see
/// [`attach`]).
pub(crate) fn task(function: &str, payload: impl Into<Payload>) -> Task {
    attach(Task::new(function, payload), None)
}

/// `task` with the trace context of its submission: opens the `submit` span (a child of the
/// current span) and names it, or what it continues, in the task's trace field.
pub(crate) fn attach(task: Task, explicit: Option<TraceParent>) -> Task {
    let span = tracing::info_span!(
        target: "mirai",
        "submit",
        otel.kind = "client",
        function = %task.function,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    );
    let parent = explicit.or_else(current);
    let carried = if recorded(&span) {
        Some(open(&span, parent))
    } else {
        parent
    };
    match carried {
        Some(context) => task.with_trace(context.to_string().into_bytes()),
        None => task,
    }
}

/// Whether a subscriber records `span`. Not just `!span.is_disabled()`: a callsite another
/// thread's subscriber enabled hands threads without one a span of the no-op subscriber.
fn recorded(span: &tracing::Span) -> bool {
    span.with_subscriber(|(_, dispatch)| !dispatch.is::<tracing::subscriber::NoSubscriber>())
        .unwrap_or(false)
}

/// Gives the enabled `span` its ids as a child of `parent` (a new trace without one) and
/// records them; returns the span's own context.
fn open(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    #[cfg(feature = "opentelemetry")]
    let own = otel::open(span, parent).unwrap_or_else(|| own_ids(parent));
    #[cfg(not(feature = "opentelemetry"))]
    let own = own_ids(parent);
    span.record("trace_id", tracing::field::display(Hex(&own.trace_id())));
    span.record("span_id", tracing::field::display(Hex(&own.span_id())));
    if let Some(parent) = parent {
        span.record(
            "parent_span_id",
            tracing::field::display(Hex(&parent.span_id())),
        );
    }
    own
}

/// New ids for a span whose parent is `parent` (a new, sampled trace without one).
fn own_ids(parent: Option<TraceParent>) -> TraceParent {
    match parent {
        Some(parent) => parent.with_span_id(random_id()),
        None => TraceParent::new(random_id(), random_id(), 1).expect("random ids are not zero"),
    }
}

/// Registration of functions that run in an `execute` span.
pub(crate) trait RegisterTraced {
    /// Registers `f` as `function`; each call runs in an `execute` span that continues the
    /// trace context the task carries.
    fn register_traced(
        &mut self,
        function: &'static str,
        f: impl Fn(Payload, &TaskContext) -> Result<Payload, TaskError> + Send + Sync + 'static,
    ) -> &mut Self;
}

impl RegisterTraced for mirai_dispatch::daemon::Registry {
    fn register_traced(
        &mut self,
        function: &'static str,
        f: impl Fn(Payload, &TaskContext) -> Result<Payload, TaskError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.register_payload(function, move |payload, ctx: &TaskContext| {
            in_task_span(function, ctx, || {
                let mut failed = FailedUnlessOk(true);
                let result = f(payload, ctx);
                failed.0 = result.is_err();
                result
            })
        })
    }
}

/// Runs `f` inside the `execute` span of the task `ctx` describes.
pub(crate) fn in_task_span<T>(function: &str, ctx: &TaskContext, f: impl FnOnce() -> T) -> T {
    let span = tracing::info_span!(
        target: "mirai",
        "execute",
        otel.kind = "server",
        otel.status_code = Empty,
        function,
        task = ctx.task().0,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    );
    // A context that does not parse came from a broken or hostile peer: it is dropped.
    let parent = ctx.trace().and_then(|t| TraceParent::parse(t).ok());
    let own = match parent {
        Some(parent) if recorded(&span) => Some(open(&span, Some(parent))),
        // Nobody records the span: what the task submits continues the caller's trace.
        _ => parent,
    };
    let _in_task = InTask::set(own);
    span.in_scope(f)
}

/// Marks the current (`execute`) span failed when dropped while `.0` holds: a function that
/// returned an error, or one that panicked.
struct FailedUnlessOk(bool);

impl Drop for FailedUnlessOk {
    fn drop(&mut self) {
        if self.0 {
            tracing::Span::current().record("otel.status_code", "error");
        }
    }
}

/// Sets this thread's task context until dropped (also when the task panics).
struct InTask(Option<TraceParent>);

impl InTask {
    fn set(context: Option<TraceParent>) -> Self {
        Self(IN_TASK.replace(context))
    }
}

impl Drop for InTask {
    fn drop(&mut self) {
        IN_TASK.set(self.0);
    }
}

/// A random id that is not all zeros, from the operating system's CSPRNG.
fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0; N];
    loop {
        if getrandom::fill(&mut id).is_err() {
            // No CSPRNG (never on Linux since 3.17): distinct ids still matter more than
            // unpredictable ones, so fall back to the clock and a counter.
            fallback_id(&mut id);
        }
        if id.iter().any(|&b| b != 0) {
            return id;
        }
    }
}

fn fallback_id(id: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    for chunk in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests;
