//! A `tracing` layer that records every closed span (name, target, fields, parent) in memory,
//! for tests that check which spans a process made and how they link.
//!
//! Shared by the crate's unit tests (through `#[path]`) and the `tracing` integration test,
//! whose daemons return what they recorded as a task result (hence serde).

#![allow(dead_code)] // Each user takes a different part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// One closed span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) name: String,
    pub(crate) target: String,
    /// The subscriber's id of the span, unique among the spans open at one time.
    pub(crate) id: u64,
    /// The name of its `tracing` parent, if any.
    pub(crate) parent: Option<String>,
    pub(crate) fields: BTreeMap<String, String>,
}

impl Recorded {
    /// The field `name`'s value, if it was recorded.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The layer; clones share one list.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    closed: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// The spans closed so far, oldest first.
    pub(crate) fn closed(&self) -> Vec<Recorded> {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The closed spans named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<Recorded> {
        self.closed()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

/// Field values of a span while it is open, kept in its registry extensions.
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let fields = span
            .extensions_mut()
            .remove::<Fields>()
            .map_or_else(BTreeMap::new, |f| f.0);
        let recorded = Recorded {
            name: span.name().to_owned(),
            target: span.metadata().target().to_owned(),
            id: id.into_u64(),
            parent: span.parent().map(|p| p.name().to_owned()),
            fields,
        };
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }
}
