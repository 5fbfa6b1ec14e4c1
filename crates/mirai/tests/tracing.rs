//! Tracing across processes with real daemon processes: the `execute` span a daemon records is
//! the child of the `submit` span the host recorded, by trace id and parent span id, and with
//! the `opentelemetry` feature the same holds for the spans each side's OpenTelemetry exporter
//! receives. Host and daemons (this binary re-executed: `main` installs the same recording
//! subscriber before `daemon_main_if_requested`) each record their spans in memory; a daemon
//! returns what it recorded as a task result.

use std::sync::OnceLock;

use mirai::trace::{TraceParent, TraceParentError};
use mirai::{Daemons, Error, Pool, Registry, TaskFn, TaskOptions, task};
use tracing_subscriber::layer::SubscriberExt;

mod common;
#[path = "common/spans.rs"]
mod spans;

use common::Test;
use spans::{Recorded, Recorder};

/// What every process of this binary records.
static RECORDER: OnceLock<Recorder> = OnceLock::new();

fn recorder() -> &'static Recorder {
    RECORDER.get().expect("installed in main")
}

/// The daemon's pid and the trace context a submission from inside the task would continue.
fn work(x: u64) -> (u32, u64, Option<String>) {
    let inside = mirai::trace::current().map(|t| t.to_string());
    (std::process::id(), x * 2, inside)
}
fn fail((): ()) {
    panic!("fails on purpose");
}
/// The spans this process has closed.
fn recorded_spans((): ()) -> Vec<Recorded> {
    recorder().closed()
}

const WORK: TaskFn<u64, (u32, u64, Option<String>)> = task!(work);
const RECORDED_SPANS: TaskFn<(), Vec<Recorded>> = task!(recorded_spans);
const FAIL: TaskFn<(), ()> = task!(fail);

fn registry() -> Registry {
    let registry = Registry::new()
        .with(&WORK)
        .with(&RECORDED_SPANS)
        .with(&FAIL);
    #[cfg(feature = "opentelemetry")]
    let registry = registry.with(&otel::EXPORTED_SPANS);
    registry
}

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn pool() -> Pool {
    Daemons::new().local(1).start().expect("start the pool")
}

/// The spans the host closed from now on.
struct Since(usize);

impl Since {
    fn now() -> Self {
        Self(recorder().closed().len())
    }

    /// The host's `mirai` submit span of `function` closed since then (exactly one).
    fn submit_of(&self, function: &str) -> Recorded {
        let spans: Vec<Recorded> = recorder().closed()[self.0..]
            .iter()
            .filter(|s| s.target == "mirai" && s.name == "submit")
            .filter(|s| s.field("function") == Some(function))
            .cloned()
            .collect();
        let [span] = &spans[..] else {
            panic!("one submit span of {function}: {spans:?}")
        };
        span.clone()
    }
}

/// The daemon's `mirai` execute span of `function` (exactly one).
fn daemon_execute_of(pool: &Pool, function: &str) -> Recorded {
    let spans = pool
        .submit(&RECORDED_SPANS, ())
        .and_then(|h| h.wait())
        .expect("the daemon's spans");
    let spans: Vec<Recorded> = spans
        .into_iter()
        .filter(|s| s.target == "mirai" && s.name == "execute")
        .filter(|s| s.field("function") == Some(function))
        .collect();
    let [span] = &spans[..] else {
        panic!("one execute span of {function}: {spans:?}")
    };
    span.clone()
}

/// Runs `WORK` on a daemon and checks that it ran in another process.
fn run_work(
    submit: impl FnOnce() -> Result<mirai::Mirai<(u32, u64, Option<String>)>, Error>,
) -> Option<TraceParent> {
    let (pid, doubled, inside) = submit().and_then(|h| h.wait()).expect("work runs");
    assert_ne!(pid, std::process::id(), "the task ran in a daemon process");
    assert_eq!(doubled, 42);
    inside.map(|t| t.parse().expect("a valid traceparent inside the task"))
}

fn the_execute_span_on_the_daemon_is_the_child_of_the_submit_span_on_the_host() {
    let pool = pool();
    let since = Since::now();
    let request = tracing::info_span!("request");
    let inside = run_work(|| request.in_scope(|| pool.submit(&WORK, 21)));
    let submit = since.submit_of("work");
    assert_eq!(submit.parent.as_deref(), Some("request"));
    let execute = daemon_execute_of(&pool, "work");
    let trace_id = submit
        .field("trace_id")
        .expect("the submit span's trace id");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(execute.field("trace_id"), Some(trace_id));
    assert_eq!(execute.field("parent_span_id"), submit.field("span_id"));
    assert_ne!(execute.field("span_id"), submit.field("span_id"));
    assert!(
        execute
            .field("task")
            .is_some_and(|t| t.parse::<u64>().is_ok())
    );
    // Inside the task, the context is the execute span's: what it submits continues the trace.
    let inside = inside.expect("a context inside the task");
    assert_eq!(Some(&*hex(&inside.trace_id())), Some(trace_id));
    assert_eq!(Some(&*hex(&inside.span_id())), execute.field("span_id"));
}

fn a_context_given_in_the_options_is_continued_instead_of_the_current_spans() {
    let pool = pool();
    let since = Since::now();
    let request = tracing::info_span!("request");
    let options = TaskOptions::new().trace_parent(GIVEN);
    run_work(|| request.in_scope(|| pool.submit_with(&WORK, 21, options)));
    let submit = since.submit_of("work");
    assert_eq!(
        submit.field("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(submit.field("parent_span_id"), Some("00f067aa0ba902b7"));
    let execute = daemon_execute_of(&pool, "work");
    assert_eq!(
        execute.field("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(execute.field("parent_span_id"), submit.field("span_id"));
}

fn a_malformed_context_in_the_options_fails_the_submission_and_queues_nothing() {
    let pool = pool();
    let bad = TaskOptions::new().trace_parent(GIVEN.replace('-', "_"));
    let err = pool.submit_with(&WORK, 21, bad).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TraceParent(TraceParentError::Separator { at: 2 })
        ),
        "{err}"
    );
    assert_eq!(pool.status().submitted, 0, "nothing queued");
    // Nothing ran: the next task is the daemon's only execution of `work`.
    run_work(|| pool.submit(&WORK, 21));
    daemon_execute_of(&pool, "work");
}

fn the_execute_span_of_a_failed_task_has_the_error_status() {
    let pool = pool();
    let since = Since::now();
    let err = pool.submit(&FAIL, ()).and_then(|h| h.wait()).unwrap_err();
    assert!(matches!(err, Error::Task { .. }), "{err}");
    let submit = since.submit_of("fail");
    let failed = daemon_execute_of(&pool, "fail");
    assert_eq!(failed.field("otel.status_code"), Some("error"));
    assert_eq!(failed.field("parent_span_id"), submit.field("span_id"));
    run_work(|| pool.submit(&WORK, 21));
    let ok = daemon_execute_of(&pool, "work");
    assert_eq!(ok.field("otel.status_code"), None);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "opentelemetry")]
mod otel {
    //! The same with OpenTelemetry: `opentelemetry_sdk`'s in-memory exporter on each side.

    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use serde::{Deserialize, Serialize};
    use tracing_subscriber::Layer as _;

    use super::*;

    /// One exported span, as a daemon returns it.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub(super) struct Exported {
        name: String,
        trace_id: String,
        span_id: String,
        parent_span_id: String,
        remote_parent: bool,
        function: Option<String>,
        error: bool,
    }

    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();

    /// The OpenTelemetry layer of this process, exporting to memory as each span ends.
    pub(super) fn layer<S>() -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("mirai-tests");
        assert!(EXPORTER.set((exporter, provider)).is_ok(), "one layer");
        // The dispatcher's own debug spans stay out of the way.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                !m.target().starts_with("mirai_dispatch")
            }))
    }

    fn exported_spans((): ()) -> Vec<Exported> {
        let (exporter, _) = EXPORTER.get().expect("installed in main");
        let spans = exporter.get_finished_spans().expect("the exported spans");
        spans
            .into_iter()
            .map(|s| Exported {
                name: s.name.into_owned(),
                trace_id: s.span_context.trace_id().to_string(),
                span_id: s.span_context.span_id().to_string(),
                parent_span_id: s.parent_span_id.to_string(),
                remote_parent: s.parent_span_is_remote,
                function: s
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "function")
                    .map(|kv| kv.value.to_string()),
                error: matches!(s.status, opentelemetry::trace::Status::Error { .. }),
            })
            .collect()
    }

    pub(super) const EXPORTED_SPANS: TaskFn<(), Vec<Exported>> = task!(exported_spans);

    fn one(spans: &[Exported], name: &str, function: &str) -> Exported {
        let found: Vec<&Exported> = spans
            .iter()
            .filter(|s| s.name == name && s.function.as_deref() == Some(function))
            .collect();
        let [span] = &found[..] else {
            panic!("one {name} span of {function}: {spans:?}")
        };
        (*span).clone()
    }

    pub(super) fn host_and_daemon_exporters_see_one_trace_from_submit_to_execute() {
        let pool = pool();
        let (exporter, _) = EXPORTER.get().expect("installed in main");
        exporter.reset();
        let request = tracing::info_span!("request");
        run_work(|| request.in_scope(|| pool.submit(&WORK, 21)));
        drop(request);
        let host = exported_spans(());
        let request = host
            .iter()
            .find(|s| s.name == "request")
            .expect("the request span")
            .clone();
        let submit = one(&host, "submit", "work");
        assert_eq!(submit.trace_id, request.trace_id);
        assert_eq!(submit.parent_span_id, request.span_id);
        assert!(
            !submit.remote_parent,
            "its parent is the request span of this process"
        );
        let daemon = pool
            .submit(&EXPORTED_SPANS, ())
            .and_then(|h| h.wait())
            .expect("the daemon's exported spans");
        let execute = one(&daemon, "execute", "work");
        assert_eq!(execute.trace_id, request.trace_id, "one trace");
        assert_eq!(execute.parent_span_id, submit.span_id);
        assert!(execute.remote_parent, "its parent is in another process");
        assert!(!execute.error);
        // The span fields agree with OpenTelemetry's ids.
        let recorded = daemon_execute_of(&pool, "work");
        assert_eq!(recorded.field("span_id"), Some(&*execute.span_id));
        assert_eq!(recorded.field("trace_id"), Some(&*execute.trace_id));
        // A failed task's span has the error status.
        assert!(pool.submit(&FAIL, ()).and_then(|h| h.wait()).is_err());
        let daemon = pool
            .submit(&EXPORTED_SPANS, ())
            .and_then(|h| h.wait())
            .expect("the daemon's exported spans");
        assert!(one(&daemon, "execute", "fail").error);
    }

    pub(super) fn a_given_context_is_the_remote_parent_of_the_submit_span() {
        let pool = pool();
        let (exporter, _) = EXPORTER.get().expect("installed in main");
        exporter.reset();
        let request = tracing::info_span!("request");
        let options = TaskOptions::new().trace_parent(GIVEN);
        run_work(|| request.in_scope(|| pool.submit_with(&WORK, 21, options)));
        let submit = one(&exported_spans(()), "submit", "work");
        assert_eq!(submit.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(submit.parent_span_id, "00f067aa0ba902b7");
        assert!(submit.remote_parent);
        let daemon = pool
            .submit(&EXPORTED_SPANS, ())
            .and_then(|h| h.wait())
            .expect("the daemon's exported spans");
        let execute = one(&daemon, "execute", "work");
        assert_eq!(execute.trace_id, submit.trace_id);
        assert_eq!(execute.parent_span_id, submit.span_id);
    }
}

fn main() {
    let recorder = Recorder::default();
    assert!(RECORDER.set(recorder.clone()).is_ok());
    let subscriber = tracing_subscriber::registry().with(recorder);
    #[cfg(feature = "opentelemetry")]
    let subscriber = subscriber.with(otel::layer());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    mirai::daemon_main_if_requested(&registry());
    common::run(&[
        Test::new(
            "the_execute_span_on_the_daemon_is_the_child_of_the_submit_span_on_the_host",
            the_execute_span_on_the_daemon_is_the_child_of_the_submit_span_on_the_host,
        ),
        Test::new(
            "a_context_given_in_the_options_is_continued_instead_of_the_current_spans",
            a_context_given_in_the_options_is_continued_instead_of_the_current_spans,
        ),
        Test::new(
            "a_malformed_context_in_the_options_fails_the_submission_and_queues_nothing",
            a_malformed_context_in_the_options_fails_the_submission_and_queues_nothing,
        ),
        Test::new(
            "the_execute_span_of_a_failed_task_has_the_error_status",
            the_execute_span_of_a_failed_task_has_the_error_status,
        ),
        #[cfg(feature = "opentelemetry")]
        Test::new(
            "host_and_daemon_exporters_see_one_trace_from_submit_to_execute",
            otel::host_and_daemon_exporters_see_one_trace_from_submit_to_execute,
        ),
        #[cfg(feature = "opentelemetry")]
        Test::new(
            "a_given_context_is_the_remote_parent_of_the_submit_span",
            otel::a_given_context_is_the_remote_parent_of_the_submit_span,
        ),
    ]);
}
