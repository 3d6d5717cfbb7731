//! OpenTelemetry traces over OTLP/HTTP with the JSON encoding, when `otlp_endpoint`
//! is set.
//!
//! The crates open their spans with plain `tracing` (`info_span!` with the target
//! [`rota_core::TRACE_TARGET`]): one per API request, per Raft commit, per execution
//! attempt. Here [`TraceLayer`], a `tracing_subscriber` layer that sees only spans
//! of that target (a per-layer filter), gives each span its ids, keeps its parent
//! (the enclosing span of the same target), its start and end time and its fields
//! as attributes, and hands the closed span to a bounded queue, never waiting: when
//! the queue is full the span is dropped and counted. [`Exporter`] owns the task
//! that takes spans from the queue in batches and `POST`s them to
//! `{endpoint}/v1/traces` (`encode` builds the body), trying a failed batch again
//! briefly; at shutdown it sends what is queued.
//!
//! The OpenTelemetry SDK crates would do the same with about ten more crates to
//! build (a protobuf stack among them); the JSON encoding needs none of them.
//!
//! A span's field `traceparent` (W3C trace context) makes a span without a traced
//! parent in this process the child of that span of another node. [`start`] also
//! lets `rota_core::trace::current` find the current span's context, which the
//! cluster sends along with a forwarded write.
//!
//! Fields named `otel.name`, `otel.kind` (`server`, `client`, `internal`, ...),
//! `otel.status_code` (`ok`, `error`) and `otel.status_message` set the span's name,
//! kind and status instead of becoming attributes, as `tracing-opentelemetry` reads
//! them.

mod encode;
mod export;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rota_core::trace::SpanContext;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, Directive, FilterFn, LevelFilter};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub use export::Exporter;

/// Closed spans waiting to be sent; more are dropped (and counted).
const QUEUE_CAPACITY: usize = 4096;

/// The log filter's directive that keeps the traced spans out of the log lines:
/// they are exported, not logged, and without an exporter nobody enables them.
pub fn not_logged() -> Directive {
    format!("{}=off", rota_core::TRACE_TARGET)
        .parse()
        .expect("a valid directive")
}

/// One span as OTLP describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(String, AttrValue)>,
    pub status: Status,
    pub status_message: Option<String>,
}

/// OTLP's `Span.SpanKind` (the JSON encoding writes enums as their numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// OTLP's `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// An attribute value, as OTLP's `AnyValue` types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrValue {
    String(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// Trace and span ids: random where it matters (a trace id must not collide with
/// another process's), unique within this process.
pub(crate) struct IdGenerator {
    next: AtomicU64,
    seed: u64,
}

impl IdGenerator {
    pub fn new() -> IdGenerator {
        let random = ulid::Ulid::generate().random();
        IdGenerator {
            next: AtomicU64::new(random as u64),
            seed: (random >> 64) as u64 ^ now_unix_nanos(),
        }
    }

    /// A distinct, non-zero, well-mixed number per call: SplitMix64 of a counter
    /// (a bijection, so two calls never collide before the counter wraps).
    fn draw(&self) -> u64 {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let v = rota_core::rng::Rng::new(n ^ self.seed).next_u64();
            if v != 0 {
                return v;
            }
        }
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.draw().to_be_bytes()
    }

    pub fn trace_id(&self) -> [u8; 16] {
        let mut id = [0; 16];
        id[..8].copy_from_slice(&self.draw().to_be_bytes());
        id[8..].copy_from_slice(&self.draw().to_be_bytes());
        id
    }
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The layer recording the traced spans; see the module doc.
pub struct TraceLayer {
    spans: mpsc::Sender<SpanRecord>,
    dropped: Arc<AtomicU64>,
    ids: IdGenerator,
}

impl TraceLayer {
    /// This layer, seeing only the `info` (or higher) spans of
    /// [`rota_core::TRACE_TARGET`].
    pub fn filtered<S>(self) -> tracing_subscriber::filter::Filtered<TraceLayer, TraceFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.with_filter(trace_filter())
    }
}

/// The per-layer filter of [`TraceLayer`].
pub type TraceFilter = FilterFn<fn(&tracing::Metadata<'_>) -> bool>;

fn trace_filter() -> TraceFilter {
    fn traced(meta: &tracing::Metadata<'_>) -> bool {
        meta.is_span()
            && meta.target() == rota_core::TRACE_TARGET
            && *meta.level() <= tracing::Level::INFO
    }
    // The hint keeps the fast level check of `debug!` and `trace!` callsites, which
    // an unbounded filter would turn off for the whole process.
    filter_fn(traced as fn(&tracing::Metadata<'_>) -> bool).with_max_level_hint(LevelFilter::INFO)
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // The nearest enclosing traced span: an explicit parent, else the current one.
        let parent = match attrs.parent() {
            Some(parent) => ctx.span_scope(parent).and_then(|mut scope| scope.next()),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let local_parent =
            parent.and_then(|parent| parent.extensions().get::<SpanContext>().copied());
        let mut record = SpanRecord {
            trace_id: [0; 16],
            span_id: self.ids.span_id(),
            parent_span_id: None,
            name: attrs.metadata().name().to_string(),
            kind: SpanKind::Internal,
            start_unix_nanos: now_unix_nanos(),
            end_unix_nanos: 0,
            attributes: Vec::new(),
            status: Status::Unset,
            status_message: None,
        };
        let mut fields = Fields {
            record: &mut record,
            remote_parent: None,
        };
        attrs.record(&mut fields);
        // A span of this process wins over a `traceparent` from another.
        match local_parent.or(fields.remote_parent) {
            Some(parent) => {
                record.trace_id = parent.trace_id;
                record.parent_span_id = Some(parent.span_id);
            }
            None => record.trace_id = self.ids.trace_id(),
        }
        let context = SpanContext {
            trace_id: record.trace_id,
            span_id: record.span_id,
        };
        let mut extensions = span.extensions_mut();
        extensions.insert(context);
        extensions.insert(record);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(record) = span.extensions_mut().get_mut::<SpanRecord>() {
                values.record(&mut Fields {
                    record,
                    remote_parent: None,
                });
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(mut record) = span.extensions_mut().remove::<SpanRecord>() else {
            return;
        };
        record.end_unix_nanos = now_unix_nanos().max(record.start_unix_nanos);
        // Never wait here: this runs in whatever task closed the span.
        if self.spans.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Puts a span's fields into its record.
struct Fields<'a> {
    record: &'a mut SpanRecord,
    /// The `traceparent` field: the context of a span in another process.
    remote_parent: Option<SpanContext>,
}

impl Fields<'_> {
    fn set(&mut self, field: &Field, value: AttrValue) {
        let record = &mut *self.record;
        let text = |value: AttrValue| match value {
            AttrValue::String(s) => s,
            other => format!("{other:?}"),
        };
        match field.name() {
            "otel.name" => record.name = text(value),
            "otel.kind" => {
                record.kind = match text(value).to_ascii_lowercase().as_str() {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    _ => SpanKind::Internal,
                }
            }
            "otel.status_code" => {
                record.status = match text(value).to_ascii_lowercase().as_str() {
                    "ok" => Status::Ok,
                    "error" => Status::Error,
                    _ => Status::Unset,
                }
            }
            "otel.status_message" => record.status_message = Some(text(value)),
            "traceparent" => self.remote_parent = SpanContext::from_traceparent(&text(value)),
            name => match record.attributes.iter_mut().find(|(k, _)| k == name) {
                Some((_, old)) => *old = value,
                None => record.attributes.push((name.to_string(), value)),
            },
        }
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here too, formatted by their Display.
        self.set(field, AttrValue::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, AttrValue::String(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, AttrValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.set(field, AttrValue::Int(v)),
            Err(_) => self.set(field, AttrValue::String(value.to_string())),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, AttrValue::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, AttrValue::Double(value));
    }
}

/// Starts exporting to `endpoint` (an OTLP/HTTP receiver's base URL, or its full
/// `/v1/traces` URL), with `headers` on every request, as the service instance
/// `node`: the layer to install and the
/// exporter to shut down last. Must run inside the tokio runtime.
pub fn start(
    endpoint: &reqwest::Url,
    headers: &BTreeMap<String, String>,
    node: &str,
) -> anyhow::Result<(TraceLayer, Exporter)> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let resource = encode::Resource {
        service_name: "rota".to_string(),
        service_version: env!("CARGO_PKG_VERSION").to_string(),
        instance: node.to_string(),
    };
    let exporter = Exporter::start(traces_url(endpoint), headers, resource, rx, dropped.clone())?;
    rota_core::trace::set_current_hook(current_context);
    let layer = TraceLayer {
        spans: tx,
        dropped,
        ids: IdGenerator::new(),
    };
    Ok((layer, exporter))
}

/// The context of the innermost traced span around the caller, read from the
/// registry's record of the current span and its parents.
fn current_context() -> Option<SpanContext> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<SpanContext>().copied())
        })
        .flatten()
}

/// Where spans are posted: `{endpoint}/v1/traces`, unless the endpoint names that
/// path already.
pub(crate) fn traces_url(endpoint: &reqwest::Url) -> String {
    let base = endpoint.as_str().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}
