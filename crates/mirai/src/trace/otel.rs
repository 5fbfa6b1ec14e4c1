//! The `opentelemetry` feature: `submit` and `execute` spans as OpenTelemetry spans.
//!
//! Why a module of its own: everything that names an OpenTelemetry type is here, behind the
//! feature, and reduces to the [`TraceParent`] the rest of the crate works with.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceParent;

/// The OpenTelemetry context of `span`, if a `tracing_opentelemetry` layer gives it a valid one.
pub(super) fn of_span(span: &tracing::Span) -> Option<TraceParent> {
    of_context(&span.context())
}

/// Makes `parent` (if any) the remote parent of the not yet started `span`, unless it is the
/// context of the current span (the span's parent already), then returns the span's own
/// OpenTelemetry context; `None` if no OpenTelemetry layer tracks the span.
pub(super) fn open(span: &tracing::Span, parent: Option<TraceParent>) -> Option<TraceParent> {
    let given = parent.filter(|&p| of_span(&tracing::Span::current()) != Some(p));
    if let Some(parent) = given {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id()),
            SpanId::from_bytes(parent.span_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        // Fails only when no OpenTelemetry layer tracks the span, and then `context` below is
        // invalid too: the caller falls back to ids of its own.
        span.set_parent(cx).ok()?;
    }
    of_context(&span.context())
}

fn of_context(cx: &opentelemetry::Context) -> Option<TraceParent> {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    TraceParent::new(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.trace_flags().to_u8(),
    )
    .ok()
}
