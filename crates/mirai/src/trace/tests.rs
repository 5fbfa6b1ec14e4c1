//! The spans of one process: what `attach` puts in a task and what `in_task_span` makes of it.

use mirai_dispatch::TaskId;
use mirai_dispatch::daemon::TaskContext;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[path = "../../tests/common/spans.rs"]
mod spans;

use spans::Recorder;

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn recording<T>(f: impl FnOnce() -> T) -> (T, Recorder) {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    (tracing::subscriber::with_default(subscriber, f), recorder)
}

fn carried(task: &Task) -> Option<TraceParent> {
    task.trace
        .as_deref()
        .map(|t| TraceParent::parse(t).expect("a valid traceparent"))
}

fn task() -> Task {
    Task::new("f", mirai_dispatch::Payload::from(vec![1]))
}

#[test]
fn untraced_submissions_carry_nothing_or_the_given_context_unchanged() {
    assert_eq!(attach(task(), None).trace, None);
    let given: TraceParent = GIVEN.parse().unwrap();
    assert_eq!(carried(&attach(task(), Some(given))), Some(given));
}

#[test]
fn a_recorded_submit_span_is_named_in_the_task() {
    let (sent, recorder) = recording(|| {
        let outer = tracing::info_span!("request");
        outer.in_scope(|| carried(&attach(task(), None)).unwrap())
    });
    let [submit] = &recorder.named("submit")[..] else {
        panic!("one submit span: {:?}", recorder.closed())
    };
    assert_eq!(submit.target, "mirai");
    assert_eq!(submit.parent.as_deref(), Some("request"));
    assert_eq!(submit.field("function"), Some("f"));
    assert_eq!(
        submit.field("trace_id"),
        Some(&*Hex(&sent.trace_id()).to_string())
    );
    assert_eq!(
        submit.field("span_id"),
        Some(&*Hex(&sent.span_id()).to_string())
    );
    assert_eq!(submit.field("parent_span_id"), None, "a new trace");
    assert!(sent.sampled());
    // Each submission is a span of its own in a trace of its own.
    let (again, _) = recording(|| carried(&attach(task(), None)).unwrap());
    assert_ne!(again.trace_id(), sent.trace_id());
}

#[test]
fn a_given_context_is_the_parent_of_the_submit_span() {
    let given: TraceParent = GIVEN.parse().unwrap();
    let (sent, recorder) = recording(|| carried(&attach(task(), Some(given))).unwrap());
    let submit = &recorder.named("submit")[0];
    assert_eq!(sent.trace_id(), given.trace_id());
    assert_ne!(sent.span_id(), given.span_id());
    assert_eq!(submit.field("parent_span_id"), Some("00f067aa0ba902b7"));
    assert_eq!(
        submit.field("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn the_execute_span_is_the_child_of_the_context_it_is_given_and_tasks_continue_it() {
    let given: TraceParent = GIVEN.parse().unwrap();
    let ctx = TaskContext::new(TaskId(7), None).with_trace(Some(GIVEN.as_bytes().to_vec()));
    let ((inside, nested), recorder) = recording(|| {
        in_task_span("work", &ctx, || {
            (current().unwrap(), carried(&attach(task(), None)).unwrap())
        })
    });
    let execute = &recorder.named("execute")[0];
    assert_eq!(execute.target, "mirai");
    assert_eq!(execute.field("function"), Some("work"));
    assert_eq!(execute.field("task"), Some("7"));
    assert_eq!(
        execute.field("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(execute.field("parent_span_id"), Some("00f067aa0ba902b7"));
    // Inside, the task's context is the execute span's: a submission from the task is its
    // child, in the same trace.
    assert_eq!(inside.trace_id(), given.trace_id());
    assert_eq!(
        execute.field("span_id"),
        Some(&*Hex(&inside.span_id()).to_string())
    );
    let submit = &recorder.named("submit")[0];
    assert_eq!(submit.parent.as_deref(), Some("execute"));
    assert_eq!(nested.trace_id(), given.trace_id());
    assert_eq!(
        submit.field("parent_span_id"),
        Some(&*Hex(&inside.span_id()).to_string())
    );
    assert_eq!(current(), None, "cleared after the task");
}

#[test]
fn an_unrecorded_task_passes_its_context_on_and_a_malformed_one_is_dropped() {
    let given: TraceParent = GIVEN.parse().unwrap();
    let ctx = TaskContext::new(TaskId(1), None).with_trace(Some(GIVEN.as_bytes().to_vec()));
    assert_eq!(in_task_span("f", &ctx, current), Some(given));
    let bad = TaskContext::new(TaskId(2), None).with_trace(Some(b"00-\xff garbage".to_vec()));
    let (inside, recorder) = recording(|| in_task_span("f", &bad, current));
    assert_eq!(inside, None);
    let execute = &recorder.named("execute")[0];
    assert_eq!(execute.field("trace_id"), None);
    assert_eq!(execute.field("parent_span_id"), None);
}

#[test]
fn a_panicking_task_leaves_no_context_behind() {
    let ctx = TaskContext::new(TaskId(1), None).with_trace(Some(GIVEN.as_bytes().to_vec()));
    let outcome = std::panic::catch_unwind(|| in_task_span("f", &ctx, || panic!("boom")));
    assert!(outcome.is_err());
    assert_eq!(current(), None);
}

#[test]
fn random_ids_differ_and_are_never_zero() {
    let a: [u8; 16] = random_id();
    let b: [u8; 16] = random_id();
    assert_ne!(a, b);
    assert_ne!(a, [0; 16]);
    let mut c = [0u8; 8];
    fallback_id(&mut c);
    let mut d = [0u8; 8];
    fallback_id(&mut d);
    assert_ne!(c, d);
}
